//! The stateless service: the session is a signed JWT the client carries. Any replica with the
//! key serves any request; logout cannot revoke a token.

use clap::Parser;
use statelab_services::config::{CommonArgs, JwtArgs, ObjectStoreArgs};
use statelab_services::launch::launch;
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let ttl = cli.common.session_ttl();
    let jwt = cli.jwt;
    let objects = cli.objects;
    launch(
        cli.common,
        move |_| objects.files(),
        move |metrics| {
            let (current, previous) = jwt.keys()?;
            Ok(JwtStore::new(current, previous, ttl, metrics)?)
        },
    )
}
