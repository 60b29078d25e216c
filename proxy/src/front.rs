//! The front door: statelab's own HTTP/1 connection loop, below pingora's HTTP layer.
//!
//! pingora 0.9 bounds the reading of a request header per read only (a client trickling a byte at
//! a time is never cut off), keeps an idle HTTP/1.1 connection open for ever, drops every request
//! but the first of a pipelined batch, and refuses a malformed request with an empty `400` of its
//! own. It has no hook before a header is complete. So the proxy's listener hands each accepted
//! connection to [`FrontDoor`], which owns the connection's life and gives pingora one request at
//! a time:
//!
//! 1. take a connection slot (`server.max_client_connections`), or answer `503` and close;
//! 2. wait for a request: up to `client_keepalive_timeout_ms` idle between requests, then the
//!    whole header within `client_header_timeout_ms` of its first byte (of the accept, for a
//!    connection's first request), else `408`; at most `max_request_header_bytes`, else `431`.
//!    An idle connection holds no read buffer: one is taken when bytes arrive;
//! 3. check the header: what cannot be parsed, an HTTP/1.1 request without exactly one `Host`,
//!    a `Content-Length` that is not one number, or `CONNECT` is answered here, in the project's
//!    JSON error shape, and the connection closed;
//! 4. read the request's body whole, `Content-Length` or chunked, when it is at most
//!    `max_buffered_body_bytes`: it must arrive within `client_body_timeout_ms` of the header's
//!    end, else `408`. No replica is chosen before the body is in, so a client that stops sending
//!    costs only its own connection (a chunk line that does not end in CRLF is `400`). A larger
//!    body is streamed to the replica as it arrives;
//! 5. hand pingora a session over a [`ClientConn`], which lets it read exactly this request
//!    (header, then a `Content-Length` body) and keeps whatever follows, the next pipelined
//!    request, for step 2: pipelined requests are served in order, one at a time;
//! 6. when pingora hands the connection back for reuse, go to 2.
//!
//! A request whose body is chunked, or that asks to upgrade the connection, is handed over without
//! a limit: pingora reads its end itself, and a request pipelined behind it ends the connection
//! after the first answer (pingora's own behaviour).
//!
//! The admin listener has a front door too, with the same bounds and its own connection cap; its
//! refusals are not counted in the proxy's request metrics.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::http::RequestHeader;
use pingora::protocols::http::authority::validate_request_authority;
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{timeout_at, Instant};

use crate::config::ClientLimits;
use crate::metrics::{Metrics, Origin};
use crate::proxy::json_error;

/// Header fields a request may carry (pingora's own limit).
const MAX_HEADERS: usize = 256;
/// One read from a client socket, on the stack: an idle connection keeps no buffer.
const READ_CHUNK: usize = 4096;
/// After refusing a request, how long the rest of what the client sent is read and dropped, so
/// that closing with unread data (a TCP reset) does not destroy the answer before it is read.
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes read and dropped while lingering.
const LINGER_BYTES: usize = 64 * 1024;
/// The same for a connection refused over the connection cap: short, because it holds no slot.
const BUSY_LINGER: Duration = Duration::from_millis(50);
/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// The longest chunk-size line (size and extensions) taken.
const MAX_CHUNK_LINE: usize = 4096;
/// The largest `Content-Length` taken (1 TiB): far beyond any body a replica accepts, far from
/// overflowing when the header's length is added.
const MAX_CONTENT_LENGTH: u64 = 1 << 40;

/// The proxy's listener application: bounds each client connection, then lets `app` (pingora's
/// HTTP proxy) serve its requests one at a time.
pub struct FrontDoor<A> {
    app: Arc<A>,
    limits: ClientLimits,
    /// Where refusals and open connections are counted; `None` for the admin listener.
    metrics: Option<Metrics>,
    open: AtomicUsize,
}

impl<A> std::fmt::Debug for FrontDoor<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontDoor")
            .field("limits", &self.limits)
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<A> FrontDoor<A> {
    /// The public listener's front door, counting its refusals and connections in `metrics`.
    pub fn new(app: A, limits: ClientLimits, metrics: Metrics) -> Self {
        Self {
            app: Arc::new(app),
            limits,
            metrics: Some(metrics),
            open: AtomicUsize::new(0),
        }
    }

    /// A front door that counts nothing (the admin listener's).
    pub fn uncounted(app: A, limits: ClientLimits) -> Self {
        Self {
            app: Arc::new(app),
            limits,
            metrics: None,
            open: AtomicUsize::new(0),
        }
    }
}

