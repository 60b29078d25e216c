//! Pools that follow DNS. In the library, a resolver whose answers the test chooses drives
//! [`Discovery::round`] against real backends on ephemeral loopback ports, with the health
//! checker running; through the real binary, the system resolver follows an IP literal (no DNS
//! query leaves the host).

// Each test binary compiles the harness and uses part of it.
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pingora::services::background::BackgroundService;
use reqwest::Method;
use statelab_proxy::discovery::{Discovery, Removals, Resolve};
use statelab_proxy::health::HealthChecker;
use statelab_proxy::metrics::Metrics;
use statelab_proxy::pool::{InFlight, Pools};
use statelab_proxy::Config;
use statelab_test_support::{eventually, free_port};
use support::{spawn_proxy, Backend, PoolSpec};

/// Answers as the test last said: addresses, or a failure.
#[derive(Clone)]
struct Answers(Arc<Mutex<Result<Vec<SocketAddr>, String>>>);

impl Answers {
    fn new() -> Self {
        Answers(Arc::new(Mutex::new(Ok(Vec::new()))))
    }

    fn say(&self, answer: Result<Vec<SocketAddr>, String>) {
        *self.0.lock().expect("not poisoned") = answer;
    }
}

impl Resolve for Answers {
    async fn resolve(&self, _target: &str) -> std::io::Result<Vec<SocketAddr>> {
        self.0
            .lock()
            .expect("not poisoned")
            .clone()
            .map_err(std::io::Error::other)
    }
}

/// The pool's members, name → address.
fn members(pools: &Pools) -> BTreeMap<String, SocketAddr> {
    pools
        .pool_by_name("stateless")
        .expect("the pool")
        .members()
        .replicas
        .iter()
        .map(|r| (r.name.clone(), r.addr))
        .collect()
}

fn want(list: &[(&str, SocketAddr)]) -> BTreeMap<String, SocketAddr> {
    list.iter().map(|(n, a)| ((*n).to_string(), *a)).collect()
}

/// A pool following `tasks.stateless:8000` through `answers`, with its health checks running
/// (every 50 ms, one pass to join) until the returned sender is dropped.
fn following(
    answers: &Answers,
    drain_s: u64,
) -> (
    Arc<Pools>,
    Discovery<Answers>,
    tokio::sync::watch::Sender<bool>,
) {
    let config = Config::from_toml_str(&format!(
        "[health]\ninterval_ms = 50\ntimeout_ms = 500\nrise = 1\nfall = 1\n\
         [[pool]]\nname = \"stateless\"\ndiscover = \"tasks.stateless:8000\"\n\
         discover_drain_seconds = {drain_s}\n"
    ))
    .expect("a valid configuration");
    let pools = Pools::new(&config, &Metrics::new());
    let discovery = Discovery::new(
        Arc::clone(&pools),
        "stateless",
        config.pools[0].discover.clone().expect("discover"),
        config.health.clone(),
        answers.clone(),
    );
    let (stop, watch) = tokio::sync::watch::channel(false);
    let checker = HealthChecker::new(Arc::clone(&pools), config.health.clone());
    tokio::spawn(async move { checker.start(watch).await });
    (pools, discovery, stop)
}

async fn healthy(pools: &Pools, names: &[&str]) {
    eventually(
        "the replicas pass their checks",
        Duration::from_secs(10),
        || async {
            let members = pools.pool_by_name("stateless")?.members();
            names
                .iter()
                .all(|n| {
                    members
                        .replicas
                        .iter()
                        .any(|r| r.name == *n && r.is_healthy())
                })
                .then_some(())
        },
    )
    .await;
}

