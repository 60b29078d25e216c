//! Test harness: real backends in-process, the real `statelab-proxy` binary as a child process,
//! typed helpers for clients and the admin API, and bounded polling instead of sleeps. The
//! backend, the polling and the ports come from `statelab-test-support`.

pub mod raw;

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use statelab_test_support::{eventually, free_port, send_signal, Signal, TempDir};
use tokio::process::{Child, Command};

pub use statelab_test_support::Backend;

/// A pool as the test wants it configured.
pub struct PoolSpec<'a> {
    pub name: &'a str,
    pub strategy: &'a str,
    pub replicas: Vec<(&'a str, SocketAddr)>,
    pub trusted_proxies: Vec<&'a str>,
    /// `HOST:PORT` the pool follows instead of `replicas`.
    pub discover: Option<&'a str>,
}

impl<'a> PoolSpec<'a> {
    pub fn new(name: &'a str, strategy: &'a str, backends: &'a [Backend]) -> Self {
        Self {
            name,
            strategy,
            replicas: backends.iter().map(|b| (b.name.as_str(), b.addr)).collect(),
            trusted_proxies: Vec::new(),
            discover: None,
        }
    }

    /// A pool that follows `target` (`HOST:PORT`), resolved every 100 ms.
    pub fn discovering(name: &'a str, target: &'a str) -> Self {
        Self {
            name,
            strategy: "round-robin",
            replicas: Vec::new(),
            trusted_proxies: Vec::new(),
            discover: Some(target),
        }
    }
}

/// Starts `n` backends named `{pool}-1..n`.
pub async fn backends(pool: &str, n: usize) -> Vec<Backend> {
    let mut out = Vec::new();
    for i in 1..=n {
        let name = format!("{pool}-{i}");
        let backend = Backend::start(&name).await;
        out.push(backend.unwrap_or_else(|e| panic!("start backend {name}: {e}")));
    }
    out
}

/// A running proxy process, killed on drop (its config directory removed after it).
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub token: Option<String>,
    _config_dir: TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts the proxy binary with the given pools; `extra_server` lines go into `[server]`.
