//! End-to-end tests: the real `statelab-proxy` binary in front of real (tiny) backends, all on
//! ephemeral loopback ports. Every wait is a bounded poll; every request loop is bounded.

#[allow(dead_code)] // each test binary uses its own part of the harness
mod support;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::Method;
use statelab_test_support::{eventually, TempDir};
use support::{backends, client_from, spawn_proxy, spawn_proxy_with, Backend, PoolSpec, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly_and_rewrites_the_request() {
    let b = backends("stateless", 3).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    let client = client_from(None);

    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        let r = proxy.get(&client, "/stateless/cart/items?x=1", None).await;
        assert_eq!(r.status, 200);
        *counts
            .entry(r.replica.expect("x-replica on every answer"))
            .or_default() += 1;
        assert!(
            r.set_cookie.is_none(),
            "round-robin sets no affinity cookie"
        );
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (name, n) in &counts {
        assert!((90..=110).contains(n), "{name} got {n} of 300: {counts:?}");
    }

    // Prefix stripped, X-Forwarded-* set.
    let r = proxy.get(&client, "/stateless/me?x=1", None).await;
    assert_eq!(r.headers["x-path"], "/me?x=1");
    assert_eq!(r.headers["x-xff"], "127.0.0.1");
    assert_eq!(r.headers["x-xfp"], "http");
    let r = proxy.get(&client, "/stateless", None).await;
    assert_eq!(r.headers["x-path"], "/");
    let r = proxy
        .try_get(
            &client,
            "/stateless/a",
            None,
            &[("x-forwarded-for", "203.0.113.7")],
        )
        .await
        .expect("GET /stateless/a with one X-Forwarded-For");
    assert_eq!(r.headers["x-xff"], "203.0.113.7, 127.0.0.1");
    // Several incoming lines are kept, in order, as one list.
    let r = proxy
        .try_get(
            &client,
            "/stateless/a",
            None,
            &[
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-for", "198.51.100.2, 198.51.100.3"),
            ],
        )
        .await
        .expect("GET /stateless/a with two X-Forwarded-For lines");
    assert_eq!(
        r.headers["x-xff"],
        "203.0.113.7, 198.51.100.2, 198.51.100.3, 127.0.0.1"
    );

    // Unknown prefixes: 404 JSON, never forwarded.
    let hits: u64 = b.iter().map(Backend::hits).sum();
    for path in ["/", "/nope/x", "/statelessx/me"] {
        let r = proxy.get(&client, path, None).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.headers["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_str(&r.body).expect("a JSON 404 body");
        assert_eq!(body["error"], "not_found");
        assert!(
            body["message"]
                .as_str()
                .expect("a message")
                .contains("/stateless/..."),
            "{body}"
        );
    }
    assert_eq!(b.iter().map(Backend::hits).sum::<u64>(), hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_affinity_is_sticky_opaque_and_ignores_forgeries() {
    let b = backends("stateful", 3).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateful", "cookie", &b)], "").await;

    let mut pinned_to = HashSet::new();
    for client_no in 0..6 {
        let client = client_from(None);
        let first = proxy.get(&client, "/stateful/me", None).await;
        assert_eq!(first.status, 200);
        let set_cookie = first.set_cookie.clone().expect("the first answer pins");
        assert!(
            set_cookie.starts_with("statelab_affinity_stateful="),
            "{set_cookie}"
        );
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(set_cookie.contains(attr), "{attr} missing in {set_cookie}");
        }
        let replica = first.replica.clone().expect("x-replica");
        for leak in [replica.as_str(), "127.0.0.1", &b[0].addr.port().to_string()] {
            assert!(
                !set_cookie.contains(leak),
                "cookie leaks {leak}: {set_cookie}"
            );
        }
        let cookie = first.affinity().expect("an affinity cookie");
        // 100% stickiness, and the cookie is not re-sent while it is valid.
        for _ in 0..30 {
            let r = proxy
                .get(
                    &client,
                    "/stateful/cart",
                    Some(&format!("statelab_session=s{client_no}; {cookie}")),
                )
                .await;
            assert_eq!(r.replica.as_deref(), Some(replica.as_str()));
            assert!(r.set_cookie.is_none());
        }
        pinned_to.insert(replica);
    }
    assert!(
        pinned_to.len() >= 2,
        "new clients are spread: {pinned_to:?}"
    );

    // Forged or garbage values are treated as absent: served, and given a real cookie.
    let client = client_from(None);
    for forged in [
        "statelab_affinity_stateful=stateful-1",
        "statelab_affinity_stateful=ffffffffffffffffffffffffffffffff",
        "statelab_affinity_stateful=%%%",
    ] {
        let r = proxy.get(&client, "/stateful/me", Some(forged)).await;
        assert_eq!(r.status, 200);
        assert!(
            r.affinity().is_some_and(|c| c != forged),
            "{forged} -> {:?}",
            r.set_cookie
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_is_repinned_when_its_replica_dies() {
    let mut b = backends("stateful", 3).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateful", "cookie", &b)], "").await;
    let client = client_from(None);

    let first = proxy.get(&client, "/stateful/me", None).await;
    let cookie = first.affinity().expect("an affinity cookie");
    let old = first.replica.expect("x-replica");
    let idx = b
        .iter()
        .position(|x| x.name == old)
        .expect("the pinned replica is one of ours");
    b.remove(idx).kill().await;

    // The very next request already succeeds elsewhere (failed connect -> retry) and re-pins.
    let r = proxy.get(&client, "/stateful/me", Some(&cookie)).await;
    assert_eq!(r.status, 200);
    let new = r.replica.clone().expect("x-replica");
    assert_ne!(new, old);
    let new_cookie = r.affinity().expect("cookie re-issued");
    assert_ne!(new_cookie, cookie);
    for _ in 0..20 {
        let r = proxy.get(&client, "/stateful/me", Some(&new_cookie)).await;
        assert_eq!(r.replica.as_deref(), Some(new.as_str()));
    }
    // Health checks notice too, and the old cookie keeps being re-pinned, never failing.
    proxy.wait_health(&old, false).await;
    let r = proxy.get(&client, "/stateful/me", Some(&cookie)).await;
    assert_eq!(r.status, 200);
    assert!(r.set_cookie.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_is_stable_per_source_address() {
    let b = backends("externalized", 3).await;
    let proxy = spawn_proxy(&[PoolSpec::new("externalized", "ip-hash", &b)], "").await;

    let mut owners: HashMap<IpAddr, String> = HashMap::new();
    for host in 2..=21u8 {
        let ip = IpAddr::from([127, 0, 0, host]);
        let client = client_from(Some(ip));
        let mut seen = HashSet::new();
        for _ in 0..10 {
            let r = proxy.get(&client, "/externalized/me", None).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.headers["x-xff"], ip.to_string().as_str());
            seen.insert(r.replica.expect("x-replica"));
        }
        assert_eq!(seen.len(), 1, "{ip} moved between replicas: {seen:?}");
        owners.insert(ip, seen.into_iter().next().expect("one replica seen"));
    }
    let used: HashSet<_> = owners.values().collect();
    assert!(
        used.len() >= 2,
        "20 source addresses all hashed to {used:?}"
    );

    // Losing a replica moves only its own clients.
    let victim = owners[&IpAddr::from([127, 0, 0, 2])].clone();
    let idx = b
        .iter()
        .position(|x| x.name == victim)
        .expect("the victim is one of ours");
    b[idx].set_healthy(false);
    proxy.wait_health(&victim, false).await;
    for (ip, owner) in &owners {
        let r = proxy
            .get(&client_from(Some(*ip)), "/externalized/me", None)
            .await;
        if *owner == victim {
            assert_ne!(r.replica.as_ref(), Some(owner));
        } else {
            assert_eq!(
                r.replica.as_ref(),
                Some(owner),
                "{ip} moved although its replica is up"
            );
        }
    }
}

/// The replica answering `client` when it sends `X-Forwarded-For: xff`.
async fn replica_via_xff(proxy: &Proxy, client: &reqwest::Client, xff: &str) -> String {
    let r = proxy
        .try_get(
            client,
            "/externalized/me",
            None,
            &[("x-forwarded-for", xff)],
        )
        .await
        .expect("GET /externalized/me with X-Forwarded-For");
    r.replica.expect("x-replica")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_uses_x_forwarded_for_only_from_trusted_proxies() {
    let b = backends("externalized", 3).await;
    let mut spec = PoolSpec::new("externalized", "ip-hash", &b);
    spec.trusted_proxies = vec!["127.0.0.1/32"];
    let proxy = spawn_proxy(&[spec], "").await;
    // From the trusted peer, the forwarded address is the key: distinct users spread and stick.
    let trusted = client_from(Some(IpAddr::from([127, 0, 0, 1])));
    let mut used = HashSet::new();
    for user in 1..=30u8 {
        let xff = format!("198.51.100.{user}");
        let mut seen = HashSet::new();
        for _ in 0..3 {
            seen.insert(replica_via_xff(&proxy, &trusted, &xff).await);
        }
        assert_eq!(seen.len(), 1, "{xff} moved: {seen:?}");
        // The same user behind one more hop, sent as a second header line: the last line is
        // the nearest, so the key is still the user, not the first line's address.
        let r = proxy
            .try_get(
                &trusted,
                "/externalized/me",
                None,
                &[
                    ("x-forwarded-for", "203.0.113.250"),
                    ("x-forwarded-for", xff.as_str()),
                ],
            )
            .await
            .expect("GET /externalized/me with two X-Forwarded-For lines");
        assert_eq!(
            r.replica.as_ref(),
            seen.iter().next(),
            "{xff} in a second line"
        );
        used.extend(seen);
    }
    assert!(used.len() >= 2, "trusted XFF keys all landed on {used:?}");

    // From an untrusted peer, a spoofed header changes nothing.
    let untrusted = client_from(Some(IpAddr::from([127, 0, 0, 9])));
    let mut seen = HashSet::new();
    for user in 1..=30u8 {
        let xff = format!("198.51.100.{user}");
        seen.insert(replica_via_xff(&proxy, &untrusted, &xff).await);
    }
    assert_eq!(seen.len(), 1, "untrusted XFF must not steer: {seen:?}");
}

/// A counter's value in `/metrics`; 0 when the series does not exist yet.
async fn counter(proxy: &Proxy, series: &str) -> f64 {
    let (code, text) = proxy.admin(Method::GET, "/metrics", None).await;
    assert_eq!(code, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| {
            value
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{series} has no number ({e}): {value}"))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_replica_under_load_fails_no_request_and_it_rejoins() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    let mut b = backends("stateless", 3).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    let retries = "statelab_proxy_retries_total{pool=\"stateless\"}";

    let victim = b.remove(1);
    let (victim_name, victim_addr) = (victim.name.clone(), victim.addr);
    let workers = 4;
    let kill_at = 50;
    let wanted_after_kill = 300;
    // `killed` is set once the victim is gone; a request counts as "after the kill" only if it
    // was sent after that.
    let killed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let after_kill = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for w in 0..workers {
        let url = proxy.url("/stateless/me");
        let (killed, stop, after_kill) = (killed.clone(), stop.clone(), after_kill.clone());
        let victim_name = victim_name.clone();
        handles.push(tokio::spawn(async move {
            let client = client_from(None);
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut failures = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let sent_after_kill = killed.load(Ordering::SeqCst);
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        if sent_after_kill {
                            let replica = r.headers().get("x-replica").cloned();
                            if replica.as_ref().is_some_and(|v| v == victim_name.as_str()) {
                                failures.push(format!("worker {w} #{i}: served by the victim"));
                            }
                            after_kill.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok(r) => failures.push(format!("worker {w} #{i}: status {}", r.status())),
                    Err(e) => failures.push(format!("worker {w} #{i}: {e}")),
                }
                i += 1;
            }
            failures
        }));
    }
    // Kill once the stream is running and has reached the victim, mid-flight.
    eventually("load reaches the victim", Duration::from_secs(10), || {
        let v = proxy.replica(&victim_name);
        async move {
            let served = v.await["total_requests"]
                .as_u64()
                .expect("total_requests is a count");
            (served >= kill_at).then_some(())
        }
    })
    .await;
    let retries_before = counter(&proxy, retries).await;
    victim.kill().await;
    killed.store(true, Ordering::SeqCst);
    // Keep the load on until enough requests were sent and answered after the kill.
    eventually(
        "requests complete after the kill",
        Duration::from_secs(20),
        || {
            let n = after_kill.load(Ordering::SeqCst);
            async move { (n >= wanted_after_kill).then_some(()) }
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for h in handles {
        failures.extend(h.await.expect("a load worker panicked"));
    }
    assert!(
        failures.is_empty(),
        "{} failed requests: {failures:?}",
        failures.len()
    );
    // Requests caught by the kill (in flight, or picked before the health checks noticed) were
    // retried elsewhere rather than failed.
    let retries_after = counter(&proxy, retries).await;
    assert!(
        retries_after > retries_before,
        "no retry after the kill ({retries_before} -> {retries_after}): the load missed it"
    );

    // It is marked down, then brought back on the same port it rejoins without a proxy restart.
    proxy.wait_health(&victim_name, false).await;
    let back = Backend::start_on(&victim_name, victim_addr)
        .await
        .expect("the victim restarts on its old port");
    proxy.wait_health(&victim_name, true).await;
    let client = client_from(None);
    let served = proxy
        .count_served(&client, "/stateless/me", &victim_name, 30)
        .await;
    assert!(served >= 8, "rejoined replica served {served} of 30");
    assert!(back.hits() >= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_replicas_down_answers_503_json_quickly() {
    let b = backends("stateless", 2).await;
    let addrs: Vec<_> = b.iter().map(|x| (x.name.clone(), x.addr)).collect();
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    let client = client_from(None);
    assert_eq!(proxy.get(&client, "/stateless/me", None).await.status, 200);
    for x in b {
        x.kill().await;
    }

    // Before the health checks notice (failed connects) and after (nothing to pick): 503 fast.
    for round in 0..2 {
        if round == 1 {
            for (name, _) in &addrs {
                proxy.wait_health(name, false).await;
            }
        }
        for _ in 0..5 {
            let t = Instant::now();
            let r = proxy.get(&client, "/stateless/me", None).await;
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "took {:?}",
                t.elapsed()
            );
            assert_eq!(r.status, 503, "{}", r.body);
            assert_eq!(r.headers["content-type"], "application/json");
            let body: serde_json::Value = serde_json::from_str(&r.body).expect("a JSON 503 body");
            assert!(
                body["error"].is_string() && body["message"].is_string(),
                "{body}"
            );
        }
    }
    let status = proxy.status().await;
    assert_eq!(status["pools"][0]["available"], false);
    assert!(proxy.replica(&addrs[0].0).await["last_failure"]["reason"].is_string());

    // The metrics tell the proxy's own 503s from a replica's.
    let (_, text) = proxy.admin(Method::GET, "/metrics", None).await;
    let count = |origin: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with(&format!(
                    "statelab_proxy_requests_total{{origin=\"{origin}\",pool=\"stateless\","
                )) && l.contains("status=\"503\"")
            })
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .expect("a sample value")
            })
            .sum()
    };
    assert_eq!(count("proxy"), 10.0, "{text}");
    assert_eq!(count("replica"), 0.0, "{text}");

    // The proxy itself is still fine.
    assert_eq!(proxy.get(&client, "/nope", None).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_keeps_pinned_clients_and_takes_no_new_ones() {
    let b = backends("stateful", 3).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateful", "cookie", &b)], "").await;

    let pinned_client = client_from(None);
    let first = proxy.get(&pinned_client, "/stateful/me", None).await;
    let cookie = first.affinity().expect("an affinity cookie");
    let drained = first.replica.expect("x-replica");

    let (code, body) = proxy
        .admin(
            Method::POST,
            &format!("/admin/replicas/{drained}/drain"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let view = proxy.replica(&drained).await;
    assert_eq!(view["draining"], true);
    assert_eq!(view["enabled"], false);

    // Pinned client: still served by the draining replica, every time.
    for _ in 0..20 {
        let r = proxy
            .get(&pinned_client, "/stateful/me", Some(&cookie))
            .await;
        assert_eq!(r.replica.as_deref(), Some(drained.as_str()));
    }
    // New clients: never placed on it.
    for _ in 0..30 {
        let r = proxy.get(&client_from(None), "/stateful/me", None).await;
        assert_eq!(r.status, 200);
        assert_ne!(r.replica.as_deref(), Some(drained.as_str()));
    }
    // Drained and then shut down: the pinned client moves without an error.
    let idx = b
        .iter()
        .position(|x| x.name == drained)
        .expect("the drained replica is one of ours");
    b[idx].set_healthy(false);
    proxy.wait_health(&drained, false).await;
    let r = proxy
        .get(&pinned_client, "/stateful/me", Some(&cookie))
        .await;
    assert_eq!(r.status, 200);
    assert_ne!(r.replica.as_deref(), Some(drained.as_str()));
    assert!(r.set_cookie.is_some());

    // Enabled and healthy again: new clients reach it.
    b[idx].set_healthy(true);
    proxy.wait_health(&drained, true).await;
    let (code, _) = proxy
        .admin(
            Method::POST,
            &format!("/admin/replicas/{drained}/enable"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    let mut reached = false;
    for _ in 0..30 {
        if proxy
            .get(&client_from(None), "/stateful/me", None)
            .await
            .replica
            .as_deref()
            == Some(drained.as_str())
        {
            reached = true;
            break;
        }
    }
    assert!(reached, "enabled replica got no new client in 30");
}

/// `n` concurrent GETs of `/stateless/slow` (held 1.5 s by each backend) from `client`: how many
/// each replica answered.
async fn slow_burst(proxy: &Proxy, client: &reqwest::Client, n: usize) -> HashMap<String, usize> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, url) = (client.clone(), proxy.url("/stateless/slow"));
        set.spawn(async move {
            let resp = client.get(url).send().await.expect("a slow GET");
            assert_eq!(resp.status(), 200);
            resp.headers()
                .get("x-replica")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .expect("x-replica")
        });
    }
    let mut counts = HashMap::new();
    while let Some(done) = set.join_next().await {
        *counts.entry(done.expect("the request task")).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_loads_spread_one_address_overflow_and_plain_ip_hash_does_not() {
    let b = backends("stateless", 3).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "ip-hash", &b)], "").await;
    let client = client_from(Some(IpAddr::from([127, 0, 0, 7])));

    let plain = slow_burst(&proxy, &client, 9).await;
    assert_eq!(plain.len(), 1, "one address, one hashed replica: {plain:?}");

    let (code, body) = proxy
        .admin(
            Method::PUT,
            "/admin/pools/stateless/strategy",
            Some(r#"{"balance_factor": 125}"#),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""balance_factor":125"#), "{body}");
    let pool = &proxy.status().await["pools"][0];
    assert_eq!(pool["strategy"], "ip-hash");
    assert_eq!(pool["balance_factor"], 125);

    // The k-th request in flight may find at most ceil(1.25 × k / 3) on a replica: 9 end as at
    // most 4 on any one, so all three take some.
    let bounded = slow_burst(&proxy, &client, 9).await;
    assert_eq!(bounded.len(), 3, "{bounded:?}");
    assert!(bounded.values().all(|&n| n <= 4), "{bounded:?}");
    let hashed = plain.keys().next().expect("the hashed replica");
    let stayed = bounded.get(hashed).copied().unwrap_or(0);
    let moves = proxy.status().await["pools"][0]["bounded_moves"].as_u64();
    assert_eq!(moves, Some((9 - stayed) as u64), "{bounded:?}");

    // Off again: the same burst stays on the hashed replica.
    let (code, _) = proxy
        .admin(
            Method::PUT,
            "/admin/pools/stateless/strategy",
            Some(r#"{"strategy": "ip-hash", "balance_factor": null}"#),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(slow_burst(&proxy, &client, 9).await, plain);
    // Out of range, or nothing to change: 400 with a JSON error, and nothing changed.
    for bad in [r#"{"balance_factor": 50}"#, "{}", r#"{"balance": 125}"#] {
        let (code, body) = proxy
            .admin(Method::PUT, "/admin/pools/stateless/strategy", Some(bad))
            .await;
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(body.contains(r#""error""#), "{body}");
    }
    assert_eq!(
        proxy.status().await["pools"][0]["balance_factor"],
        serde_json::Value::Null
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategy_switches_at_runtime() {
    let b = backends("stateless", 3).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    let client = client_from(Some(IpAddr::from([127, 0, 0, 3])));

    let (code, body) = proxy
        .admin(
            Method::PUT,
            "/admin/pools/stateless/strategy",
            Some(r#""cookie""#),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(proxy.status().await["pools"][0]["strategy"], "cookie");
    let r = proxy.get(&client, "/stateless/me", None).await;
    let cookie = r
        .affinity()
        .expect("cookie strategy sets the affinity cookie");
    for _ in 0..10 {
        assert_eq!(
            proxy
                .get(&client, "/stateless/me", Some(&cookie))
                .await
                .replica,
            r.replica
        );
    }

    let (code, _) = proxy
        .admin(
            Method::PUT,
            "/admin/pools/stateless/strategy",
            Some(r#""ip-hash""#),
        )
        .await;
    assert_eq!(code, 200);
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let r = proxy.get(&client, "/stateless/me", None).await;
        assert!(r.set_cookie.is_none());
        seen.insert(r.replica.expect("x-replica"));
    }
    assert_eq!(
        seen.len(),
        1,
        "ip-hash from one address must stick: {seen:?}"
    );

    let (code, _) = proxy
        .admin(
            Method::PUT,
            "/admin/pools/stateless/strategy",
            Some(r#""round-robin""#),
        )
        .await;
    assert_eq!(code, 200);
    let mut seen = HashSet::new();
    for _ in 0..6 {
        seen.insert(
            proxy
                .get(&client, "/stateless/me", None)
                .await
                .replica
                .expect("x-replica"),
        );
    }
    assert_eq!(seen.len(), 3, "round-robin again: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_rejects_bad_names_bodies_and_tokens() {
    let b = backends("stateless", 1).await;
    let proxy = spawn_proxy(
        &[PoolSpec::new("stateless", "round-robin", &b)],
        "admin_token = \"let-me-in\"",
    )
    .await;
    let json =
        |body: &str| serde_json::from_str::<serde_json::Value>(body).expect("a JSON admin answer");

    for (method, path, body, want) in [
        (
            Method::PUT,
            "/admin/pools/nope/strategy",
            Some(r#""cookie""#),
            404,
        ),
        (
            Method::PUT,
            "/admin/pools/stateless/strategy",
            Some(r#""sticky""#),
            400,
        ),
        (
            Method::PUT,
            "/admin/pools/stateless/strategy",
            Some(""),
            400,
        ),
        (Method::POST, "/admin/replicas/nope-9/drain", None, 404),
        (Method::POST, "/admin/replicas/nope-9/enable", None, 404),
        (Method::GET, "/admin/nothing", None, 404),
        (Method::DELETE, "/admin/status", None, 405),
    ] {
        let (code, text) = proxy.admin(method.clone(), path, body).await;
        assert_eq!(code, want, "{method} {path}: {text}");
        let v = json(&text);
        assert!(v["error"].is_string() && v["message"].is_string(), "{text}");
    }
    assert_eq!(proxy.status().await["pools"][0]["strategy"], "round-robin");

    // Without or with a wrong token: 401, and nothing changes.
    let anonymous = reqwest::Client::new();
    let url = format!("http://{}/admin/pools/stateless/strategy", proxy.admin);
    let r = anonymous
        .put(&url)
        .body("cookie")
        .send()
        .await
        .expect("PUT without a token");
    assert_eq!(r.status(), 401);
    let r = anonymous
        .put(&url)
        .bearer_auth("wrong")
        .body("cookie")
        .send()
        .await
        .expect("PUT with a wrong token");
    assert_eq!(r.status(), 401);
    let r = anonymous
        .get(format!("http://{}/metrics", proxy.admin))
        .send()
        .await
        .expect("GET /metrics without a token");
    assert_eq!(r.status(), 401);
    assert_eq!(proxy.status().await["pools"][0]["strategy"], "round-robin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_latency_retries_and_health() {
    let mut b = backends("stateless", 2).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    let client = client_from(None);
    for _ in 0..10 {
        assert_eq!(proxy.get(&client, "/stateless/me", None).await.status, 200);
    }
    assert_eq!(proxy.get(&client, "/nope", None).await.status, 404);
    let dead = b.remove(1);
    let dead_name = dead.name.clone();
    dead.kill().await;
    for _ in 0..4 {
        assert_eq!(proxy.get(&client, "/stateless/me", None).await.status, 200);
    }
    proxy.wait_health(&dead_name, false).await;

    let (code, text) = proxy.admin(Method::GET, "/metrics", None).await;
    assert_eq!(code, 200);
    let line_value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no series {prefix} in\n{text}"))
    };
    assert_eq!(
        line_value("statelab_proxy_requests_total{origin=\"replica\",pool=\"stateless\",replica=\"stateless-2\",status=\"200\"}"),
        5.0
    );
    assert!(line_value("statelab_proxy_requests_total{origin=\"replica\",pool=\"stateless\",replica=\"stateless-1\",status=\"200\"}") >= 9.0);
    // At least ours; the harness's readiness probe also asks for an unknown path.
    assert!(
        line_value("statelab_proxy_requests_total{origin=\"proxy\",pool=\"none\",replica=\"none\",status=\"404\"}")
            >= 1.0
    );
    assert!(line_value("statelab_proxy_upstream_latency_seconds_count{pool=\"stateless\",replica=\"stateless-1\"}") >= 9.0);
    assert!(line_value("statelab_proxy_retries_total{pool=\"stateless\"}") >= 1.0);
    assert_eq!(
        line_value("statelab_proxy_replica_healthy{pool=\"stateless\",replica=\"stateless-1\"}"),
        1.0
    );
    assert_eq!(
        line_value("statelab_proxy_replica_healthy{pool=\"stateless\",replica=\"stateless-2\"}"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_then_exits() {
    let b = backends("stateless", 1).await;
    let mut proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;

    let url = proxy.url("/stateless/slow");
    let slow =
        tokio::spawn(async move { client_from(None).get(&url).send().await.map(|r| r.status()) });
    let state = b[0].state.clone();
    eventually(
        "slow request reaches the backend",
        Duration::from_secs(5),
        || {
            let s = state.clone();
            async move { (s.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 1).then_some(()) }
        },
    )
    .await;

    let t = Instant::now();
    proxy.sigterm();
    let status = slow
        .await
        .expect("the slow request task panicked")
        .expect("in-flight request completes");
    assert_eq!(status, 200);
    let exit = tokio::time::timeout(Duration::from_secs(10), proxy.child.wait())
        .await
        .expect("proxy exits within seconds of SIGTERM")
        .expect("wait for the proxy");
    assert!(exit.success(), "{exit:?}");
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "exit took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_bad_config_file_is_a_clear_startup_error() {
    let dir = TempDir::new("proxy-bad-config");
    let path = dir.join("proxy.toml");
    std::fs::write(&path, "[[pool]]\nname = \"stateful\"\nstrategy = \"sticky\"\n[pool.replicas]\nstateful-1 = \"127.0.0.1:1\"\n")
        .expect("write the config file");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_statelab-proxy"))
        .arg("--config")
        .arg(&path)
        .output()
        .await
        .expect("run statelab-proxy with a bad config");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sticky") && stderr.contains("strategy"),
        "{stderr}"
    );

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_statelab-proxy"))
        .args(["--config", "/nonexistent/statelab.toml"])
        .output()
        .await
        .expect("run statelab-proxy with a missing config");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/statelab.toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_does_not_blame_the_replica() {
    let b = backends("stateless", 1).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("build an HTTP client");
    for _ in 0..3 {
        let r = impatient.get(proxy.url("/stateless/slow")).send().await;
        assert!(r.is_err(), "the client should have given up first");
    }
    let state = b[0].state.clone();
    eventually(
        "slow requests finish upstream",
        Duration::from_secs(5),
        || {
            let s = state.clone();
            async move { (s.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0).then_some(()) }
        },
    )
    .await;
    let view = proxy.replica("stateless-1").await;
    assert_eq!(view["ejected"], false, "{view}");
    assert!(view["last_failure"].is_null(), "{view}");
    assert_eq!(
        proxy
            .get(&client_from(None), "/stateless/me", None)
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_bodies_are_forwarded_and_retried_when_a_connect_fails() {
    let mut b = backends("stateless", 3).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    let client = client_from(None);
    let body = "{\"item\":\"book\",\"qty\":2}";
    let post = || async {
        let r = client
            .post(proxy.url("/stateless/cart/items"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST through the proxy");
        (r.status().as_u16(), r.headers().get("x-body-len").cloned())
    };
    let (status, len) = post().await;
    assert_eq!(status, 200);
    assert_eq!(len.expect("x-body-len"), body.len().to_string().as_str());

    // A dead replica refuses the connection: nothing was sent, so even a POST goes elsewhere.
    b.remove(0).kill().await;
    for _ in 0..9 {
        let (status, len) = post().await;
        assert_eq!(status, 200);
        assert_eq!(len.expect("x-body-len"), body.len().to_string().as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_never_answers_times_out_and_the_request_moves_on() {
    // stateless-1 accepts, reads and stays silent (while passing its health checks).
    let b = backends("stateless", 2).await;
    b[0].set_silent(true);
    let stuck = backends("stateful", 1).await;
    stuck[0].set_silent(true);
    let proxy = spawn_proxy_with(
        &[
            PoolSpec::new("stateless", "round-robin", &b),
            PoolSpec::new("stateful", "round-robin", &stuck),
        ],
        "",
        "read_timeout_ms = 300",
    )
    .await;
    let client = client_from(None);

    // Idempotent: the attempt on the silent replica times out and is retried on the other one.
    for i in 0..6 {
        let t = Instant::now();
        let r = proxy
            .try_get(&client, "/stateless/me", None, &[])
            .await
            .unwrap_or_else(|e| panic!("GET #{i} failed after {:?}: {e}", t.elapsed()));
        assert_eq!(r.status, 200, "GET #{i}: {}", r.body);
        assert_eq!(r.replica.as_deref(), Some("stateless-2"));
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "GET #{i} took {:?}",
            t.elapsed()
        );
    }
    assert!(b[0].hits() >= 1, "the silent replica was never tried");
    let view = proxy.replica("stateless-1").await;
    assert!(
        view["last_failure"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ReadTimedout")),
        "{view}"
    );
    let (_, metrics) = proxy.admin(Method::GET, "/metrics", None).await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("statelab_proxy_retries_total{pool=\"stateless\"}")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );

    // Not replayable (POST) on a pool whose only replica is silent: a prompt 504 JSON.
    let t = Instant::now();
    let r = client
        .post(proxy.url("/stateful/cart/items"))
        .body("{}")
        .send()
        .await
        .expect("POST to the silent pool");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "POST took {:?}",
        t.elapsed()
    );
    assert_eq!(r.status(), 504);
    let body: serde_json::Value =
        serde_json::from_str(&r.text().await.expect("the 504 body")).expect("a JSON 504 body");
    assert_eq!(body["error"], "gateway_timeout", "{body}");
    assert_eq!(stuck[0].hits(), 1);
    // Not retried, but still blamed: the replica is recorded as failing (and ejected).
    let view = proxy.replica("stateful-1").await;
    assert!(
        view["last_failure"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ReadTimedout")),
        "{view}"
    );
}

#[tokio::test]
async fn a_busy_listen_port_is_a_clear_startup_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port to keep busy");
    let busy_addr = busy.local_addr().expect("its address");
    let dir = TempDir::new("proxy-busy-port");
    let path = dir.join("proxy.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"{busy_addr}\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [[pool]]\nname = \"stateless\"\n[pool.replicas]\nstateless-1 = \"127.0.0.1:1\"\n"
        ),
    )
    .expect("write the config file");
    let out = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_statelab-proxy"))
            .arg("--config")
            .arg(&path)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the proxy must exit, not serve, when its port is taken")
    .expect("run statelab-proxy on a busy port");
    drop(busy);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("server.listen = {busy_addr} cannot be bound")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