/// One of the `max_client_connections` slots, given back on drop.
struct Slot<'a> {
    open: &'a AtomicUsize,
    metrics: Option<&'a Metrics>,
}

impl<'a> Slot<'a> {
    fn take(open: &'a AtomicUsize, max: usize, metrics: Option<&'a Metrics>) -> Option<Self> {
        if open.fetch_add(1, Ordering::AcqRel) >= max {
            open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        if let Some(m) = metrics {
            m.client_connections.inc();
        }
        Some(Slot { open, metrics })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(m) = self.metrics {
            m.client_connections.dec();
        }
    }
}

/// Why the front door ends a connection without handing a request to pingora.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Nothing to answer: the client closed, stayed idle too long, or the proxy is stopping.
    Quiet,
    /// All connection slots are taken.
    Busy,
    HeaderTimeout,
    /// A body to be buffered did not arrive whole in time.
    BodyTimeout,
    HeaderTooLarge,
    BadRequest(&'static str),
    Connect,
}

impl Refusal {
    fn status(&self) -> (u16, &'static str) {
        match self {
            Refusal::Quiet => (0, ""),
            Refusal::Busy => (503, "Service Unavailable"),
            Refusal::HeaderTimeout | Refusal::BodyTimeout => (408, "Request Timeout"),
            Refusal::HeaderTooLarge => (431, "Request Header Fields Too Large"),
            Refusal::BadRequest(_) => (400, "Bad Request"),
            Refusal::Connect => (405, "Method Not Allowed"),
        }
    }

    fn body(&self, limits: &ClientLimits) -> Bytes {
        match self {
            Refusal::Quiet => Bytes::new(),
            Refusal::Busy => json_error(
                "too_many_connections",
                &format!(
                    "the proxy holds its limit of {} client connections; retry later",
                    limits.max_connections
                ),
            ),
            Refusal::HeaderTimeout => json_error(
                "request_timeout",
                &format!(
                    "the request header did not arrive within {} ms",
                    limits.header_timeout.as_millis()
                ),
            ),
            Refusal::BodyTimeout => json_error(
                "request_timeout",
                &format!(
                    "the request body did not arrive within {} ms",
                    limits.body_timeout.as_millis()
                ),
            ),
            Refusal::HeaderTooLarge => json_error(
                "request_header_too_large",
                &format!(
                    "the request header exceeds {} bytes or {MAX_HEADERS} fields",
                    limits.max_header_bytes
                ),
            ),
            Refusal::BadRequest(why) => json_error("bad_request", why),
            Refusal::Connect => json_error("method_not_allowed", "CONNECT is not proxied"),
        }
    }

    /// The whole answer, closing the connection.
    fn response(&self, limits: &ClientLimits) -> Vec<u8> {
        let (status, reason) = self.status();
        let body = self.body(limits);
        let mut out = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        if matches!(self, Refusal::Busy) {
            out.push_str("retry-after: 1\r\n");
        }
        if matches!(self, Refusal::Connect) {
            out.push_str("allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&body);
        out
    }
}

/// How the body of an admitted request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// `Content-Length` bytes (0: no body).
    Length(u64),
    /// Chunked: pingora finds the end itself.
    Chunked,
    /// An upgrade: what follows the header is the new protocol's, never buffered.
    Upgrade,
}

/// How much of a request body the front door holds.
#[derive(Debug, PartialEq, Eq)]
enum BodyScan {
    /// All of it.
    Complete,
    /// Not all yet.
    Partial,
    /// More than is buffered (or an upgrade): it is streamed.
    Streamed,
    /// The chunked framing is broken.
    Invalid(&'static str),
}

/// What the front door learnt from a complete request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// Bytes of the header as received.
    len: usize,
    body: Body,
    /// `Expect: 100-continue`: the client may wait for a `100 Continue` before it sends the body.
    expect_continue: bool,
}

#[async_trait]
impl<A> ServerApp for FrontDoor<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut conn = ClientConn::new(stream, self.limits.max_header_bytes);
        let Some(_slot) = Slot::take(
            &self.open,
            self.limits.max_connections,
            self.metrics.as_ref(),
        ) else {
            self.refuse(&mut conn, Refusal::Busy).await;
            return None;
        };
        self.serve(conn, shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}

impl<A> FrontDoor<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn serve(&self, mut conn: ClientConn, shutdown: &ShutdownWatch) {
        let mut first = true;
        loop {
            let head = match self.next_head(&mut conn, first, shutdown).await {
                Ok(head) => head,
                Err(refusal) => {
                    self.refuse(&mut conn, refusal).await;
                    return;
                }
            };
            let head = match self.buffer_body(&mut conn, head).await {
                Ok(head) => head,
                Err(refusal) => {
                    self.refuse(&mut conn, refusal).await;
                    return;
                }
            };
            conn.admit(head);
            let mut session = ServerSession::new_http1(Box::new(conn));
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let Some(reused) = self.app.process_new_http(session, shutdown).await else {
                return;
            };
            // The settings carried between requests are pingora's keep-alive and pipelining
            // state, which the front door owns instead.
            let (stream, _settings) = reused.consume();
            let Ok(back) = stream.into_any().downcast::<ClientConn>() else {
                return;
            };
            conn = *back;
            if *shutdown.borrow() || conn.allowance.is_some_and(|n| n > 0) {
                return;
            }
            first = false;
        }
    }

