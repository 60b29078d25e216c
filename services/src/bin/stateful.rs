//! The stateful service: sessions in this process's memory. Route to it stickily; a crash
//! loses its sessions.

use clap::Parser;
use statelab_services::chat::Rooms;
use statelab_services::config::{CommonArgs, DiskArgs, MemoryArgs};
use statelab_services::launch::{launch, Beside};
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
        Beside {
            files: move |replica: &str| Ok(disk.files(replica)),
            // Its rooms in its memory: the stateful design keeps every state where it runs.
            rooms: || Ok(Rooms::default()),
        },
        |metrics| Ok(MemoryStore::new(config, metrics)?),
    )
}
