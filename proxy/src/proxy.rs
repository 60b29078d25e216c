//! The request path: pingora's `ProxyHttp` filters for statelab.
//!
//! Per request: route by prefix (404 JSON if none) → pick a replica by the pool's strategy (503
//! JSON if none can take it) → strip the prefix and set `X-Forwarded-*` → on a failed connect,
//! a broken fresh connection or a replica silent past `read_timeout_ms`, eject that replica for
//! `eject_ms` and, when the request can be replayed, retry on another → on the response, pin the
//! client with an affinity cookie when the pool is sticky → count it.
//!
//! Nothing here panics on a missing replica or a malformed request: every failure becomes a JSON
//! error response through [`StatelabProxy::fail_to_proxy`].

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::metrics::Metrics;
use crate::pool::Pools;
use crate::strategy::{client_key, key_bytes, Strategy};

/// The proxy service logic; cheap to share between pingora's worker threads.
#[derive(Debug)]
pub struct StatelabProxy {
    pools: Arc<Pools>,
    metrics: Metrics,
    max_retries: u32,
    /// The 404 body, naming the configured prefixes; built once.
    not_found: Bytes,
}

impl StatelabProxy {
    pub fn new(pools: Arc<Pools>, metrics: Metrics, max_retries: u32) -> Self {
        let prefixes: Vec<String> = pools
            .pools
            .iter()
            .map(|p| format!("{}/...", p.prefix))
            .collect();
        let not_found = json_error(
            "not_found",
            &format!("no pool serves this path; use {}", prefixes.join(", ")),
        );
        Self {
            pools,
            metrics,
            max_retries,
            not_found,
        }
    }
}

/// Why the proxy answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NoRoute,
    NoReplica,
}

/// State carried through one request's filters.
#[derive(Debug)]
pub struct RequestCtx {
    pool: Option<usize>,
    strategy: Strategy,
    /// Replica named by a valid affinity cookie.
    pinned: Option<usize>,
    /// Replica of the current (last) attempt.
    replica: Option<usize>,
    /// Bit per replica that failed for this request and must not be picked again.
    tried: u64,
    attempts: u32,
    started: Option<Instant>,
    refusal: Option<Refusal>,
    /// The downstream peer's address, looked up at most once per request.
    peer: Option<IpAddr>,
}

fn json_error(error: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "error": error, "message": message }).to_string())
}

/// Writes a complete JSON response from the proxy itself.
async fn respond_json(session: &mut Session, status: u16, body: Bytes) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(3))?;
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", body.len().to_string())?;
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

/// The replica accepted the connection but did not take or answer the request within
/// `retry.read_timeout_ms`.
fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
    )
}

fn is_connect_error(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectTimedout
            | ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::SocketError
            | ErrorType::BindError
    )
}

impl StatelabProxy {
    /// Marks the current attempt's replica as failed for this request and, when the replica
    /// itself is at fault, ejects it for a while.
    fn note_failure(&self, ctx: &mut RequestCtx, eject: bool, reason: String) {
        let (Some(p), Some(r)) = (ctx.pool, ctx.replica) else {
            return;
        };
        ctx.tried |= 1u64 << r;
        if eject {
            let replica = &self.pools.pools[p].replicas[r];
            replica.eject(self.pools.now_ms() + self.pools.eject_ms);
            replica.record_failure(reason);
        }
    }

    fn may_retry(&self, ctx: &RequestCtx) -> bool {
        ctx.attempts <= self.max_retries
    }

    fn count_retry(&self, ctx: &RequestCtx) {
        if let Some(p) = ctx.pool {
            self.metrics
                .retries
                .with_label_values(&[&self.pools.pools[p].name])
                .inc();
        }
    }

    /// The client's address (pingora caches it per connection in the socket digest).
    fn peer_ip(session: &Session, ctx: &mut RequestCtx) -> Option<IpAddr> {
        if ctx.peer.is_none() {
            ctx.peer = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
        }
        ctx.peer
    }