    /// Waits for the next request and reads its complete header into `conn`.
    async fn next_head(
        &self,
        conn: &mut ClientConn,
        first: bool,
        shutdown: &ShutdownWatch,
    ) -> Result<Head, Refusal> {
        let start = Instant::now();
        let mut deadline = start + self.limits.header_timeout;
        if conn.buf.is_empty() {
            let idle_until = if first {
                deadline
            } else {
                start + self.limits.keepalive_timeout
            };
            let mut stopping = shutdown.clone();
            let arrived = tokio::select! {
                read = timeout_at(idle_until, conn.fill()) => matches!(read, Ok(Ok(n)) if n > 0),
                _ = stopping.wait_for(|stop| *stop) => false,
            };
            if !arrived {
                return Err(Refusal::Quiet);
            }
            if !first {
                deadline = Instant::now() + self.limits.header_timeout;
            }
        }
        let mut scanned = 0;
        loop {
            match scan_head(&conn.buf, &mut scanned, self.limits.max_header_bytes) {
                Scan::Complete(head) => return Ok(head),
                Scan::Refused(refusal) => return Err(refusal),
                Scan::Partial if conn.eof => return Err(Refusal::Quiet),
                Scan::Partial => match timeout_at(deadline, conn.fill()).await {
                    Err(_elapsed) => return Err(Refusal::HeaderTimeout),
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => return Err(Refusal::Quiet),
                },
            }
        }
    }

    /// Reads the body of the request whose header `conn` holds, when it is to be buffered, within
    /// `body_timeout` of now; the header as it goes on.
    ///
    /// A client that sent `Expect: 100-continue` gets the `100 Continue` from here, before its body
    /// is read, as nginx does when it buffers; the `Expect` line is then taken out of a buffered
    /// request, so that the replica, which gets the body whole, sends no second `100`. A streamed
    /// request keeps it: the replica answers it through pingora.
    async fn buffer_body(&self, conn: &mut ClientConn, mut head: Head) -> Result<Head, Refusal> {
        let deadline = Instant::now() + self.limits.body_timeout;
        let mut continued = false;
        loop {
            let received = conn.buf.get(head.len..).unwrap_or_default();
            match scan_body(head.body, received, self.limits.max_buffered_body) {
                BodyScan::Streamed => return Ok(head),
                BodyScan::Complete => {
                    if head.expect_continue {
                        head.len = strip_expect(&mut conn.buf, head.len);
                        head.expect_continue = false;
                    }
                    return Ok(head);
                }
                BodyScan::Invalid(why) => return Err(Refusal::BadRequest(why)),
                BodyScan::Partial if conn.eof => return Err(Refusal::Quiet),
                BodyScan::Partial => {
                    if head.expect_continue && !continued {
                        continued = true;
                        let sent = async {
                            conn.io.write_all(CONTINUE).await?;
                            conn.io.flush().await
                        };
                        match timeout_at(deadline, sent).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => return Err(Refusal::Quiet),
                            Err(_elapsed) => return Err(Refusal::BodyTimeout),
                        }
                    }
                    match timeout_at(deadline, conn.fill()).await {
                        Err(_elapsed) => return Err(Refusal::BodyTimeout),
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => return Err(Refusal::Quiet),
                    }
                }
            }
        }
    }

