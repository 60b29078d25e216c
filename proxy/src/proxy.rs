//! The request path: pingora's `ProxyHttp` filters for statelab.
//!
//! Per request: route by prefix (404 JSON if none) → pick a replica by the pool's strategy (503
//! JSON if none can take it) → strip the prefix and set `X-Forwarded-*` (and `Host`, when an
//! HTTP/1.0 client sent none) → on a failed connect, a broken fresh connection or a replica silent
//! past `read_timeout_ms`, eject that replica for `eject_ms` and, when the request can be
//! replayed, retry on another → on the response, pin the client with an affinity cookie when the
//! pool is sticky → count it.
//!
//! A timeout while the client's own body is still incomplete (a streamed body, larger than the
//! front door buffers, that stopped arriving) is the client's fault: the replica is not ejected,
//! the request is not retried, and the client gets `408`.
//!
//! Nothing here panics on a missing replica or a malformed request: every failure becomes a JSON
//! error response through [`StatelabProxy::fail_to_proxy`].

use std::borrow::Cow;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use statelab_formats::ErrorBody;

use crate::front::ClientConn;
use crate::metrics::{Metrics, Origin};
use crate::pool::{InFlight, Members, Pools};
use crate::sockets::OpenSocket;
use crate::strategy::{BalanceFactor, Client, ReplicaId, RouteKey, Strategy, Tried};

/// Sent by `statelab-load` on every request, so the dashboard can show when a run is going.
const LOAD_HEADER: http::HeaderName = http::HeaderName::from_static("x-statelab-load");

/// The proxy service logic; cheap to share between pingora's worker threads.
#[derive(Debug)]
pub struct StatelabProxy {
    pools: Arc<Pools>,
    metrics: Metrics,
    max_retries: u32,
    /// Longest silence in either direction of an open socket.
    socket_idle: Duration,
    /// The 404 body, naming the configured prefixes; built once.
    not_found: Bytes,
    /// The 404 body for a replica's internal endpoints.
    internal: Bytes,
}

impl StatelabProxy {
    pub fn new(
        pools: Arc<Pools>,
        metrics: Metrics,
        max_retries: u32,
        socket_idle: Duration,
    ) -> Self {
        let prefixes: Vec<String> = pools
            .pools
            .iter()
            .map(|p| format!("{}/...", p.prefix))
            .collect();
        let not_found = json_error(
            "not_found",
            &format!("no pool serves this path; use {}", prefixes.join(", ")),
        );
        let internal = json_error(
            "not_found",
            "replica metrics and diagnostics are not served through the proxy",
        );
        Self {
            pools,
            metrics,
            max_retries,
            socket_idle,
            not_found,
            internal,
        }
    }
}

/// A WebSocket handshake: `Upgrade: websocket` and `Connection: upgrade`. Other upgrades (such
/// as `h2c`, which no replica accepts) keep a request's timeouts.
fn is_websocket(req: &RequestHeader) -> bool {
    let has = |name: http::header::HeaderName, token: &str| {
        req.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has(http::header::UPGRADE, "websocket") && has(http::header::CONNECTION, "upgrade")
}

/// Why the proxy answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyRefusal {
    NoRoute,
    NoReplica,
    /// The client's streamed body stopped arriving: its fault, not the replica's.
    ClientTimeout,
}

/// State carried through one request's filters.
#[derive(Debug)]
pub struct RequestCtx {
    pool: Option<usize>,
    /// The pool's membership when the request arrived, kept to its end: a replica added or removed
    /// meanwhile changes nothing for this request.
    members: Option<Arc<Members>>,
    /// The pool's strategy when the request arrived; a switch applies from the next request.
    strategy: Strategy,
    /// The pool's balance factor when the request arrived.
    balance: Option<BalanceFactor>,
    /// What the strategy places this request by, read once.
    key: RouteKey,
    /// Replica of the current (last) attempt.
    replica: Option<ReplicaId>,
    /// Counts this request on `replica` until it ends or moves on.
    in_flight: Option<InFlight>,
    /// The request asks to upgrade its connection to a WebSocket: its timeouts are an open
    /// socket's.
    upgrade: bool,
    /// Counts the connection as an open socket on `replica` once it was upgraded, until it ends.
    socket: Option<OpenSocket>,
    /// Replicas that failed for this request and must not be picked again.
    tried: Tried,
    attempts: u32,
    started: Option<Instant>,
    refusal: Option<ProxyRefusal>,
    /// Whether the status sent is a replica's or the proxy's own.
    origin: Origin,
    /// The downstream peer's address, looked up at most once per request.
    peer: Option<IpAddr>,
}