    fn release(&self, ctx: &mut RequestCtx) {
        if let (Some(p), Some(r)) = (ctx.pool, ctx.replica.take()) {
            self.pools.pools[p].replicas[r]
                .in_flight
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[async_trait]
impl ProxyHttp for StatelabProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            pool: None,
            strategy: Strategy::RoundRobin,
            pinned: None,
            replica: None,
            tried: 0,
            attempts: 0,
            started: None,
            refusal: None,
            peer: None,
        }
    }

    fn init_downstream_modules(&self, _modules: &mut HttpModules) {
        // No response compression: the services' answers are tiny and the default (disabled)
        // compression module would still be built and consulted for every request.
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(p) = self.pools.route(session.req_header().uri.path()) else {
            ctx.refusal = Some(Refusal::NoRoute);
            respond_json(session, 404, self.not_found.clone()).await?;
            return Ok(true);
        };
        let pool = &self.pools.pools[p];
        ctx.pool = Some(p);
        ctx.strategy = pool.strategy();
        if ctx.strategy == Strategy::Cookie {
            ctx.pinned = pool
                .affinity
                .pinned(session.req_header().headers.get_all("cookie").iter());
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let p = ctx
            .pool
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no pool routed"))?;
        let pool = &self.pools.pools[p];
        let now = self.pools.now_ms();
        self.release(ctx);

        let pinned = ctx
            .pinned
            .filter(|&r| ctx.tried & (1u64 << r) == 0 && pool.replicas[r].serves_pinned(now));
        let chosen = match (ctx.strategy, pinned) {
            (Strategy::Cookie, Some(r)) => Some(r),
            (Strategy::IpHash, _) => {
                let mut buf = [0u8; 16];
                let len = match Self::peer_ip(session, ctx) {
                    Some(peer) => {
                        let ip = client_key(
                            peer,
                            session
                                .req_header()
                                .headers
                                .get_all("x-forwarded-for")
                                .iter(),
                            &pool.trusted_proxies,
                        );
                        key_bytes(&ip, &mut buf)
                    }
                    None => 0,
                };
                pool.pick_new(Strategy::IpHash, &buf[..len], ctx.tried, now)
            }
            (strategy, _) => pool.pick_new(strategy, b"", ctx.tried, now),
        };
        let Some(r) = chosen else {
            ctx.refusal = Some(Refusal::NoReplica);
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "no replica available",
            ));
        };
        let replica = &pool.replicas[r];
        replica.in_flight.fetch_add(1, Ordering::Relaxed);
        ctx.replica = Some(r);
        ctx.attempts += 1;
        ctx.started = Some(Instant::now());
        Ok(Box::new(replica.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(p) = ctx.pool else { return Ok(()) };
        let pool = &self.pools.pools[p];

        // Strip the pool prefix: /stateful/me?x=1 -> /me?x=1, /stateful -> /.
        let pq = upstream_request
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let rest = pq.get(pool.prefix.len()..).unwrap_or("");
        let uri = if rest.starts_with('/') {
            rest.parse::<http::Uri>()
        } else {
            format!("/{rest}").parse::<http::Uri>()
        }
        .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "rewriting the path", e))?;
        upstream_request.set_uri(uri);

