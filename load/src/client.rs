//! One virtual user's HTTP side: a keep-alive connection from its own source address, a cookie
//! jar, and requests that end in an answer or a classified failure.
//!
//! A user owns exactly one connection, as a browser tab would, and sends one request at a time
//! on it; the generator must know whether a failure was the connect (nothing sent) or the
//! exchange (maybe applied), which session-loss detection depends on. For that shape a general
//! client's machinery (dispatch channels, a body stream, header maps) was most of the
//! generator's own cost per request (`scripts/bench-load`; docs/benchmarks.md, "Load
//! generator"), so the exchange is written here directly on the socket, with `httparse` reading
//! the answers ([`crate::wire`]).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::wire::{self, BodyEnd};

/// Why a request failed. A request that got any HTTP answer other than 2xx, or none, is failed.
///
/// The classification belongs to the client, which alone knows how far an exchange got (nothing
/// sent, or sent and then broken); the measurement layer counts these kinds, and session-loss
/// detection reads them to tell a request that never left from one that may have been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connection could be made (refused, unreachable, connect timed out).
    Connect,
    /// No complete answer within the request timeout.
    Timeout,
    /// The connection broke after the request was sent (reset, closed, malformed answer).
    Io,
    /// A 4xx answer (a 401 after a successful login also counts as a session loss).
    Status4xx,
    /// A 5xx answer (from the service, or from the proxy: 502/503/504).
    Status5xx,
}

/// An answer the generator cannot read arrives after the request went out: the exchange broke,
/// like a reset, so it counts as I/O.
impl From<wire::Malformed> for ErrorKind {
    fn from(_: wire::Malformed) -> Self {
        ErrorKind::Io
    }
}

/// Where the requests go: one `host:port` and a path prefix (`/stateful` through the proxy,
/// empty when talking to a service directly).
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header: the address as given.
    pub host: String,
    pub prefix: String,
}

impl Target {
    /// Parses `http://HOST:PORT[/PREFIX]`. Only plain HTTP and literal addresses: the lab runs on
    /// loopback and in its own container network.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("target '{url}' must start with http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let addr: SocketAddr = authority.parse().map_err(|_| {
            format!("target '{url}': '{authority}' is not IP:PORT (e.g. 127.0.0.1:8080)")
        })?;
        Ok(Target {
            addr,
            host: authority.to_owned(),
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }
}

/// A header value that is a secret (a bearer token): its `Debug` form never shows it.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An answer: status, the replica that gave it, the body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub replica: Option<Bytes>,
    pub body: Bytes,
}

/// Outcome of one exchange, with the time it was sent (after any reconnect).
/// A request body and its media type.
#[derive(Debug, Clone)]
pub struct Payload {
    pub bytes: Bytes,
    pub content_type: &'static str,
}

impl Payload {
    pub fn json(bytes: Bytes) -> Payload {
        Payload {
            bytes,
            content_type: "application/json",
        }
    }
}

#[derive(Debug)]
pub struct Exchange {
    pub sent: Instant,
    pub result: Result<Answer, ErrorKind>,
}

/// An open connection and what has been read from it but not yet used.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

/// A user's connection and cookies.
#[derive(Debug)]
pub struct Client {
    target: Target,
    source: Option<IpAddr>,
    timeout: Duration,
    conn: Option<Conn>,
    jar: Vec<(String, String)>,
    cookie_header: Option<String>,
    /// `Authorization` on every request (the admin API's bearer token); none for the services.
    authorization: Option<Secret>,
    /// The request being written, kept to reuse its allocation.
    out: Vec<u8>,
}

