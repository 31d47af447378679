//! The `kadi` binary: parses the command line and runs the chosen command.

use clap::Parser;
use kadi::config::{Cli, Command};

/// mimalloc instead of the system allocator: the redirect path allocates a few
/// small buffers per request on every worker thread, which glibc's allocator
/// serves with more locking and more work per call.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let (global, command) = Cli::parse().command();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = global.worker_threads {
        runtime.worker_threads(threads.into());
    }
    let runtime = runtime.build()?;
    runtime.block_on(async move {
        kadi::telemetry::init(global.log_format, &global.log);
        match command {
            Command::Serve(args) => kadi::server::serve(&global, args).await,
            Command::Migrate => kadi::server::migrate(&global).await,
            Command::Import(args) => kadi::server::import(&global, &args).await,
            Command::Keys(command) => kadi::server::keys(&global, &command).await,
        }
    })
}
