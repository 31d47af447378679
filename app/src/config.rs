//! Command-line and environment configuration of the `kadi` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;

/// Kadi: a URL shortener built to survive production.
#[derive(Debug, Parser)]
#[command(name = "kadi", version, about)]
pub struct Cli {
    /// Database and logging, shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do; `serve` when absent.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, accepted without the word `serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The commands of `kadi`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API and redirects (the default).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Load CSV exports of the original service, keeping their ids.
    Import(ImportArgs),
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Database to use: `sqlite:PATH` (created when missing) or
    /// `postgres://USER@HOST/DB`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite:kadi.db",
        global = true,
        hide_env_values = true
    )]
    pub database_url: String,
    /// Most database connections this process opens.
    #[arg(
        long,
        env = "KADI_DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub database_max_connections: u32,
    /// Log format: `auto` (text in a terminal, JSON otherwise), `json` or `text`.
    #[arg(long, env = "KADI_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto,
          global = true)]
    pub log_format: LogFormat,
    /// Log filter, in `RUST_LOG` syntax (for example `info,kadi=debug`).
    #[arg(long, env = "KADI_LOG", default_value = "info", global = true)]
    pub log: String,
}

/// Options of `kadi serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on for the API and redirects.
    #[arg(long, env = "KADI_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Base of short URLs, such as `https://sho.rt`; `http://LISTEN` when absent.
    #[arg(long, env = "KADI_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
    /// Redis for the shared cache tier, such as `redis://127.0.0.1:6379`;
    /// without it each replica caches on its own.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Address of the Prometheus metrics listener, kept apart from the public
    /// one; no metrics listener when absent.
    #[arg(long, env = "KADI_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Clicks the in-memory queue holds before new clicks are dropped (and
    /// counted in `kadi_clicks_dropped_total`).
    #[arg(long, env = "KADI_CLICK_QUEUE_CAPACITY", default_value_t = 65_536)]
    pub click_queue_capacity: usize,
    /// Bytes the local link cache may hold; 0 disables the local tier.
    #[arg(long, env = "KADI_CACHE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub cache_bytes: u64,
    /// Seconds a cached link lives; invalidation keeps it fresh before that.
    #[arg(long, env = "KADI_CACHE_TTL_SECS", default_value_t = 60)]
    pub cache_ttl_secs: u64,
    /// Seconds an unknown short code stays cached as unknown.
    #[arg(long, env = "KADI_NEGATIVE_CACHE_TTL_SECS", default_value_t = 5)]
    pub negative_cache_ttl_secs: u64,
    /// Seconds in-flight requests get to finish after SIGTERM before the click
    /// queue is drained and the process exits.
    #[arg(long, env = "KADI_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
}

/// Options of `kadi import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Users CSV: `id,username,email,created_at`.
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Links CSV: `id,user_id,short_code,original_url,title,is_active,created_at,updated_at`.
    #[arg(long)]
    pub urls: Option<PathBuf>,
    /// Events CSV: `id,url_id,user_id,event_type,timestamp,details`.
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Never draw a progress bar, even in a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

impl Cli {
    /// The command to run, `serve` with its options when none was named.
    pub fn command(self) -> (GlobalArgs, Command) {
        let command = self.command.unwrap_or(Command::Serve(self.serve));
        (self.global, command)
    }
}