impl Client {
    pub fn new(target: Target, source: Option<IpAddr>, timeout: Duration) -> Self {
        Client {
            target,
            source,
            timeout,
            conn: None,
            jar: Vec::new(),
            cookie_header: None,
            authorization: None,
            out: Vec::with_capacity(512),
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request: for the proxy's admin API.
    pub fn with_bearer(mut self, token: &str) -> Self {
        self.authorization = Some(Secret(format!("Bearer {token}")));
        self
    }

    /// Forgets every cookie (a new browser profile) and the connection.
    pub fn reset(&mut self) {
        self.jar.clear();
        self.cookie_header = None;
        self.conn = None;
    }

    /// Whether the jar holds a cookie of this name.
    pub fn has_cookie(&self, name: &str) -> bool {
        self.jar.iter().any(|(n, _)| n == name)
    }

    async fn connect(&mut self) -> Result<Conn, ErrorKind> {
        let addr = self.target.addr;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|_| ErrorKind::Connect)?;
        if let Some(ip) = self.source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|_| ErrorKind::Connect)?;
        }
        let stream = socket.connect(addr).await.map_err(|_| ErrorKind::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
        })
    }

    /// Sends one request with a JSON body, or none; `path` is appended to the target's prefix.
    pub async fn send(&mut self, method: Method, path: &str, body: Option<Bytes>) -> Exchange {
        self.send_payload(method, path, body.map(Payload::json))
            .await
    }

    /// Sends one request; `path` is appended to the target's prefix. Reconnects first if the
    /// previous exchange broke the connection. The whole exchange (connect, send, full body) is
    /// bounded by the timeout.
    pub async fn send_payload(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Payload>,
    ) -> Exchange {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.timeout);
        let mut sent = started;
        let result = match tokio::time::timeout_at(
            deadline,
            self.exchange(method, path, body, &mut sent, deadline),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                self.conn = None;
                Err(ErrorKind::Timeout)
            }
        };
        Exchange { sent, result }
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Payload>,
        sent: &mut Instant,
        deadline: tokio::time::Instant,
    ) -> Result<Answer, ErrorKind> {
        let mut conn = match self.conn.take() {
            Some(c) if c.buf.is_empty() && idle_and_open(&c.stream) => c,
            // Never used, or closed by the other side while idle: nothing was sent on it.
            // A connect that does not finish in time is a connect failure (nothing was sent),
            // not a timeout of the exchange.
            _ => tokio::time::timeout_at(deadline, self.connect())
                .await
                .map_err(|_| ErrorKind::Connect)??,
        };
        self.out.clear();
        wire::write_request(
            &mut self.out,
            method.as_str(),
            &self.target.prefix,
            path,
            self.target.host.as_bytes(),
            wire::Fields {
                cookie: self.cookie_header.as_ref().map(String::as_bytes),
                authorization: self.authorization.as_ref().map(|s| s.0.as_bytes()),
                content_type: body.as_ref().map(|b| b.content_type.as_bytes()),
            },
            body.as_ref().map(|b| &b.bytes[..]),
        );
        *sent = Instant::now();
        conn.stream
            .write_all(&self.out)
            .await
            .map_err(|_| ErrorKind::Io)?;
        let (head, body) = read_answer(&mut conn).await?;
        if !head.close {
            self.conn = Some(conn);
        }
        let mut changed = false;
        for value in &head.set_cookies {
            changed |= self.store_cookie(value);
        }
        if changed {
            self.rebuild_cookie_header();
        }
        Ok(Answer {
            status: StatusCode::from_u16(head.status).map_err(|_| ErrorKind::Io)?,
            replica: head.replica,
            body,
        })
    }

    /// Applies one `Set-Cookie`: stores or replaces the cookie, or removes it when the server
    /// expires it (`Max-Age=0` or an empty value). Returns whether the jar changed.
    fn store_cookie(&mut self, value: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(value) else {
            return false;
        };
        let Ok(c) = cookie::Cookie::parse(text) else {
            return false;
        };
        let expired =
            c.value().is_empty() || c.max_age().is_some_and(|age| age.whole_seconds() <= 0);
        let existing = self.jar.iter().position(|(n, _)| n == c.name());
        match (existing, expired) {
            (Some(i), true) => {
                self.jar.remove(i);
            }
            (Some(i), false) => self.jar[i].1 = c.value().to_owned(),
            (None, false) => self.jar.push((c.name().to_owned(), c.value().to_owned())),
            (None, true) => return false,
        }
        true
    }

    /// The `Cookie` line the next request would carry: every cookie in the jar.
    pub fn cookie_line(&self) -> Option<&str> {
        self.cookie_header.as_deref()
    }

    /// The value of one cookie in the jar.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.jar
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every cookie in the jar, as `(name, value)`.
    pub fn cookies(&self) -> &[(String, String)] {
        &self.jar
    }

    /// Puts a cookie in the jar, as a user would paste one copied from elsewhere.
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.jar.retain(|(n, _)| n != name);
        self.jar.push((name.to_owned(), value.to_owned()));
        self.rebuild_cookie_header();
    }

    /// The bytes of the last request written to the wire: its request line, headers and body.
    pub fn last_request_bytes(&self) -> usize {
        self.out.len()
    }

    fn rebuild_cookie_header(&mut self) {
        if self.jar.is_empty() {
            self.cookie_header = None;
            return;
        }
        let line = self
            .jar
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        self.cookie_header = Some(line);
    }
}

/// Whether a kept-alive connection can take the next request: no unread bytes and no end of
/// stream waiting (the server may close an idle connection at any time).
fn idle_and_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Reads until `conn.buf` holds a whole answer; leaves any bytes after it in the buffer.
async fn read_answer(conn: &mut Conn) -> Result<(wire::Head, Bytes), ErrorKind> {
    let head = loop {
        match wire::parse_head(&conn.buf)? {
            // An interim answer (100 Continue, 103 Early Hints): the real one follows.
            Some(head) if (100..200).contains(&head.status) && head.status != 101 => {
                conn.buf.advance(head.len);
                continue;
            }
            Some(head) => break head,
            None => {}
        }
        if !read_more(conn).await? {
            return Err(ErrorKind::Io);
        }
    };
    loop {
        if let Some((body, used)) = wire::take_body(&conn.buf[head.len..], head.body)? {
            conn.buf.advance(head.len + used);
            return Ok((head, body));
        }
        if !read_more(conn).await? {
            // The connection ended: complete only for a body that runs to its end.
            if head.body != BodyEnd::Close {
                return Err(ErrorKind::Io);
            }
            let body = conn.buf.split_off(head.len).freeze();
            conn.buf.clear();
            return Ok((head, body));
        }
    }
}

