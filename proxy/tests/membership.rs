//! Pools that change while they serve: the real proxy binary, replicas added and removed through
//! the admin API, real backends on ephemeral loopback ports.

// Each test binary compiles the harness and uses part of it.
#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use statelab_test_support::eventually;
use support::{backends, client_from, spawn_proxy, Backend, PoolSpec, Proxy};

fn add_body(name: &str, backend: &Backend) -> String {
    format!(r#"{{"name":"{name}","addr":"{}"}}"#, backend.addr)
}

async fn wait_state(proxy: &Proxy, name: &str, state: &str) {
    eventually(
        &format!("{name} in state {state}"),
        Duration::from_secs(10),
        || async { (proxy.replica(name).await["state"] == state).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_remove_answer_with_the_right_status() {
    let b = backends("stateless", 2).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    let extra = Backend::start("stateless-3")
        .await
        .expect("as the test set it up");
    let add = |body: String| {
        let proxy = &proxy;
        async move {
            proxy
                .admin(Method::POST, "/admin/pools/stateless/replicas", Some(&body))
                .await
        }
    };

    let (code, body) = add(add_body("stateless-3", &extra)).await;
    assert_eq!(code, 201, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("as the test set it up");
    assert_eq!(view["name"], "stateless-3");
    assert_eq!(view["state"], "joining");

    // Duplicate name, duplicate address, bad name, bad address, bad body, unknown pool.
    let other = Backend::start("stateless-4")
        .await
        .expect("as the test set it up");
    for (body, want) in [
        (add_body("stateless-3", &other), 409),
        (add_body("stateless-9", &b[0]), 409),
        (add_body("Stateless_9", &other), 400),
        (
            r#"{"name":"stateless-9","addr":"localhost:1"}"#.to_string(),
            400,
        ),
        ("not json".to_string(), 400),
    ] {
        let (code, text) = add(body.clone()).await;
        assert_eq!(code, want, "{body}: {text}");
        let err: serde_json::Value = serde_json::from_str(&text).expect("as the test set it up");
        assert!(
            err["error"].is_string() && err["message"].is_string(),
            "{text}"
        );
    }
    // Addresses no one server listens on are refused; one socket spelt another way is the same
    // address, so a duplicate.
    let port = b[0].addr.port();
    for (addr, want) in [
        ("127.0.0.1:0".to_string(), 400),
        (format!("0.0.0.0:{port}"), 400),
        (format!("[::]:{port}"), 400),
        ("255.255.255.255:18011".to_string(), 400),
        ("224.0.0.1:18011".to_string(), 400),
        ("[ff02::1]:18011".to_string(), 400),
        (format!("[::ffff:127.0.0.1]:{port}"), 409),
    ] {
        let body = format!(r#"{{"name":"stateless-9","addr":"{addr}"}}"#);
        let (code, text) = add(body).await;
        assert_eq!(code, want, "{addr}: {text}");
    }
    assert!(
        proxy.status().await["pools"][0]["replicas"]
            .as_array()
            .expect("replicas")
            .iter()
            .all(|r| r["name"] != "stateless-9"),
        "a refused address was added"
    );
    let (code, _) = proxy
        .admin(
            Method::POST,
            "/admin/pools/nope/replicas",
            Some(&add_body("nope-1", &other)),
        )
        .await;
    assert_eq!(code, 404);

    // Removal: unknown 404, a bad drain 400, the last replica 409.
    let (code, _) = proxy
        .admin(Method::DELETE, "/admin/replicas/nope", None)
        .await;
    assert_eq!(code, 404);
    let (code, _) = proxy
        .admin(
            Method::DELETE,
            "/admin/replicas/stateless-1?drain=soon",
            None,
        )
        .await;
    assert_eq!(code, 400);
    for name in ["stateless-1", "stateless-2"] {
        let (code, text) = proxy
            .admin(Method::DELETE, &format!("/admin/replicas/{name}"), None)
            .await;
        assert_eq!(code, 200, "{text}");
        assert!(text.contains(r#""removed":"immediate""#), "{text}");
    }
    let (code, text) = proxy
        .admin(Method::DELETE, "/admin/replicas/stateless-3", None)
        .await;
    assert_eq!(code, 409, "the last replica stays: {text}");
    let status = proxy.status().await;
    let names: Vec<&str> = status["pools"][0]["replicas"]
        .as_array()
        .expect("as the test set it up")
        .iter()
        .map(|r| r["name"].as_str().expect("as the test set it up"))
        .collect();
    assert_eq!(names, ["stateless-3"]);

    // A wrong method names the right one.
    let resp = reqwest::Client::new()
        .get(format!("http://{}/admin/replicas/stateless-3", proxy.admin))
        .send()
        .await
        .expect("as the test set it up");
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "DELETE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_takes_no_traffic_before_it_passes_rise_checks() {
    let b = backends("stateless", 2).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    let client = client_from(None);
    let newcomer = Backend::start("stateless-3")
        .await
        .expect("as the test set it up");
    newcomer.set_healthy(false);
    let (code, _) = proxy
        .admin(
            Method::POST,
            "/admin/pools/stateless/replicas",
            Some(&add_body("stateless-3", &newcomer)),
        )
        .await;
    assert_eq!(code, 201);
    for _ in 0..40 {
        let r = proxy.get(&client, "/stateless/me", None).await;
        assert_eq!(r.status, 200);
        assert_ne!(r.replica.as_deref(), Some("stateless-3"));
    }
    assert_eq!(newcomer.hits(), 0, "no request before its checks pass");
    assert_eq!(proxy.replica("stateless-3").await["state"], "joining");

    newcomer.set_healthy(true);
    wait_state(&proxy, "stateless-3", "up").await;
    let served = proxy
        .count_served(&client, "/stateless/me", "stateless-3", 30)
        .await;
    assert!(
        (8..=12).contains(&served),
        "a third of 30 once up: {served}"
    );
}

/// Which replica each client lands on; clients are distinct 127.0.0.x source addresses.
async fn placement(
    proxy: &Proxy,
    clients: &[(IpAddr, reqwest::Client)],
) -> HashMap<IpAddr, String> {
    let mut out = HashMap::new();
    for (ip, client) in clients {
        let r = proxy.get(client, "/stateful/me", None).await;
        assert_eq!(r.status, 200);
        out.insert(*ip, r.replica.expect("as the test set it up"));
    }
    out
}

fn moved(before: &HashMap<IpAddr, String>, after: &HashMap<IpAddr, String>) -> f64 {
    let n = before.iter().filter(|(ip, r)| after[*ip] != **r).count();
    n as f64 / before.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_three_to_four_moves_a_quarter_on_the_ring_and_most_by_modulo() {
    let b = backends("stateful", 3).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateful", "ip-hash", &b)], "").await;
    let clients: Vec<(IpAddr, reqwest::Client)> = (2..=241u8)
        .map(|last| {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
            (ip, client_from(Some(ip)))
        })
        .collect();
    let fourth = Backend::start("stateful-4")
        .await
        .expect("as the test set it up");
    let body = add_body("stateful-4", &fourth);
    let mut fractions = HashMap::new();
    for strategy in ["ip-hash", "ip-modulo"] {
        let (code, _) = proxy
            .admin(
                Method::PUT,
                "/admin/pools/stateful/strategy",
                Some(&format!("{{\"strategy\": \"{strategy}\"}}")),
            )
            .await;
        assert_eq!(code, 200);
        let before = placement(&proxy, &clients).await;
        let (code, text) = proxy
            .admin(Method::POST, "/admin/pools/stateful/replicas", Some(&body))
            .await;
        assert_eq!(code, 201, "{text}");
        wait_state(&proxy, "stateful-4", "up").await;
        let after = placement(&proxy, &clients).await;
        for (ip, r) in &after {
            if before[ip] != *r && strategy == "ip-hash" {
                assert_eq!(
                    r, "stateful-4",
                    "on the ring a client only moves to the newcomer"
                );
            }
        }
        fractions.insert(strategy, moved(&before, &after));
        let (code, _) = proxy
            .admin(Method::DELETE, "/admin/replicas/stateful-4", None)
            .await;
        assert_eq!(code, 200);
    }
    let ring = fractions["ip-hash"];
    let modulo = fractions["ip-modulo"];
    println!("3 -> 4 over 240 clients: ip-hash moved {ring:.3}, ip-modulo moved {modulo:.3}");
    assert!(ring <= 0.25 + 0.05, "ip-hash moved {ring:.3}");
    assert!(ring > 0.0, "the newcomer takes some clients");
    assert!(modulo >= 0.6, "ip-modulo moved {modulo:.3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_removal_keeps_pinned_clients_until_the_replica_is_idle() {
    let b = backends("stateful", 3).await;
    let proxy = Arc::new(spawn_proxy(&[PoolSpec::new("stateful", "cookie", &b)], "").await);
    let client = client_from(None);
    let first = proxy.get(&client, "/stateful/me", None).await;
    let pinned_to = first.replica.clone().expect("as the test set it up");
    let cookie = first.affinity().expect("as the test set it up");

    let remover = {
        let proxy = Arc::clone(&proxy);
        let path = format!("/admin/replicas/{pinned_to}?drain=20");
        tokio::spawn(async move { proxy.admin(Method::DELETE, &path, None).await })
    };
    wait_state(&proxy, &pinned_to, "draining").await;
    // While it drains: the pinned client stays, new clients go elsewhere.
    for _ in 0..10 {
        let r = proxy.get(&client, "/stateful/me", Some(&cookie)).await;
        assert_eq!(r.replica.as_deref(), Some(pinned_to.as_str()));
        let fresh = proxy.get(&client_from(None), "/stateful/me", None).await;
        assert_ne!(fresh.replica.as_deref(), Some(pinned_to.as_str()));
    }
    assert!(
        !remover.is_finished(),
        "still draining while its client is active"
    );
    // The client goes quiet: the replica is removed as idle, well before the limit.
    let (code, text) = tokio::time::timeout(Duration::from_secs(10), remover)
        .await
        .expect("removed within the idle wait")
        .expect("as the test set it up");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains(r#""removed":"idle""#), "{text}");
    // The pinned client is re-pinned elsewhere, without an error.
    let r = proxy.get(&client, "/stateful/me", Some(&cookie)).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.replica.as_deref(), Some(pinned_to.as_str()));
    assert!(r.affinity().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_members_change_under_load() {
    let b = backends("stateless", 3).await;
    let proxy = Arc::new(spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut streams = Vec::new();
    for _ in 0..4 {
        let (proxy, stop, sent) = (Arc::clone(&proxy), Arc::clone(&stop), Arc::clone(&sent));
        streams.push(tokio::spawn(async move {
            let client = client_from(None);
            let mut failures = Vec::new();
            // Bounded: at most 5000 requests per stream.
            for _ in 0..5000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match proxy.try_get(&client, "/stateless/me", None, &[]).await {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failures.push(format!("{} {}", r.status, r.body)),
                    Err(e) => failures.push(e.to_string()),
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    let extra = [
        Backend::start("stateless-4")
            .await
            .expect("as the test set it up"),
        Backend::start("stateless-5")
            .await
            .expect("as the test set it up"),
    ];
    for (i, backend) in extra.iter().enumerate() {
        let name = format!("stateless-{}", i + 4);
        let (code, _) = proxy
            .admin(
                Method::POST,
                "/admin/pools/stateless/replicas",
                Some(&add_body(&name, backend)),
            )
            .await;
        assert_eq!(code, 201);
        wait_state(&proxy, &name, "up").await;
    }
    let (code, _) = proxy
        .admin(Method::DELETE, "/admin/replicas/stateless-1", None)
        .await;
    assert_eq!(code, 200);
    let (code, _) = proxy
        .admin(Method::DELETE, "/admin/replicas/stateless-2?drain=5", None)
        .await;
    assert_eq!(code, 200);
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for s in streams {
        failures.extend(s.await.expect("as the test set it up"));
    }
    let total = sent.load(Ordering::Relaxed);
    assert!(total > 100, "the stream ran: {total} requests");
    assert!(
        failures.is_empty(),
        "{} of {total} failed: {failures:?}",
        failures.len()
    );
    for r in &extra {
        assert!(r.hits() > 0, "{} took traffic", r.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_at_once_never_empty_a_pool_and_a_refused_one_changes_nothing() {
    let b = backends("stateless", 3).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    // Three drained removals at once: two may go, the third would empty the pool.
    let remove = |name: &'static str| {
        let proxy = &proxy;
        async move {
            let (code, text) = proxy
                .admin(
                    Method::DELETE,
                    &format!("/admin/replicas/{name}?drain=1"),
                    None,
                )
                .await;
            (name, code, text)
        }
    };
    let (r1, r2, r3) = tokio::join!(
        remove("stateless-1"),
        remove("stateless-2"),
        remove("stateless-3")
    );
    let results = [r1, r2, r3];
    let refused: Vec<_> = results.iter().filter(|(_, code, _)| *code == 409).collect();
    let removed: Vec<_> = results.iter().filter(|(_, code, _)| *code == 200).collect();
    assert_eq!(
        (refused.len(), removed.len()),
        (1, 2),
        "one refused, two removed: {results:?}"
    );
    let (kept, _, text) = refused[0];
    assert!(text.contains("last replica"), "{text}");
    // The refused one is as it was: up, not draining, and serving.
    let view = proxy.replica(kept).await;
    assert_eq!(view["state"], "up", "{view}");
    assert_eq!(view["draining"], false, "{view}");
    let client = client_from(None);
    for _ in 0..5 {
        let r = proxy.get(&client, "/stateless/me", None).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.replica.as_deref(), Some(*kept));
    }
}
