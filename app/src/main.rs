//! The `kadi` binary: parses the command line and runs the chosen command.

use clap::Parser;
use kadi::config::{Cli, Command};

/// mimalloc instead of the system allocator: the redirect path allocates a few
/// small buffers per request on every worker thread, which glibc's allocator
/// serves with more locking and more work per call.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
