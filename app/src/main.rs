//! The `kadi` binary: parses the command line and runs the chosen command.

use clap::Parser;
use kadi::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (global, command) = Cli::parse().command();
    kadi::telemetry::init(global.log_format, &global.log);
    match command {
        Command::Serve(args) => kadi::server::serve(&global, args).await,
        Command::Migrate => kadi::server::migrate(&global).await,
        Command::Import(args) => kadi::server::import(&global, &args).await,
        Command::Keys(command) => kadi::server::keys(&global, &command).await,
    }
}