    /// Answers a refused request (if there is anyone to answer) and closes the connection.
    async fn refuse(&self, conn: &mut ClientConn, refusal: Refusal) {
        if refusal == Refusal::Quiet {
            return;
        }
        let (status, _) = refusal.status();
        if let Some(metrics) = &self.metrics {
            metrics
                .requests
                .with_label_values(&["none", "none", &status.to_string(), Origin::Proxy.as_str()])
                .inc();
        }
        let answer = refusal.response(&self.limits);
        // A connection over the cap holds no slot, so it lingers only briefly: a flood of them
        // would otherwise hold descriptors beyond the cap for the whole linger time.
        let linger = if refusal == Refusal::Busy {
            BUSY_LINGER
        } else {
            LINGER
        };
        let sent = async {
            conn.io.write_all(&answer).await?;
            conn.io.flush().await
        };
        if tokio::time::timeout(linger, sent).await.is_err() {
            return;
        }
        Shutdown::shutdown(&mut *conn.io).await;
        // Read and drop what the client still sends until it closes, within bounds.
        let _ = tokio::time::timeout(linger, async {
            let mut sink = [0u8; 1024];
            let mut dropped = 0;
            while dropped < LINGER_BYTES {
                match conn.io.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => dropped += n,
                }
            }
        })
        .await;
    }
}

/// The state of the header being read.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    Partial,
    Complete(Head),
    Refused(Refusal),
}

/// Looks for the end of the request header in `buf` (from `next` on: where the previous look
/// stopped) and, once it is there, checks the header.
fn scan_head(buf: &[u8], next: &mut usize, max: usize) -> Scan {
    let too_large = |len: usize| {
        if len > max {
            Scan::Refused(Refusal::HeaderTooLarge)
        } else {
            Scan::Partial
        }
    };
    loop {
        // A blank line ends the header: "\n\n" or "\n\r\n".
        let found = buf
            .get(*next..)
            .and_then(|rest| rest.windows(2).position(|w| w == b"\n\n" || w == b"\n\r"))
            .map(|i| *next + i);
        let Some(i) = found else {
            *next = buf.len().saturating_sub(1);
            return too_large(buf.len());
        };
        let blank_end = if buf[i + 1] == b'\n' {
            i + 2
        } else if i + 2 >= buf.len() {
            // "\n\r" at the very end: wait for what follows.
            *next = i;
            return too_large(buf.len());
        } else if buf[i + 2] == b'\n' {
            i + 3
        } else {
            *next = i + 1;
            continue;
        };
        if blank_end > max {
            return Scan::Refused(Refusal::HeaderTooLarge);
        }
        match check_head(&buf[..blank_end]) {
            // httparse skips blank lines before a request: this was one of them.
            Scan::Partial => *next = i + 1,
            done => return done,
        }
    }
}

/// Parses a complete header (ending in its blank line) and decides whether pingora gets it.
fn check_head(header: &[u8]) -> Scan {
    // Uninitialised slots: httparse fills as many as the header has; initialising all 256
    // (8 KiB) for each request took about a third of the header check's instructions.
    let mut fields = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(header, &mut fields) {
        Err(httparse::Error::Token | httparse::Error::Version) => {}
        parsed => return finish_check(&req, parsed, 0),
    }
    // pingora percent-encodes a few illegal bytes in the request target and parses again; accept
    // what it would.
    let Some(fixed) = escape_target(header) else {
        return Scan::Refused(Refusal::BadRequest("the request line is malformed"));
    };
    let mut fields = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(&fixed, &mut fields);
    finish_check(&req, parsed, fixed.len() - header.len())
}

