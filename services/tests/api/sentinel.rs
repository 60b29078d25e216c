//! The Redis store behind Sentinel: it follows the primary Sentinel names, finding it again when
//! the node it holds turns into a replica (`READONLY`) or goes away (a closed connection), and its
//! health says "no writable primary" while it holds a demoted node.

use std::time::Duration;

use statelab_services::chat::BrokerRooms;
use statelab_services::session::{Applied, Change};
use statelab_services::store::{RedisStore, Topology};
use statelab_services::SessionStore;
use statelab_test_support::{eventually, RedisServer, SentinelServer};

use crate::helpers::{heard_across, redis_store};

const NAME: &str = "statelab-test";

async fn command(server: &RedisServer, args: &[&str]) {
    let mut c = server.connection().await;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async::<()>(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

/// Makes `replica` copy `primary` and waits until it holds `key`.
async fn replicated(replica: &RedisServer, primary: &RedisServer, key: &str) {
    let port = primary.port.to_string();
    command(replica, &["REPLICAOF", "127.0.0.1", &port]).await;
    eventually(
        "the replica to hold the session",
        Duration::from_secs(10),
        || async {
            let mut c = replica.connection().await;
            let n: u32 = redis::cmd("EXISTS")
                .arg(key)
                .query_async(&mut c)
                .await
                .ok()?;
            (n == 1).then_some(())
        },
    )
    .await;
}

/// Two Redis servers, A and B, a Sentinel naming A, and a store that asks the Sentinel with calls
/// bounded by `timeout`. Sentinel's own failure detection stays out of the way (a minute): the
/// tests move the primary by hand, as an operator's switchover would.
async fn switchover(timeout: Duration) -> (RedisServer, RedisServer, SentinelServer, RedisStore) {
    let a = RedisServer::start().await;
    let b = RedisServer::start().await;
    let sentinel = SentinelServer::start(NAME, a.port, 60_000).await;
    let store = store_via(&sentinel, timeout);
    (a, b, sentinel, store)
}

/// A Redis store that asks `sentinel` for the primary, with calls bounded by `timeout`.
fn store_via(sentinel: &SentinelServer, timeout: Duration) -> RedisStore {
    redis_store(
        Topology::Sentinel {
            sentinels: vec![format!("127.0.0.1:{}", sentinel.port)],
            master: NAME.into(),
        },
        timeout,
    )
}

/// The session `credential` names, once a touch through `store` finds it.
async fn touched(store: &RedisStore, credential: &str, what: &str) -> Applied {
    eventually(what, Duration::from_secs(10), || async {
        store.apply(credential, Change::Touch).await.ok().flatten()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_follows_the_primary_on_readonly_and_on_a_closed_connection() {
    let (a, b, sentinel, store) = switchover(Duration::from_millis(1000)).await;
    store.check().await.expect("A is the primary");
    let issued = store.create("ann", None).await.expect("login on A");
    let key = store.key(&issued.credential).expect("a key");
    replicated(&b, &a, &key).await;

    // Switch over: B is the primary, A copies it, and Sentinel names B. The store's connection
    // to A stays open, so its next write is answered READONLY.
    command(&b, &["REPLICAOF", "NO", "ONE"]).await;
    let b_port = b.port.to_string();
    command(&a, &["REPLICAOF", "127.0.0.1", &b_port]).await;
    sentinel.monitor(NAME, b.port).await;
    let add = Change::AddItem {
        sku: "apple",
        qty: 2,
    };
    let applied = store
        .apply(&issued.credential, add)
        .await
        .expect("READONLY from A sends the write to B, within the same call")
        .expect("the session is on B");
    assert_eq!(applied.session.cart.get("apple"), Some(&2));
    store.check().await.expect("B is the primary now");

    // B dies; A is promoted and named. The first call after the loss fails (its connection was
    // closed under it: a write is never retried blind), and a later one finds A by itself.
    replicated(&a, &b, &key).await;
    b.kill();
    command(&a, &["REPLICAOF", "NO", "ONE"]).await;
    sentinel.monitor(NAME, a.port).await;
    let cart = touched(&store, &issued.credential, "the store to find A").await;
    assert_eq!(cart.session.cart.get("apple"), Some(&2), "the add survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_while_the_node_held_is_a_replica() {
    let (a, b, _sentinel, store) = switchover(Duration::from_millis(1000)).await;
    store.check().await.expect("A is the primary");
    // A is demoted while Sentinel still names it: PING would pass, the check must not.
    let b_port = b.port.to_string();
    command(&a, &["REPLICAOF", "127.0.0.1", &b_port]).await;
    let err = store
        .check()
        .await
        .expect_err("a replica is not a writable primary");
    assert!(err.to_string().contains("primary"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_is_left_for_the_one_sentinel_names_next() {
    let (a, b, sentinel, store) = switchover(Duration::from_millis(300)).await;
    let issued = store.create("ann", None).await.expect("login on A");
    let key = store.key(&issued.credential).expect("a key");
    replicated(&b, &a, &key).await;

    // A freezes (SIGSTOP): its connection stays open and silent. B is promoted and named.
    a.pause();
    command(&b, &["REPLICAOF", "NO", "ONE"]).await;
    sentinel.monitor(NAME, b.port).await;
    let first = store.apply(&issued.credential, Change::Touch).await;
    assert!(
        first.is_err(),
        "the call on the frozen primary is bounded and fails"
    );
    let applied = touched(&store, &issued.credential, "the store to leave A for B").await;
    assert_eq!(applied.session.username, "ann");
    a.resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_slower_than_a_call_still_finds_the_primary() {
    // The first "Sentinel" accepts connections and never answers: asking it costs the client's
    // response timeout, longer than a call here may wait. The lookup must finish anyway.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("address");
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let a = RedisServer::start().await;
    let sentinel = SentinelServer::start(NAME, a.port, 60_000).await;
    let store = redis_store(
        Topology::Sentinel {
            sentinels: vec![
                silent_addr.to_string(),
                format!("127.0.0.1:{}", sentinel.port),
            ],
            master: NAME.into(),
        },
        Duration::from_millis(200),
    );
    eventually(
        "a login through the slow lookup",
        Duration::from_secs(15),
        || async { store.create("ann", None).await.ok() },
    )
    .await;
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_sentinel_no_longer_names_is_left_after_a_health_check() {
    // Two primaries at once, as after two Sentinels promoted two replicas in a row: A, which the
    // store holds, and B, which Sentinel names now. A answers every write; only Sentinel knows.
    let (a, b, sentinel, store) = switchover(Duration::from_millis(1000)).await;
    store
        .check()
        .await
        .expect("A is the primary Sentinel names");
    sentinel.monitor(NAME, b.port).await;
    let key = eventually(
        "a new session to land on B",
        Duration::from_secs(10),
        || async {
            // The proxy's health checks come every 250 ms; here the test makes them.
            let _ = store.check().await;
            let issued = store.create("bob", None).await.ok()?;
            let key = store.key(&issued.credential)?;
            let mut on_b = b.connection().await;
            let n: u32 = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut on_b)
                .await
                .ok()?;
            (n == 1).then_some(key)
        },
    )
    .await;
    let mut on_a = a.connection().await;
    let n: u32 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut on_a)
        .await
        .expect("EXISTS on A");
    assert_eq!(n, 0, "the session went to B only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_rooms_follow_the_primary_sentinel_names() {
    let a = RedisServer::start().await;
    let b = RedisServer::start().await;
    let sentinel = SentinelServer::start(NAME, a.port, 60_000).await;
    let topology = Topology::Sentinel {
        sentinels: vec![format!("127.0.0.1:{}", sentinel.port)],
        master: NAME.into(),
    };
    let rooms =
        |_| BrokerRooms::new(&topology, "chat-test:", Duration::from_millis(1000)).expect("rooms");
    let (one, two) = (rooms(1), rooms(2));
    let mut live = two.join("lobby").await.expect("join on two").live;
    heard_across(&one, "lobby", &mut live, "before").await;

    // A dies with B copying it; B is promoted and named. Both the calls and the subscription
    // find B by asking Sentinel again.
    let a_port = a.port.to_string();
    command(&b, &["REPLICAOF", "127.0.0.1", &a_port]).await;
    a.kill();
    command(&b, &["REPLICAOF", "NO", "ONE"]).await;
    sentinel.monitor(NAME, b.port).await;
    heard_across(&one, "lobby", &mut live, "after the failover").await;
    let history = two.join("lobby").await.expect("join on B").history;
    assert!(
        history.iter().any(|m| m.starts_with("after the failover")),
        "the history is on B: {history:?}"
    );
}
