//! The admin API against browsers: cross-site state changes, DNS rebinding (a foreign `Host`),
//! and the token, and the admin listener's connection bounds, through the real proxy binary on
//! ephemeral loopback ports. Requests are written
//! by hand, so that each header is exactly what a browser or curl would send.

#[allow(dead_code)] // each test binary uses its own part of the harness
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use statelab_test_support::eventually;
use support::raw::{one_answer, Raw};
use support::{backends, spawn_proxy, PoolSpec, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `head` (request line and header lines, without the final blank line) and `body` on a
/// fresh connection; the status and the JSON body of the answer.
async fn raw(addr: SocketAddr, head: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the admin listener");
    let mut text = format!("{head}\r\nconnection: close\r\n");
    if !body.is_empty() {
        text.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    s.write_all(text.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.expect("read the answer");
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let json = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| serde_json::from_str(b).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    (status, json)
}

async fn draining(proxy: &Proxy, name: &str) -> bool {
    proxy.replica(name).await["draining"] == true
}

async fn stateless_proxy(extra_server: &str) -> (Proxy, Vec<support::Backend>) {
    let b = backends("stateless", 2).await;
    let proxy = spawn_proxy(
        &[PoolSpec::new("stateless", "round-robin", &b)],
        extra_server,
    )
    .await;
    (proxy, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_post_is_refused_and_changes_nothing() {
    let (proxy, _b) = stateless_proxy("").await;
    let host = proxy.admin.to_string();
    // The form any web page can send: a simple request, no preflight.
    let (code, body) = raw(
        proxy.admin,
        &format!(
            "POST /admin/replicas/stateless-1/drain HTTP/1.1\r\nhost: {host}\r\n\
             origin: http://evil.example\r\ncontent-type: text/plain"
        ),
        "x",
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["error"], "cross_site", "{body}");
    assert!(body["message"].is_string(), "{body}");
    // Even with the JSON a preflight would have guarded, a foreign or opaque Origin is refused.
    for origin in ["http://evil.example", "null", "http://localhost:1"] {
        let (code, body) = raw(
            proxy.admin,
            &format!(
                "PUT /admin/pools/stateless/strategy HTTP/1.1\r\nhost: {host}\r\n\
                 origin: {origin}\r\ncontent-type: application/json"
            ),
            r#""ip-hash""#,
        )
        .await;
        assert_eq!(code, 403, "{origin}: {body}");
        assert_eq!(body["error"], "cross_site");
    }
    assert!(!draining(&proxy, "stateless-1").await);
    assert_eq!(proxy.status().await["pools"][0]["strategy"], "round-robin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_fetch_site_other_than_same_origin_is_refused() {
    let (proxy, _b) = stateless_proxy("").await;
    let host = proxy.admin.to_string();
    for site in ["cross-site", "same-site"] {
        let (code, body) = raw(
            proxy.admin,
            &format!(
                "POST /admin/replicas/stateless-1/drain HTTP/1.1\r\nhost: {host}\r\n\
                 sec-fetch-site: {site}\r\ncontent-type: application/json"
            ),
            "",
        )
        .await;
        assert_eq!(code, 403, "{site}: {body}");
        assert_eq!(body["error"], "cross_site");
    }
    assert!(!draining(&proxy, "stateless-1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_style_post_is_refused_even_without_origin() {
    let (proxy, _b) = stateless_proxy("").await;
    let host = proxy.admin.to_string();
    for (content_type, body, want) in [
        ("text/plain", "x", 415),
        ("application/x-www-form-urlencoded", "a=b", 415),
        ("multipart/form-data; boundary=x", "--x--", 415),
    ] {
        let (code, answer) = raw(
            proxy.admin,
            &format!(
                "POST /admin/replicas/stateless-1/drain HTTP/1.1\r\nhost: {host}\r\n\
                 content-type: {content_type}"
            ),
            body,
        )
        .await;
        assert_eq!(code, want, "{content_type}: {answer}");
        assert_eq!(answer["error"], "unsupported_media_type");
    }
    // No body and no Content-Type: still a request a page could send without asking.
    let (code, answer) = raw(
        proxy.admin,
        &format!(
            "POST /admin/replicas/stateless-1/drain HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0"
        ),
        "",
    )
    .await;
    assert_eq!(code, 403, "{answer}");
    assert_eq!(answer["error"], "cross_site");
    assert!(!draining(&proxy, "stateless-1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_requests_from_curl_or_the_same_origin_work() {
    let (proxy, _b) = stateless_proxy("").await;
    let host = proxy.admin.to_string();
    // curl -X POST -H 'Content-Type: application/json' ...: no Origin at all.
    let (code, body) = raw(
        proxy.admin,
        &format!(
            "POST /admin/replicas/stateless-1/drain HTTP/1.1\r\nhost: {host}\r\n\
             content-type: application/json\r\ncontent-length: 0"
        ),
        "",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(draining(&proxy, "stateless-1").await);
    // The same request from another site's page: only the Origin differs, and it is refused.
    let (code, body) = raw(
        proxy.admin,
        &format!(
            "POST /admin/replicas/stateless-1/enable HTTP/1.1\r\nhost: {host}\r\n\
             origin: http://evil.example\r\ncontent-type: application/json\r\ncontent-length: 0"
        ),
        "",
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(draining(&proxy, "stateless-1").await);
    // A page served by the admin listener itself (same origin, as browsers mark it).
    let (code, body) = raw(
        proxy.admin,
        &format!(
            "POST /admin/replicas/stateless-1/enable HTTP/1.1\r\nhost: {host}\r\n\
             origin: http://{host}\r\nsec-fetch-site: same-origin\r\n\
             content-type: application/json"
        ),
        "{}",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(!draining(&proxy, "stateless-1").await);
    let (code, body) = raw(
        proxy.admin,
        &format!(
            "PUT /admin/pools/stateless/strategy HTTP/1.1\r\nhost: localhost:{}\r\n\
             content-type: application/json",
            proxy.admin.port()
        ),
        r#"{"strategy": "ip-hash"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(proxy.status().await["pools"][0]["strategy"], "ip-hash");
    // DELETE is never a simple request: no Content-Type needed.
    let (code, body) = raw(
        proxy.admin,
        &format!("DELETE /admin/replicas/stateless-2 HTTP/1.1\r\nhost: {host}"),
        "",
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_known_host_names_are_answered() {
    let (proxy, _b) = stateless_proxy("admin_hosts = [\"statelab-proxy\"]").await;
    let port = proxy.admin.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("statelab-proxy:{port}"),
        "STATELAB-PROXY:8081".to_string(),
    ] {
        let (code, body) = raw(
            proxy.admin,
            &format!("GET /admin/status HTTP/1.1\r\nhost: {host}"),
            "",
        )
        .await;
        assert_eq!(code, 200, "{host}: {body}");
    }
    // A rebinding page's own name, on every path, reads and writes alike.
    for (method, path) in [
        ("GET", "/admin/status"),
        ("GET", "/metrics"),
        ("GET", "/admin/ready"),
        ("POST", "/admin/replicas/stateless-1/drain"),
    ] {
        let (code, body) = raw(
            proxy.admin,
            &format!(
                "{method} {path} HTTP/1.1\r\nhost: rebind.evil.example:{port}\r\n\
                 content-type: application/json"
            ),
            "",
        )
        .await;
        assert_eq!(code, 421, "{method} {path}: {body}");
        assert_eq!(body["error"], "misdirected");
        assert!(body["message"].is_string());
    }
    let (code, _) = raw(proxy.admin, "GET /admin/status HTTP/1.0", "").await;
    assert_eq!(code, 421, "no Host at all");
    assert!(!draining(&proxy, "stateless-1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_needs_no_token_and_shows_nothing() {
    let (proxy, _b) = stateless_proxy("admin_token = \"r3ady-t0ken\"").await;
    let host = proxy.admin.to_string();
    let (code, body) = raw(
        proxy.admin,
        &format!("GET /admin/ready HTTP/1.1\r\nhost: {host}"),
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(body, serde_json::json!({ "ready": true }));
    for path in ["/admin/status", "/metrics"] {
        let (code, body) = raw(
            proxy.admin,
            &format!("GET {path} HTTP/1.1\r\nhost: {host}"),
            "",
        )
        .await;
        assert_eq!(code, 401, "{path}: {body}");
        assert_eq!(body["error"], "unauthorized");
    }
    let (code, _) = raw(
        proxy.admin,
        &format!("GET /admin/status HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer r3ady-t0ken"),
        "",
    )
    .await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_has_the_front_doors_bounds() {
    let (proxy, _b) = stateless_proxy(
        "client_keepalive_timeout_ms = 400\nclient_header_timeout_ms = 600\nmax_admin_connections = 3",
    )
    .await;
    let port = proxy.admin.port();
    let status = format!("GET /admin/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");

    // Idle keep-alive connections are closed after the idle timeout, and not before.
    let mut idle = Raw::connect(proxy.admin).await;
    idle.send(status.as_bytes()).await;
    let r = idle
        .response(Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!(r.status, 200);
    let after = idle.closed_within(Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(300),
        "closed after {after:?}"
    );

    // A header trickled a byte at a time is cut off at the header deadline with a JSON 408.
    let mut slow = Raw::connect(proxy.admin).await;
    let started = Instant::now();
    let r = loop {
        slow.send(b"G").await;
        let answer = tokio::time::timeout(
            Duration::from_millis(200),
            slow.response(Duration::from_secs(5)),
        )
        .await;
        if let Ok(answer) = answer {
            break answer.expect("an answer before the close");
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never cut off");
    };
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.json()["error"], "request_timeout");

    // Past the connection cap, a JSON 503; a slot frees when a connection closes.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Raw::connect(proxy.admin).await);
    }
    let over = one_answer(proxy.admin, status.as_bytes()).await.0;
    assert_eq!(over.status, 503, "{over:?}");
    assert_eq!(over.json()["error"], "too_many_connections");
    drop(held);
    eventually(
        "a slot after the held connections closed",
        Duration::from_secs(5),
        || async {
            let mut c = Raw::connect(proxy.admin).await;
            c.send(status.as_bytes()).await;
            (c.response(Duration::from_secs(5)).await?.status == 200).then_some(())
        },
    )
    .await;

    // Malformed or misdirected heads each get a JSON answer.
    for (head, want) in [
        (
            format!("GET /admin/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example\r\n\r\n"),
            400,
        ),
        (
            format!("GET /admin/status HTTP/1.1\r\nHost: user@127.0.0.1:{port}\r\n\r\n"),
            400,
        ),
        (
            format!("GET http://evil.example/admin/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
            400,
        ),
        (
            "GET http://evil.example/admin/status HTTP/1.1\r\nHost: evil.example\r\n\r\n"
                .to_string(),
            421,
        ),
    ] {
        let (r, _) = one_answer(proxy.admin, head.as_bytes()).await;
        assert_eq!(r.status, want, "{head:?}: {r:?}");
        assert!(r.json()["error"].is_string() && r.json()["message"].is_string());
    }
}
