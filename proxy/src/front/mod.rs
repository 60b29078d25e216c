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
//!    end, else `408` (or, for a client still sending, it is streamed). No replica is chosen
//!    before the body is in, so a client that stops sending costs only its own connection (a
//!    chunk line that does not end in CRLF is `400`). `Expect: 100-continue` is answered here. A
//!    larger body is streamed to the replica as it arrives;
//! 5. hand pingora a session over a [`ClientConn`], which lets it read exactly this request
//!    (header, then a body whose length is known) and keeps whatever follows, the next pipelined
//!    request, for step 2: pipelined requests are served in order, one at a time;
//! 6. when pingora hands the connection back for reuse, go to 2.
//!
//! A request whose chunked body is streamed, or that asks to upgrade the connection, is handed over
//! without a limit: pingora reads its end itself, and a request pipelined behind it ends the
//! connection after the first answer (pingora's own behaviour).
//!
//! The admin listener has a front door too, with the same bounds and its own connection cap; its
//! refusals are not counted in the proxy's request metrics.

mod body;
mod conn;
mod head;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Shutdown, Stream};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use crate::config::ClientLimits;
use crate::metrics::{Metrics, Origin};
use crate::proxy::json_error;
use body::{scan_body, BodyScan, Progress};
pub use conn::ClientConn;
use head::{scan_head, strip_expect, Head, Scan, MAX_HEADERS};

/// After refusing a request, how long the rest of what the client sent is read and dropped, so
/// that closing with unread data (a TCP reset) does not destroy the answer before it is read.
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes read and dropped while lingering.
const LINGER_BYTES: usize = 64 * 1024;
/// The same for a connection refused over the connection cap: short, because it holds no slot.
const BUSY_LINGER: Duration = Duration::from_millis(50);
/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// A body still incomplete when `client_body_timeout_ms` runs out is streamed, rather than
/// refused, when its client sent a byte this recently: a slow upload, not a stalled one.
const STILL_SENDING: Duration = Duration::from_secs(1);
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
pub(crate) enum DoorRefusal {
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

impl DoorRefusal {
    fn status(&self) -> (u16, &'static str) {
        match self {
            DoorRefusal::Quiet => (0, ""),
            DoorRefusal::Busy => (503, "Service Unavailable"),
            DoorRefusal::HeaderTimeout | DoorRefusal::BodyTimeout => (408, "Request Timeout"),
            DoorRefusal::HeaderTooLarge => (431, "Request Header Fields Too Large"),
            DoorRefusal::BadRequest(_) => (400, "Bad Request"),
            DoorRefusal::Connect => (405, "Method Not Allowed"),
        }
    }