fn view(pools: &Pools) -> statelab_formats::status::DiscoveryView {
    pools.status().pools[0]
        .discovery
        .clone()
        .expect("a discovery view")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_become_members_and_failures_keep_them() {
    let answers = Answers::new();
    let (pools, discovery, _checks) = following(&answers, 0);
    let mut removals = Removals::default();
    let mut b = Vec::new();
    for k in 1..=3 {
        b.push(
            Backend::start(&format!("stateless-{k}"))
                .await
                .expect("a backend"),
        );
    }
    assert!(
        members(&pools).is_empty(),
        "a discovering pool starts empty"
    );

    // New addresses join under the names their replicas give, then pass their checks.
    answers.say(Ok(vec![b[0].addr, b[1].addr]));
    discovery.round(&mut removals).await;
    assert_eq!(
        members(&pools),
        want(&[("stateless-1", b[0].addr), ("stateless-2", b[1].addr)])
    );
    let v = view(&pools);
    assert_eq!(v.target, "tasks.stateless:8000");
    assert_eq!(v.addresses.len(), 2);
    assert!(v.error.is_none() && v.resolved_ms.is_some() && v.left_out.is_empty());
    healthy(&pools, &["stateless-1", "stateless-2"]).await;

    // A failed resolution, and one with no address, keep the pool as it is.
    answers.say(Err("no such host".into()));
    discovery.round(&mut removals).await;
    answers.say(Ok(Vec::new()));
    discovery.round(&mut removals).await;
    assert_eq!(members(&pools).len(), 2, "nothing removed on a failure");
    let v = view(&pools);
    assert_eq!(v.failures, 2);
    assert_eq!(v.error.as_deref(), Some("the name resolved to no address"));
    assert_eq!(v.addresses.len(), 2, "the last answer that had addresses");

    // An address that answers nothing is left out, and says why.
    let silent = SocketAddr::from(([127, 0, 0, 1], free_port()));
    answers.say(Ok(vec![b[0].addr, b[1].addr, silent]));
    discovery.round(&mut removals).await;
    assert_eq!(members(&pools).len(), 2);
    let v = view(&pools);
    assert!(v.error.is_none());
    assert!(
        v.left_out
            .get(&silent.to_string())
            .is_some_and(|why| why.starts_with("no name yet")),
        "{v:?}"
    );

    // An address that left the answer drains and goes; a new one joins in the same round.
    answers.say(Ok(vec![b[0].addr, b[2].addr]));
    discovery.round(&mut removals).await;
    removals.settle().await;
    assert_eq!(
        members(&pools),
        want(&[("stateless-1", b[0].addr), ("stateless-3", b[2].addr)])
    );

    // A replacement: the name stateless-3 answers from a new address, the old one is gone.
    let moved = Backend::start("stateless-3").await.expect("a backend");
    answers.say(Ok(vec![b[0].addr, moved.addr]));
    discovery.round(&mut removals).await;
    removals.settle().await;
    assert_eq!(
        members(&pools),
        want(&[("stateless-1", b[0].addr), ("stateless-3", moved.addr)]),
        "the same replica at its new address, not a second one"
    );

    // One name from two addresses: the one the pool has stays, the other is left out.
    answers.say(Ok(vec![b[0].addr, b[2].addr, moved.addr]));
    discovery.round(&mut removals).await;
    assert_eq!(
        members(&pools),
        want(&[("stateless-1", b[0].addr), ("stateless-3", moved.addr)])
    );
    assert!(view(&pools)
        .left_out
        .get(&b[2].addr.to_string())
        .is_some_and(|why| why.contains("another address")));

    // An address handed to another task: it answers with another name, so the member it had
    // leaves and the newcomer joins there.
    let reused = b[0].addr;
    let first = b.remove(0);
    first.kill().await;
    let newcomer = Backend::start_on("stateless-9", reused)
        .await
        .expect("the port again");
    answers.say(Ok(vec![reused, moved.addr]));
    discovery.round(&mut removals).await;
    assert_eq!(
        members(&pools),
        want(&[("stateless-3", moved.addr), ("stateless-9", newcomer.addr)])
    );

    // The answer names no replica that serves: nothing leaves until one does.
    answers.say(Ok(vec![silent]));
    discovery.round(&mut removals).await;
    removals.settle().await;
    assert_eq!(members(&pools).len(), 2, "{:?}", members(&pools));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_back_before_its_drain_ends_stays() {
    let answers = Answers::new();
    let (pools, discovery, _checks) = following(&answers, 60);
    let mut removals = Removals::default();
    let b1 = Backend::start("stateless-1").await.expect("a backend");
    let b2 = Backend::start("stateless-2").await.expect("a backend");
    answers.say(Ok(vec![b1.addr, b2.addr]));
    discovery.round(&mut removals).await;
    healthy(&pools, &["stateless-1", "stateless-2"]).await;
    let replica = |name: &str| {
        pools
            .pool_by_name("stateless")
            .and_then(|p| {
                p.members()
                    .replicas
                    .iter()
                    .find(|r| r.name == name)
                    .cloned()
            })
            .expect("a member")
    };
    // A request on its way keeps stateless-2's drain going.
    let busy = InFlight::new(&replica("stateless-2"));

    // One round without it: it drains.
    answers.say(Ok(vec![b1.addr]));
    discovery.round(&mut removals).await;
    eventually("stateless-2 draining", Duration::from_secs(5), || async {
        replica("stateless-2").is_draining().then_some(())
    })
    .await;
    // Back in the next: the removal stops, and it takes new clients again.
    answers.say(Ok(vec![b1.addr, b2.addr]));
    discovery.round(&mut removals).await;
    removals.settle().await;
    drop(busy);
    assert_eq!(
        members(&pools),
        want(&[("stateless-1", b1.addr), ("stateless-2", b2.addr)])
    );
    let r2 = replica("stateless-2");
    assert!(!r2.is_draining() && !r2.is_removing());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_follows_a_name_through_the_system_resolver() {
    let backend = Backend::start("stateless-7").await.expect("a backend");
    // An IP literal resolves to itself without a DNS query.
    let target = backend.addr.to_string();
    // A name whose one address answers nothing: the pool stays empty.
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_port())).to_string();
    let proxy = spawn_proxy(
        &[
            PoolSpec::discovering("stateless", &target),
            PoolSpec::discovering("externalized", &nobody),
        ],
        "admin_token = \"discovery-t0ken\"",
    )
    .await;
    let client = reqwest::Client::new();
    let empty = proxy.get(&client, "/externalized/whoami", None).await;
    assert_eq!(empty.status, 503, "an empty pool answers 503");
    // It joins once named and past its health checks, and serves.
    let served = eventually(
        "the discovered replica serves",
        Duration::from_secs(10),
        || async {
            let reply = proxy
                .try_get(&client, "/stateless/whoami", None, &[])
                .await
                .ok()?;
            (reply.status == 200).then_some(reply.replica)
        },
    )
    .await;
    assert_eq!(served.as_deref(), Some("stateless-7"));
    let status = proxy.status().await;
    let pool = &status["pools"][0];
    assert_eq!(pool["discovery"]["target"], target.as_str());
    assert_eq!(pool["discovery"]["addresses"][0], target.as_str());
    assert_eq!(pool["replicas"][0]["name"], "stateless-7");
    let empty = &status["pools"][1];
    assert_eq!(empty["discovery"]["addresses"][0], nobody.as_str());
    assert_eq!(empty["replicas"].as_array().map(Vec::len), Some(0));

    // Its members are the name's answer: the admin API neither adds nor removes one.
    let other = Backend::start("stateless-8").await.expect("a backend");
    let body = format!(r#"{{"name":"stateless-8","addr":"{}"}}"#, other.addr);
    let (code, text) = proxy
        .admin(Method::POST, "/admin/pools/stateless/replicas", Some(&body))
        .await;
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("discover"), "{text}");
    let (code, text) = proxy
        .admin(Method::DELETE, "/admin/replicas/stateless-7", None)
        .await;
    assert_eq!(code, 409, "{text}");
}
