//! What only the in-memory design does: it holds a bounded number of sessions, and a login past
//! the bound is refused while the sessions held keep working.

use reqwest::{Method, StatusCode};

use crate::helpers::{qty_of, spawn_app_with, Design, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_past_the_cap_are_503_and_held_sessions_keep_working() {
    let options = Options {
        max_sessions: 3,
        ..Options::default()
    };
    let app = spawn_app_with(Design::Stateful, options).await;
    let mut held = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let mut u = app.user();
        u.login(name).await;
        u.add("apple", 1).await;
        held.push(u);
    }

    let mut dave = app.user();
    dave.login_refused("dave", "session_capacity").await;
    dave.get("/me").await.assert_error(401, "unauthorized");

    for u in &mut held {
        let cart = u.add("apple", 1).await;
        assert_eq!(cart.status, StatusCode::OK, "{}", cart.text);
        assert_eq!(qty_of(&cart.body, "apple"), 2);
    }
    // A login presenting a stale cookie before a live one, at the cap: it takes over the live
    // session's room (the old session ends, the new one starts) instead of needing a free slot.
    let name = &app.cookie_name;
    let live = held[2].credential.clone().expect("carol's credential");
    let relogin = app
        .http
        .request(Method::POST, app.url("/login"))
        .header("cookie", format!("{name}=stale-session; {name}={live}"))
        .header("content-type", "application/json")
        .body(r#"{"username":"carol"}"#);
    let again = app.request(relogin).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    held[2].get("/me").await.assert_error(401, "unauthorized");
    held[2].credential = again.set_cookie(name).and_then(|line| {
        line.split(';')
            .next()?
            .split_once('=')
            .map(|(_, v)| v.to_owned())
    });
    let cart = held[2].get("/cart").await;
    assert_eq!(cart.status, StatusCode::OK, "{}", cart.text);
    assert_eq!(cart.body["total_qty"], 0, "a new session");

    // Logging in again replaces the held session in place, so it works at the cap.
    let alice = &mut held[0];
    alice.login("alice").await;
    assert_eq!(alice.get("/cart").await.body["total_qty"], 0);

    // A logout frees a slot for the next login.
    assert_eq!(held[1].post("/logout").await.status, StatusCode::NO_CONTENT);
    dave.login("dave").await;
    assert_eq!(dave.get("/me").await.body["username"], "dave");

    let metrics = app.send(Method::GET, "/metrics", None, None).await.text;
    assert!(metrics.contains("statelab_sessions_live 3"), "{metrics}");
    assert!(metrics.contains("statelab_sessions_max 3"), "{metrics}");
    assert!(
        metrics.contains(r#"statelab_requests_total{route="/login",status="503"} 1"#),
        "{metrics}"
    );
}