/// Why the proxy could not get a replica's answer to a request, and so what it answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyFault {
    /// Every replica of the pool is down, draining, ejected or already tried.
    NoReplica,
    /// No replica accepted the connection.
    Unreachable,
    /// A replica took the request and did not answer within `read_timeout_ms`.
    Timeout,
    /// The client stopped sending its (streamed) body.
    ClientTimeout,
    /// A replica failed mid-request.
    BadGateway,
    /// The client's request could not be read.
    BadRequest,
    /// The client went away: nothing to answer.
    ClientGone,
    /// Anything else: the proxy's own failure.
    Internal,
}

impl ProxyFault {
    /// Classifies a failed request by who failed (`source`) and how (`etype`).
    pub(crate) fn classify(
        refusal: Option<ProxyRefusal>,
        source: &ErrorSource,
        etype: &ErrorType,
    ) -> ProxyFault {
        match refusal {
            Some(ProxyRefusal::NoReplica) => return ProxyFault::NoReplica,
            Some(ProxyRefusal::ClientTimeout) => return ProxyFault::ClientTimeout,
            _ => {}
        }
        match source {
            ErrorSource::Upstream if is_connect_error(etype) => ProxyFault::Unreachable,
            ErrorSource::Upstream if is_timeout(etype) => ProxyFault::Timeout,
            ErrorSource::Upstream => ProxyFault::BadGateway,
            ErrorSource::Downstream => match etype {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    ProxyFault::ClientGone
                }
                _ => ProxyFault::BadRequest,
            },
            _ => ProxyFault::Internal,
        }
    }

    /// The status the proxy answers with (0: none, the client is gone).
    pub(crate) fn status(self) -> u16 {
        match self {
            ProxyFault::NoReplica | ProxyFault::Unreachable => 503,
            ProxyFault::Timeout => 504,
            ProxyFault::ClientTimeout => 408,
            ProxyFault::BadGateway => 502,
            ProxyFault::BadRequest => 400,
            ProxyFault::ClientGone => 0,
            ProxyFault::Internal => 500,
        }
    }

    /// The JSON error body, naming the pool.
    fn body(self, pool: &str) -> Bytes {
        match self {
            ProxyFault::NoReplica => json_error(
                "no_replica_available",
                &format!("every replica of pool {pool} is down, draining or failing"),
            ),
            ProxyFault::Unreachable => json_error(
                "upstream_unavailable",
                &format!("could not connect to a replica of pool {pool}"),
            ),
            ProxyFault::Timeout => json_error(
                "gateway_timeout",
                &format!("a replica of pool {pool} did not answer in time"),
            ),
            ProxyFault::ClientTimeout => json_error(
                "request_timeout",
                "the request body stopped arriving before it was complete",
            ),
            ProxyFault::BadGateway => json_error(
                "bad_gateway",
                &format!("a replica of pool {pool} failed to answer"),
            ),
            ProxyFault::BadRequest => json_error("bad_request", "the request could not be read"),
            ProxyFault::ClientGone => Bytes::new(),
            ProxyFault::Internal => {
                json_error("internal", "the proxy failed to handle the request")
            }
        }
    }
}

