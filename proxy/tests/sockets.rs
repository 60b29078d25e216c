//! Open sockets through the real proxy binary: upgraded connections to real backends, which answer
//! `101` at once and then echo. A socket is counted on its replica, stays there across a strategy
//! switch, may be quiet for longer than a request may, is hung up when its replica is removed
//! (after the drain's limit, when one is asked), and a replica that answers the upgrade as fast as
//! loopback allows never has its tunnel torn down.

// Each test binary compiles the harness and uses part of it.
#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use statelab_test_support::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use support::{backends, spawn_proxy, spawn_proxy_with, Backend, PoolSpec, Proxy};

/// How long an echo may take, or a hung-up socket to show its end.
const WITHIN: Duration = Duration::from_secs(5);

/// A client's upgraded connection through the proxy.
struct Socket {
    stream: TcpStream,
    replica: String,
}

impl Socket {
    /// Opens `/stateless/ws` (an echo) as an upgrade and reads the `101`.
    async fn open(proxy: SocketAddr) -> Socket {
        Self::open_at(proxy, "/stateless/ws").await
    }

    /// Opens `path` as an upgrade and reads the `101`.
    async fn open_at(proxy: SocketAddr, path: &str) -> Socket {
        let mut stream = TcpStream::connect(proxy).await.expect("connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: lab\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the upgrade");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = timeout(WITHIN, stream.read(&mut byte))
                .await
                .expect("the answer to an upgrade in time")
                .expect("read");
            assert_eq!(
                n, 1,
                "the connection ended in the answer's header: {head:?}"
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let replica = head
            .lines()
            .find_map(|l| l.strip_prefix("x-replica: "))
            .unwrap_or_else(|| panic!("no x-replica in {head}"))
            .to_string();
        Socket { stream, replica }
    }

    /// Sends `text` and reads it back, or says why not.
    async fn echo(&mut self, text: &str) -> Result<(), String> {
        self.stream
            .write_all(text.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut back = vec![0u8; text.len()];
        match timeout(WITHIN, self.stream.read_exact(&mut back)).await {
            Err(_) => Err("no echo in time".into()),
            Ok(Err(e)) => Err(format!("read: {e}")),
            Ok(Ok(_)) if back == text.as_bytes() => Ok(()),
            Ok(Ok(_)) => Err(format!("echoed {:?}", String::from_utf8_lossy(&back))),
        }
    }

    /// Waits for the proxy to end the connection.
    async fn ended(&mut self) {
        let mut sink = [0u8; 64];
        match timeout(WITHIN, self.stream.read(&mut sink)).await {
            Ok(Ok(0) | Err(_)) => {}
            Ok(Ok(n)) => panic!("{n} unexpected bytes on a socket that should end"),
            Err(_) => panic!("the socket was not ended in time"),
        }
    }
}

async fn wait_sockets(proxy: &Proxy, name: &str, want: u64) {
    eventually(
        &format!("{name} with {want} open sockets"),
        WITHIN,
        || async { (proxy.replica(name).await["sockets"] == want).then_some(()) },
    )
    .await;
}

/// Waits for every tunnel to `backend` to end.
async fn tunnels_ended(backend: &Backend) {
    eventually(
        &format!("{}'s tunnels to end", backend.name),
        WITHIN,
        || async { (backend.sockets() == 0).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_is_counted_on_its_replica_and_stays_there_across_a_strategy_switch() {
    let b = backends("stateless", 3).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;

    let mut socket = Socket::open(proxy.addr).await;
    socket.echo("hello").await.expect("an open socket echoes");
    let name = socket.replica.clone();
    wait_sockets(&proxy, &name, 1).await;
    let replica = proxy.replica(&name).await;
    assert!(replica["in_flight"].as_i64() >= Some(1), "{replica}");
    let backend = b.iter().find(|x| x.name == name).expect("a backend");
    assert_eq!(backend.sockets(), 1);
    // The dashboard's data shows it, now and in the replica's per-second series.
    eventually(
        "the dashboard's series to show the socket",
        WITHIN,
        || async {
            let (code, body) = proxy
                .admin(Method::GET, "/admin/dashboard.json", None)
                .await;
            assert_eq!(code, 200, "{body}");
            let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            let row = view["pools"][0]["replicas"]
                .as_array()
                .expect("replicas")
                .iter()
                .find(|r| r["name"] == name.as_str())
                .cloned()
                .expect("the replica's row");
            let series = row["series"]["sockets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            (row["sockets"] == 1 && series.last() == Some(&serde_json::json!(1))).then_some(())
        },
    )
    .await;

    let (code, body) = proxy
        .admin(
            Method::PUT,
            "/admin/pools/stateless/strategy",
            Some(r#"{"strategy":"ip-hash"}"#),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    for k in 0..5 {
        socket
            .echo(&format!("after the switch {k}"))
            .await
            .expect("the socket outlives the strategy it was placed by");
    }
    assert_eq!(backend.sockets(), 1, "still the same tunnel");

    drop(socket);
    wait_sockets(&proxy, &name, 0).await;
    tunnels_ended(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_replica_hangs_its_sockets_up_after_the_drain_limit() {
    let b = backends("stateless", 3).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;

    // Round-robin places two sockets in a row on two replicas.
    let mut kept = Socket::open(proxy.addr).await;
    let mut dropped = Socket::open(proxy.addr).await;
    assert_ne!(kept.replica, dropped.replica);
    wait_sockets(&proxy, &kept.replica, 1).await;
    wait_sockets(&proxy, &dropped.replica, 1).await;

    // Removed at once: its socket ends at once.
    let (code, body) = proxy
        .admin(
            Method::DELETE,
            &format!("/admin/replicas/{}", dropped.replica),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""removed":"immediate""#), "{body}");
    dropped.ended().await;

    // Drained: the socket counts as in flight, so the drain waits its whole limit while the
    // socket keeps working, then hangs it up. (A replica with nothing in flight would go as idle
    // 2 s after it was last chosen, before the limit.)
    let path = format!("/admin/replicas/{}?drain=4", kept.replica);
    let removal = proxy.admin(Method::DELETE, &path, None);
    let meanwhile = async {
        eventually("the replica draining", WITHIN, || async {
            (proxy.replica(&kept.replica).await["state"] == "draining").then_some(())
        })
        .await;
        kept.echo("while draining")
            .await
            .expect("a draining replica's socket still works");
    };
    let ((code, body), ()) = tokio::join!(removal, meanwhile);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""removed":"limit""#), "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(answer["waited_ms"].as_u64() >= Some(4000), "{body}");
    kept.ended().await;
    for name in [&kept.replica, &dropped.replica] {
        tunnels_ended(b.iter().find(|x| &x.name == name).expect("a backend")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_socket_may_be_quiet_longer_than_a_request_but_not_for_ever() {
    let b = backends("stateless", 1).await;
    let proxy = spawn_proxy_with(
        &[PoolSpec::new("stateless", "round-robin", &b)],
        "socket_idle_timeout_ms = 2000",
        "read_timeout_ms = 200",
    )
    .await;

    let mut socket = Socket::open(proxy.addr).await;
    // Quiet for several times the replica's read timeout: the idle time is what is tested.
    tokio::time::sleep(Duration::from_millis(800)).await;
    // The proxy's idle timers start when it reads this message, after this instant.
    let quiet = std::time::Instant::now();
    socket
        .echo("still here")
        .await
        .expect("a socket quiet past the request read timeout stays open");
    socket.ended().await;
    let after = quiet.elapsed();
    assert!(
        after >= Duration::from_millis(1900),
        "closed after {after:?}, before the socket idle timeout"
    );
    wait_sockets(&proxy, "stateless-1", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_whose_client_reads_nothing_is_hung_up_too() {
    let b = backends("stateless", 2).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    // The replica sends without end and the client reads nothing: once the buffers between them
    // are full, the proxy's side of the tunnel waits on a write to the client.
    let mut socket = Socket::open_at(proxy.addr, "/stateless/flood").await;
    let backend = b
        .iter()
        .find(|x| x.name == socket.replica)
        .expect("a backend");
    let mut last = 0;
    eventually("the buffers to the client to fill", WITHIN, || {
        let (before, now) = (last, backend.flooded());
        last = now;
        async move { (now > 0 && now == before).then_some(()) }
    })
    .await;

    let (code, body) = proxy
        .admin(
            Method::DELETE,
            &format!("/admin/replicas/{}", socket.replica),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    tunnels_ended(backend).await;
    // What was buffered on the way still arrives, then the end.
    let mut sink = vec![0u8; 1 << 20];
    let drained = timeout(WITHIN, async {
        while matches!(socket.stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(drained.is_ok(), "the client's connection ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_answered_at_once_keep_their_tunnels() {
    // A replica that answers `101` before the proxy has finished with the upgrade request is the
    // ordering that can tear a tunnel down right after its `101` inside pingora 0.9.1's proxy
    // loop; every one of these sockets must carry its first message.
    let b = backends("stateless", 2).await;
    let proxy = spawn_proxy(&[PoolSpec::new("stateless", "round-robin", &b)], "").await;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let proxy = proxy.addr;
        tasks.spawn(async move {
            let mut failures = Vec::new();
            for k in 0..40 {
                let mut socket = Socket::open(proxy).await;
                if let Err(why) = socket.echo(&format!("first frame {worker}/{k}")).await {
                    failures.push(format!("{worker}/{k} on {}: {why}", socket.replica));
                }
            }
            failures
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        failures.extend(done.expect("a worker"));
    }
    assert!(
        failures.is_empty(),
        "{} of 320 tunnels ended after their 101: {failures:?}",
        failures.len()
    );
}
