//! Health probes and the proxy's admin API, each bounded in time.
//!
//! Admin requests carry the lab's token when it has one, and are what the proxy's admin guard
//! wants from a client that is no web page: `Host: 127.0.0.1:PORT`, no `Origin`, JSON bodies and
//! `Content-Type: application/json` on every change.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use statelab_formats::lab::RoutingView;
use statelab_formats::{BalanceFactor, PoolRouting, Routed, StatusView, Strategy};

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

    /// The replica that answered `GET url` with 200 (its `x-replica` header).
    pub async fn answered_by(&self, url: &str) -> Option<String> {
        let resp = self.http.get(url).send().await.ok()?;
        if resp.status() != reqwest::StatusCode::OK {
            return None;
        }
        let name = resp.headers().get("x-replica")?.to_str().ok()?;
        Some(name.to_string())
    }

    /// `GET http://127.0.0.1:PORT/PATH` answers 200.
    pub async fn http_ok(&self, port: u16, path: &str) -> bool {
        self.http_code(&format!("http://127.0.0.1:{port}{path}"))
            .await
            .is_some_and(|c| c == 200)
    }

    /// `GET http://127.0.0.1:PORT/` gets an HTTP answer, whatever its status (an object store
    /// answers a request without credentials with an error of its own).
    pub async fn http_answers(&self, port: u16) -> bool {
        self.http_code(&format!("http://127.0.0.1:{port}/"))
            .await
            .is_some()
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

    /// Switches a pool's strategy through `PUT /admin/pools/{pool}/strategy`, leaving its balance
    /// factor as it is.
    pub async fn set_strategy(
        &self,
        admin_port: u16,
        pool: &str,
        strategy: Strategy,
    ) -> anyhow::Result<()> {
        let change = PoolRouting {
            strategy: Some(strategy),
            balance_factor: None,
        };
        self.set_routing(admin_port, pool, &change).await.map(drop)
    }

    /// Changes a pool's strategy, its balance factor or both in one
    /// `PUT /admin/pools/{pool}/strategy` (a `balance_factor` of `Some(None)` goes as `null`,
    /// which turns bounded loads off); returns the pool's routing as the proxy answers it.
    pub async fn set_routing(
        &self,
        admin_port: u16,
        pool: &str,
        change: &PoolRouting,
    ) -> anyhow::Result<Routed> {
        let path = format!("/admin/pools/{pool}/strategy");
        let body = serde_json::to_string(change).context("cannot write the routing change")?;
        let resp = self
            .admin(reqwest::Method::PUT, admin_port, &path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| {
                format!("the proxy's admin API does not answer on port {admin_port}")
            })?;
        let code = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !code.is_success() {
            anyhow::bail!(
                "could not set {pool} to {}: the admin API answered {code} {text}",
                describe(change)
            );
        }
        serde_json::from_str(&text).with_context(|| {
            format!(
                "the admin API set {pool}'s routing but answered what the lab cannot read: {text}"
            )
        })
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

    /// What a container lab's `up` waits for last: the proxy's admin API answers, and the proxy
    /// serves every replica named. Why not, when it does not within `limit` each.
    pub async fn wait_serving(
        &self,
        admin_port: u16,
        names: &[String],
        limit: Duration,
    ) -> Result<(), &'static str> {
        wait_until(
            &format!("the proxy's admin API on 127.0.0.1:{admin_port}"),
            limit,
            || self.proxy_ready(admin_port),
        )
        .await
        .map_err(|_| "the proxy did not become ready")?;
        wait_until(
            &format!(
                "{} replicas healthy in the proxy's admin status",
                names.len()
            ),
            limit,
            || self.proxy_serves_all(admin_port, names),
        )
        .await
        .map_err(|_| "the proxy does not see every replica healthy")
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

/// What `up` says once the lab serves: where the proxy and its admin API answer.
pub fn proxy_up_line(proxy_port: u16, admin_port: u16) -> String {
    format!(
        "proxy up: http://127.0.0.1:{proxy_port}/{{stateful,stateless,externalized}}/  admin: http://127.0.0.1:{admin_port}/admin/status"
    )
}

/// A pool's routing as the `strategy` listing prints it: `POOL STRATEGY`, then
/// ` balance-factor N` when bounded loads are on.
pub fn routing_line(view: &RoutingView) -> String {
    let mut line = format!("{} {}", view.name, view.strategy);
    if let Some(f) = view.balance_factor {
        line.push_str(&format!(" balance-factor {f}"));
    }
    line
}

/// A routing change's answer in words: `POOL: STRATEGY`, then `, balance factor N` (or `off`)
/// when the change named the factor.
pub fn routed_line(routed: &Routed, factor_given: bool) -> String {
    let mut line = format!("{}: {}", routed.pool, routed.strategy);
    if factor_given {
        line.push_str(&format!(
            ", balance factor {}",
            BalanceFactor::word(routed.balance_factor)
        ));
    }
    line
}

/// A routing change in words: `ip-hash`, `balance factor 125`, or both.
fn describe(change: &PoolRouting) -> String {
    let strategy = change.strategy.map(|s| s.to_string());
    let factor = change
        .balance_factor
        .map(|f| format!("balance factor {}", BalanceFactor::word(f)));
    let words: Vec<String> = strategy.into_iter().chain(factor).collect();
    words.join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;
    use statelab_formats::lab::Routings;

    #[test]
    fn routings_print_the_factor_after_the_first_two_words() {
        let mut view = RoutingView {
            name: "stateful".into(),
            strategy: Strategy::IpHash,
            balance_factor: None,
            bounded_moves: 0,
        };
        assert_eq!(routing_line(&view), "stateful ip-hash");
        view.balance_factor = BalanceFactor::new(125).ok();
        view.bounded_moves = 7;
        assert_eq!(routing_line(&view), "stateful ip-hash balance-factor 125");
        let json = serde_json::to_string(&Routings {
            pools: vec![view.clone()],
        })
        .expect("json");
        assert_eq!(
            json,
            r#"{"pools":[{"name":"stateful","strategy":"ip-hash","balance_factor":125,"bounded_moves":7}]}"#
        );
        view.balance_factor = None;
        let json = serde_json::to_string(&view).expect("json");
        assert!(json.contains(r#""balance_factor":null"#), "{json}");
    }

    #[test]
    fn the_admin_answer_to_a_change_reads_and_prints() {
        let routed: Routed = serde_json::from_str(
            r#"{"pool": "stateful", "strategy": "cookie", "balance_factor": null}"#,
        )
        .expect("the admin API's answer");
        assert_eq!(routed.balance_factor, None);
        assert_eq!(routed_line(&routed, false), "stateful: cookie");
        assert_eq!(
            routed_line(&routed, true),
            "stateful: cookie, balance factor off"
        );
        let routed: Routed = serde_json::from_str(
            r#"{"pool": "stateful", "strategy": "ip-hash", "balance_factor": 200}"#,
        )
        .expect("the admin API's answer");
        assert_eq!(
            routed_line(&routed, true),
            "stateful: ip-hash, balance factor 200"
        );
        let change = PoolRouting {
            strategy: Some(Strategy::IpHash),
            balance_factor: Some(None),
        };
        assert_eq!(describe(&change), "ip-hash, balance factor off");
    }
}
