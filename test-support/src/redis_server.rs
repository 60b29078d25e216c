//! A real `redis-server`, owned by one test.

use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::process::{free_port, send_signal, Signal};

/// How long a starting `redis-server` has to answer before the start counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` process owned by a test, without persistence, on a port of its own; killed
/// on drop.
///
/// The services' tests need a real Redis that they can take away and give back: killed like a
/// crash ([`kill`](Self::kill)), brought back on the same port with nothing kept
/// ([`restart`](Self::restart)), frozen so that it accepts connections and never answers
/// ([`pause`](Self::pause)/[`resume`](Self::resume)), or not running yet when the service starts
/// ([`unstarted`](Self::unstarted)).
#[derive(Debug)]
pub struct RedisServer {
    /// The loopback port this server listens on (or will, once started).
    pub port: u16,
    /// The running process; `None` while killed or not started. Behind a mutex so that a test can
    /// kill and restart a server that a running service shares by reference.
    child: Mutex<Option<Child>>,
}

impl RedisServer {
    /// Starts Redis on a free port, trying a new port when another process takes the first one
    /// before Redis binds it.
    ///
    /// # Panics
    /// When `redis-server` cannot be run, or did not come up on any of five ports.
    pub async fn start() -> Self {
        for _ in 0..5 {
            let server = RedisServer::unstarted();
            if server.restart().await {
                return server;
            }
        }
        panic!("redis-server did not start on any of five free ports");
    }

