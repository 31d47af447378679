//! The `kadi-controller` binary: parses the command line and runs the
//! operator, or prints the CRD.

use clap::Parser;
use kadi_controller::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().into_command() {
        Command::Crd => {
            print!("{}", kadi_controller::resource::crd_yaml());
            Ok(())
        }
        Command::Run(args) => {
            kadi::telemetry::init(args.log_format, &args.log);
            kadi_controller::operator::run(*args).await
        }
    }
}
