//! The externalized service: sessions in Redis. Replicas are interchangeable; Redis is the
//! dependency.

use clap::Parser;
use statelab_services::config::{CommonArgs, ObjectStoreArgs, RedisArgs};
use statelab_services::launch::launch;
use statelab_services::store::RedisStore;

/// statelab's externalized service: sessions live in Redis.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    objects: ObjectStoreArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.redis.config(cli.common.session_ttl())?;
    let objects = cli.objects;
    launch(
        cli.common,
        move |_| objects.files(),
        move |metrics| RedisStore::new(&config, metrics),
    )
}
