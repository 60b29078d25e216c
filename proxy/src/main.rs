//! `statelab-proxy [--config FILE]`: parse flags, load the config (failing fast), run the server.
//! `STATELAB_ADMIN_TOKEN` in the environment replaces the file's `server.admin_token`.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// The proxy allocates and frees many small buffers per request (pingora headers, pooled
/// connection handles); mimalloc measured faster than glibc malloc here (docs/benchmarks.md,
/// "What each lever bought").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// statelab's reverse proxy (pingora): path-prefix pools with cookie, ip-hash, ip-modulo or round-robin.
#[derive(Debug, Parser)]
#[command(name = "statelab-proxy", version)]
struct Args {
    /// TOML config file; without it the lab's default pools on 127.0.0.1:180xx are used.
    #[arg(long, short, env = "STATELAB_PROXY_CONFIG")]
    config: Option<PathBuf>,
    /// Check the config, print the result and exit.
    #[arg(long)]
    check: bool,
}

/// `STATELAB_ADMIN_TOKEN`, which replaces `server.admin_token`: compose hands the container its
/// token this way, so the committed config file holds none. Read from the environment only, never
/// from a flag, which any local user could see in the process list.
fn admin_token_from_env() -> anyhow::Result<Option<String>> {
    match std::env::var("STATELAB_ADMIN_TOKEN") {
        Ok(token) => Ok(Some(token)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            anyhow::bail!("statelab-proxy cannot start: STATELAB_ADMIN_TOKEN is not UTF-8")
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let mut config = statelab_proxy::Config::load(args.config.as_deref())
        .context("statelab-proxy cannot start")?;
    config.override_admin_token(admin_token_from_env()?);
    if let Some(token) = config
        .ensure_admin_token()
        .context("statelab-proxy cannot start")?
    {
        // Shown once, where the user who started the proxy looks (`docker compose logs proxy`).
        tracing::warn!(
            admin = %config.server.admin_listen,
            "the admin API listens beyond loopback and no token was given \
             (STATELAB_ADMIN_TOKEN): generated one for this run: {token}"
        );
    }
    if args.check {
        println!("{config:#?}");
        return Ok(());
    }
    config
        .check_listeners()
        .context("statelab-proxy cannot start")?;
    tracing::info!(
        listen = %config.server.listen,
        admin = %config.server.admin_listen,
        pools = config.pools.len(),
        "statelab-proxy starting"
    );
    statelab_proxy::build_server(&config).run_forever()
}
