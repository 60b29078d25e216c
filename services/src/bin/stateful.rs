//! The stateful service: sessions in this process's memory. Route to it stickily; a crash
//! loses its sessions.

use clap::Parser;
use statelab_services::config::{CommonArgs, DiskArgs, MemoryArgs};
use statelab_services::launch::launch;
use statelab_services::store::MemoryStore;

/// statelab's stateful service: sessions live in process memory.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    memory: MemoryArgs,
    #[command(flatten)]
    disk: DiskArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.memory.config(cli.common.session_ttl());
    let disk = cli.disk;
    launch(
        cli.common,
        move |replica| Ok(disk.files(replica)),
        |metrics| Ok(MemoryStore::new(config, metrics)?),
    )
}
