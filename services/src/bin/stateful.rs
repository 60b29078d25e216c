//! The stateful service: sessions in this process's memory. Route to it stickily; a crash
//! loses its sessions.

use clap::Parser;
use statelab_services::config::CommonArgs;
use statelab_services::launch::launch;
use statelab_services::store::MemoryStore;

/// statelab's stateful service: sessions live in process memory.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let ttl = cli.common.session_ttl();
    launch(cli.common, |metrics| Ok(MemoryStore::new(ttl, metrics)?))
}
