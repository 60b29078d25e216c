//! The API contract, written once and run against all three services.
//!
//! Where a design legitimately differs — the JWT cannot be revoked, and racing requests on one
//! token lose updates — the test says so and asserts the difference explicitly.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use statelab_services::work::{Work, WorkDist};

use crate::helpers::{
    counts_reads, for_every_design, qty_of, spawn_app, spawn_app_with, Design, Options, TestApp,
};

for_every_design!(
    whole_workflow,
    work_costs_time_on_api_routes_and_changes_no_answer,
    every_response_names_the_replica,
    no_session_is_401,
    login_rotates_the_session,
    logout_ends_the_session_where_the_design_can,
    malformed_and_invalid_input_is_400_and_loses_nothing,
    json_bodies_need_a_json_content_type,
    oversized_bodies_are_413,
    unknown_routes_and_methods,
    a_full_cart_is_422,
    concurrent_adds_on_one_session,
    health_and_metrics,
    detailed_health_reports_what_the_replica_holds,
    bearer_tokens_and_bodies,
    duplicate_cookies_the_first_live_session_wins,
    hypers_own_rejections_are_plain,
);

/// `--work-us`: every API answer takes at least the work's time and is otherwise the same;
/// the health check does none of it.
async fn work_costs_time_on_api_routes_and_changes_no_answer(design: Design) {
    let work = Work::calibrated(30_000, WorkDist::Fixed);
    let app = spawn_app_with(
        design,
        Options {
            work: work.clone(),
            ..Options::default()
        },
    )
    .await;
    let mut bob = app.user();
    let started = Instant::now();
    let login = bob.login("bob").await;
    assert_eq!(login.body["username"], "bob");
    let cart = bob.add("fig", 2).await;
    assert_eq!(qty_of(&cart.body, "fig"), 2, "{}", cart.text);
    // Two API requests: each ran the whole chain, which the calibration timed at 30 ms at the
    // machine's fastest; half of that is a floor no scheduler can undercut.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(30), "{took:?} for {work:?}");
}