fn finish_check(
    req: &httparse::Request<'_, '_>,
    parsed: httparse::Result<usize>,
    grown: usize,
) -> Scan {
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n - grown,
        Ok(httparse::Status::Partial) => return Scan::Partial,
        Err(httparse::Error::TooManyHeaders) => return Scan::Refused(Refusal::HeaderTooLarge),
        Err(_) => {
            return Scan::Refused(Refusal::BadRequest(
                "the request header could not be parsed",
            ))
        }
    };
    let http11 = req.version == Some(1);
    if req.method == Some("CONNECT") {
        return Scan::Refused(Refusal::Connect);
    }
    let named = |name: &'static str| {
        req.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    };
    let hosts = named("host").count();
    if hosts > 1 || (http11 && hosts == 0) {
        return Scan::Refused(Refusal::BadRequest(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    if named("host").any(|h| h.value.contains(&b'@')) {
        return Scan::Refused(Refusal::BadRequest(
            "the Host header must be host[:port], without userinfo",
        ));
    }
    if authority_refused(req) {
        return Scan::Refused(Refusal::BadRequest(
            "the request target's authority is ambiguous or differs from Host",
        ));
    }
    let chunked = named("transfer-encoding").next().is_some();
    if chunked && !http11 {
        return Scan::Refused(Refusal::BadRequest(
            "Transfer-Encoding is not allowed in an HTTP/1.0 request",
        ));
    }
    let upgrade = named("upgrade").next().is_some();
    let mut length: Option<u64> = None;
    for h in named("content-length") {
        // Identical repeats, also comma-separated on one line, are one length (RFC 9110 8.6).
        for part in h.value.split(|b| *b == b',') {
            let n = std::str::from_utf8(part)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok());
            match (n, length) {
                (None, _) => {
                    return Scan::Refused(Refusal::BadRequest("Content-Length is not a number"))
                }
                // No body that large can be meant; refused so that the allowance arithmetic
                // (header length plus body length) stays far from overflowing.
                (Some(n), _) if n > MAX_CONTENT_LENGTH => {
                    return Scan::Refused(Refusal::BadRequest("Content-Length is too large"))
                }
                (Some(n), Some(prev)) if n != prev => {
                    return Scan::Refused(Refusal::BadRequest(
                        "Content-Length is given twice with different values",
                    ))
                }
                (Some(n), _) => length = Some(n),
            }
        }
    }
    let body = if upgrade {
        Body::Upgrade
    } else if chunked {
        Body::Chunked
    } else {
        Body::Length(length.unwrap_or(0))
    };
    let expect_continue = named("expect").any(|h| {
        std::str::from_utf8(h.value).is_ok_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    });
    Scan::Complete(Head {
        len,
        body,
        expect_continue,
    })
}

/// Whether pingora would refuse the request for its authority: an absolute-form target with
/// userinfo, or whose authority differs from `Host`, or that is ambiguous. pingora answers those
/// with an empty `400` of its own; running its own check here lets the front door answer in JSON.
/// An origin-form target (`/...`), nearly every request, has no authority and is not checked.
fn authority_refused(req: &httparse::Request<'_, '_>) -> bool {
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return false;
    };
    if target.starts_with('/') {
        return false;
    }
    let Ok(mut header) = RequestHeader::build_no_case(method, target.as_bytes(), Some(2)) else {
        return true;
    };
    for host in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
    {
        let Ok(value) = http::HeaderValue::from_bytes(host.value) else {
            return true;
        };
        if header.append_header(http::header::HOST, value).is_err() {
            return true;
        }
    }
    validate_request_authority(&header).is_err()
}

/// Takes the `Expect` field lines out of the header that fills the first `len` bytes of `buf`;
/// the header's new length. A request line cannot start with `expect:` (a method is followed by a
/// space), so every line that does is a field line.
fn strip_expect(buf: &mut BytesMut, len: usize) -> usize {
    let mut kept = BytesMut::with_capacity(buf.len());
    for line in buf[..len].split_inclusive(|b| *b == b'\n') {
        let expect = line
            .get(..7)
            .is_some_and(|name| name.eq_ignore_ascii_case(b"expect:"));
        if !expect {
            kept.extend_from_slice(line);
        }
    }
    let new_len = kept.len();
    kept.extend_from_slice(&buf[len..]);
    *buf = kept;
    new_len
}

/// How much of a `body` of kind `kind` the bytes `received` after its header hold, buffering at
/// most `max` bytes of it.
fn scan_body(kind: Body, received: &[u8], max: usize) -> BodyScan {
    match kind {
        Body::Upgrade => BodyScan::Streamed,
        Body::Length(n) if n > max as u64 => BodyScan::Streamed,
        Body::Length(n) if received.len() as u64 >= n => BodyScan::Complete,
        Body::Length(_) => BodyScan::Partial,
        Body::Chunked => scan_chunked(received, max),
    }
}

/// Follows chunked framing (RFC 9112 7.1) through `received`: every chunk-size line, chunk end and
/// trailer line must end in CRLF.
fn scan_chunked(received: &[u8], max: usize) -> BodyScan {
    const BAD_SIZE: &str = "a chunk-size line is malformed or does not end in CRLF";
    let mut at = 0usize;
    loop {
        if at > max {
            return BodyScan::Streamed;
        }
        let rest = &received[at..];
        let (line, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) if rest.len() > MAX_CHUNK_LINE => {
                return BodyScan::Invalid(BAD_SIZE)
            }
            Ok(httparse::Status::Partial) => return BodyScan::Partial,
            Err(_) => return BodyScan::Invalid(BAD_SIZE),
        };
        at += line;
        if size == 0 {
            return scan_trailers(&received[at..], max.saturating_sub(at));
        }
        if size > (max - at.min(max)) as u64 {
            return BodyScan::Streamed;
        }
        // Bounded by `max` just above, so it fits a usize.
        let end = at + size as usize;
        match received.get(end..end + 2) {
            None => return BodyScan::Partial,
            Some(b"\r\n") => at = end + 2,
            Some(_) => return BodyScan::Invalid("a chunk's data does not end in CRLF"),
        }
    }
}