    fn body(&self, limits: &ClientLimits) -> Bytes {
        match self {
            DoorRefusal::Quiet => Bytes::new(),
            DoorRefusal::Busy => json_error(
                "too_many_connections",
                &format!(
                    "the proxy holds its limit of {} client connections; retry later",
                    limits.max_connections
                ),
            ),
            DoorRefusal::HeaderTimeout => json_error(
                "request_timeout",
                &format!(
                    "the request header did not arrive within {} ms",
                    limits.header_timeout.as_millis()
                ),
            ),
            DoorRefusal::BodyTimeout => json_error(
                "request_timeout",
                &format!(
                    "the request body did not arrive within {} ms",
                    limits.body_timeout.as_millis()
                ),
            ),
            DoorRefusal::HeaderTooLarge => json_error(
                "request_header_too_large",
                &format!(
                    "the request header exceeds {} bytes or {MAX_HEADERS} fields",
                    limits.max_header_bytes
                ),
            ),
            DoorRefusal::BadRequest(why) => json_error("bad_request", why),
            DoorRefusal::Connect => json_error("method_not_allowed", "CONNECT is not proxied"),
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
        if matches!(self, DoorRefusal::Busy) {
            out.push_str("retry-after: 1\r\n");
        }
        if matches!(self, DoorRefusal::Connect) {
            out.push_str("allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&body);
        out
    }
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
            self.refuse(&mut conn, DoorRefusal::Busy).await;
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
            if *shutdown.borrow() || conn.allowance.is_some_and(|n| n > 0) || conn.is_hung_up() {
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
    ) -> Result<Head, DoorRefusal> {
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
                return Err(DoorRefusal::Quiet);
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
                Scan::Partial if conn.eof => return Err(DoorRefusal::Quiet),
                Scan::Partial => match timeout_at(deadline, conn.fill()).await {
                    Err(_elapsed) => return Err(DoorRefusal::HeaderTimeout),
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => return Err(DoorRefusal::Quiet),
                },
            }
        }
    }

    /// Reads the body of the request whose header `conn` holds, when it is to be buffered, within
    /// `body_timeout` of now; the header as it goes on.
    ///
    /// When the time runs out with the body incomplete, a client that is still sending (bytes in
    /// a read within the last [`STILL_SENDING`]) is a slow upload, and its request is streamed;
    /// one that stopped gets `408`.
    ///
    /// A client that sent `Expect: 100-continue` gets the `100 Continue` from here, before the
    /// rest of its body is read, as nginx does, and the `Expect` line is taken out of the request:
    /// the replica has nothing left to confirm, and one that never answered `Expect` would
    /// otherwise leave a waiting client to look like a stalled one.
    async fn buffer_body(
        &self,
        conn: &mut ClientConn,
        mut head: Head,
    ) -> Result<Head, DoorRefusal> {
        let deadline = Instant::now() + self.limits.body_timeout;
        let mut progress = Progress::default();
        // When the last read while waiting brought bytes; `None` until one does.
        let mut last_byte: Option<Instant> = None;
        loop {
            let received = conn.buf.get(head.len..).unwrap_or_default();
            let scan = scan_body(
                head.body,
                received,
                self.limits.max_buffered_body,
                &mut progress,
            );
            let done = match scan {
                BodyScan::Complete(framed) => {
                    head.framed = Some(framed);
                    true
                }
                BodyScan::Streamed => true,
                BodyScan::Invalid(why) => return Err(DoorRefusal::BadRequest(why)),
                BodyScan::Partial if conn.eof => return Err(DoorRefusal::Quiet),
                BodyScan::Partial => false,
            };
            if head.expect_continue {
                if !matches!(scan, BodyScan::Complete(_)) {
                    send_continue(conn, deadline).await?;
                }
                head.len = strip_expect(&mut conn.buf, head.len);
                head.expect_continue = false;
            }
            if done {
                return Ok(head);
            }
            match timeout_at(deadline, conn.fill()).await {
                Err(_elapsed) if last_byte.is_some_and(|t| t.elapsed() < STILL_SENDING) => {
                    return Ok(head)
                }
                Err(_elapsed) => return Err(DoorRefusal::BodyTimeout),
                Ok(Ok(0)) => {}
                Ok(Ok(_)) => last_byte = Some(Instant::now()),
                Ok(Err(_)) => return Err(DoorRefusal::Quiet),
            }
        }
    }

    /// Answers a refused request (if there is anyone to answer) and closes the connection.
    async fn refuse(&self, conn: &mut ClientConn, refusal: DoorRefusal) {
        if refusal == DoorRefusal::Quiet {
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
        let linger = if refusal == DoorRefusal::Busy {
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

/// Writes the interim `100 Continue`, by `deadline`.
async fn send_continue(conn: &mut ClientConn, deadline: Instant) -> Result<(), DoorRefusal> {
    let sent = async {
        conn.io.write_all(CONTINUE).await?;
        conn.io.flush().await
    };
    match timeout_at(deadline, sent).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(DoorRefusal::Quiet),
        Err(_elapsed) => Err(DoorRefusal::BodyTimeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            DoorRefusal::Busy,
            DoorRefusal::HeaderTimeout,
            DoorRefusal::BodyTimeout,
            DoorRefusal::HeaderTooLarge,
            DoorRefusal::BadRequest("x"),
            DoorRefusal::Connect,
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
