//! The stateless service: the session is a signed JWT the client carries. Any replica with the
//! key serves any request; logout cannot revoke a token.

use clap::Parser;
use statelab_services::config::{ChatArgs, CommonArgs, JwtArgs, ObjectStoreArgs};
use statelab_services::launch::{launch, Beside};
use statelab_services::store::JwtStore;

/// statelab's stateless service: sessions live in signed tokens (HS256 JWT).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    jwt: JwtArgs,
    #[command(flatten)]
    objects: ObjectStoreArgs,
    #[command(flatten)]
    chat: ChatArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let ttl = cli.common.session_ttl();
    let jwt = cli.jwt;
    let (objects, chat) = (cli.objects, cli.chat);
    launch(
        cli.common,
        Beside {
            files: move |_: &str| objects.files(),
            // The token carries the session, not the socket: a room shared by every replica
            // needs the broker.
            rooms: move || chat.rooms(None),
        },
        move |metrics| {
            let (current, previous) = jwt.keys()?;
            Ok(JwtStore::new(current, previous, ttl, metrics)?)
        },
    )
}