/// The trailer section after the last chunk: field lines, then an empty line, each ending in CRLF.
fn scan_trailers(received: &[u8], max: usize) -> BodyScan {
    let mut at = 0;
    loop {
        let rest = &received[at..];
        let Some(lf) = rest.iter().position(|b| *b == b'\n') else {
            return if rest.len() > max {
                BodyScan::Streamed
            } else {
                BodyScan::Partial
            };
        };
        if lf == 0 || rest[lf - 1] != b'\r' {
            return BodyScan::Invalid("a chunked body's trailer line does not end in CRLF");
        }
        if lf == 1 {
            return BodyScan::Complete;
        }
        at += lf + 1;
        if at > max {
            return BodyScan::Streamed;
        }
    }
}

/// The header with the bytes pingora would escape in the request target percent-encoded, or
/// `None` when its first line is not `METHOD SP target SP HTTP/d[.d]` or nothing needs escaping.
fn escape_target(header: &[u8]) -> Option<Vec<u8>> {
    let line_end = header.iter().position(|b| *b == b'\n')?;
    let line = header[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&header[..line_end]);
    let method_end = line.iter().position(|b| *b == b' ')?;
    if method_end == 0
        || !line[..method_end]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
    {
        return None;
    }
    let version_at = line.windows(6).rposition(|w| w == b" HTTP/")?;
    if version_at <= method_end + 1 {
        return None;
    }
    let version = &line[version_at + 6..];
    let version_ok = matches!(version, [d] | [d, b'.', _] if d.is_ascii_digit())
        && version.iter().all(|b| b.is_ascii_digit() || *b == b'.');
    if !version_ok {
        return None;
    }
    let target = &line[method_end + 1..version_at];
    let mut out = Vec::with_capacity(header.len() + 32);
    out.extend_from_slice(&header[..method_end + 1]);
    let mut changed = false;
    for &b in target {
        if b.is_ascii_control() || b >= 0x80 || matches!(b, b' ' | b'<' | b'>' | b'"') {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
            changed = true;
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&header[version_at..]);
    changed.then_some(out)
}

/// A client connection as pingora sees it: the socket, plus the bytes the front door read ahead.
///
/// pingora may read the admitted request only (`allowance`); once it has, further bytes are
/// kept for the front door (the next pipelined request) and pingora's reads wait, except that the
/// client closing the connection still reaches it as end of stream, so a request whose client left
/// is abandoned as before.
pub struct ClientConn {
    io: Stream,
    /// Read from the client, not yet given to pingora: the current request's header and what came
    /// with it, then the start of the next request.
    buf: BytesMut,
    /// Bytes of the current request pingora may still read; `None` while unbounded.
    allowance: Option<u64>,
    /// The client closed its side; what is in `buf` is all there is.
    eof: bool,
    /// Most bytes read ahead of pingora.
    keep: usize,
}

impl std::fmt::Debug for ClientConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConn")
            .field("io", &self.io)
            .field("buffered", &self.buf.len())
            .field("allowance", &self.allowance)
            .field("eof", &self.eof)
            .finish()
    }
}

impl ClientConn {
    fn new(io: Stream, max_header_bytes: usize) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            allowance: Some(0),
            eof: false,
            // A full header of the next request plus its line ends.
            keep: max_header_bytes + 4,
        }
    }

    /// Lets pingora read this request.
    fn admit(&mut self, head: Head) {
        self.allowance = match head.body {
            Body::Length(n) => Some((head.len as u64).saturating_add(n)),
            Body::Chunked | Body::Upgrade => None,
        };
    }

    /// Reads once from the client into `buf`; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.eof {
            return Poll::Ready(Ok(0));
        }
        // Left uninitialised: a read fills only what arrived, and most polls find nothing to
        // read. Zeroing 4 KiB on each poll (4-5 per request) was most of the front door's
        // instructions.
        let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut read = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        if n == 0 {
            self.eof = true;
        } else {
            self.buf.extend_from_slice(read.filled());
        }
        Poll::Ready(Ok(n))
    }

    fn consumed(&mut self, n: usize) {
        if let Some(left) = self.allowance.as_mut() {
            *left = left.saturating_sub(n as u64);
        }
    }

    /// pingora reads past the end of the admitted request (to notice a client leaving): keep
    /// what arrives for the next request and report only the end of the stream.
    fn poll_past_request(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.eof {
                // With a request waiting, that one is served first; pingora's read just waits
                // (it is always raced against the upstream's answer).
                return if self.buf.is_empty() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            if self.buf.len() >= self.keep {
                return Poll::Pending;
            }
            ready!(self.poll_fill(cx))?;
        }
    }
}

