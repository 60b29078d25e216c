//! The Redis store against a real Redis Cluster: sessions spread over the primaries by key, every
//! operation in one slot (a login that replaces a session included, whose two ids hash to two
//! slots), the figures summed over the primaries, and health from `CLUSTER INFO`.

use std::time::Duration;

use statelab_services::chat::BrokerRooms;
use statelab_services::session::Change;
use statelab_services::store::{RedisStore, Topology};
use statelab_services::SessionStore;
use statelab_test_support::{eventually, RedisCluster};

use crate::helpers::{heard_across, redis_store};

fn store_on(cluster: &RedisCluster) -> RedisStore {
    redis_store(
        Topology::Cluster {
            nodes: cluster.nodes(),
        },
        Duration::from_millis(1000),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_the_primaries_and_every_operation_stays_in_one_slot() {
    let cluster = RedisCluster::start().await;
    let store = store_on(&cluster);
    store.check().await.expect("the cluster is ok");

    let mut credentials = Vec::new();
    for k in 0..30 {
        let issued = store
            .create(&format!("user-{k}"), None)
            .await
            .expect("login");
        let add = Change::AddItem {
            sku: "apple",
            qty: 2,
        };
        let applied = store
            .apply(&issued.credential, add)
            .await
            .expect("add")
            .expect("the session exists");
        assert_eq!(applied.session.cart.get("apple"), Some(&2));
        credentials.push(issued.credential);
    }
    let per_node = cluster.keys_per_node().await;
    assert_eq!(per_node.iter().sum::<u64>(), 30, "{per_node:?}");
    assert!(
        per_node.iter().all(|n| *n > 0),
        "30 random ids land on every primary: {per_node:?}"
    );
    let figures = store.figures().await.expect("figures");
    assert_eq!(
        figures.store_sessions,
        Some(30),
        "DBSIZE summed over the primaries"
    );

    // A login replacing a session: two ids, two slots. The new one answers, the old one goes.
    let old = credentials.remove(0);
    let renewed = store.create("user-0", Some(&old)).await.expect("re-login");
    assert!(store
        .apply(&renewed.credential, Change::Touch)
        .await
        .expect("touch")
        .is_some());
    eventually(
        "the replaced session to be gone",
        Duration::from_secs(5),
        || async {
            store
                .apply(&old, Change::Touch)
                .await
                .ok()
                .and_then(|s| s.is_none().then_some(()))
        },
    )
    .await;

    store.destroy(&renewed.credential).await.expect("logout");
    assert!(store
        .apply(&renewed.credential, Change::Touch)
        .await
        .expect("touch")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_rooms_on_every_slot_reach_a_subscriber_on_one_node() {
    let cluster = RedisCluster::start().await;
    let topology = Topology::Cluster {
        nodes: cluster.nodes(),
    };
    let rooms =
        |_| BrokerRooms::new(&topology, "chat-test:", Duration::from_millis(1000)).expect("rooms");
    let (one, two) = (rooms(1), rooms(2));
    // Six rooms' history keys fall in slots of more than one primary; each message is published
    // on its key's node and must reach the subscription, which is on one node.
    for room in ["r0", "r1", "r2", "r3", "r4", "r5"] {
        let mut live = two.join(room).await.expect("join on two").live;
        heard_across(&one, room, &mut live, room).await;
        let history = one.join(room).await.expect("join on one").history;
        assert!(!history.is_empty(), "{room}: the history is kept");
    }
    let keys: Vec<u64> = cluster.keys_per_node().await;
    assert!(
        keys.iter().filter(|&&n| n > 0).count() >= 2,
        "the rooms' histories are on more than one node: {keys:?}"
    );
}
