//! Health probes and the proxy's admin API, each bounded in time.
//!
//! Admin requests carry the lab's token when it has one, and are what the proxy's admin guard
//! wants from a client that is no web page: `Host: 127.0.0.1:PORT`, no `Origin`, JSON bodies and
//! `Content-Type: application/json` on every change.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use statelab_formats::{StatusView, Strategy};

use crate::labdir::AdminToken;
use crate::model::{Part, ADMIN_READY_PATH};
use crate::say;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between polls in [`wait_until`].
const POLL_EVERY: Duration = Duration::from_millis(200);

/// An HTTP client for probes (plain HTTP on loopback; no connection reuse, so a restarted part is
/// seen as it is now), with the proxy's admin token when it wants one.
#[derive(Debug, Clone)]
pub struct Probe {
    http: reqwest::Client,
    token: Option<AdminToken>,
}

impl Default for Probe {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Probe {
    pub fn new(token: Option<AdminToken>) -> Probe {
        let http = reqwest::Client::builder()
            .timeout(PROBE_TIMEOUT)
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .unwrap_or_default();
        Probe { http, token }
    }

    /// A request to the admin API on 127.0.0.1:`admin_port`, with the token.
    fn admin(
        &self,
        method: reqwest::Method,
        admin_port: u16,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method, format!("http://127.0.0.1:{admin_port}{path}"));
        match &self.token {
            Some(t) => req.bearer_auth(t.as_str()),
            None => req,
        }
    }

    /// The proxy's admin listener answers `GET /admin/ready` (which needs no token).
    pub async fn proxy_ready(&self, admin_port: u16) -> bool {
        self.http_ok(admin_port, ADMIN_READY_PATH).await
    }

    /// The status code of `GET url`, or `None` when nothing answers in time.
    pub async fn http_code(&self, url: &str) -> Option<u16> {
        let resp = self.http.get(url).send().await.ok()?;
        Some(resp.status().as_u16())
    }

    /// `GET http://127.0.0.1:PORT/PATH` answers 200.
    pub async fn http_ok(&self, port: u16, path: &str) -> bool {
        self.http_code(&format!("http://127.0.0.1:{port}{path}"))
            .await
            .is_some_and(|c| c == 200)
    }

    /// The proxy's `GET /admin/status`, or `None` when it does not answer with one.
    pub async fn admin_status(&self, admin_port: u16) -> Option<StatusView> {
        let resp = self
            .admin(reqwest::Method::GET, admin_port, "/admin/status")
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.bytes().await.ok()?;
        serde_json::from_slice(&body).ok()
    }

    /// Switches a pool's strategy through `PUT /admin/pools/{pool}/strategy`.
    pub async fn set_strategy(
        &self,
        admin_port: u16,
        pool: &str,
        strategy: Strategy,
    ) -> anyhow::Result<()> {
        let path = format!("/admin/pools/{pool}/strategy");
        let resp = self
            .admin(reqwest::Method::PUT, admin_port, &path)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "strategy": strategy.as_str() }).to_string())
            .send()
            .await
            .with_context(|| {
                format!("the proxy's admin API does not answer on port {admin_port}")
            })?;
        if !resp.status().is_success() {
            let code = resp.status();
            let body = resp.text().await.unwrap_or_default();
            anyhow::bail!(
                "could not set {pool} to {strategy}: the admin API answered {code} {body}"
            );
        }
        Ok(())
    }

    /// Registers a replica with the proxy (`POST /admin/pools/{pool}/replicas`).
    pub async fn add_replica(
        &self,
        admin_port: u16,
        pool: &str,
        name: &str,
        addr: &str,
    ) -> anyhow::Result<()> {
        let path = format!("/admin/pools/{pool}/replicas");
        let body = serde_json::json!({ "name": name, "addr": addr }).to_string();
        let resp = self
            .admin(reqwest::Method::POST, admin_port, &path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| {
                format!("the proxy's admin API does not answer on port {admin_port}")
            })?;
        if resp.status().as_u16() != 201 {
            let code = resp.status();
            let text = resp.text().await.unwrap_or_default();
            anyhow::bail!("the proxy refused {name} at {addr}: {code} {text}");
        }
        Ok(())
    }

    /// Takes a replica out of the proxy (`DELETE /admin/replicas/{name}`), after draining it for
    /// at most `drain`; returns how it went (`immediate`, `idle` or `limit`).
    pub async fn remove_replica(
        &self,
        admin_port: u16,
        name: &str,
        drain: Option<Duration>,
    ) -> anyhow::Result<String> {
        let query = drain.map_or(String::new(), |d| format!("?drain={}", d.as_secs()));
        let path = format!("/admin/replicas/{name}{query}");
        let resp = self
            .admin(reqwest::Method::DELETE, admin_port, &path)
            .timeout(drain.unwrap_or_default() + PROBE_TIMEOUT * 5)
            .send()
            .await
            .with_context(|| {
                format!("the proxy's admin API does not answer on port {admin_port}")
            })?;
        let code = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !code.is_success() {
            anyhow::bail!("the proxy did not remove {name}: {code} {text}");
        }
        let how = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["removed"].as_str().map(str::to_string))
            .unwrap_or_else(|| "removed".to_string());
        Ok(how)
    }

    /// Every replica named is healthy and not ejected in the proxy's view.
    pub async fn proxy_serves_all(&self, admin_port: u16, names: &[String]) -> bool {
        let Some(status) = self.admin_status(admin_port).await else {
            return false;
        };
        names
            .iter()
            .all(|n| status.replica(n).is_some_and(|r| r.serving()))
    }

    /// After a replica is started again: waits (bounded) until the proxy routes new clients to it,
    /// so the next command sees the pool whole. Nothing to wait for when the proxy is not up.
    pub async fn wait_routed(
        &self,
        admin_port: u16,
        part: Part,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let Part::Replica(r) = part else {
            return Ok(());
        };
        if self.admin_status(admin_port).await.is_none() {
            say(format!(
                "the proxy does not answer; not waiting for it to route to {r}"
            ));
            return Ok(());
        }
        let name = [r.to_string()];
        wait_until(&format!("the proxy to route to {r} again"), limit, || {
            self.proxy_serves_all(admin_port, &name)
        })
        .await?;
        say(format!("the proxy routes to {r} again"));
        Ok(())
    }
}

/// Something accepts connections on 127.0.0.1:PORT.
pub async fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    matches!(
        timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// The proxy's view, one line a pool, as `status` prints it.
pub fn admin_summary(admin_port: u16, status: Option<&StatusView>) -> String {
    let mut out = format!("\nproxy admin (http://127.0.0.1:{admin_port}/admin/status):\n");
    match status {
        None => out.push_str("  (not answering)\n"),
        Some(status) => {
            for p in &status.pools {
                let marks: Vec<String> = p
                    .replicas
                    .iter()
                    .map(|r| {
                        let mut state = if r.healthy { "up" } else { "DOWN" }.to_string();
                        if r.draining {
                            state.push_str(",draining");
                        }
                        if r.ejected {
                            state.push_str(",ejected");
                        }
                        format!("{} {state} ({} req)", r.name, r.total_requests)
                    })
                    .collect();
                out.push_str(&format!(
                    "  {:<13} {:<12} {}\n",
                    p.name,
                    p.strategy.as_str(),
                    marks.join("  ")
                ));
            }
        }
    }
    out
}

/// Polls `check` until it holds or `limit` passes; the error names what was awaited.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {}s waiting for {what}", limit.as_secs());
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