impl AsyncRead for ClientConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let allowed = match this.allowance {
            Some(0) => return this.poll_past_request(cx),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        let want = allowed.min(dst.remaining());
        if !this.buf.is_empty() {
            let n = want.min(this.buf.len());
            dst.put_slice(&this.buf[..n]);
            this.buf.advance(n);
            if this.buf.is_empty() {
                // Give the memory back: an idle connection holds no buffer.
                this.buf = BytesMut::new();
            }
            this.consumed(n);
            return Poll::Ready(Ok(()));
        }
        if this.eof {
            return Poll::Ready(Ok(()));
        }
        let n = if want == dst.remaining() {
            let before = dst.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, dst))?;
            dst.filled().len() - before
        } else {
            let mut limited = ReadBuf::new(dst.initialize_unfilled_to(want));
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut limited))?;
            let n = limited.filled().len();
            dst.advance(n);
            n
        };
        this.consumed(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ClientConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for ClientConn {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.io).await;
    }
}

impl UniqueID for ClientConn {
    fn id(&self) -> UniqueIDType {
        self.io.id()
    }
}

impl Ssl for ClientConn {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.io.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.io.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.io.selected_alpn_proto()
    }
}

impl GetTimingDigest for ClientConn {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.io.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.io.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.io.get_write_pending_time()
    }
}

impl GetProxyDigest for ClientConn {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.io.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.io.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for ClientConn {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.io.get_socket_digest()
    }

    fn set_socket_digest(&mut self, socket_digest: SocketDigest) {
        self.io.set_socket_digest(socket_digest);
    }
}