/// Reads what the socket has; `Ok(false)` at the end of the stream.
async fn read_more(conn: &mut Conn) -> Result<bool, ErrorKind> {
    if conn.buf.len() > wire::MAX_HEAD + 1024 * 1024 {
        return Err(ErrorKind::Io);
    }
    conn.buf.reserve(4096);
    match conn.stream.read_buf(&mut conn.buf).await {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(_) => Err(ErrorKind::Io),
    }
}

/// Classifies a status: `None` for 2xx, else the error kind it counts as.
pub fn status_error(status: StatusCode) -> Option<ErrorKind> {
    if status.is_success() {
        None
    } else if status.is_server_error() {
        Some(ErrorKind::Status5xx)
    } else {
        // 1xx and 3xx are not answers this API gives; count them with the client errors.
        Some(ErrorKind::Status4xx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_and_without_a_prefix() {
        let t = Target::parse("http://127.0.0.1:8080/stateful/").expect("valid test input");
        assert_eq!(t.addr, "127.0.0.1:8080".parse().expect("valid test input"));
        assert_eq!(t.prefix, "/stateful");
        assert_eq!(
            Target::parse("http://127.0.0.1:18001")
                .expect("valid test input")
                .prefix,
            ""
        );
        assert!(Target::parse("https://127.0.0.1:1").is_err());
        assert!(Target::parse("http://localhost:8080").is_err());
    }

    #[test]
    fn the_jar_stores_replaces_and_expires_cookies() {
        let target = Target::parse("http://127.0.0.1:1").expect("valid test input");
        let mut c = Client::new(target, None, Duration::from_secs(1));
        let set = |v: &'static str| v.as_bytes();
        assert!(c.store_cookie(set("statelab_stateful=abc; Path=/; HttpOnly; SameSite=Lax")));
        assert!(c.store_cookie(set("statelab_affinity_stateful=p1; Path=/")));
        assert!(c.store_cookie(set("statelab_stateful=def; Path=/")));
        c.rebuild_cookie_header();
        assert_eq!(
            c.cookie_header.as_ref().expect("valid test input"),
            "statelab_stateful=def; statelab_affinity_stateful=p1"
        );
        assert!(c.store_cookie(set("statelab_stateful=; Path=/; Max-Age=0")));
        assert!(!c.has_cookie("statelab_stateful"));
        assert!(!c.store_cookie(set("gone=; Max-Age=0")));
        assert!(!c.store_cookie(set("not a cookie")));
    }
}

#[cfg(test)]
mod socket_tests {
    //! The client against a scripted server on a real loopback socket.

    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each accepted connection's requests with `answers`, one per
    /// request, then closes the connection.
    async fn scripted(answers: Vec<&'static [u8]>) -> (Target, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let mut connections = 0;
            for answer in answers {
                let (mut stream, _) = listener.accept().await.expect("accept");
                connections += 1;
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                stream.write_all(answer).await.expect("write");
                // Closes after one answer, whatever the answer said about keep-alive.
            }
            connections
        });
        let target = Target::parse(&format!("http://{addr}")).expect("target");
        (target, server)
    }

    #[tokio::test]
    async fn an_interim_answer_is_skipped() {
        let (target, _server) = scripted(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-replica: r-1\r\n\r\nok",
        ])
        .await;
        let mut client = Client::new(target, None, Duration::from_secs(5));
        let answer = client
            .send(Method::GET, "/", None)
            .await
            .result
            .expect("an answer");
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(&answer.body[..], b"ok");
        assert_eq!(answer.replica.expect("x-replica"), "r-1");
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_replaced_not_failed() {
        let ok: &'static [u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (target, server) = scripted(vec![ok, ok]).await;
        let mut client = Client::new(target, None, Duration::from_secs(5));
        assert!(client.send(Method::GET, "/", None).await.result.is_ok());
        // The server has closed the first connection by now (it answered and dropped it); wait
        // until the close has arrived, then send again: a new connection, no failure.
        let deadline = Instant::now() + Duration::from_secs(5);
        while client
            .conn
            .as_ref()
            .is_some_and(|c| idle_and_open(&c.stream))
        {
            assert!(
                Instant::now() < deadline,
                "the server's close never arrived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(client.send(Method::GET, "/", None).await.result.is_ok());
        assert_eq!(server.await.expect("server"), 2);
    }

    #[tokio::test]
    async fn a_refused_connect_is_a_connect_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let target = Target::parse(&format!("http://{addr}")).expect("target");
        let mut client = Client::new(target, None, Duration::from_secs(5));
        let result = client.send(Method::GET, "/", None).await.result;
        assert_eq!(result.expect_err("nothing listens"), ErrorKind::Connect);
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = Target::parse(&format!("http://{}", listener.local_addr().expect("addr")))
            .expect("target");
        let mut client = Client::new(target, None, Duration::from_millis(200));
        // Accepted (the kernel's backlog) but never answered.
        let result = client.send(Method::GET, "/", None).await.result;
        assert_eq!(result.expect_err("no answer"), ErrorKind::Timeout);
        drop(listener);
    }
}
