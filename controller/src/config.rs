//! Command-line and environment configuration of the `kadi-controller`
//! binary. Every flag also reads an environment variable.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use kadi::telemetry::LogFormat;

/// The ShortLink operator of Kadi.
#[derive(Debug, Parser)]
#[command(
    name = "kadi-controller",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; `run` when absent.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `run`, accepted without the word `run`.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The commands of `kadi-controller`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator (the default).
    Run(Box<RunArgs>),
    /// Print the ShortLink CRD as YAML and exit.
    Crd,
}

/// Options of `kadi-controller run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Database the links live in, the same as the `kadi` service's:
    /// `postgres://USER@HOST/DB` (or `sqlite:PATH` for a single host).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite:kadi.db"
    )]
    pub database_url: String,
    /// Most database connections the controller opens.
    #[arg(long, env = "KADI_DATABASE_MAX_CONNECTIONS", default_value_t = 4)]
    pub database_max_connections: u32,
    /// Redis of the shared cache tier, such as `redis://127.0.0.1:6379`.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Base of short URLs, such as `https://sho.rt`; status shows short URLs
    /// under it, and links may not point at it.
    #[arg(long, env = "KADI_PUBLIC_URL", default_value = "http://localhost:8080")]
    pub public_url: url::Url,
    /// Address of the metrics and health listener (`/metrics`, `/healthz`,
    /// `/readyz`).
    #[arg(
        long,
        env = "KADI_CONTROLLER_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,
    /// Seconds between two reconciles of a resource; clicks in status are
    /// refreshed this often.
    #[arg(long, env = "KADI_CONTROLLER_RESYNC_SECS", default_value_t = 300)]
    pub resync_secs: u64,
    /// Seconds before a resource whose short code is taken looks again.
    #[arg(
        long,
        env = "KADI_CONTROLLER_CONFLICT_RETRY_SECS",
        default_value_t = 30
    )]
    pub conflict_retry_secs: u64,
    /// Name of the Lease the replicas elect a leader with.
    #[arg(
        long,
        env = "KADI_CONTROLLER_LEASE_NAME",
        default_value = "kadi-controller"
    )]
    pub lease_name: String,
    /// Namespace of the Lease, normally the controller's own.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Seconds a leader holds the Lease without renewing it.
    #[arg(
        long,
        env = "KADI_CONTROLLER_LEASE_DURATION_SECS",
        default_value_t = 15
    )]
    pub lease_duration_secs: u64,
    /// This replica's name in the Lease and in Events, normally the pod name;
    /// a random one when absent.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Watch only this namespace; every namespace when absent.
    #[arg(long, env = "KADI_CONTROLLER_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Log format: `auto` (text in a terminal, JSON otherwise), `json` or `text`.
    #[arg(long, env = "KADI_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log filter, in `RUST_LOG` syntax.
    #[arg(long, env = "KADI_LOG", default_value = "info,kube_runtime=warn")]
    pub log: String,
}

impl Cli {
    /// The command to run, `run` with its options when none was named.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Run(Box::new(self.run)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_have_long_names_and_environment_variables() {
        use clap::CommandFactory;
        let command = <Cli as CommandFactory>::command();
        for arg in command
            .get_arguments()
            .filter(|a| !["help", "version"].contains(&a.get_id().as_str()))
        {
            assert!(
                arg.get_long().is_some(),
                "{} has no long name",
                arg.get_id()
            );
            assert!(
                arg.get_env().is_some(),
                "{} has no environment variable",
                arg.get_id()
            );
        }
    }

    #[test]
    fn defaults_parse() {
        let cli =
            Cli::try_parse_from(["kadi-controller", "--public-url", "https://sho.rt"]).unwrap();
        let Command::Run(args) = cli.into_command() else {
            panic!("not run")
        };
        assert_eq!(args.resync_secs, 300);
        assert_eq!(args.public_url.as_str(), "https://sho.rt/");
        let cli = Cli::try_parse_from(["kadi-controller", "crd"]).unwrap();
        assert!(matches!(cli.into_command(), Command::Crd));
    }
}
