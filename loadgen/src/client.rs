//! One virtual user's HTTP side: a keep-alive connection from its own source address, a cookie
//! jar, and requests that end in an answer or a classified failure.
//!
//! Built on hyper's low-level HTTP/1 client rather than a pooled client: a user owns exactly one
//! connection, as a browser tab would, and the generator must know whether a failure was the
//! connect (nothing sent) or the exchange (maybe applied) — session-loss detection depends on it.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

use crate::stats::ErrorKind;

/// Where the requests go: one `host:port` and a path prefix (`/stateful` through the proxy,
/// empty when talking to a service directly).
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host_header: HeaderValue,
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
        let host_header = HeaderValue::from_str(authority)
            .map_err(|_| format!("target '{url}': bad authority"))?;
        Ok(Target {
            addr,
            host_header,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }
}

/// An answer: status, the replica that gave it, the body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub replica: Option<HeaderValue>,
    pub body: Bytes,
}

/// Outcome of one exchange, with the time it was sent (after any reconnect).
#[derive(Debug)]
pub struct Exchange {
    pub sent: Instant,
    pub result: Result<Answer, ErrorKind>,
}

type Conn = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// An open connection: the handle requests go through and the connection's I/O future, which
/// this user's task drives itself while it waits for an answer (no second task per connection:
/// one wake-up per exchange instead of two, which the raw-rate benchmark measures).
struct Link {
    sender: SendRequest<Full<Bytes>>,
    io: Option<Pin<Box<Conn>>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("open", &self.io.is_some())
            .finish()
    }
}

/// Awaits `fut` while driving the connection's I/O; once the connection has ended, `fut` is
/// awaited alone (it then fails promptly: its connection is gone).
async fn drive<F: Future>(io: &mut Option<Pin<Box<Conn>>>, fut: F) -> F::Output {
    tokio::pin!(fut);
    if let Some(conn) = io.as_mut() {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            _ = conn.as_mut() => *io = None,
        }
    }
    fut.await
}

/// A user's connection and cookies.
#[derive(Debug)]
pub struct Client {
    target: Target,
    source: Option<IpAddr>,
    timeout: Duration,
    conn: Option<Link>,
    jar: Vec<(String, String)>,
    cookie_header: Option<HeaderValue>,
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
        }
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

    async fn connect(&mut self) -> Result<Link, ErrorKind> {
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
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| ErrorKind::Connect)?;
        Ok(Link {
            sender,
            io: Some(Box::pin(conn)),
        })
    }

    /// Sends one request; `path` is appended to the target's prefix. Reconnects first if the
    /// previous exchange broke the connection. The whole exchange (connect, send, full body) is
    /// bounded by the timeout.
    pub async fn send(&mut self, method: Method, path: &str, body: Option<Bytes>) -> Exchange {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.timeout);
        let mut sent = started;
        let result =
            match tokio::time::timeout_at(deadline, self.exchange(method, path, body, &mut sent))
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
        body: Option<Bytes>,
        sent: &mut Instant,
    ) -> Result<Answer, ErrorKind> {
        let mut link = match self.conn.take() {
            Some(l) if l.io.is_some() && !l.sender.is_closed() => l,
            _ => self.connect().await?,
        };
        if drive(&mut link.io, link.sender.ready()).await.is_err() {
            // The idle connection was closed by the other side: nothing was sent on it.
            link = self.connect().await?;
            drive(&mut link.io, link.sender.ready())
                .await
                .map_err(|_| ErrorKind::Connect)?;
        }
        let mut uri = String::with_capacity(self.target.prefix.len() + path.len());
        uri.push_str(&self.target.prefix);
        uri.push_str(path);
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, self.target.host_header.clone());
        if let Some(cookies) = &self.cookie_header {
            builder = builder.header(http::header::COOKIE, cookies.clone());
        }
        let has_body = body.is_some();
        if has_body {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|_| ErrorKind::Io)?;
        *sent = Instant::now();
        let response = drive(&mut link.io, link.sender.send_request(request))
            .await
            .map_err(|_| ErrorKind::Io)?;
        let (parts, incoming) = response.into_parts();
        let body = drive(&mut link.io, incoming.collect())
            .await
            .map_err(|_| ErrorKind::Io)?
            .to_bytes();
        self.conn = Some(link);
        let mut changed = false;
        for value in parts.headers.get_all(http::header::SET_COOKIE) {
            changed |= self.store_cookie(value);
        }
        if changed {
            self.rebuild_cookie_header();
        }
        Ok(Answer {
            status: parts.status,
            replica: parts.headers.get("x-replica").cloned(),
            body,
        })
    }

    /// Applies one `Set-Cookie`: stores or replaces the cookie, or removes it when the server
    /// expires it (`Max-Age=0` or an empty value). Returns whether the jar changed.
    fn store_cookie(&mut self, value: &HeaderValue) -> bool {
        let Ok(text) = value.to_str() else {
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
        self.cookie_header = HeaderValue::from_str(&line).ok();
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
        let set = |v: &'static str| HeaderValue::from_static(v);
        assert!(c.store_cookie(&set(
            "statelab_stateful=abc; Path=/; HttpOnly; SameSite=Lax"
        )));
        assert!(c.store_cookie(&set("statelab_affinity_stateful=p1; Path=/")));
        assert!(c.store_cookie(&set("statelab_stateful=def; Path=/")));
        c.rebuild_cookie_header();
        assert_eq!(
            c.cookie_header.as_ref().expect("valid test input"),
            "statelab_stateful=def; statelab_affinity_stateful=p1"
        );
        assert!(c.store_cookie(&set("statelab_stateful=; Path=/; Max-Age=0")));
        assert!(!c.has_cookie("statelab_stateful"));
        assert!(!c.store_cookie(&set("gone=; Max-Age=0")));
        assert!(!c.store_cookie(&set("not a cookie")));
    }
}
