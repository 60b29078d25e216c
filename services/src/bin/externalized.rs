//! The externalized service: sessions in Redis. Replicas are interchangeable; Redis is the
//! dependency.

use clap::Parser;
use statelab_services::config::{CommonArgs, RedisArgs};
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.redis.config(cli.common.session_ttl())?;
    launch(cli.common, move |metrics| RedisStore::new(&config, metrics))
}
