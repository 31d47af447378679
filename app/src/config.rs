//! Command-line and environment configuration of the `kadi` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::auth::AuthMode;
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
// Parsed once at start-up: the size of the serve variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API and redirects (the default).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Load CSV exports of the original service, keeping their ids.
    Import(ImportArgs),
    /// Create, list and revoke the API keys of the resource API.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `kadi keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it; it is shown this once and stored only as a
    /// hash.
    Create {
        /// What the key is for, such as the client that will use it.
        #[arg(long)]
        name: String,
    },
    /// List every key: id, prefix, name, creation and revocation times.
    List,
    /// Revoke a key by id; requests with it are refused from then on.
    Revoke {
        /// Id of the key, as `kadi keys list` shows it.
        id: i64,
    },
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
    /// Seconds a PostgreSQL operation (a query or a transaction, waiting for
    /// a connection included) may take before it is given up and its request
    /// answers 503; a hung server or a network partition then costs requests
    /// this long instead of minutes. At least 1.
    #[arg(long, env = "KADI_DATABASE_TIMEOUT_SECS", default_value_t = 10, global = true,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub database_timeout_secs: u64,
    /// Log format: `auto` (text in a terminal, JSON otherwise), `json` or `text`.
    #[arg(long, env = "KADI_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto,
          global = true)]
    pub log_format: LogFormat,
    /// Log filter, in `RUST_LOG` syntax (for example `info,kadi=debug`).
    #[arg(long, env = "KADI_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Threads that serve requests and run background work; as many as the
    /// CPUs this process may use (its cgroup quota included) when absent.
    #[arg(long, env = "KADI_WORKER_THREADS", global = true,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
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
    /// Whether reads and writes of users, links and events need an API key
    /// (`Authorization: Bearer <key>`): `off` or `required`. Default:
    /// `required`, except on the embedded SQLite default listening on a
    /// loopback address, where it is `off`.
    #[arg(long, env = "KADI_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// API requests per second per API key and per client, 0 for no limit.
    /// Default: 50, except on the embedded SQLite default listening on a
    /// loopback address, where it is 0.
    #[arg(long, env = "KADI_API_RATE_LIMIT")]
    pub api_rate_limit: Option<f64>,
    /// API requests a key or client may send at once on top of the rate.
    #[arg(long, env = "KADI_API_RATE_BURST", default_value_t = 100)]
    pub api_rate_burst: u32,
    /// Redirects per second per client, 0 for no limit. Default: 200, except
    /// on the embedded SQLite default listening on a loopback address, where
    /// it is 0.
    #[arg(long, env = "KADI_REDIRECT_RATE_LIMIT")]
    pub redirect_rate_limit: Option<f64>,
    /// Redirects a client may ask for at once on top of the rate.
    #[arg(long, env = "KADI_REDIRECT_RATE_BURST", default_value_t = 400)]
    pub redirect_rate_burst: u32,
    /// Most clients and keys whose rate-limit state is kept at once; the
    /// least used are forgotten first.
    #[arg(long, env = "KADI_RATE_LIMIT_MAX_CLIENTS", default_value_t = 100_000)]
    pub rate_limit_max_clients: u64,
    /// Count requests against the client in the first `X-Forwarded-For` hop
    /// instead of the peer address. Only behind a proxy that sets that header
    /// itself: otherwise clients choose their own address.
    #[arg(long, env = "KADI_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// Seconds a client gets to send a request's headers; an idle keep-alive
    /// connection is closed after as long.
    #[arg(long, env = "KADI_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// Seconds a client gets to send a request's body.
    #[arg(long, env = "KADI_BODY_READ_TIMEOUT_SECS", default_value_t = 60)]
    pub body_read_timeout_secs: u64,
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
