//! The admin API and metrics endpoint, on their own listener (loopback by default).
//!
//! | method | path | |
//! |---|---|---|
//! | GET  | `/admin/ready` | `{"ready": true}`; no token needed, no data (the compose healthcheck) |
//! | GET  | `/admin/status` | pools, strategies, replica health/drain/ejection, counters |
//! | PUT  | `/admin/pools/{pool}/strategy` | `{"strategy": "ip-hash", "balance_factor": 125}` (either field alone; `"balance_factor": null` turns bounded loads off), or the strategy as a JSON string: `cookie`, `ip-hash`, `ip-modulo`, `round-robin`, `least-requests` |
//! | POST | `/admin/replicas/{name}/drain` | no new clients; pinned clients stay |
//! | POST | `/admin/replicas/{name}/enable` | back to taking new clients |
//! | POST | `/admin/pools/{pool}/replicas` | `{"name", "addr"}`: add a replica (joins after `rise` checks) |
//! | DELETE | `/admin/replicas/{name}[?drain=SECONDS]` | remove it, at once or after draining |
//! | GET  | `/metrics` | Prometheus text |
//! | GET  | `/admin/dashboard.json[?since=MS&after=SEQ]` | the dashboard's history and events |
//! | GET  | `/`, `/dashboard.css`, `/dashboard.js` | the dashboard page (no data, no token) |
//!
//! Every request first passes the guard (`admin/guard.rs`, which explains why): a `Host` the
//! listener answers to (`421`), no state change from another site (`403`), the bearer token when
//! `admin_token` is set, except for `/admin/ready` and the page's files (`401`), and JSON bodies
//! (`415`). Request bodies are JSON.
//! Errors are JSON `{"error": ..., "message": ...}`: unknown names 404, bad bodies 400, a name or
//! address already in use and removing a pool's last replica 409, a wrong method 405 with `Allow`.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use std::time::{Duration, Instant};

use statelab_formats::ErrorBody;

use crate::config::ServerConfig;
use crate::dashboard::{self, History};
use crate::metrics::Metrics;
use crate::pool::{MembershipError, Pools};
use crate::strategy::UnknownStrategy;
use statelab_formats::{PoolRouting, Routed};

mod guard;

/// Largest admin request body read; strategy names are a few bytes.
const MAX_BODY: usize = 1024;

/// The admin HTTP application.
pub struct AdminApp {
    pools: Arc<Pools>,
    metrics: Metrics,
    history: Arc<History>,
    guard: guard::Guard,
}

impl std::fmt::Debug for AdminApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApp")
            .field("pools", &self.pools)
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl AdminApp {
    /// Serves `pools`, `metrics` and the dashboard's `history`; `server` gives the token and the
    /// names the admin API answers to.
    pub fn new(
        pools: Arc<Pools>,
        metrics: Metrics,
        history: Arc<History>,
        server: &ServerConfig,
    ) -> Self {
        Self {
            pools,
            metrics,
            history,
            guard: guard::Guard::new(server),
        }
    }
}

/// An admin failure, mapped to a status and a JSON body.
#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("method not allowed here; allowed: {0}")]
    MethodNotAllowed(&'static str),
    #[error(transparent)]
    Refused(#[from] guard::AdminRefusal),
    #[error("{0}")]
    Conflict(String),
}

impl From<MembershipError> for AdminError {
    fn from(e: MembershipError) -> Self {
        match e {
            MembershipError::NoPool(_) | MembershipError::NoReplica(_) => {
                AdminError::NotFound(e.to_string())
            }
            MembershipError::Invalid(m) => AdminError::BadRequest(m),
            MembershipError::Conflict(m) => AdminError::Conflict(m),
        }
    }
}

/// A pool that follows a DNS name takes its members from the answers alone: an admin call that
/// adds or removes one is refused, since the next resolution would undo it.
fn follows_dns(pool: &crate::pool::Pool) -> Result<(), AdminError> {
    match pool.discovery() {
        None => Ok(()),
        Some(found) => Err(AdminError::Conflict(format!(
            "pool {:?} follows {} (discover): its replicas are what the name resolves to; scale the service behind the name instead",
            pool.name,
            found.view().target
        ))),
    }
}

/// `POST /admin/pools/{pool}/replicas`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewReplica {
    name: String,
    addr: String,
}

