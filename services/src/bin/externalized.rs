//! The externalized service: sessions in Redis. Replicas are interchangeable; Redis is the
//! dependency.

use clap::Parser;
use statelab_services::config::{ChatArgs, CommonArgs, ObjectStoreArgs, RedisArgs};
use statelab_services::launch::{launch, Beside};
use statelab_services::store::{RedisStore, Topology};

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
    // Its rooms go through its own Redis when that is one; behind Sentinel or a Cluster, through
    // the broker --chat-redis-url names, else each replica keeps its own.
    let own_redis = match &config.topology {
        Topology::Single { url } => Some(url.clone()),
        Topology::Sentinel { .. } | Topology::Cluster { .. } => None,
    };
    launch(
        cli.common,
        Beside {
            files: move |_: &str| objects.files(),
            rooms: move || chat.rooms(own_redis.as_deref()),
        },
        move |metrics| RedisStore::new(&config, metrics),
    )
}