/// Whether a path (after the pool prefix) and query name a replica's operator endpoint: its
/// Prometheus `/metrics`, `/debug/...`, anything below `/health`, or `/health` with a query (its
/// detailed form, `?detail=1`, reports the replica's figures to the proxy's health checker). The
/// plain `/health` answer, up or down, stays public: clients and the lab probe a pool through it.
/// These stay on each replica's own port. The path is normalised first (percent-decoded, empty
/// and dot segments resolved, case folded), so no other spelling of it reaches a replica.
pub(crate) fn is_replica_internal(path: &str, query: Option<&str>) -> bool {
    // Dot segments resolved as a stack would, keeping only what the answer needs (the bottom
    // segment and the depth), so that no request pays an allocation for this check.
    let decoded = percent_decode(path);
    let mut first = None;
    let mut depth = 0usize;
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => depth = depth.saturating_sub(1),
            s => {
                if depth == 0 {
                    first = Some(s);
                }
                depth += 1;
            }
        }
    }
    let Some(first) = first.filter(|_| depth > 0) else {
        return false;
    };
    let is = |name: &str| first.eq_ignore_ascii_case(name);
    if is("metrics") || is("debug") {
        return true;
    }
    is("health") && (depth > 1 || query.is_some())
}

/// `%XX` escapes decoded (invalid ones kept as they are); bytes that are not UTF-8 replaced.
/// A path without escapes, nearly every one, is borrowed as it is.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The project's error body: `{"error": ..., "message": ...}`.
pub(crate) fn json_error(error: &str, message: &str) -> Bytes {
    Bytes::from(ErrorBody::new(error, message).to_json())
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

/// Replaces `Content-Length: 16, 16` (or the same length on several lines) with one value, as RFC
/// 9110 8.6 allows; a single value is left as it is.
fn normalise_content_length(request: &mut RequestHeader) -> Result<()> {
    let mut lines = request.headers.get_all(http::header::CONTENT_LENGTH).iter();
    let Some(first) = lines.next() else {
        return Ok(());
    };
    if lines.next().is_none() && !first.as_bytes().contains(&b',') {
        return Ok(());
    }
    let length = first
        .to_str()
        .ok()
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "Content-Length"))?;
    request.insert_header(http::header::CONTENT_LENGTH, length)?;
    Ok(())
}

/// The replica accepted the connection but did not take or answer the request within
/// `retry.read_timeout_ms`.
fn is_timeout(etype: &ErrorType) -> bool {
    matches!(etype, ErrorType::ReadTimedout | ErrorType::WriteTimedout)
}

