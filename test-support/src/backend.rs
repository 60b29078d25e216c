//! A tiny real HTTP/1.1 backend for the proxy's tests and benchmark.
//!
//! It answers like a statelab service as far as the proxy cares: `GET /health` is 200 or 503
//! (switchable), every response carries `x-replica: <name>`, and it echoes what the proxy sent
//! (`x-path`, `x-xff`, `x-xfp`, `x-host`, `x-expect`, `x-body-len`) so tests can check the rewrite. `/slow` waits before answering,
//! to have a request in flight on demand; a silent backend passes its health checks and never
//! answers anything else; a frozen one answers nothing at all. Killing it closes the listener and
//! every connection. Asked to, it reports CPU figures in `GET /health?detail=1` as a statelab
//! service does (`cpu_ms`, `uptime_ms`, `cpu_budget_millis`), for a use and a budget the test
//! chooses. A request that asks to upgrade the connection is answered `101` at once, and the
//! connection then echoes every byte it receives until either side closes it: a socket whose
//! replica answers as fast as loopback allows. Upgraded at `/flood`, it sends without end
//! instead, reading nothing.
//!
//! It is hand-written HTTP rather than a server framework so that what the proxy
//! sees is exactly what a test asks for (a silent replica, a connection cut mid-request), and so
//! that `proxy/examples/bench_backend.rs` serves the benchmark with the same code the tests trust.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Counters and switches shared with the serving tasks.
#[derive(Debug, Default)]
pub struct BackendState {
    pub healthy: AtomicBool,
    /// Non-health requests received (counted when the request head is read).
    pub hits: AtomicU64,
    /// Non-health requests currently being handled.
    pub in_flight: AtomicU64,
    /// When set, non-health requests are read and never answered (the connection stays open).
    pub silent: AtomicBool,
    /// When set, every request, health checks included, is read and never answered: a process
    /// stopped with SIGSTOP, whose kernel still accepts connections.
    pub frozen: AtomicBool,
    /// When set, `GET /health?detail=1` reports these CPU figures.
    pub cpu: Mutex<Option<CpuReport>>,
    /// Upgraded connections currently open (echoing, or flooding).
    pub sockets: AtomicU64,
    /// Bytes sent on `/flood` sockets.
    pub flooded: AtomicU64,
}

/// CPU figures for a backend to report as a statelab service would: a process that has used
/// `use_millis` thousandths of a core since it started, in a control group with a budget of
/// `budget_millis` (none: unbounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuReport {
    pub use_millis: u32,
    pub budget_millis: Option<u32>,
}

impl CpuReport {
    /// The body of `GET /health?detail=1` after `uptime` since the backend started.
    fn detail(&self, replica: &str, uptime: Duration) -> Vec<u8> {
        let uptime_ms = uptime.as_millis() as u64;
        let cpu_ms = uptime_ms * u64::from(self.use_millis) / 1000;
        let budget = self
            .budget_millis
            .map(|b| format!(",\"cpu_budget_millis\":{b}"))
            .unwrap_or_default();
        format!(
            "{{\"status\":\"ok\",\"replica\":{replica:?},\"cpu_ms\":{cpu_ms},\"uptime_ms\":{uptime_ms}{budget}}}"
        )
        .into_bytes()
    }
}

/// A running backend; dropping it (or `kill`) stops it.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub state: Arc<BackendState>,
    task: JoinHandle<()>,
}

