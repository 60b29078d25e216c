//! The externalized service: sessions in Redis. Replicas are interchangeable; Redis is the
//! dependency.

use clap::Parser;
use statelab_services::config::{ChatArgs, CommonArgs, ObjectStoreArgs, RedisArgs};
use statelab_services::launch::{launch, Beside};
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
    #[command(flatten)]
    chat: ChatArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.redis.config(cli.common.session_ttl())?;
    let (objects, chat) = (cli.objects, cli.chat);
    // Its rooms go through the broker --chat-redis-url names, else through its own Redis, behind
    // Sentinel or as a Cluster too.
    let own_redis = config.topology.clone();
    launch(
        cli.common,
        Beside {
            files: move |_: &str| objects.files(),
            rooms: move || chat.rooms(Some(&own_redis)),
        },
        move |metrics| RedisStore::new(&config, metrics),
    )
}