/// The bytes pingora reads are the front door's, already taken from the socket: no peeking.
#[async_trait]
impl Peek for ClientConn {}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &[u8]) -> Scan {
        scan_head(text, &mut 0, 32 * 1024)
    }

    fn complete(text: &[u8]) -> Head {
        match scan(text) {
            Scan::Complete(head) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
        }
    }

    fn refused(text: &[u8]) -> Refusal {
        match scan(text) {
            Scan::Refused(r) => r,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(text)),
        }
    }

    #[test]
    fn a_header_is_complete_at_its_blank_line() {
        let get = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            complete(get),
            Head {
                len: get.len(),
                body: Body::Length(0),
                expect_continue: false,
            }
        );
        let mut two = get.to_vec();
        two.extend_from_slice(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(complete(&two).len, get.len(), "only the first request");
        let post = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(complete(post).body, Body::Length(5));
        let chunked = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(complete(chunked).body, Body::Chunked);
        assert_eq!(complete(b"GET / HTTP/1.1\nHost: x\n\n").len, 24);
        // Blank lines before a request are skipped, as httparse does.
        let lead = b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(complete(lead).len, lead.len());
        assert_eq!(complete(b"GET / HTTP/1.0\r\n\r\n").body, Body::Length(0));
        let same = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n";
        assert_eq!(complete(same).body, Body::Length(3));
    }

    #[test]
    fn a_partial_header_waits_and_resumes_where_it_stopped() {
        let full = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut scanned = 0;
        for cut in 1..full.len() {
            assert_eq!(
                scan_head(&full[..cut], &mut scanned, 1024),
                Scan::Partial,
                "{cut}"
            );
        }
        assert!(matches!(
            scan_head(full, &mut scanned, 1024),
            Scan::Complete(_)
        ));
    }

    #[test]
    fn malformed_headers_are_refused_with_a_reason() {
        assert!(matches!(
            refused(b"GET / HTTP/1.1\r\n\r\n"),
            Refusal::BadRequest(m) if m.contains("Host")
        ));
        assert!(matches!(
            refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Refusal::BadRequest(_)
        ));
        assert!(matches!(refused(b"HELLO\r\n\r\n"), Refusal::BadRequest(_)));
        assert!(matches!(
            refused(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
            ),
            Refusal::BadRequest(_)
        ));
        assert!(matches!(
            refused(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
            Refusal::BadRequest(_)
        ));
        assert!(matches!(
            refused(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Refusal::BadRequest(_)
        ));
        assert!(matches!(
            refused(b"GET / HTTP/1.1\r\nHost: user:pw@x\r\n\r\n"),
            Refusal::BadRequest(m) if m.contains("userinfo")
        ));
        for target in ["http://other/a", "http://u@x/a", "http:/\\x/a"] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
            assert!(
                matches!(
                    refused(head.as_bytes()),
                    Refusal::BadRequest(m) if m.contains("authority")
                ),
                "{target}"
            );
        }
        // The same authority in both places is an absolute-form request like any other.
        complete(b"GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n");
        complete(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
        // A length that would overflow the header's length added to it.
        assert!(matches!(
            refused(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n"
            ),
            Refusal::BadRequest(m) if m.contains("too large")
        ));
        assert_eq!(
            refused(b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"),
            Refusal::Connect
        );
        let long = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(2000)
        );
        assert_eq!(
            scan_head(long.as_bytes(), &mut 0, 1024),
            Scan::Refused(Refusal::HeaderTooLarge)
        );
        assert_eq!(
            scan_head(&[b'a'; 2000], &mut 0, 1024),
            Scan::Refused(Refusal::HeaderTooLarge),
            "no blank line within the limit"
        );
    }

    #[test]
    fn bodies_are_held_whole_up_to_the_limit_and_streamed_beyond() {
        use BodyScan::*;
        assert_eq!(scan_body(Body::Length(0), b"", 16), Complete);
        assert_eq!(scan_body(Body::Length(5), b"hell", 16), Partial);
        assert_eq!(scan_body(Body::Length(5), b"hello", 16), Complete);
        assert_eq!(scan_body(Body::Length(17), b"", 16), Streamed);
        assert_eq!(scan_body(Body::Upgrade, b"", 16), Streamed);
        let whole = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nx-t: 1\r\n\r\n";
        assert_eq!(scan_body(Body::Chunked, whole, 1024), Complete);
        for cut in 0..whole.len() {
            assert_eq!(
                scan_body(Body::Chunked, &whole[..cut], 1024),
                Partial,
                "{:?}",
                String::from_utf8_lossy(&whole[..cut])
            );
        }
        assert_eq!(scan_body(Body::Chunked, b"0\r\n\r\n", 16), Complete);
        // Larger than the limit, in one chunk or over several.
        assert_eq!(scan_body(Body::Chunked, b"20\r\n", 16), Streamed);
        let many = b"4\r\nabcd\r\n".repeat(8);
        assert_eq!(scan_body(Body::Chunked, &many, 16), Streamed);
        for bad in [
            &b"5\nhello\n0\n\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"zz\r\n",
            b"0\r\nx-t: 1\n\r\n",
            b"0\r\n\n",
        ] {
            assert!(
                matches!(scan_body(Body::Chunked, bad, 1024), Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn expect_lines_are_taken_out_of_a_buffered_header() {
        let header =
            b"POST /a HTTP/1.1\r\nHost: x\r\nEXPECT: 100-continue\r\nContent-Length: 2\r\n\r\n";
        assert!(complete(header).expect_continue);
        let mut buf = BytesMut::from(&header[..]);
        buf.extend_from_slice(b"hiGET / HTTP/1.1\r\n");
        let len = strip_expect(&mut buf, header.len());
        assert_eq!(
            &buf[..len],
            &b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"[..]
        );
        assert_eq!(&buf[len..], &b"hiGET / HTTP/1.1\r\n"[..]);
        assert!(!complete(b"POST /a HTTP/1.1\r\nHost: x\r\nExpect: other\r\n\r\n").expect_continue);
    }

    #[test]
    fn targets_pingora_would_escape_are_accepted() {
        let raw = b"GET /a b|\"c\" HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(complete(raw).len, raw.len());
        assert_eq!(
            escape_target(raw).as_deref(),
            Some(&b"GET /a%20b|%22c%22 HTTP/1.1\r\nHost: x\r\n\r\n"[..])
        );
    }

    #[test]
    fn every_refusal_is_a_complete_json_answer_that_closes() {
        let limits = ClientLimits {
            keepalive_timeout: Duration::from_secs(1),
            header_timeout: Duration::from_secs(1),
            max_header_bytes: 1024,
            max_connections: 1,
            body_timeout: Duration::from_secs(1),
            max_buffered_body: 1024,
        };
        for r in [
            Refusal::Busy,
            Refusal::HeaderTimeout,
            Refusal::BodyTimeout,
            Refusal::HeaderTooLarge,
            Refusal::BadRequest("x"),
            Refusal::Connect,
        ] {
            let answer = String::from_utf8(r.response(&limits)).expect("text");
            let (head, body) = answer.split_once("\r\n\r\n").expect("a blank line");
            assert!(head.contains("connection: close"), "{head}");
            assert!(
                head.contains(&format!("content-length: {}", body.len())),
                "{head}"
            );
            let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
            assert!(json["error"].is_string() && json["message"].is_string());
        }
    }
}
