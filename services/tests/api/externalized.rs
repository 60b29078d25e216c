//! What only the Redis design does: sessions live in Redis with a sliding TTL, and Redis is a
//! dependency whose loss is a fast 503 and whose return is recovered from without a restart.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use statelab_test_support::eventually;

use crate::helpers::{qty_of, spawn_app, spawn_app_with, Design, Options, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_hashes_under_the_prefix_with_a_sliding_ttl() {
    let options = Options {
        session_ttl: Duration::from_secs(120),
        ..Options::default()
    };
    let app = spawn_app_with(Design::Externalized, options).await;
    let mut u = app.user();
    u.login("alice").await;
    u.add("apple", 3).await;
    let id = u.credential.clone().expect("id");
    let key = format!("{}session:{id}", app.redis_prefix);
    let mut redis = app.redis.as_ref().expect("redis").connection().await;

    let user: String = redis::cmd("HGET")
        .arg(&key)
        .arg("u")
        .query_async(&mut redis)
        .await
        .expect("HGET");
    assert_eq!(user, "alice");
    let apples: u32 = redis::cmd("HGET")
        .arg(&key)
        .arg("i:apple")
        .query_async(&mut redis)
        .await
        .expect("HGET");
    assert_eq!(apples, 3);

    // Shorten the TTL behind the service's back; the next request must re-arm it.
    let _: () = redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(5_000)
        .query_async(&mut redis)
        .await
        .expect("PEXPIRE");
    assert_eq!(u.get("/me").await.status, StatusCode::OK);
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .expect("PTTL");
    assert!(pttl > 60_000 && pttl <= 120_000, "TTL not slid: {pttl} ms");

    // When Redis expires the key, the session is gone.
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .expect("DEL");
    u.get("/me").await.assert_error(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_a_prompt_503_and_recovery_is_automatic() {
    let app = spawn_app(Design::Externalized).await;
    let mut u = app.user();
    u.login("alice").await;
    assert_eq!(qty_of(&u.add("apple", 1).await.body, "apple"), 1);

    app.redis.as_ref().expect("redis").kill();

    // The client's own timeout is 10 s; the service must answer well before, with a 503.
    for path in ["/me", "/cart"] {
        let r = u.get(path).await;
        r.assert_error(503, "store_unavailable");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(
            !r.text.to_lowercase().contains("refused"),
            "internal detail leaked: {}",
            r.text
        );
    }
    u.add("apple", 1)
        .await
        .assert_error(503, "store_unavailable");
    let health = u.get("/health").await;
    health.assert_error(503, "store_unavailable");
    let login = app
        .user()
        .send(Method::POST, "/login", Some(r#"{"username":"bob"}"#))
        .await;
    login.assert_error(503, "store_unavailable");
    assert_eq!(
        login.set_cookie(&app.cookie_name),
        None,
        "no session handed out without a store"
    );

    assert!(
        app.redis.as_ref().expect("redis").restart().await,
        "redis restarts on its port"
    );
    wait_healthy(&app).await;
    // This Redis kept nothing (no persistence), so the old session is gone; new ones work.
    u.get("/me").await.assert_error(401, "unauthorized");
    u.login("alice").await;
    assert_eq!(qty_of(&u.add("apple", 2).await.body, "apple"), 2);

    let metrics = app.send(Method::GET, "/metrics", None, None).await.text;
    let errors: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("statelab_store_errors_total "))
        .and_then(|v| v.parse().ok())
        .expect("store error counter");
    assert!(errors >= 5.0, "each failed Redis call is counted: {errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_is_a_503_not_a_hang() {
    // Redis accepts the connection but never replies (SIGSTOP): only the timeout saves us.
    let app = spawn_app(Design::Externalized).await;
    let redis = app.redis.as_ref().expect("redis");
    let mut u = app.user();
    u.login("alice").await;
    u.add("apple", 1).await;

    redis.pause();
    // The harness's Redis timeout is 500 ms; the client gives up after 10 s. A 503 proves the
    // service bounded the wait itself.
    u.get("/me").await.assert_error(503, "store_unavailable");
    u.get("/health")
        .await
        .assert_error(503, "store_unavailable");

    redis.resume();
    let cart = eventually(
        "the session to be readable again",
        Duration::from_secs(15),
        || {
            let app = &app;
            let credential = u.credential.clone();
            async move {
                let r = app
                    .send(Method::GET, "/cart", None, credential.as_deref())
                    .await;
                (r.status == StatusCode::OK).then_some(r)
            }
        },
    )
    .await;
    assert_eq!(
        qty_of(&cart.body, "apple"),
        1,
        "nothing was lost while Redis was paused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_before_redis_serves_once_redis_is_up() {
    let options = Options {
        redis_up: false,
        ..Options::default()
    };
    let app = spawn_app_with(Design::Externalized, options).await;
    app.send(Method::GET, "/health", None, None)
        .await
        .assert_error(503, "store_unavailable");
    app.user()
        .send(Method::POST, "/login", Some(r#"{"username":"alice"}"#))
        .await
        .assert_error(503, "store_unavailable");

    assert!(
        app.redis.as_ref().expect("redis").restart().await,
        "redis starts"
    );
    wait_healthy(&app).await;
    let mut u = app.user();
    u.login("alice").await;
    assert_eq!(u.get("/me").await.body["username"], "alice");
}

/// Sends one command to the test's Redis and returns its reply.
async fn redis_cmd<T: redis::FromRedisValue>(app: &TestApp, args: &[&str]) -> T {
    let mut conn = app.redis.as_ref().expect("redis").connection().await;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_refuses_new_logins_and_keeps_every_session() {
    let app = spawn_app(Design::Externalized).await;
    let mut alice = app.user();
    alice.login("alice").await;
    alice.add("apple", 2).await;
    let pattern = format!("{}*", app.redis_prefix);

    // The lab's policy, with a bound every write is already over.
    let _: () = redis_cmd(&app, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]).await;
    let _: () = redis_cmd(&app, &["CONFIG", "SET", "maxmemory", "1"]).await;

    let mut bob = app.user();
    let refused = bob.login_refused("bob", "store_full").await;
    for internal in ["OOM", "maxmemory"] {
        assert!(
            !refused.text.contains(internal),
            "detail leaked: {}",
            refused.text
        );
    }
    let keys: Vec<String> = redis_cmd(&app, &["KEYS", &pattern]).await;
    assert_eq!(keys.len(), 1, "nothing half-written: {keys:?}");

    // Alice logging in again is refused too, and her session is not lost on the way.
    let kept = alice.credential.clone();
    alice
        .send(Method::POST, "/login", Some(r#"{"username":"alice"}"#))
        .await
        .assert_error(503, "store_full");
    assert_eq!(alice.credential, kept);
    let cart = alice.get("/cart").await;
    assert_eq!(cart.status, StatusCode::OK, "{}", cart.text);
    assert_eq!(qty_of(&cart.body, "apple"), 2);
    assert_eq!(alice.get("/me").await.body["username"], "alice");
    // Changes to a held session still run: Redis refuses growth only to a script's first write.
    assert_eq!(qty_of(&alice.add("apple", 1).await.body, "apple"), 3);
    assert_eq!(alice.post("/checkout").await.status, StatusCode::OK);
    assert_eq!(
        app.send(Method::GET, "/health", None, None).await.status,
        StatusCode::OK,
        "a full Redis still serves every held session: the replica stays in its pool"
    );
    assert_eq!(alice.post("/logout").await.status, StatusCode::NO_CONTENT);
    let keys: Vec<String> = redis_cmd(&app, &["KEYS", &pattern]).await;
    assert!(
        keys.is_empty(),
        "logout deletes even when Redis is full: {keys:?}"
    );

    // Room again: logins work without a restart.
    let _: () = redis_cmd(&app, &["CONFIG", "SET", "maxmemory", "0"]).await;
    bob.login("bob").await;
    assert_eq!(bob.get("/me").await.body["username"], "bob");
}

/// Polls `/health` until the service reports its store reachable again.
async fn wait_healthy(app: &TestApp) {
    eventually(
        "/health to turn 200",
        Duration::from_secs(15),
        || async move {
            let r = app.send(Method::GET, "/health", None, None).await;
            (r.status == StatusCode::OK).then_some(())
        },
    )
    .await;
}
