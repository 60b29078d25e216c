//! statelab's reverse proxy: the lab's front door, built on pingora.
//!
//! One listener routes `/stateful/...`, `/stateless/...` and `/externalized/...` to a pool of
//! replicas each (prefix stripped), with a per-pool strategy the user can switch at runtime:
//! sticky cookie, consistent ip-hash or round-robin. A second, loopback listener serves the admin
//! API and Prometheus metrics.
//!
//! Layout:
//! - [`config`]: the TOML file, parsed once into typed values (every field has a default);
//! - [`strategy`]: the strategies as types behind one `Route` trait (read the request's key, pick
//!   through one selection walk, pin): round-robin and ip-hash wrap pingora's `RoundRobin` and
//!   `Consistent` selections, cookie adds the affinity layer; replicas are named by `ReplicaId`;
//! - [`pool`]: pools, replicas and their live state (health, drain, passive ejection, counters);
//! - [`sockets`]: each replica's open sockets (upgraded connections), counted and hung up when a
//!   drain runs out;
//! - [`health`]: active HTTP health checks with rise/fall thresholds;
//! - [`discovery`]: pools that follow a DNS name, its answers applied as membership changes;
//! - [`front`]: each listener's connection loop below pingora's HTTP layer: connection cap, idle,
//!   header and body deadlines, header checks, small bodies read whole before a replica is
//!   chosen, pipelined requests served in order;
//! - [`proxy`]: the `ProxyHttp` filters (routing, retries on another replica, 503 when none) and
//!   the classification of a failed request into the proxy's own answer (`ProxyFault`);
//! - [`admin`]: `/admin/...` and `/metrics`, every request first through its guard (the `Host`,
//!   no state change from another site, the token, JSON bodies);
//! - [`dashboard`]: the live page at the admin listener's `/`, its once-a-second sampler and the
//!   history rings it serves as JSON;
//! - [`metrics`]: the Prometheus registry;
//! - [`build_server`] wires them into a pingora `Server`; `main.rs` only parses flags and runs it.

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod dashboard;
pub mod discovery;
pub mod front;
pub mod health;
pub mod metrics;
pub mod pool;
pub mod proxy;
pub mod sockets;
pub mod strategy;

use std::sync::Arc;

use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

pub use config::{Config, ConfigError};

/// Builds the pingora server with the proxy, admin and health-check services; `run_forever` it.
///
/// SIGTERM stops the listeners, lets in-flight requests finish for `grace_period_seconds`, then
/// gives the runtimes `shutdown_timeout_seconds` before exiting (pingora's own default would wait
/// 300 s).
pub fn build_server(config: &Config) -> Server {
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.shutdown_timeout.as_secs()),
        upstream_keepalive_pool_size: config.server.upstream_keepalive,
        // pingora counts attempts, the config counts retries after the first attempt.
        max_retries: config.retry.max_retries as usize + 1,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let metrics = metrics::Metrics::new();
    let pools = pool::Pools::new(config, &metrics);

    let logic = proxy::StatelabProxy::new(
        pools.clone(),
        metrics.clone(),
        config.retry.max_retries,
        config.server.socket_idle_timeout,
    );
    let mut http = HttpProxy::new(logic, server.configuration.clone());
    http.handle_init_modules();
    let front = front::FrontDoor::new(http, config.server.client, metrics.clone());
    let mut proxy_service = Service::new("statelab proxy".to_string(), front);
    // No pingora read buffer (64 KiB per connection by default): the front door reads each
    // request header itself, into a buffer it holds only while a request is arriving.
    proxy_service.add_listener(
        ListenerConfig::tcp(config.server.listen.to_string())
            .l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE)),
    );

    // The dashboard's per-second history: written by the sampler, read by the admin API.
    let history = Arc::new(dashboard::History::new());
    let sampler = background_service(
        "dashboard sampler",
        dashboard::DashboardSampler::new(pools.clone(), metrics.clone(), history.clone()),
    );
    // The admin listener has the public listener's client bounds, with a connection cap of its
    // own; its refusals are not requests of any pool, so they are not counted.
    let admin_front = front::FrontDoor::uncounted(
        admin::AdminApp::new(pools.clone(), metrics, history, &config.server),
        config
            .server
            .client
            .with_max_connections(config.server.max_admin_connections),
    );
    let mut admin_service = Service::new("statelab admin".to_string(), admin_front);
    admin_service.threads = Some(1);
    admin_service.add_listener(
        ListenerConfig::tcp(config.server.admin_listen.to_string())
            .l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE)),
    );

    for p in &config.pools {
        if let Some(discover) = &p.discover {
            server.add_service(background_service(
                &format!("discovery of pool {}", p.name),
                discovery::Discovery::new(
                    pools.clone(),
                    &p.name,
                    discover.clone(),
                    config.health.clone(),
                    discovery::SystemResolver,
                ),
            ));
        }
    }
    let health = background_service(
        "health checks",
        health::HealthChecker::new(pools, config.health.clone()),
    );

    server.add_service(proxy_service);
    server.add_service(admin_service);
    server.add_service(health);
    server.add_service(sampler);
    server
}