impl Backend {
    /// Starts on an ephemeral loopback port.
    pub async fn start(name: &str) -> std::io::Result<Backend> {
        Self::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on a given address (used to bring a killed replica back on its old port).
    pub async fn start_on(name: &str, addr: SocketAddr) -> std::io::Result<Backend> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(BackendState {
            healthy: AtomicBool::new(true),
            ..Default::default()
        });
        let task = tokio::spawn(serve(listener, name.to_string(), state.clone()));
        Ok(Backend {
            name: name.to_string(),
            addr,
            state,
            task,
        })
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Keeps passing health checks but leaves every other request unanswered.
    pub fn set_silent(&self, silent: bool) {
        self.state.silent.store(silent, Ordering::SeqCst);
    }

    /// Stops answering anything, health checks included, until thawed; requests already waiting
    /// stay unanswered.
    pub fn set_frozen(&self, frozen: bool) {
        self.state.frozen.store(frozen, Ordering::SeqCst);
    }

    /// Reports `report` in `GET /health?detail=1` from now on; `None` answers the plain `ok` again.
    pub fn report_cpu(&self, report: Option<CpuReport>) {
        *self.state.cpu.lock().unwrap_or_else(|e| e.into_inner()) = report;
    }

    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Upgraded connections open on this backend now.
    pub fn sockets(&self) -> u64 {
        self.state.sockets.load(Ordering::SeqCst)
    }

    /// Bytes sent on `/flood` sockets so far.
    pub fn flooded(&self) -> u64 {
        self.state.flooded.load(Ordering::SeqCst)
    }

    /// Stops accepting and drops every open connection at once, like a killed process.
    pub async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, name: String, state: Arc<BackendState>) {
    // Connection tasks live in the JoinSet, so aborting this task aborts them all.
    let started = Instant::now();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(connection(stream, name.clone(), state.clone(), started));
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn connection(
    mut stream: TcpStream,
    name: String,
    state: Arc<BackendState>,
    started: Instant,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        // Read one request head (and discard its Content-Length body).
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        // No Content-Length is no body; one that does not parse is the proxy's bug, answered
        // with a 400 the test sees rather than read as 0 and left to desynchronise the stream.
        let chunked = header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let body_len: usize = match header(&head, "content-length").map(str::parse) {
            // A chunked body ends at its last chunk; the tests send no trailers.
            None if chunked => loop {
                if let Some(end) = find(&buf[head_end..], b"0\r\n\r\n") {
                    break end + 5;
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            },
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                let bad =
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = stream.write_all(bad).await;
                return;
            }
        };
        while buf.len() < head_end + body_len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + body_len);

        let mut parts = head.split(' ');
        let _method = parts.next().unwrap_or("");
        let target = parts.next().unwrap_or("/");
        let close = header(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let path = target.split('?').next().unwrap_or("/");
        if state.frozen.load(Ordering::SeqCst) {
            let mut sink = [0u8; 512];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }

        let detail: Vec<u8>;
        let mut content_type = "text/plain";
        let (status, body): (&str, &[u8]) = if path == "/health" {
            let cpu = *state.cpu.lock().unwrap_or_else(|e| e.into_inner());
            if !state.healthy.load(Ordering::SeqCst) {
                ("503 Service Unavailable", b"no\n")
            } else if let (Some(cpu), Some("detail=1")) = (cpu, target.split_once('?').map(|t| t.1))
            {
                detail = cpu.detail(&name, started.elapsed());
                content_type = "application/json";
                ("200 OK", &detail)
            } else {
                ("200 OK", b"ok\n")
            }
        } else {
            state.hits.fetch_add(1, Ordering::SeqCst);
            if state.silent.load(Ordering::SeqCst) {
                // Accepted and read, never answered: only the peer giving up ends this.
                let mut sink = [0u8; 512];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            if let Some(protocol) = header(&head, "upgrade") {
                let switch = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: {protocol}\r\nx-replica: {name}\r\n\r\n"
                );
                if stream.write_all(switch.as_bytes()).await.is_ok() {
                    state.sockets.fetch_add(1, Ordering::SeqCst);
                    if path == "/flood" {
                        flood(stream, &state).await;
                    } else {
                        echo(stream, buf).await;
                    }
                    state.sockets.fetch_sub(1, Ordering::SeqCst);
                }
                return;
            }
            state.in_flight.fetch_add(1, Ordering::SeqCst);
            if path == "/slow" {
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
            ("200 OK", b"ok\n")
        };

        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(b"\r\nx-replica: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\r\nx-body-len: ");
        out.extend_from_slice(body_len.to_string().as_bytes());
        out.extend_from_slice(b"\r\nx-path: ");
        out.extend_from_slice(target.as_bytes());
        for (from, to) in [
            ("x-forwarded-for", "x-xff"),
            ("x-forwarded-proto", "x-xfp"),
            ("host", "x-host"),
            ("expect", "x-expect"),
        ] {
            if let Some(v) = header(&head, from) {
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(to.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(v.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\ncontent-type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\ncontent-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        if close {
            out.extend_from_slice(b"\r\nconnection: close");
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
        if stream.write_all(&out).await.is_err() || close {
            return;
        }
    }
}

/// An upgraded connection: echoes what arrives (`early`, read with the request, first) until the
/// peer closes it.
async fn echo(mut stream: TcpStream, early: Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let mut ok = early.is_empty() || stream.write_all(&early).await.is_ok();
    while ok {
        ok = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => stream.write_all(&chunk[..n]).await.is_ok(),
        };
    }
}

/// An upgraded connection at `/flood`: sends until a write fails, counting the bytes.
async fn flood(mut stream: TcpStream, state: &BackendState) {
    let chunk = [b'x'; 16 * 1024];
    while stream.write_all(&chunk).await.is_ok() {
        state
            .flooded
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, target: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
    }

    #[tokio::test]
    async fn reports_cpu_figures_only_when_asked_to_and_only_in_the_detailed_health() {
        let backend = Backend::start("b-1").await.expect("start");
        let plain = get(backend.addr, "/health?detail=1").await;
        assert!(plain.ends_with("\r\n\r\nok\n"), "{plain}");

        backend.report_cpu(Some(CpuReport {
            use_millis: 500,
            budget_millis: Some(250),
        }));
        let detailed = get(backend.addr, "/health?detail=1").await;
        assert!(detailed.starts_with("HTTP/1.1 200 OK"), "{detailed}");
        assert!(
            detailed.contains("content-type: application/json"),
            "{detailed}"
        );
        let body = detailed.split("\r\n\r\n").nth(1).expect("a body");
        let field = |name: &str| -> Option<u64> {
            let rest = &body[body.find(&format!("\"{name}\":"))? + name.len() + 3..];
            rest.split([',', '}']).next()?.parse().ok()
        };
        let (cpu, uptime) = (
            field("cpu_ms").expect("cpu_ms"),
            field("uptime_ms").expect("uptime_ms"),
        );
        assert_eq!(cpu, uptime / 2, "{body}");
        assert_eq!(field("cpu_budget_millis"), Some(250), "{body}");
        assert!(get(backend.addr, "/health").await.ends_with("ok\n"));

        backend.report_cpu(Some(CpuReport {
            use_millis: 100,
            budget_millis: None,
        }));
        let unbounded = get(backend.addr, "/health?detail=1").await;
        assert!(!unbounded.contains("cpu_budget_millis"), "{unbounded}");
        assert!(unbounded.contains("\"cpu_ms\":"), "{unbounded}");
    }
}