/// The `drain` query parameter of a removal, in whole seconds.
fn drain_param(query: Option<&str>) -> Result<Option<Duration>, AdminError> {
    let Some(query) = query else { return Ok(None) };
    let mut drain = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("drain", v)) => {
                let secs: u64 = v.parse().map_err(|_| {
                    AdminError::BadRequest(format!("drain={v:?} is not a whole number of seconds"))
                })?;
                if Duration::from_secs(secs) > Pools::MAX_DRAIN {
                    return Err(AdminError::BadRequest(format!(
                        "drain={secs} exceeds the limit of {} s",
                        Pools::MAX_DRAIN.as_secs()
                    )));
                }
                drain = Some(Duration::from_secs(secs));
            }
            _ => {
                return Err(AdminError::BadRequest(format!(
                    "unknown query parameter {pair:?}; only drain=SECONDS"
                )))
            }
        }
    }
    Ok(drain)
}

impl AdminError {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AdminError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            AdminError::Refused(r) => r.status(),
            AdminError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        }
    }
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = resp.body().len();
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    resp
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Vec<u8>> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    respond(status, "application/json", body)
}

impl AdminApp {
    async fn read_body(session: &mut ServerSession) -> Result<String, AdminError> {
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_BODY {
                        return Err(AdminError::BadRequest("body too large".into()));
                    }
                }
                Ok(None) => break,
                Err(_) => return Err(AdminError::BadRequest("could not read the body".into())),
            }
        }
        String::from_utf8(body).map_err(|_| AdminError::BadRequest("body is not UTF-8".into()))
    }

    /// A routing change's body: a strategy's name as a JSON string, or a [`PoolRouting`] object
    /// naming a strategy, a balance factor (`null` for off), or both.
    fn routing_change(body: &str) -> Result<PoolRouting, AdminError> {
        const SHAPE: &str = "the body must be JSON: {\"strategy\": \"ip-hash\", \"balance_factor\": 125}, either field alone, or \"ip-hash\"";
        let change = match serde_json::from_str::<serde_json::Value>(body) {
            Ok(serde_json::Value::String(name)) => PoolRouting {
                strategy: Some(
                    name.parse()
                        .map_err(|e: UnknownStrategy| AdminError::BadRequest(e.to_string()))?,
                ),
                balance_factor: None,
            },
            Ok(value @ serde_json::Value::Object(_)) => serde_json::from_value(value)
                .map_err(|e| AdminError::BadRequest(format!("{SHAPE}: {e}")))?,
            _ => return Err(AdminError::BadRequest(SHAPE.into())),
        };
        if change.strategy.is_none() && change.balance_factor.is_none() {
            return Err(AdminError::BadRequest(SHAPE.into()));
        }
        Ok(change)
    }

    async fn handle(&self, session: &mut ServerSession) -> Result<Response<Vec<u8>>, AdminError> {
        let local = session
            .server_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        self.guard.check(session.req_header(), local)?;
        if session.req_header().method == Method::GET {
            if let Some((content_type, body)) = dashboard::asset(session.req_header().uri.path()) {
                let mut resp = respond(StatusCode::OK, content_type, body.as_bytes().to_vec());
                for (name, value) in dashboard::PAGE_HEADERS {
                    resp.headers_mut()
                        .insert(name, http::HeaderValue::from_static(value));
                }
                return Ok(resp);
            }
        }
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (segments.as_slice(), method) {
            (["metrics"], Method::GET) => Ok(respond(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(),
            )),
            (["admin", "ready"], Method::GET) => {
                Ok(json(StatusCode::OK, &serde_json::json!({ "ready": true })))
            }
            (["admin", "status"], Method::GET) => Ok(json(StatusCode::OK, &self.pools.status())),
            (["admin", "dashboard.json"], Method::GET) => {
                let since = dashboard::Since::parse(session.req_header().uri.query())
                    .map_err(AdminError::BadRequest)?;
                let body = self.history.render(&self.pools, &since);
                Ok(respond(StatusCode::OK, "application/json", body))
            }
            (["admin", "pools", pool, "strategy"], Method::PUT) => {
                let pool = self
                    .pools
                    .pool_by_name(pool)
                    .ok_or_else(|| AdminError::NotFound(format!("no pool named {pool:?}")))?;
                let body = Self::read_body(session).await?;
                let change = Self::routing_change(&body)?;
                if let Some(strategy) = change.strategy {
                    pool.set_strategy(strategy);
                    tracing::info!(pool = %pool.name, %strategy, "strategy switched");
                }
                if let Some(factor) = change.balance_factor {
                    pool.set_balance_factor(factor);
                    tracing::info!(pool = %pool.name, balance_factor = ?factor.map(|f| f.percent()), "balance factor set");
                }
                Ok(json(
                    StatusCode::OK,
                    &Routed {
                        pool: pool.name.clone(),
                        strategy: pool.strategy(),
                        balance_factor: pool.balance_factor(),
                    },
                ))
            }
            (["admin", "replicas", name, action @ ("drain" | "enable")], Method::POST) => {
                let draining = *action == "drain";
                if !self.pools.set_draining(name, draining) {
                    return Err(AdminError::NotFound(format!("no replica named {name:?}")));
                }
                tracing::info!(replica = %name, draining, "replica drain state changed");
                Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({ "replica": name, "draining": draining }),
                ))
            }
            (["admin", "pools", pool, "replicas"], Method::POST) => {
                let body = Self::read_body(session).await?;
                let new: NewReplica = serde_json::from_str(&body).map_err(|e| {
                    AdminError::BadRequest(format!(
                        "the body must be {{\"name\": \"...\", \"addr\": \"IP:port\"}}: {e}"
                    ))
                })?;
                if let Some(p) = self.pools.pool_by_name(pool) {
                    follows_dns(p)?;
                }
                let view = self.pools.add_replica(pool, &new.name, &new.addr)?;
                Ok(json(StatusCode::CREATED, &view))
            }
            (["admin", "replicas", name], Method::DELETE) => {
                let drain = drain_param(session.req_header().uri.query())?;
                if let Some((p, _)) = self.pools.replica_by_name(name) {
                    follows_dns(p)?;
                }
                let started = Instant::now();
                let how = self.pools.remove_replica(name, drain).await?;
                Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "replica": name,
                        "removed": how.as_str(),
                        "waited_ms": started.elapsed().as_millis() as u64,
                    }),
                ))
            }
            (["metrics"] | ["admin", "status" | "ready" | "dashboard.json"], _) => {
                Err(AdminError::MethodNotAllowed("GET"))
            }
            (["admin", "pools", _, "strategy"], _) => Err(AdminError::MethodNotAllowed("PUT")),
            (["admin", "replicas", _, "drain" | "enable"], _) => {
                Err(AdminError::MethodNotAllowed("POST"))
            }
            (["admin", "pools", _, "replicas"], _) => Err(AdminError::MethodNotAllowed("POST")),
            (["admin", "replicas", _], _) => Err(AdminError::MethodNotAllowed("DELETE")),
            _ => Err(AdminError::NotFound(format!("no admin endpoint at {path}"))),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match self.handle(session).await {
            Ok(resp) => resp,
            Err(e) => {
                let (status, code) = e.status();
                let mut resp = json(status, &ErrorBody::new(code, e.to_string()));
                if let AdminError::MethodNotAllowed(allow) = e {
                    resp.headers_mut()
                        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
                }
                resp
            }
        }
    }
}