        let peer = Self::peer_ip(session, ctx);
        if let Some(ip) = peer {
            // Every incoming line, in order, then this hop; sent as one line.
            let mut xff = String::new();
            for line in upstream_request.headers.get_all("x-forwarded-for") {
                match line.to_str().map(str::trim) {
                    Ok("") => {}
                    Ok(prev) => {
                        xff.push_str(prev);
                        xff.push_str(", ");
                    }
                    // Not text: dropped rather than forwarded garbled.
                    Err(_) => {}
                }
            }
            let _ = write!(xff, "{ip}");
            upstream_request.insert_header("x-forwarded-for", xff)?;
        }
        let trusted_peer =
            peer.is_some_and(|ip| pool.trusted_proxies.iter().any(|n| n.contains(&ip)));
        if !trusted_peer || upstream_request.headers.get("x-forwarded-proto").is_none() {
            upstream_request.insert_header("x-forwarded-proto", "http")?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(p), Some(r), Some(started)) = (ctx.pool, ctx.replica, ctx.started) {
            self.pools.pools[p].replicas[r]
                .latency
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.strategy == Strategy::Cookie && ctx.replica != ctx.pinned {
            if let (Some(p), Some(r)) = (ctx.pool, ctx.replica) {
                if let Some(v) = self.pools.pools[p].affinity.set_cookie(r) {
                    upstream_response.append_header("set-cookie", v.clone())?;
                }
            }
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing reached the replica, so retrying elsewhere is safe for any method.
        self.note_failure(ctx, true, format!("connect failed: {}", e.etype().as_str()));
        if self.may_retry(ctx) {
            self.count_retry(ctx);
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        // Only an upstream fault is worth another replica; a client that went away is not.
        let upstream_fault = *e.esource() == ErrorSource::Upstream;
        // A pooled connection may have been closed by an idle replica: no blame. A fresh
        // connection that breaks means the replica went away mid-request, and a replica that
        // stays silent is at fault whichever connection it was. Either way it is ejected whether
        // or not this request can be replayed, so the next requests avoid it.
        if upstream_fault && (!client_reused || is_timeout(&e)) {
            self.note_failure(ctx, true, format!("request failed: {}", e.etype().as_str()));
        }
        let replayable = upstream_fault
            && session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && session.response_written().is_none();
        if replayable && self.may_retry(ctx) {
            self.count_retry(ctx);
            e.set_retry(true);
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let pool_name = ctx
            .pool
            .map(|p| self.pools.pools[p].name.as_str())
            .unwrap_or("");
        let (code, body) = if ctx.refusal == Some(Refusal::NoReplica) {
            (
                503,
                json_error(
                    "no_replica_available",
                    &format!("every replica of pool {pool_name} is down, draining or failing"),
                ),
            )
        } else if *e.esource() == ErrorSource::Upstream && is_connect_error(e) {
            (
                503,
                json_error(
                    "upstream_unavailable",
                    &format!("could not connect to a replica of pool {pool_name}"),
                ),
            )
        } else if *e.esource() == ErrorSource::Upstream && is_timeout(e) {
            (
                504,
                json_error(
                    "gateway_timeout",
                    &format!("a replica of pool {pool_name} did not answer in time"),
                ),
            )
        } else if *e.esource() == ErrorSource::Upstream {
            (
                502,
                json_error(
                    "bad_gateway",
                    &format!("a replica of pool {pool_name} failed to answer"),
                ),
            )
        } else if *e.esource() == ErrorSource::Downstream {
            match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    return FailToProxy {
                        error_code: 0,
                        can_reuse_downstream: false,
                    }
                }
                _ => (
                    400,
                    json_error("bad_request", "the request could not be read"),
                ),
            }
        } else {
            (
                500,
                json_error("internal", "the proxy failed to handle the request"),
            )
        };
        if session.response_written().is_none() {
            // pingora closes the client connection after a failed proxy attempt; say so, or a
            // keep-alive client would send its next request into a closing socket.
            session.set_keepalive(None);
            if let Err(err) = respond_json(session, code, body).await {
                tracing::debug!(%err, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status =
            session
                .response_written()
                .map(|h| h.status)
                .or_else(|| match e.map(|e| e.etype()) {
                    Some(ErrorType::HTTPStatus(code)) => http::StatusCode::from_u16(*code).ok(),
                    _ => None,
                });
        let status = status.as_ref().map(|s| s.as_str()).unwrap_or("000");
        match ctx.pool {
            Some(p) => {
                let pool = &self.pools.pools[p];
                let replica = match ctx.replica {
                    Some(r) => {
                        let replica = &pool.replicas[r];
                        replica.total.fetch_add(1, Ordering::Relaxed);
                        if status == "200" {
                            // The common case skips the label lookup.
                            replica.ok_requests.inc();
                            self.release(ctx);
                            return;
                        }
                        replica.name.as_str()
                    }
                    None => "none",
                };
                self.metrics
                    .requests
                    .with_label_values(&[pool.name.as_str(), replica, status])
                    .inc();
            }
            None => self
                .metrics
                .requests
                .with_label_values(&["none", "none", status])
                .inc(),
        }
        self.release(ctx);
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _error: &Error) -> bool {
        // Refusals are answered and counted; they are not proxy faults worth an error line each.
        ctx.refusal.is_some()
    }
}