fn is_connect_error(etype: &ErrorType) -> bool {
    matches!(
        etype,
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
        let Some(r) = ctx.replica else {
            return;
        };
        ctx.tried.insert(r);
        if eject {
            if let Some(replica) = ctx.members.as_ref().and_then(|m| m.replica(r)) {
                replica.eject(self.pools.now_ms() + self.pools.eject_ms);
                replica.record_failure(reason);
            }
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
}

#[async_trait]
impl ProxyHttp for StatelabProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            pool: None,
            members: None,
            strategy: Strategy::RoundRobin,
            balance: None,
            key: RouteKey::default(),
            replica: None,
            in_flight: None,
            upgrade: false,
            socket: None,
            tried: Tried::default(),
            attempts: 0,
            started: None,
            refusal: None,
            origin: Origin::Replica,
            peer: None,
        }
    }

    fn init_downstream_modules(&self, _modules: &mut HttpModules) {
        // No response compression: the services' answers are tiny and the default (disabled)
        // compression module would still be built and consulted for every request.
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(p) = self.pools.route(session.req_header().uri.path()) else {
            ctx.refusal = Some(ProxyRefusal::NoRoute);
            ctx.origin = Origin::Proxy;
            respond_json(session, 404, self.not_found.clone()).await?;
            return Ok(true);
        };
        let pool = &self.pools.pools[p];
        ctx.pool = Some(p);
        let rest = session
            .req_header()
            .uri
            .path()
            .get(pool.prefix.len()..)
            .unwrap_or("");
        if is_replica_internal(rest, session.req_header().uri.query()) {
            ctx.refusal = Some(ProxyRefusal::NoRoute);
            ctx.origin = Origin::Proxy;
            respond_json(session, 404, self.internal.clone()).await?;
            return Ok(true);
        }
        if session.req_header().headers.contains_key(&LOAD_HEADER) {
            pool.count_load();
        }
        if is_websocket(session.req_header()) {
            // Once upgraded, the connection may rightly be quiet for long: the client's side
            // waits as long as the replica's (see `upstream_peer`), reading and writing.
            ctx.upgrade = true;
            session.set_read_timeout(Some(self.socket_idle));
            session.set_write_timeout(Some(self.socket_idle));
        }
        ctx.strategy = pool.strategy();
        ctx.balance = pool.balance_factor();
        let client = Client {
            peer: Self::peer_ip(session, ctx),
            trusted: &pool.trusted_proxies,
        };
        let members = pool.members();
        ctx.key = members
            .route(ctx.strategy)
            .key(session.req_header(), client);
        ctx.members = Some(members);
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let members = ctx
            .members
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no pool routed"))?;
        // A retry: the previous attempt's replica no longer has this request in flight.
        ctx.in_flight = None;
        let now = self.pools.now_ms();
        let choice = members.choose(ctx.strategy, ctx.balance, &ctx.key, ctx.tried, now);
        if choice.moved {
            if let Some(pool) = ctx.pool.and_then(|p| self.pools.pools.get(p)) {
                pool.count_bounded_move();
            }
        }
        let chosen = choice.replica;
        let Some(replica) = chosen.and_then(|r| members.replica(r)) else {
            ctx.refusal = Some(ProxyRefusal::NoReplica);
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "no replica available",
            ));
        };
        ctx.in_flight = Some(InFlight::new(replica));
        replica.mark_chosen(now);
        ctx.replica = chosen;
        ctx.attempts += 1;
        ctx.started = Some(Instant::now());
        let mut peer = Box::new(replica.peer.clone());
        if ctx.upgrade {
            // pingora gives a request one read timeout, the handshake's and the open socket's
            // alike: a replica may take that long to answer an upgrade, too.
            peer.options.read_timeout = Some(self.socket_idle);
            peer.options.write_timeout = Some(self.socket_idle);
        }
        Ok(peer)
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

        // An HTTP/1.0 client may omit Host; the replica gets an HTTP/1.1 request, which needs one:
        // the replica's own address, as nginx sends by default.
        if !upstream_request.headers.contains_key(http::header::HOST) {
            let replica = ctx
                .replica
                .and_then(|r| ctx.members.as_ref().and_then(|m| m.replica(r)));
            if let Some(replica) = replica {
                let host = HeaderValue::from_str(&replica.addr.to_string()).map_err(|e| {
                    Error::because(ErrorType::InvalidHTTPHeader, "the replica's address", e)
                })?;
                upstream_request.insert_header(http::header::HOST, host)?;
            }
        }
        // A list of identical lengths (the front door refuses differing ones) goes on as one.
        normalise_content_length(upstream_request)?;

        let peer = Self::peer_ip(session, ctx);
        if let Some(ip) = peer {
            // Every incoming line, in order, then this hop; sent as one line. Built on the stack
            // and copied once into the header value: one allocation for the header, not three.
            let mut xff = Vec::new();
            for line in upstream_request.headers.get_all("x-forwarded-for") {
                match line.to_str().map(str::trim) {
                    Ok("") => {}
                    Ok(prev) => {
                        xff.extend_from_slice(prev.as_bytes());
                        xff.extend_from_slice(b", ");
                    }
                    // Not text: dropped rather than forwarded garbled.
                    Err(_) => {}
                }
            }
            let mut hop = [0u8; 64];
            let mut cursor = &mut hop[..];
            let _ = write!(cursor, "{ip}");
            let written = 64 - cursor.len();
            let value = if xff.is_empty() {
                HeaderValue::from_bytes(&hop[..written])
            } else {
                xff.extend_from_slice(&hop[..written]);
                HeaderValue::from_bytes(&xff)
            }
            .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "x-forwarded-for", e))?;
            upstream_request.insert_header("x-forwarded-for", value)?;
        }
        let trusted_peer =
            peer.is_some_and(|ip| pool.trusted_proxies.iter().any(|n| n.contains(&ip)));
        if !trusted_peer || upstream_request.headers.get("x-forwarded-proto").is_none() {
            upstream_request
                .insert_header("x-forwarded-proto", HeaderValue::from_static("http"))?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(members), Some(r), Some(started)) = (&ctx.members, ctx.replica, ctx.started) {
            if let Some(replica) = members.replica(r) {
                replica.latency.observe(started.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(members) = &ctx.members else {
            return Ok(());
        };
        let Some(r) = ctx.replica else { return Ok(()) };
        if let Some(v) = members.route(ctx.strategy).pin(&ctx.key, r) {
            upstream_response.append_header("set-cookie", v.clone())?;
        }
        if upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection is a socket on this replica from now on, whatever the strategy
            // says later; a drain that runs out hangs it up through its client connection.
            let conn = session
                .stream()
                .and_then(|s| s.as_any().downcast_ref::<ClientConn>());
            if let (Some(replica), Some(conn)) = (members.replica(r), conn) {
                ctx.socket = Some(replica.open_socket(Arc::clone(conn.hangup())));
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
        // A replica silent while the client's body is incomplete is waiting for that body: the
        // client stopped sending, and the replica is not at fault. (A write that timed out is the
        // replica not reading, and stays its fault.)
        if *e.etype() == ErrorType::ReadTimedout && !session.as_mut().is_body_done() {
            ctx.refusal = Some(ProxyRefusal::ClientTimeout);
            if let Some(r) = ctx.replica {
                ctx.tried.insert(r);
            }
            e.set_retry(false);
            return e;
        }
        // Only an upstream fault is worth another replica; a client that went away is not.
        let upstream_fault = *e.esource() == ErrorSource::Upstream;
        // A pooled connection may have been closed by an idle replica: no blame. A fresh
        // connection that breaks means the replica went away mid-request, and a replica that
        // stays silent is at fault whichever connection it was. Either way it is ejected whether
        // or not this request can be replayed, so the next requests avoid it.
        if upstream_fault && (!client_reused || is_timeout(e.etype())) {
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
        let fault = ProxyFault::classify(ctx.refusal, e.esource(), e.etype());
        let code = fault.status();
        if fault == ProxyFault::ClientGone {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let body = fault.body(pool_name);
        ctx.origin = Origin::Proxy;
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
        let origin = ctx.origin.as_str();
        // The request (or socket) is over: it leaves its replica's counts.
        ctx.in_flight = None;
        ctx.socket = None;
        let Some(pool) = ctx.pool.map(|p| &self.pools.pools[p]) else {
            self.metrics
                .requests
                .with_label_values(&["none", "none", status, origin])
                .inc();
            return;
        };
        let replica = ctx
            .replica
            .and_then(|r| ctx.members.as_ref().and_then(|m| m.replica(r)));
        if let Some(replica) = replica {
            replica.total.fetch_add(1, Ordering::Relaxed);
            if status == "200" {
                // The common case skips the label lookup (a 200 is always the replica's).
                replica.ok_requests.inc();
                return;
            }
        }
        let name = replica.map_or("none", |r| r.name.as_str());
        self.metrics
            .requests
            .with_label_values(&[pool.name.as_str(), name, status, origin])
            .inc();
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _error: &Error) -> bool {
        // Refusals are answered and counted; they are not proxy faults worth an error line each.
        ctx.refusal.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_websocket_handshake_gets_a_sockets_timeouts() {
        let request = |headers: &[(&str, &str)]| {
            let mut req = RequestHeader::build("GET", b"/chat/lobby", None).expect("a request");
            for (k, v) in headers {
                req.append_header(k.to_string(), *v).expect("a header");
            }
            req
        };
        assert!(is_websocket(&request(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ])));
        assert!(!is_websocket(&request(&[
            ("connection", "upgrade"),
            ("upgrade", "h2c"),
        ])));
        assert!(!is_websocket(&request(&[("upgrade", "websocket")])));
        assert!(!is_websocket(&request(&[])));
    }

    fn classify(source: ErrorSource, etype: ErrorType) -> ProxyFault {
        ProxyFault::classify(None, &source, &etype)
    }

    #[test]
    fn failures_map_to_the_documented_answers() {
        use ErrorSource::{Downstream, Internal, Upstream};
        let cases = [
            (
                classify(Upstream, ErrorType::ConnectRefused),
                ProxyFault::Unreachable,
                503,
            ),
            (
                classify(Upstream, ErrorType::ConnectTimedout),
                ProxyFault::Unreachable,
                503,
            ),
            (
                classify(Upstream, ErrorType::ConnectNoRoute),
                ProxyFault::Unreachable,
                503,
            ),
            (
                classify(Upstream, ErrorType::ReadTimedout),
                ProxyFault::Timeout,
                504,
            ),
            (
                classify(Upstream, ErrorType::WriteTimedout),
                ProxyFault::Timeout,
                504,
            ),
            (
                classify(Upstream, ErrorType::ConnectionClosed),
                ProxyFault::BadGateway,
                502,
            ),
            (
                classify(Upstream, ErrorType::ReadError),
                ProxyFault::BadGateway,
                502,
            ),
            (
                classify(Downstream, ErrorType::InvalidHTTPHeader),
                ProxyFault::BadRequest,
                400,
            ),
            (
                classify(Downstream, ErrorType::ReadError),
                ProxyFault::ClientGone,
                0,
            ),
            (
                classify(Downstream, ErrorType::WriteError),
                ProxyFault::ClientGone,
                0,
            ),
            (
                classify(Downstream, ErrorType::ConnectionClosed),
                ProxyFault::ClientGone,
                0,
            ),
            (
                classify(Internal, ErrorType::InternalError),
                ProxyFault::Internal,
                500,
            ),
        ];
        for (got, want, status) in cases {
            assert_eq!(got, want);
            assert_eq!(got.status(), status, "{want:?}");
        }
        // No replica to try wins over whatever error pingora carries with it.
        let none = ProxyFault::classify(
            Some(ProxyRefusal::NoReplica),
            &Upstream,
            &ErrorType::HTTPStatus(503),
        );
        assert_eq!((none, none.status()), (ProxyFault::NoReplica, 503));
    }

    #[test]
    fn replica_internals_are_recognised_in_any_spelling() {
        for internal in [
            "/metrics",
            "/metrics/",
            "//metrics",
            "/./metrics",
            "/x/../metrics",
            "/%6detrics",
            "/%6Detrics",
            "/METRICS",
            "/health/details",
            "/debug/pprof",
            "/../metrics",
            "/a/b/../../health/x",
            "/me/../debug",
        ] {
            assert!(is_replica_internal(internal, None), "{internal}");
        }
        for query in ["detail=1", "", "x"] {
            assert!(is_replica_internal("/health", Some(query)), "{query}");
            assert!(is_replica_internal("//HEALTH", Some(query)), "{query}");
        }
        assert!(!is_replica_internal("/me", Some("detail=1")));
        for public in [
            "/health",
            "/",
            "",
            "/me",
            "/cart/items",
            "/metricsx",
            "/%zz",
            "/%",
            "/metrics/../me",
            "/health/..",
            "/health/x/..",
            "/x/../health",
        ] {
            assert!(!is_replica_internal(public, None), "{public}");
        }
    }

    #[test]
    fn every_answer_is_the_json_error_shape_naming_the_pool() {
        for fault in [
            ProxyFault::NoReplica,
            ProxyFault::Unreachable,
            ProxyFault::Timeout,
            ProxyFault::BadGateway,
        ] {
            let body: serde_json::Value =
                serde_json::from_slice(&fault.body("stateless")).expect("JSON");
            assert!(body["error"].is_string(), "{fault:?}");
            let message = body["message"].as_str().expect("a message");
            assert!(message.contains("stateless"), "{fault:?}: {message}");
        }
        assert!(ProxyFault::ClientGone.body("x").is_empty());
    }
}