async fn whole_workflow(design: Design) {
    let app = spawn_app(design).await;
    let mut alice = app.user();

    let login = alice.login("alice").await;
    assert_eq!(login.body["username"], "alice");
    assert_eq!(login.body["replica"], app.replica);
    let cookie = login.set_cookie(&app.cookie_name).expect("session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    // Server-side sessions slide on every request, so their cookie must not carry a fixed
    // lifetime; the JWT's cookie lives exactly as long as the token.
    assert_eq!(
        cookie.contains("Max-Age="),
        design == Design::Stateless,
        "{cookie}"
    );

    let me = alice.get("/me").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(me.body["username"], "alice");
    assert_eq!(me.body["replica"], app.replica);
    let counted = |all: u64, changes: u64| if counts_reads(design) { all } else { changes };
    assert_eq!(me.body["requests_in_session"], counted(2, 1));
    assert!(me.body["session_age_ms"].as_u64().is_some());

    alice.add("apple", 2).await;
    alice.add("pear", 1).await;
    let cart = alice.add("apple", 1).await;
    assert_eq!(cart.status, StatusCode::OK, "{}", cart.text);
    assert_eq!(
        (qty_of(&cart.body, "apple"), qty_of(&cart.body, "pear")),
        (3, 1)
    );
    assert_eq!(cart.body["total_qty"], 4);

    let cart = alice.get("/cart").await;
    assert_eq!(cart.body["total_qty"], 4, "{}", cart.text);
    assert_eq!(
        alice.get("/me").await.body["requests_in_session"],
        counted(7, 4)
    );

    let order = alice.post("/checkout").await;
    assert_eq!(order.status, StatusCode::OK, "{}", order.text);
    let order_id = order.body["order_id"].as_str().expect("order id");
    assert!(uuid::Uuid::parse_str(order_id).is_ok(), "{order_id}");
    assert_eq!(qty_of(&order.body, "apple"), 3);
    assert_eq!(alice.get("/cart").await.body["total_qty"], 0);
    alice
        .post("/checkout")
        .await
        .assert_error(409, "empty_cart");

    let logout = alice.post("/logout").await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let cleared = logout
        .set_cookie(&app.cookie_name)
        .expect("clearing cookie");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(alice.credential, None, "the browser forgets the cookie");
    alice.get("/me").await.assert_error(401, "unauthorized");
}

async fn every_response_names_the_replica(design: Design) {
    let app = spawn_app(design).await;
    let mut u = app.user();
    let replies = vec![
        u.login("a").await,
        u.get("/me").await,
        u.get("/nope").await,
        u.send(Method::DELETE, "/me", None).await,
        u.send(Method::POST, "/login", Some("{")).await,
        u.get("/health").await,
        u.get("/metrics").await,
        app.user().get("/me").await,
        u.post("/logout").await,
    ];
    for r in replies {
        assert_eq!(
            r.header("x-replica"),
            Some(app.replica.as_str()),
            "{} {}",
            r.status,
            r.text
        );
    }
}

async fn no_session_is_401(design: Design) {
    let app = spawn_app(design).await;
    for (method, path, body) in [
        (Method::GET, "/me", None),
        (Method::GET, "/cart", None),
        (
            Method::POST,
            "/cart/items",
            Some(r#"{"sku":"apple","qty":1}"#),
        ),
        (Method::POST, "/checkout", None),
    ] {
        app.send(method.clone(), path, body, None)
            .await
            .assert_error(401, "unauthorized");
        for garbage in [
            "x",
            "0123456789abcdef0123456789abcdef",
            "a.b.c",
            "%%%",
            &"z".repeat(5000),
        ] {
            app.send(method.clone(), path, body, Some(garbage))
                .await
                .assert_error(401, "unauthorized");
        }
    }
}

async fn login_rotates_the_session(design: Design) {
    let app = spawn_app(design).await;
    let mut u = app.user();
    u.login("alice").await;
    u.add("apple", 1).await;
    let first = u.credential.clone().expect("credential");

    let again = u.login("alice").await;
    let second = u.credential.clone().expect("credential");
    assert_ne!(
        first, second,
        "a login must never keep the old session id or token"
    );
    assert_eq!(again.body["requests_in_session"], 1);
    assert_eq!(
        u.get("/cart").await.body["total_qty"],
        0,
        "a new login starts a new cart"
    );

    let old = app.send(Method::GET, "/me", None, Some(&first)).await;
    if design.can_revoke() {
        old.assert_error(401, "unauthorized");
    } else {
        // The JWT design cannot forget a token: the pre-login one works until it expires.
        assert_eq!(old.status, StatusCode::OK, "{}", old.text);
    }
}

async fn logout_ends_the_session_where_the_design_can(design: Design) {
    let app = spawn_app(design).await;
    let mut u = app.user();
    u.login("alice").await;
    u.add("apple", 2).await;
    let kept = u.credential.clone().expect("credential");
    assert_eq!(u.post("/logout").await.status, StatusCode::NO_CONTENT);

    // Someone who kept a copy of the credential (a stolen cookie, a copied token):
    let replay = app.send(Method::GET, "/cart", None, Some(&kept)).await;
    if design.can_revoke() {
        replay.assert_error(401, "unauthorized");
    } else {
        // Stateless: logout only clears the cookie. The token itself stays valid until `exp`.
        assert_eq!(replay.status, StatusCode::OK, "{}", replay.text);
        assert_eq!(qty_of(&replay.body, "apple"), 2);
    }
    // Logging out without a session is harmless.
    assert_eq!(
        app.user().post("/logout").await.status,
        StatusCode::NO_CONTENT
    );
}

async fn malformed_and_invalid_input_is_400_and_loses_nothing(design: Design) {
    let app = spawn_app(design).await;
    let mut u = app.user();
    for body in [
        "{",
        "not json",
        "",
        "{\"username\": \"a\",}",
        "{\"username\": \"a\"",
        "\u{0}",
    ] {
        u.send(Method::POST, "/login", Some(body))
            .await
            .assert_error(400, "invalid_json");
    }
    let long = "x".repeat(65);
    for body in [
        json!({}),
        json!({"username": 5}),
        json!({"username": ""}),
        json!({"username": "   "}),
        json!({"username": long}),
        json!({"username": "a\nb"}),
        json!(["alice"]),
    ] {
        u.send(Method::POST, "/login", Some(&body.to_string()))
            .await
            .assert_error(400, "invalid_field");
    }
    assert_eq!(u.credential, None, "no failed login creates a session");

    u.login("alice").await;
    u.add("apple", 2).await;
    let bad_items = [
        json!({"sku": "apple", "qty": 0}),
        json!({"sku": "apple", "qty": -1}),
        json!({"sku": "apple", "qty": 1001}),
        json!({"sku": "apple", "qty": 2.5}),
        json!({"sku": "apple", "qty": "2"}),
        json!({"sku": "apple", "qty": 4_294_967_297_u64}),
        json!({"sku": "apple"}),
        json!({"qty": 1}),
        json!({"sku": "", "qty": 1}),
        json!({"sku": "a".repeat(65), "qty": 1}),
        json!({"sku": "has space", "qty": 1}),
        json!({"sku": "semi;colon", "qty": 1}),
    ];
    for body in bad_items {
        let r = u
            .send(Method::POST, "/cart/items", Some(&body.to_string()))
            .await;
        r.assert_error(400, "invalid_field");
    }
    u.send(Method::POST, "/cart/items", Some("{\"sku\":"))
        .await
        .assert_error(400, "invalid_json");
    let cart = u.get("/cart").await;
    assert_eq!(
        cart.body["total_qty"], 2,
        "bad input changed the cart: {}",
        cart.text
    );
    assert_eq!(
        u.add("apple", 1000).await.body["total_qty"],
        1002,
        "qty 1000 is the inclusive limit"
    );
}

async fn json_bodies_need_a_json_content_type(design: Design) {
    let app = spawn_app(design).await;
    let post = |path: &str, body: &str, content_type: Option<&str>| {
        let req = app.http.post(app.url(path)).body(body.to_owned());
        match content_type {
            Some(ct) => req.header("content-type", ct),
            None => req,
        }
    };
    // What an HTML form on another site can send without a preflight, and near misses.
    let refused = [
        None,
        Some("text/plain"),
        Some("text/plain; charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        Some("text/json"),
    ];
    for ct in refused {
        let r = app
            .request(post("/login", r#"{"username":"mallory"}"#, ct))
            .await;
        r.assert_error(415, "unsupported_media_type");
        assert_eq!(r.set_cookie(&app.cookie_name), None, "{ct:?} logged in");
        assert_eq!(r.header("x-replica"), Some(app.replica.as_str()));
    }

    let mut u = app.user();
    u.login("alice").await;
    u.add("apple", 1).await;
    for ct in refused {
        let credential = u.credential.clone().expect("credential");
        let req = post("/cart/items", r#"{"sku":"apple","qty":5}"#, ct)
            .header("cookie", app.cookie(&credential));
        app.request(req)
            .await
            .assert_error(415, "unsupported_media_type");
    }
    assert_eq!(u.get("/cart").await.body["total_qty"], 1, "nothing added");

    // Parameters and case are allowed.
    for ct in ["application/json; charset=utf-8", "Application/JSON"] {
        let r = app
            .request(post("/login", r#"{"username":"bob"}"#, Some(ct)))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{ct}: {}", r.text);
    }

    // Routes without a body need no Content-Type.
    let credential = u.credential.clone().expect("credential");
    let checkout = app
        .request(
            app.http
                .post(app.url("/checkout"))
                .header("cookie", app.cookie(&credential)),
        )
        .await;
    assert_eq!(checkout.status, StatusCode::OK, "{}", checkout.text);
    assert_eq!(qty_of(&checkout.body, "apple"), 1);
    assert_eq!(u.get("/me").await.status, StatusCode::OK);
    assert_eq!(u.post("/logout").await.status, StatusCode::NO_CONTENT);
}

async fn oversized_bodies_are_413(design: Design) {
    let options = Options {
        body_limit: 256,
        ..Options::default()
    };
    let app = spawn_app_with(design, options).await;
    let mut u = app.user();
    u.login("alice").await;
    let padding = " ".repeat(300);
    let big = format!("{{\"sku\":\"apple\",\"qty\":1}}{padding}");
    u.send(Method::POST, "/cart/items", Some(&big))
        .await
        .assert_error(413, "payload_too_large");
    let big_login = format!("{{\"username\":\"bob\"}}{padding}");
    u.send(Method::POST, "/login", Some(&big_login))
        .await
        .assert_error(413, "payload_too_large");

    // A chunked body (no Content-Length) over the limit is cut off while it is read.
    let cookie = format!(
        "{}={}",
        app.cookie_name,
        u.credential.clone().expect("credential")
    );
    let head = format!(
        "POST /cart/items HTTP/1.1\r\nhost: test\r\ncookie: {cookie}\r\n\
         content-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    let chunk = format!("{{\"sku\":\"apple\",\"qty\":1}}{padding}");
    let body = format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len());
    let status_line = raw_request(app.addr, &format!("{head}{body}")).await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert_eq!(
        u.get("/cart").await.body["total_qty"],
        0,
        "nothing was added"
    );
}

/// Writes `request` to a fresh connection and returns the response's status line.
async fn raw_request(addr: std::net::SocketAddr, request: &str) -> String {
    raw_response(addr, request)
        .await
        .lines()
        .next()
        .expect("the server answered before closing")
        .to_owned()
}

/// Writes `request` to a fresh connection and returns everything the server sends until it
/// closes the connection.
async fn raw_response(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// A response's head, split into its status line and lower-cased header names, and its body.
fn split_response(response: &str) -> (&str, Vec<String>, &str) {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {response:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let names = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    (status, names, body)
}

async fn hypers_own_rejections_are_plain(design: Design) {
    let app = spawn_app(design).await;
    let get = |target: &str, extra_headers: usize| {
        let mut head = format!("GET {target} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
        for i in 0..extra_headers {
            head.push_str(&format!("x-filler-{i}: {i}\r\n"));
        }
        head + "\r\n"
    };

    // Up to the limits, our own answers: JSON, with x-replica.
    let at_limits = [
        get("/health", 98),                          // 100 header fields
        get(&format!("/{}", "a".repeat(65_000)), 0), // a 65,001-byte target
    ];
    for request in &at_limits {
        let response = raw_response(app.addr, request).await;
        let (status, headers, _) = split_response(&response);
        assert!(
            status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.1 404"),
            "{status}"
        );
        assert!(headers.iter().any(|h| h == "x-replica"), "{response:.300}");
    }

    // Past them hyper answers itself, before any request reaches the service: a bare status,
    // no body, no x-replica, and the connection closed.
    let past_limits = [
        (get("/health", 99), "431"), // 101 header fields
        (get(&format!("/{}", "a".repeat(100_000)), 0), "414"), // a 100 KB target
        (
            "GET /health HTTP/1.1\r\nhost test\r\n\r\n".to_owned(),
            "400",
        ), // no colon
    ];
    for (request, code) in &past_limits {
        let response = raw_response(app.addr, request).await;
        let (status, headers, body) = split_response(&response);
        assert!(
            status.starts_with(&format!("HTTP/1.1 {code} ")),
            "{code}: {status}"
        );
        assert!(
            !headers.iter().any(|h| h == "x-replica"),
            "{code}: {headers:?}"
        );
        assert!(body.is_empty(), "{code}: a body: {body:?}");
    }
}

async fn unknown_routes_and_methods(design: Design) {
    let app = spawn_app(design).await;
    app.send(Method::GET, "/nope", None, None)
        .await
        .assert_error(404, "not_found");
    app.send(Method::GET, "/login/extra", None, None)
        .await
        .assert_error(404, "not_found");
    let r = app.send(Method::GET, "/login", None, None).await;
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = app.send(Method::POST, "/me", None, None).await;
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET"));
}

async fn a_full_cart_is_422(design: Design) {
    let app = spawn_app(design).await;
    let mut u = app.user();
    u.login("alice").await;
    for i in 0..statelab_services::session::MAX_CART_LINES {
        let r = u.add(&format!("sku-{i:02}"), 1000).await;
        assert_eq!(r.status, StatusCode::OK, "line {i}: {}", r.text);
    }
    u.add("one-too-many", 1)
        .await
        .assert_error(422, "cart_full");
    let cart = u.get("/cart").await;
    assert_eq!(
        cart.body["items"].as_array().map(Vec::len),
        Some(statelab_services::session::MAX_CART_LINES)
    );
    assert_eq!(qty_of(&cart.body, "one-too-many"), 0);
}

async fn concurrent_adds_on_one_session(design: Design) {
    let app = spawn_app(design).await;
    let mut u = app.user();
    u.login("alice").await;
    let credential = u.credential.clone().expect("credential");
    const N: usize = 100;
    let mut tasks = tokio::task::JoinSet::new();
    let app = std::sync::Arc::new(app);
    for _ in 0..N {
        let app = std::sync::Arc::clone(&app);
        let credential = credential.clone();
        tasks.spawn(async move {
            let r = app
                .send(
                    Method::POST,
                    "/cart/items",
                    Some(r#"{"sku":"apple","qty":1}"#),
                    Some(&credential),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            qty_of(&r.body, "apple")
        });
    }
    let mut seen = Vec::new();
    while let Some(qty) = tasks.join_next().await {
        seen.push(qty.expect("task"));
    }
    if design.can_revoke() {
        // Server-side state serialises the adds: every one counts, each reply saw a distinct total.
        let final_cart = app
            .send(Method::GET, "/cart", None, Some(&credential))
            .await;
        assert_eq!(qty_of(&final_cart.body, "apple"), N as u64);
        seen.sort_unstable();
        assert_eq!(seen, (1..=N as u64).collect::<Vec<_>>());
    } else {
        // Stateless: each request started from the same token, so each new token holds exactly
        // one apple. Whichever token the client keeps, 99 of the 100 adds are lost.
        assert!(seen.iter().all(|q| *q == 1), "{seen:?}");
    }
}

async fn health_and_metrics(design: Design) {
    let app = spawn_app(design).await;
    let health = app.send(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text);
    assert_eq!(health.body["status"], "ok");
    assert_eq!(health.body["kind"], design.as_str());

    let mut u = app.user();
    u.login("alice").await;
    u.get("/me").await;
    app.user().get("/me").await;
    let metrics = app.send(Method::GET, "/metrics", None, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain")));
    let text = metrics.text;
    assert!(
        text.contains(r#"statelab_requests_total{route="/me",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"statelab_requests_total{route="/me",status="401"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("statelab_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    let specific = match design {
        Design::Stateful => "statelab_sessions_live 1",
        Design::Stateless => "statelab_token_bytes_count 1",
        Design::Externalized => "statelab_store_errors_total 0",
    };
    assert!(text.contains(specific), "missing {specific:?} in {text}");
}

/// The proxy's health checker asks `/health?detail=1` on every check: the replica's own figures
/// for the dashboard, each design reporting what it holds.
async fn detailed_health_reports_what_the_replica_holds(design: Design) {
    let app = spawn_app(design).await;
    let (mut a, mut b) = (app.user(), app.user());
    a.login("alice").await;
    b.login("bob").await;
    a.get("/me").await;
    let detail = app.send(Method::GET, "/health?detail=1", None, None).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
    assert_eq!(detail.body["status"], "ok");
    assert_eq!(detail.body["kind"], design.as_str());
    assert!(
        detail.body["rss_bytes"].as_u64().is_some_and(|b| b > 0),
        "{}",
        detail.text
    );
    let n = |field: &str| detail.body[field].as_u64();
    match design {
        Design::Stateful => assert_eq!(n("sessions_held"), Some(2), "{}", detail.text),
        Design::Stateless => {
            // One token presented (alice's /me), and its bytes.
            assert_eq!(n("tokens_total"), Some(1), "{}", detail.text);
            assert!(
                n("token_bytes_total").is_some_and(|b| b > 100),
                "{}",
                detail.text
            );
        }
        // The store's key count: both sessions at least (the test Redis may hold others).
        Design::Externalized => assert!(
            n("store_sessions").is_some_and(|k| k >= 2),
            "{}",
            detail.text
        ),
    }
    // The plain form stays plain: no figures.
    let plain = app.send(Method::GET, "/health", None, None).await;
    assert!(plain.body.get("rss_bytes").is_none(), "{}", plain.text);
}

async fn bearer_tokens_and_bodies(design: Design) {
    let app: TestApp = spawn_app(design).await;
    let login = app.user().login("alice").await;
    let token = login.body.get("token").and_then(|t| t.as_str());
    if design == Design::Stateless {
        let token = token.expect("the JWT design returns its token for bearer clients");
        let me = app
            .http
            .get(app.url("/me"))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        assert_eq!(me.status(), StatusCode::OK);
        assert!(
            !me.headers().contains_key("x-session-token"),
            "a read issues no token"
        );
        let add = app
            .http
            .post(app.url("/cart/items"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(r#"{"sku":"apple","qty":1}"#)
            .send()
            .await
            .expect("request");
        assert_eq!(add.status(), StatusCode::OK);
        let next = add
            .headers()
            .get("x-session-token")
            .expect("a new token for bearer clients");
        assert_ne!(next.to_str().ok(), Some(token));
    } else {
        assert!(
            token.is_none(),
            "server-side ids stay in the HttpOnly cookie: {}",
            login.text
        );
        let cookie = login.set_cookie(&app.cookie_name).expect("cookie");
        let id = cookie
            .split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .map(|(_, v)| v)
            .expect("id");
        assert_eq!(id.len(), 32, "128-bit id in hex");
        let r = app
            .http
            .get(app.url("/me"))
            .bearer_auth(id)
            .send()
            .await
            .expect("request");
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "the id works as a bearer credential too"
        );
    }
}

async fn duplicate_cookies_the_first_live_session_wins(design: Design) {
    let app = spawn_app(design).await;
    let name = &app.cookie_name;
    let mut alice = app.user();
    alice.login("alice").await;
    alice.add("apple", 1).await;
    let a = alice.credential.clone().expect("alice's credential");
    let mut bob = app.user();
    bob.login("bob").await;
    let b = bob.credential.clone().expect("bob's credential");
    let with_cookie = |method: Method, path: &str, cookie: String| {
        app.http
            .request(method, app.url(path))
            .header("cookie", cookie)
    };

    // An empty, quoted-empty or stale value before the live one does not hide it.
    for cookie in [
        format!("{name}=; {name}={a}"),
        format!("{name}=\"\"; {name}={a}"),
        format!("{name}=not-a-session; other=1; {name}={a}"),
    ] {
        let r = app
            .request(with_cookie(Method::GET, "/me", cookie.clone()))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{cookie}: {}", r.text);
        assert_eq!(r.body["username"], "alice", "{cookie}");
    }
    let add = with_cookie(Method::POST, "/cart/items", format!("{name}=; {name}={a}"))
        .header("content-type", "application/json")
        .body(r#"{"sku":"apple","qty":1}"#);
    let r = app.request(add).await;
    assert_eq!(qty_of(&r.body, "apple"), 2, "{}", r.text);

    // Two live sessions: the first, as the browser ordered them, wins.
    let r = app
        .request(with_cookie(
            Method::GET,
            "/me",
            format!("{name}={b}; {name}={a}"),
        ))
        .await;
    assert_eq!(r.body["username"], "bob", "{}", r.text);

    // No live value at all is still a 401.
    app.request(with_cookie(
        Method::GET,
        "/me",
        format!("{name}=; {name}=not-a-session"),
    ))
    .await
    .assert_error(401, "unauthorized");

    if design.can_revoke() {
        // A logged-out session's cookie left beside the live one does not hide it either.
        let mut carol = app.user();
        carol.login("carol").await;
        let c = carol.credential.clone().expect("carol's credential");
        carol.post("/logout").await;
        let r = app
            .request(with_cookie(
                Method::GET,
                "/me",
                format!("{name}={c}; {name}={a}"),
            ))
            .await;
        assert_eq!(r.body["username"], "alice", "{}", r.text);

        // A logout ends every session the request names.
        let r = app
            .request(with_cookie(
                Method::POST,
                "/logout",
                format!("{name}={b}; {name}={a}"),
            ))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        for gone in [&a, &b] {
            app.send(Method::GET, "/me", None, Some(gone))
                .await
                .assert_error(401, "unauthorized");
        }

        // So does a login: it starts one new session in place of all of them.
        let (mut d, mut e) = (app.user(), app.user());
        d.login("dave").await;
        e.login("erin").await;
        let (d, e) = (d.credential.expect("dave's"), e.credential.expect("erin's"));
        let login = with_cookie(Method::POST, "/login", format!("{name}={d}; {name}={e}"))
            .header("content-type", "application/json")
            .body(r#"{"username":"frank"}"#);
        assert_eq!(app.request(login).await.status, StatusCode::OK);
        for gone in [&d, &e] {
            app.send(Method::GET, "/me", None, Some(gone))
                .await
                .assert_error(401, "unauthorized");
        }
    }
}
