//! A short soak of the whole native lab through the proxy: about 30 s of mixed traffic from
//! several clients at once, with a stateless and an externalized replica killed and started
//! again through `scripts/lab` while it runs. Real services, real proxy, real `redis-server`, on
//! free ports in a private lab directory; every count and every pace is fixed.
//!
//! What it holds the lab to:
//! - **Good requests** (shop sessions on all three pools: login with `Content-Type:
//!   application/json`, `/me`, two cart adds, `/cart` with the expected contents, logout) all
//!   succeed, except on the pool of a killed replica within its failover window: from the kill
//!   until the active checks must have marked it down (`health.fall` × `health.interval_ms`)
//!   plus one `retry.connect_timeout_ms`, all read from the lab's `proxy.toml`. Inside the window
//!   only a request that had reached the replica as it died may fail, and only as the proxy's
//!   documented `502` `bad_gateway` for a method it does not replay (`docs/proxy.md`): a GET is
//!   replayed and a refused connection is retried for any method. No stateful replica is killed,
//!   so no stateful request may fail.
//! - **Bad requests** (malformed JSON, a wrong media type, unknown paths and pools, an oversized
//!   body, an oversized header, no `Host`, garbage bytes, a trickled header) each get their
//!   documented status and JSON error in full, never a reset, and a refusal that closes the
//!   connection ends the stream cleanly; pipelined requests are answered in order; keep-alive
//!   connections left idle through the whole soak still serve at its end. A bad request the
//!   proxy forwards is excused the same `502` inside a failover window as a good one.
//! - **Memory**: the proxy's peak resident size (`VmHWM`) and its size once every client
//!   connection has closed (given 10 s to settle, with a probe request every 100 ms: the
//!   allocator returns freed pages lazily, on the serving thread's next allocation) stay within
//!   the bounds in `docs/limits.md`.
//!
//! The summary goes to standard error directly, past the test harness's capture of `print!`,
//! so that CI logs show the figures of a passing run too.
//!
//! Its parts, one job each: the clients, one module per kind ([`good`] shop sessions, [`bad`]
//! requests, [`slow`] trickled headers, [`idle`] keep-alive connections), [`raw`] the raw
//! connection the last three use, [`faults`](mod@faults) the replica kills, [`lab`] what the
//! soak reads of the lab, [`memory`] the proxy's memory figures, and [`summary`] what the soak
//! saw, printed and held to its promises.
//!
//! Alone: `cargo test --profile ci -p statelab-system --test soak -- --nocapture`.

mod bad;
mod faults;
mod good;
mod idle;
mod lab;
mod memory;
mod raw;
mod slow;
mod summary;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use statelab_test_support::{eventually, NativeLab};

use bad::{bad_client, Bad, BAD_CLIENTS};
use faults::faults;
use good::{shopper, SHOPPERS_PER_POOL};
use idle::{idle_check, idle_open};
use lab::{client_connections, lab_pid, lab_proxy_config, Pool};
use memory::{proc_status_kb, settled_rss_kb, AFTER_GROWTH_LIMIT_KB};
use slow::{trickler, TRICKLE_STARTS};
use summary::Soak;

/// A bound on one exchange; the lab's replicas answer in milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A bound on the whole soak, past which the test fails rather than hangs.
const SOAK_LIMIT: Duration = Duration::from_secs(50);

#[test]
fn a_thirty_second_soak_with_replica_faults_keeps_every_promise() {
    let up_started = Instant::now();
    let lab = Arc::new(NativeLab::up("soak"));
    let up_time = up_started.elapsed();
    let proxy = SocketAddr::from(([127, 0, 0, 1], lab.port("proxy")));
    let admin = SocketAddr::from(([127, 0, 0, 1], lab.port("admin")));
    let config = lab_proxy_config(&lab);
    let window = Duration::from_millis(
        u64::from(config.health.fall) * config.health.interval_ms + config.retry.connect_timeout_ms,
    );
    let header_deadline = Duration::from_millis(config.server.client_header_timeout_ms);
    let keepalive = Duration::from_millis(config.server.client_keepalive_timeout_ms);
    assert!(
        keepalive > SOAK_LIMIT,
        "idle connections must outlive the soak: keep-alive timeout {keepalive:?}"
    );
    let proxy_pid = lab_pid(&lab, "proxy");
    let rss_before = proc_status_kb(proxy_pid, "VmRSS");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let soak = runtime.block_on(async {
        tokio::time::timeout(
            SOAK_LIMIT,
            run(
                Arc::clone(&lab),
                proxy,
                admin,
                window,
                header_deadline,
                proxy_pid,
            ),
        )
        .await
    });
    let soak = soak.unwrap_or_else(|_| panic!("the soak did not end within {SOAK_LIMIT:?}"));
    let rss_after = settled_rss_kb(proxy_pid, rss_before + AFTER_GROWTH_LIMIT_KB, proxy);
    let summary = soak.summary(rss_before, rss_after, up_time, window);
    // Past the harness's capture: CI logs show the figures of a passing run too.
    let _ = writeln!(std::io::stderr(), "{summary}");
    soak.assert_kept_promises(&summary, window, rss_before, rss_after);
}

/// The soak itself: every client at once, the faults on their schedule, then every connection
/// closed.
async fn run(
    lab: Arc<NativeLab>,
    proxy: SocketAddr,
    admin: SocketAddr,
    window: Duration,
    header_deadline: Duration,
    proxy_pid: u32,
) -> Soak {
    let begin = Instant::now();
    let mut idle = idle_open(proxy).await;
    let faults = tokio::spawn(faults(Arc::clone(&lab), begin, window));
    let trickles: Vec<_> = TRICKLE_STARTS
        .into_iter()
        .map(|at| {
            tokio::spawn(async move {
                tokio::time::sleep_until((begin + at).into()).await;
                trickler(proxy, header_deadline).await
            })
        })
        .collect();
    let shoppers: Vec<_> = Pool::ALL
        .into_iter()
        .flat_map(|pool| (0..SHOPPERS_PER_POOL).map(move |id| (pool, id)))
        .map(|(pool, id)| tokio::spawn(shopper(proxy, pool, id)))
        .collect();
    let bad: Vec<_> = (0..BAD_CLIENTS)
        .map(|id| tokio::spawn(bad_client(proxy, id)))
        .collect();

    let mut good = Vec::new();
    for s in shoppers {
        good.extend(s.await.expect("a shop client"));
    }
    let (mut bad_sent, mut bad_misses) = (BTreeMap::<Bad, usize>::new(), Vec::new());
    for b in bad {
        let (sent, misses) = b.await.expect("a bad client");
        for (kind, n) in sent {
            *bad_sent.entry(kind).or_default() += n;
        }
        bad_misses.extend(misses);
    }
    let trickled: Vec<_> = join_all(trickles).await;
    let faults = faults.await.expect("the fault schedule");
    let idle_failures = idle_check(&mut idle).await;
    let soak_time = begin.elapsed();
    let peak_kb = proc_status_kb(proxy_pid, "VmHWM");
    let open_at_end = client_connections(admin).await;
    drop(idle);
    eventually(
        "the proxy to count no client connection",
        Duration::from_secs(10),
        || async { (client_connections(admin).await == Some(0)).then_some(()) },
    )
    .await;
    Soak {
        begin,
        good,
        bad_sent,
        bad_misses,
        trickled,
        faults,
        idle_failures,
        soak_time,
        peak_kb,
        open_at_end,
    }
}

/// Awaits every task in order.
async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("a task"));
    }
    out
}
