//! What a client connection may cost the proxy, and what the public listener answers to requests
//! that are idle, slow, pipelined, malformed or aimed at a replica's internals. Raw TCP where a
//! test needs bytes that an HTTP client library would not send; every wait is bounded.

#[allow(dead_code)] // each test binary uses its own part of the harness
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::Method;
use statelab_test_support::{eventually, workspace_root};
use support::raw::{one_answer, parse_one, Raw, Wire};
use support::{backends, client_from, spawn_proxy, spawn_proxy_with, PoolSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let b = backends("stateless", 1).await;
    let proxy = spawn_proxy(
        &[PoolSpec::new("stateless", "round-robin", &b)],
        "client_keepalive_timeout_ms = 400\nclient_header_timeout_ms = 5000",
    )
    .await;
    let mut c = Raw::connect(proxy.addr).await;
    for _ in 0..2 {
        c.send(get("/stateless/health").as_bytes()).await;
        let r = c.response(Duration::from_secs(5)).await.expect("an answer");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    // Silent after the answer: closed once idle for the timeout, not before.
    let idle = c.closed_within(Duration::from_secs(5)).await;
    assert!(idle >= Duration::from_millis(300), "closed after {idle:?}");
    assert!(c.pending.is_empty(), "an idle close sends nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_or_missing_header_is_cut_off_at_the_header_deadline() {
    let b = backends("stateless", 1).await;
    let proxy = spawn_proxy(
        &[PoolSpec::new("stateless", "round-robin", &b)],
        "client_keepalive_timeout_ms = 60000\nclient_header_timeout_ms = 600",
    )
    .await;

    // One byte every 100 ms: every read is prompt, the header as a whole is not.
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for byte in get("/stateless/me").into_bytes() {
            if wr.write_all(&[byte]).await.is_err() {
                return;
            }
            // Paces the trickle; nothing waits on it.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Keep the write half open until the proxy has answered.
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut answer))
        .await
        .expect("the proxy closes the connection")
        .ok();
    let took = started.elapsed();
    trickle.abort();
    assert!(took < Duration::from_secs(3), "cut off after {took:?}");
    assert!(took >= Duration::from_millis(500), "cut off after {took:?}");
    let r = parse_one(&answer).expect("a 408 before the close");
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.json()["error"], "request_timeout");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(b[0].hits(), 0, "a partial request is never forwarded");

    // A connection that never sends a byte is closed, silently, after the same deadline.
    let mut quiet = Raw::connect(proxy.addr).await;
    let waited = quiet.closed_within(Duration::from_secs(5)).await;
    assert!(
        waited >= Duration::from_millis(500),
        "closed after {waited:?}"
    );
    assert!(quiet.pending.is_empty());

    // After a complete request, the idle timeout (here a minute) applies, not the header one.
    let mut kept = Raw::connect(proxy.addr).await;
    kept.send(get("/stateless/me").as_bytes()).await;
    assert_eq!(
        kept.response(Duration::from_secs(5))
            .await
            .expect("an answer")
            .status,
        200
    );
    let still_open = tokio::time::timeout(Duration::from_millis(1500), kept.fill()).await;
    assert!(
        still_open.is_err(),
        "an idle kept-alive connection was closed early"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let b = backends("stateless", 2).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    let mut c = Raw::connect(proxy.addr).await;
    let body = "{\"sku\":\"book\"}";
    let batch = format!(
        "{}POST /stateless/cart/items HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}{}{}",
        get("/stateless/a"),
        body.len(),
        get("/stateless/b?x=1"),
        get("/stateless/c"),
    );
    c.send(batch.as_bytes()).await;
    let mut paths = Vec::new();
    for _ in 0..4 {
        let r = c
            .response(Duration::from_secs(5))
            .await
            .expect("one answer per pipelined request");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("connection"), Some("keep-alive"), "{r:?}");
        paths.push((
            r.header("x-path").unwrap_or("").to_string(),
            r.header("x-body-len").unwrap_or("").to_string(),
        ));
    }
    let want = [
        ("/a", "0"),
        ("/cart/items", "14"),
        ("/b?x=1", "0"),
        ("/c", "0"),
    ];
    assert_eq!(
        paths,
        want.map(|(p, l)| (p.to_string(), l.to_string())),
        "answers in request order"
    );
    // The connection stays usable, also for a request split over two writes.
    c.send(b"GET /stateless/d HTTP/1.1\r\nHo").await;
    c.send(b"st: x\r\n\r\n").await;
    let r = c.response(Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(r.header("x-path"), Some("/d"));
}

/// Sends `request` on a fresh connection and returns the one answer before the proxy closes.
async fn refused(addr: SocketAddr, request: &[u8]) -> Wire {
    let (r, mut c) = one_answer(addr, request).await;
    c.closed_within(Duration::from_secs(5)).await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_json_error_and_are_never_forwarded() {
    let b = backends("stateless", 1).await;
    let proxy = spawn_proxy(
        &[PoolSpec::new("stateless", "round-robin", &b)],
        "max_request_header_bytes = 2048",
    )
    .await;
    let cases: [(&[u8], u16, &str); 6] = [
        (b"GET /stateless/me HTTP/1.1\r\n\r\n", 400, "bad_request"),
        (
            b"GET /stateless/me HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
            "bad_request",
        ),
        (b"HELLO\r\n\r\n", 400, "bad_request"),
        (
            b"POST /stateless/me HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            405,
            "method_not_allowed",
        ),
        (b"", 431, "request_header_too_large"),
    ];
    for (request, status, error) in cases {
        let big;
        let request = if request.is_empty() {
            big = format!(
                "{}X-Big: {}\r\n\r\n",
                &get("/stateless/me")[..28],
                "a".repeat(4000)
            );
            big.as_bytes()
        } else {
            request
        };
        let r = refused(proxy.addr, request).await;
        let shown = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
        assert_eq!(r.status, status, "{shown}: {r:?}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{shown}"
        );
        assert_eq!(r.json()["error"], error, "{shown}");
        assert!(r.json()["message"].is_string(), "{shown}");
        assert!(r.header("server").is_none(), "{shown}: {r:?}");
    }
    // HTTP/1.0 needs no Host.
    let mut c = Raw::connect(proxy.addr).await;
    c.send(b"GET /stateless/me HTTP/1.0\r\n\r\n").await;
    let r = c.response(Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(r.status, 200);
    assert_eq!(b[0].hits(), 1, "only the HTTP/1.0 request was forwarded");
    let (_, metrics) = proxy.admin(Method::GET, "/metrics", None).await;
    assert!(
        metrics.contains(
            "statelab_proxy_requests_total{origin=\"proxy\",pool=\"none\",replica=\"none\",status=\"400\"} 4"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_limit_a_client_gets_503_and_a_slot_frees_on_close() {
    let b = backends("stateless", 1).await;
    let proxy = spawn_proxy(
        &[PoolSpec::new("stateless", "round-robin", &b)],
        "max_client_connections = 2",
    )
    .await;
    // The harness's readiness probes may still hold connections: wait for them to go.
    let gauge = || async {
        let (_, m) = proxy.admin(Method::GET, "/metrics", None).await;
        m.lines()
            .find_map(|l| l.strip_prefix("statelab_proxy_client_connections "))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let mut first = Raw::connect(proxy.addr).await;
    first.send(get("/stateless/me").as_bytes()).await;
    assert_eq!(
        first
            .response(Duration::from_secs(5))
            .await
            .map(|r| r.status),
        Some(200)
    );
    let mut second = Raw::connect(proxy.addr).await;
    second.send(get("/stateless/me").as_bytes()).await;
    let r = second
        .response(Duration::from_secs(5))
        .await
        .expect("an answer");
    // The readiness probe's connection may have held the second slot a little longer.
    if r.status == 503 {
        eventually(
            "the probe's connection to close",
            Duration::from_secs(5),
            || async { (gauge().await == Some(1)).then_some(()) },
        )
        .await;
        second = Raw::connect(proxy.addr).await;
        second.send(get("/stateless/me").as_bytes()).await;
        let r = second.response(Duration::from_secs(5)).await;
        assert_eq!(r.map(|r| r.status), Some(200));
    }
    assert_eq!(gauge().await, Some(2));

    let r = refused(proxy.addr, get("/stateless/me").as_bytes()).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["error"], "too_many_connections");
    assert_eq!(r.header("retry-after"), Some("1"));

    drop(first);
    eventually("a slot to free", Duration::from_secs(5), || async {
        let mut c = Raw::connect(proxy.addr).await;
        c.send(get("/stateless/me").as_bytes()).await;
        c.response(Duration::from_secs(5))
            .await
            .filter(|r| r.status == 200)
            .map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_internals_are_not_served_on_the_public_listener() {
    let b = backends("stateful", 1).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateful", "cookie", &b)], "").await;
    let client = client_from(None);
    for path in [
        "/stateful/metrics",
        "/stateful/metrics?format=text",
        "/stateful//metrics",
        "/stateful/%6detrics",
        "/stateful/x/../metrics",
        "/stateful/health/details",
        "/stateful/debug/vars",
    ] {
        let r = proxy.get(&client, path, None).await;
        assert_eq!(r.status, 404, "{path}");
        let body: serde_json::Value = serde_json::from_str(&r.body).expect("a JSON 404");
        assert_eq!(body["error"], "not_found", "{path}");
        assert!(body["message"].is_string(), "{path}");
    }
    assert_eq!(b[0].hits(), 0, "none of them reached the replica");
    // The pool's plain health answer and the API stay public.
    assert_eq!(
        proxy.get(&client, "/stateful/health", None).await.status,
        200
    );
    assert_eq!(proxy.get(&client, "/stateful/me", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_apis_405_names_the_allowed_methods() {
    let b = backends("stateless", 1).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    let client = reqwest::Client::new();
    for (method, path, allowed) in [
        (Method::DELETE, "/admin/status", "GET"),
        (Method::GET, "/admin/pools/stateless/strategy", "PUT"),
        (Method::GET, "/admin/replicas/stateless-1/drain", "POST"),
    ] {
        let r = client
            .request(method.clone(), format!("http://{}{path}", proxy.admin))
            .send()
            .await
            .expect("an admin answer");
        assert_eq!(r.status(), 405, "{method} {path}");
        let allow = r.headers().get("allow").map(|v| v.to_str().unwrap_or(""));
        assert!(
            allow.is_some_and(|a| a.contains(allowed)),
            "{method} {path}: Allow = {allow:?}"
        );
    }
}

/// A replica that answers every request but its health check with `503` and `Retry-After`, as a
/// service does when its store is down.
async fn unavailable_replica() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("its address");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    // The plain check and the detailed one (`?detail=1`) alike.
                    let health =
                        buf.starts_with(b"GET /health ") || buf.starts_with(b"GET /health?");
                    buf.drain(..end + 4);
                    let answer: &[u8] = if health {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n"
                    } else {
                        b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nx-replica: down-1\r\n\
                          content-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
                    };
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicas_own_503_reaches_the_client_and_is_not_retried() {
    let b = backends("stateless", 1).await;
    let (down, _task) = unavailable_replica().await;
    let mut pool = PoolSpec::new("stateless", "round-robin", &b);
    pool.replicas.push(("down-1", down));
    let proxy = spawn_proxy(&[pool], "").await;
    let client = client_from(None);
    let mut unavailable = 0;
    for _ in 0..10 {
        let r = proxy.get(&client, "/stateless/me", None).await;
        if r.status == 503 {
            unavailable += 1;
            assert_eq!(r.replica.as_deref(), Some("down-1"));
            assert_eq!(r.headers["retry-after"], "1");
        } else {
            assert_eq!(r.replica.as_deref(), Some("stateless-1"));
        }
    }
    assert_eq!(unavailable, 5, "round-robin: every other request");
    assert_eq!(b[0].hits(), 5, "no 503 was retried on the other replica");
}

/// The lab's `retry.read_timeout_ms`, as committed for the compose lab (checked against the
/// lab's model by `lab/tests/committed.rs`); the proxy's default when the file leaves it out.
fn lab_read_timeout_ms() -> i64 {
    let text = std::fs::read_to_string(workspace_root().join("deploy/proxy.toml"))
        .expect("read deploy/proxy.toml");
    let file: toml::Value = text.parse().expect("deploy/proxy.toml parses");
    file.get("retry")
        .and_then(|r| r.get("read_timeout_ms"))
        .and_then(toml::Value::as_integer)
        .unwrap_or(30_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_labs_timeouts_a_frozen_replica_delays_no_get_beyond_about_two_seconds() {
    let b = backends("stateless", 3).await;
    let proxy = spawn_proxy_with(
        &[PoolSpec::new("stateless", "round-robin", &b)],
        "",
        &format!("read_timeout_ms = {}", lab_read_timeout_ms()),
    )
    .await;

    // 50 requests a second from independent clients; one replica freezes a second in.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let url = proxy.url("/stateless/me");
        let at = started + Duration::from_millis(20 * i);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let t = Instant::now();
            let r = client_from(None).get(url).send().await;
            (r.map(|r| r.status().as_u16()), t.elapsed())
        }));
        if i == 50 {
            b[1].set_frozen(true);
        }
    }
    let mut longest = Duration::ZERO;
    let mut failed = Vec::new();
    for t in tasks {
        let (status, took) = t.await.expect("a request task");
        longest = longest.max(took);
        match status {
            Ok(200) => {}
            other => failed.push(format!("{other:?}")),
        }
    }
    println!("longest request with one frozen replica: {longest:?}");
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(
        longest < Duration::from_millis(2600),
        "a request took {longest:?} because one replica froze"
    );
    assert!(
        longest >= Duration::from_millis(500),
        "no request ever waited on the frozen replica ({longest:?})"
    );
}

/// The admin status entry of replica `name` in `proxy`'s status.
async fn replica_is_up(proxy: &support::Proxy, name: &str) -> bool {
    let r = proxy.replica(name).await;
    r["state"] == "up" && r["ejected"] == false && r["last_failure"].is_null()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_cost_the_client_and_never_a_replica() {
    let b = backends("stateless", 3).await;
    let proxy = spawn_proxy_with(
        &[PoolSpec::new("stateless", "round-robin", &b)],
        "client_body_timeout_ms = 1500",
        "read_timeout_ms = 300",
    )
    .await;
    // More stalled bodies than the pool has replicas: a Content-Length body, a chunked one cut
    // inside a chunk, and one cut inside a chunk-size line.
    let stalls: [&[u8]; 4] = [
        b"POST /stateless/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        b"POST /stateless/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
        b"POST /stateless/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"POST /stateless/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5",
    ];
    let mut stalled = Vec::new();
    for request in stalls {
        let mut c = Raw::connect(proxy.addr).await;
        c.send(request).await;
        stalled.push(c);
    }
    // A chunk line that ends in LF alone is refused at once: the proxy would wait for a CRLF.
    let lf_only = refused(
        proxy.addr,
        b"POST /stateless/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
    )
    .await;
    assert_eq!(lf_only.status, 400, "{lf_only:?}");
    assert_eq!(lf_only.json()["error"], "bad_request");

    // While the bodies are stalled, far past the replicas' read timeout, every client that sends
    // its request whole is served.
    let client = client_from(None);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(900) {
        let r = proxy.get(&client, "/stateless/me", None).await;
        assert_eq!(r.status, 200, "a whole request while bodies stall: {r:?}");
    }
    // Each stalled client gets its own 408 at the body deadline, and nothing else happened: no
    // replica saw a stalled request, none was ejected or blamed.
    for (i, c) in stalled.iter_mut().enumerate() {
        let r = c
            .response(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("stalled body {i}: closed without an answer"));
        assert_eq!(r.status, 408, "stalled body {i}: {r:?}");
        assert_eq!(r.json()["error"], "request_timeout");
        assert!(r.json()["message"]
            .as_str()
            .expect("a message")
            .contains("1500 ms"));
        c.closed_within(Duration::from_secs(5)).await;
    }
    for name in ["stateless-1", "stateless-2", "stateless-3"] {
        assert!(
            replica_is_up(&proxy, name).await,
            "{name}: {}",
            proxy.replica(name).await
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_that_stops_is_the_clients_timeout_not_the_replicas() {
    let b = backends("stateless", 2).await;
    let proxy = spawn_proxy_with(
        &[PoolSpec::new("stateless", "round-robin", &b)],
        "max_buffered_body_bytes = 1024",
        "read_timeout_ms = 300",
    )
    .await;
    // Larger than the proxy buffers: the replica gets the head and the first bytes, then waits.
    let mut c = Raw::connect(proxy.addr).await;
    c.send(
        b"POST /stateless/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789",
    )
    .await;
    let r = c.response(Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.json()["error"], "request_timeout");
    c.closed_within(Duration::from_secs(5)).await;
    // Not retried on the other replica, and neither is ejected or blamed.
    for name in ["stateless-1", "stateless-2"] {
        assert!(
            replica_is_up(&proxy, name).await,
            "{name}: {}",
            proxy.replica(name).await
        );
    }
    let metrics = reqwest::get(format!("http://{}/metrics", proxy.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("statelab_proxy_retries_total") && !l.ends_with(" 0")),
        "a retry was counted:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_request_without_host_and_a_length_list_are_forwarded_well_formed() {
    let b = backends("stateless", 1).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    // HTTP/1.0 may omit Host; the replica gets an HTTP/1.1 request, with its own address as Host.
    let mut c = Raw::connect(proxy.addr).await;
    c.send(b"GET /stateless/health HTTP/1.0\r\n\r\n").await;
    let r = c.response(Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-host"), Some(b[0].addr.to_string().as_str()));

    // A list of identical lengths reaches the replica as one value (the backend answers 400 to a
    // Content-Length it cannot parse as one number).
    for head in [
        "Content-Length: 3, 3",
        "Content-Length: 3,3",
        "Content-Length: 3\r\nContent-Length: 3",
    ] {
        let mut c = Raw::connect(proxy.addr).await;
        c.send(format!("POST /stateless/cart HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\nabc").as_bytes())
            .await;
        let r = c.response(Duration::from_secs(5)).await.expect("an answer");
        assert_eq!(r.status, 200, "{head}: {r:?}");
        assert_eq!(r.header("x-body-len"), Some("3"), "{head}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_expects_100_continue_gets_it_before_its_body_is_read() {
    let b = backends("stateless", 1).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    let mut c = Raw::connect(proxy.addr).await;
    c.send(
        b"POST /stateless/cart HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .await;
    // The client waits for the interim answer before it sends its body, as curl does.
    let interim = c.response(Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(interim.status, 100, "{interim:?}");
    c.send(b"hello").await;
    let r = c
        .response(Duration::from_secs(5))
        .await
        .expect("the answer");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-body-len"), Some("5"));
    assert_eq!(
        r.header("x-expect"),
        None,
        "the replica got the body whole, and no Expect to answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_pipelined_behind_a_buffered_chunked_body_is_answered() {
    let b = backends("stateless", 1).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    let mut c = Raw::connect(proxy.addr).await;
    c.send(
        b"POST /stateless/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\nGET /stateless/b HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let first = c.response(Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.header("x-path"), Some("/a"));
    let second = c
        .response(Duration::from_secs(5))
        .await
        .expect("the pipelined request's answer");
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.header("x-path"), Some("/b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_still_sending_at_the_body_deadline_is_streamed() {
    let b = backends("stateless", 1).await;
    let proxy = spawn_proxy(
        &[PoolSpec::new("stateless", "round-robin", &b)],
        "client_body_timeout_ms = 600",
    )
    .await;
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(b"POST /stateless/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n")
        .await
        .expect("send the header");
    // One byte every 250 ms: the body takes 2 s, past the 600 ms deadline, and never pauses.
    let upload = tokio::spawn(async move {
        for byte in b"12345678" {
            // Paces the upload; nothing waits on it.
            tokio::time::sleep(Duration::from_millis(250)).await;
            wr.write_all(&[*byte]).await.expect("send a byte");
        }
        wr
    });
    let mut answer = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut chunk = [0u8; 1024];
            let n = rd.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
            if let Some(r) = parse_one(&answer) {
                return r;
            }
        }
    })
    .await
    .expect("an answer within 10 s");
    let _wr = upload.await.expect("the upload");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-body-len"), Some("8"));
}