    /// A server that owns a free port but is not running yet: "Redis is down when the service
    /// starts". [`restart`](Self::restart) starts it.
    pub fn unstarted() -> Self {
        RedisServer {
            port: free_port(),
            child: Mutex::new(None),
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process slot. A poisoned lock only means another thread panicked while holding it;
    /// the slot itself is still accurate, and `Drop` must still be able to kill the process.
    fn slot(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit; nothing when it is not
    /// running.
    pub fn kill(&self) {
        let taken = self.slot().take();
        if let Some(mut child) = taken {
            // An already exited child is fine: the point is that it is gone.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the server on its port with nothing kept from before; true once this very
    /// process answers, false if it exited or did not answer within ten seconds (another process
    /// took the port).
    ///
    /// # Panics
    /// When `redis-server` cannot be run at all (not installed).
    pub async fn restart(&self) -> bool {
        self.kill();
        let spawned = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = spawned.unwrap_or_else(|e| {
            panic!(
                "cannot run redis-server ({e}); install it (Debian: apt-get install redis-server) \
                 or run scripts/test, which does"
            )
        });
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            let exited = child.try_wait().expect("polling the redis-server process");
            if exited.is_some() {
                return false;
            }
            if self.answers_as(child.id()).await {
                *self.slot() = Some(child);
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Whether the server on our port is the process `pid`, not another test's Redis that won a
    /// race for the port. Not answering (yet) is false: the caller polls.
    async fn answers_as(&self, pid: u32) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut c) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        let Ok(info) = redis::cmd("INFO")
            .arg("server")
            .query_async::<String>(&mut c)
            .await
        else {
            return false;
        };
        let expected = format!("process_id:{pid}");
        info.lines().any(|l| l.trim() == expected)
    }

    /// The running server's process id.
    ///
    /// # Panics
    /// When the server is not running.
    fn pid(&self) -> u32 {
        self.slot()
            .as_ref()
            .map(Child::id)
            .expect("redis-server is running")
    }

    /// Freezes the server (SIGSTOP): it keeps accepting connections and answers nothing, the
    /// case only a client-side timeout catches.
    pub fn pause(&self) {
        send_signal(self.pid(), Signal::SIGSTOP);
    }

    /// Lets a [`pause`](Self::pause)d server run again (SIGCONT).
    pub fn resume(&self) {
        send_signal(self.pid(), Signal::SIGCONT);
    }

    /// A plain connection, for tests that inspect what the service wrote.
    ///
    /// # Panics
    /// When the server does not accept the connection.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("a redis:// URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connecting to the test's redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real Redis Sentinel (`redis-server CONF --sentinel`) on a port of its own, monitoring one
/// primary under a name; killed on drop. Its configuration lives in a temporary directory,
/// since a Sentinel rewrites the file as it learns.
#[derive(Debug)]
pub struct SentinelServer {
    pub port: u16,
    child: Child,
    _dir: crate::TempDir,
}

impl SentinelServer {
    /// Starts a Sentinel that monitors `127.0.0.1:primary_port` as `name`, with a quorum of one
    /// and the given `down-after-milliseconds`.
    ///
    /// # Panics
    /// When the Sentinel cannot be run or does not answer within ten seconds.
    pub async fn start(name: &str, primary_port: u16, down_after_ms: u64) -> Self {
        let dir = crate::TempDir::new("sentinel");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {name} 127.0.0.1 {primary_port} 1\n\
                 sentinel down-after-milliseconds {name} {down_after_ms}\n\
                 sentinel failover-timeout {name} 2000\n",
                dir.path().display()
            ),
        )
        .expect("writing the Sentinel's configuration");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("running redis-server --sentinel");
        let sentinel = SentinelServer {
            port,
            child,
            _dir: dir,
        };
        crate::eventually("the Sentinel to answer", START_TIMEOUT, || async {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
            let mut c = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING").query_async::<String>(&mut c).await.ok()
        })
        .await;
        sentinel
    }

    /// Points the Sentinel at another primary, as an operator would after a manual switchover.
    pub async fn monitor(&self, name: &str, primary_port: u16) {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .expect("a redis:// URL");
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("connecting to the Sentinel");
        let _: redis::RedisResult<()> = redis::cmd("SENTINEL")
            .arg("REMOVE")
            .arg(name)
            .query_async(&mut c)
            .await;
        redis::cmd("SENTINEL")
            .arg("MONITOR")
            .arg(name)
            .arg("127.0.0.1")
            .arg(primary_port)
            .arg(1)
            .query_async::<()>(&mut c)
            .await
            .expect("SENTINEL MONITOR");
    }
}

impl Drop for SentinelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Redis Cluster of three primaries (no replicas) on free ports, created with
/// `redis-cli --cluster create`; every node killed on drop. Each node's bus port (`cluster-port`)
/// is a free port too, so none falls in the ephemeral range as the port + 10000 could.
#[derive(Debug)]
pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Child>,
    _dir: crate::TempDir,
}

impl RedisCluster {
    /// Starts three nodes and creates the cluster; returns once every node reports
    /// `cluster_state:ok`.
    ///
    /// # Panics
    /// When a node does not start or the cluster does not form within ten seconds each.
    pub async fn start() -> Self {
        let dir = crate::TempDir::new("cluster");
        let mut cluster = RedisCluster {
            ports: Vec::new(),
            children: Vec::new(),
            _dir: dir,
        };
        for k in 0..3 {
            let port = free_port();
            let bus = free_port();
            let node_dir = cluster._dir.path().join(format!("node-{k}"));
            std::fs::create_dir_all(&node_dir).expect("a node's directory");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("running redis-server --cluster-enabled yes");
            cluster.children.push(child);
            cluster.ports.push(port);
        }
        for port in cluster.ports.clone() {
            crate::eventually("a cluster node to answer", START_TIMEOUT, || async move {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
                let mut c = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING").query_async::<String>(&mut c).await.ok()
            })
            .await;
        }
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("running redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        for port in cluster.ports.clone() {
            crate::eventually("the cluster to be ok", START_TIMEOUT, || async move {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
                let mut c = client.get_multiplexed_async_connection().await.ok()?;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut c)
                    .await
                    .ok()?;
                info.lines()
                    .any(|l| l.trim() == "cluster_state:ok")
                    .then_some(())
            })
            .await;
        }
        cluster
    }

    /// The nodes as `host:port`, as `--redis-cluster` takes them.
    pub fn nodes(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// Keys held by each node (`DBSIZE`).
    ///
    /// # Panics
    /// When a node does not answer.
    pub async fn keys_per_node(&self) -> Vec<u64> {
        let mut counts = Vec::new();
        for port in &self.ports {
            let client =
                redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("a redis:// URL");
            let mut c = client
                .get_multiplexed_async_connection()
                .await
                .expect("connecting to a cluster node");
            counts.push(
                redis::cmd("DBSIZE")
                    .query_async(&mut c)
                    .await
                    .expect("DBSIZE"),
            );
        }
        counts
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