pub async fn spawn_proxy(pools: &[PoolSpec<'_>], extra_server: &str) -> Proxy {
    spawn_proxy_with(pools, extra_server, "").await
}

/// As [`spawn_proxy`], with `extra_retry` lines added to `[retry]`.
pub async fn spawn_proxy_with(
    pools: &[PoolSpec<'_>],
    extra_server: &str,
    extra_retry: &str,
) -> Proxy {
    // Ports are picked free just before start; a lost race only means another try.
    for _ in 0..3 {
        if let Some(p) = try_spawn(pools, extra_server, extra_retry).await {
            return p;
        }
    }
    panic!("the proxy did not come up in three tries");
}

async fn try_spawn(pools: &[PoolSpec<'_>], extra_server: &str, extra_retry: &str) -> Option<Proxy> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut text = format!(
        "[server]\nlisten = \"{addr}\"\nadmin_listen = \"{admin}\"\ngrace_period_seconds = 3\n\
         shutdown_timeout_seconds = 1\n{extra_server}\n\
         [health]\ninterval_ms = 50\ntimeout_ms = 300\nrise = 2\nfall = 2\n\
         [retry]\nmax_retries = 2\neject_ms = 1000\nconnect_timeout_ms = 500\n{extra_retry}\n"
    );
    for p in pools {
        text.push_str(&format!(
            "[[pool]]\nname = \"{}\"\nstrategy = \"{}\"\ntrusted_proxies = {:?}\n",
            p.name, p.strategy, p.trusted_proxies
        ));
        if let Some(target) = p.discover {
            text.push_str(&format!(
                "discover = \"{target}\"\ndiscover_interval_ms = 100\ndiscover_drain_seconds = 0\n"
            ));
        }
        text.push_str("[pool.replicas]\n");
        for (name, a) in &p.replicas {
            text.push_str(&format!("{name} = \"{a}\"\n"));
        }
    }
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("admin_token = "))
        .map(|t| t.trim_matches('"').to_string());
    let config_dir = TempDir::new("proxy-test");
    let config_path = config_dir.join("proxy.toml");
    std::fs::write(&config_path, text).expect("write the proxy's config file");
    let child = Command::new(env!("CARGO_BIN_EXE_statelab-proxy"))
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "error")
        // The token is the config file's alone, whatever the caller's environment says.
        .env_remove("STATELAB_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn statelab-proxy");
    let mut proxy = Proxy {
        child,
        addr,
        admin,
        token,
        _config_dir: config_dir,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if proxy
            .child
            .try_wait()
            .expect("poll the proxy process")
            .is_some()
        {
            return None;
        }
        let admin_up = proxy
            .admin_request(&client, reqwest::Method::GET, "/admin/status", None)
            .await
            .is_some_and(|(s, _)| s == 200);
        let proxy_up = client
            .get(format!("http://{addr}/__ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 404);
        if admin_up && proxy_up {
            return Some(proxy);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a test needs from one proxied response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub replica: Option<String>,
    pub set_cookie: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    /// `name=value` of the affinity cookie set by this response, if any.
    pub fn affinity(&self) -> Option<String> {
        self.set_cookie
            .as_deref()
            .and_then(|c| c.split(';').next())
            .map(str::to_string)
    }
}

/// A client with its own connection pool, optionally bound to a source address.
pub fn client_from(source: Option<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build an HTTP client")
}

impl Proxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Of `n` GETs of `path` from `client`, how many `replica` answered.
    pub async fn count_served(
        &self,
        client: &reqwest::Client,
        path: &str,
        replica: &str,
        n: usize,
    ) -> usize {
        let mut served = 0;
        for _ in 0..n {
            if self.get(client, path, None).await.replica.as_deref() == Some(replica) {
                served += 1;
            }
        }
        served
    }

    pub async fn get(&self, client: &reqwest::Client, path: &str, cookie: Option<&str>) -> Reply {
        self.try_get(client, path, cookie, &[])
            .await
            .unwrap_or_else(|e| panic!("GET {path} through the proxy: {e}"))
    }

    pub async fn try_get(
        &self,
        client: &reqwest::Client,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
    ) -> reqwest::Result<Reply> {
        let mut req = client.get(self.url(path));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let replica = text("x-replica");
        let set_cookie = text("set-cookie");
        let body = resp.text().await?;
        Ok(Reply {
            status,
            replica,
            set_cookie,
            headers,
            body,
        })
    }

    /// Sends an admin request; `None` when the admin listener is not answering.
    pub async fn admin_request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> Option<(u16, String)> {
        let mut req = client.request(method.clone(), format!("http://{}{path}", self.admin));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        // As curl and the lab send them: no Origin, JSON for every state change.
        if !matches!(method, reqwest::Method::GET | reqwest::Method::HEAD) {
            req = req.header("content-type", "application/json");
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        self.admin_request(&reqwest::Client::new(), method.clone(), path, body)
            .await
            .unwrap_or_else(|| panic!("admin {method} {path}: no answer"))
    }

    pub async fn status(&self) -> Value {
        let (code, body) = self
            .admin(reqwest::Method::GET, "/admin/status", None)
            .await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/admin/status is not JSON ({e}): {body}"))
    }

    /// A replica's entry in `/admin/status`.
    pub async fn replica(&self, name: &str) -> Value {
        let status = self.status().await;
        status["pools"]
            .as_array()
            .expect("/admin/status has a pools array")
            .iter()
            .flat_map(|p| {
                p["replicas"]
                    .as_array()
                    .expect("each pool has a replicas array")
            })
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no replica {name} in {status}"))
    }

    pub async fn wait_health(&self, name: &str, healthy: bool) {
        eventually(
            &format!("{name} healthy={healthy}"),
            Duration::from_secs(10),
            || async { (self.replica(name).await["healthy"] == healthy).then_some(()) },
        )
        .await;
    }

    /// Sends SIGTERM (what Docker sends on stop).
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("the proxy has not been reaped yet");
        send_signal(pid, Signal::SIGTERM);
    }
}
