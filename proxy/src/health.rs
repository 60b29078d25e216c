//! Active health checks: `GET {path}` on every replica every `interval`, with rise/fall smoothing.
//!
//! Runs as a pingora background service (its own runtime thread). Every `interval` it sweeps the
//! pools' current members and starts one check task per replica, so a slow replica never delays
//! the verdict on another, a replica added at runtime is checked from the next tick, and a removed
//! one is no longer checked. A replica whose previous check is still running skips the tick. The
//! check is a minimal HTTP/1.1 exchange on a fresh connection: only the status line decides
//! (200 = pass), which is what the services' `/health` answers with.
//!
//! The check asks for the detailed answer (`{path}?detail=1`) and keeps the figures a statelab
//! service puts in its body (sessions held or stored, token sizes, resident memory) for the
//! dashboard: they ride on the round trip the check makes anyway, rather than a scrape of each
//! replica's `/metrics`. A body that is missing, too large or not those figures changes nothing
//! in the verdict.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::HealthConfig;
use crate::pool::{Pools, Replica};
use statelab_formats::Reported;

/// Most bytes of a health answer read: a status line, a few headers and a small JSON body.
const MAX_ANSWER: usize = 4096;

/// The background service that keeps `Replica::healthy` current.
#[derive(Debug)]
pub struct HealthChecker {
    pools: Arc<Pools>,
    config: HealthConfig,
}

impl HealthChecker {
    pub fn new(pools: Arc<Pools>, config: HealthConfig) -> Self {
        Self { pools, config }
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let request = request(&self.config.path);
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                // Dropping the JoinSet aborts the checks under way.
                _ = shutdown.changed() => return,
            }
            while tasks.try_join_next().is_some() {}
            for pool in &self.pools.pools {
                for replica in &pool.members().replicas {
                    if replica.checking.swap(true, Ordering::AcqRel) {
                        continue;
                    }
                    let replica = Arc::clone(replica);
                    let request = Arc::clone(&request);
                    let config = self.config.clone();
                    tasks.spawn(async move {
                        let verdict = check_once(replica.addr, &request, config.timeout).await;
                        judge(&replica, verdict.map(|a| a.reported), &config);
                        replica.checking.store(false, Ordering::Release);
                    });
                }
            }
        }
    }
}

/// The check's request: `GET` of the detailed health answer on a connection of its own.
pub(crate) fn request(path: &str) -> Arc<[u8]> {
    format!(
        "GET {} HTTP/1.1\r\nHost: statelab-proxy\r\nUser-Agent: statelab-proxy-health\r\nConnection: close\r\n\r\n",
        detailed(path)
    )
    .into_bytes()
    .into()
}

/// The name a replica gives itself: the `x-replica` header of a passing health answer.
pub(crate) async fn identify(
    addr: std::net::SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Result<String, String> {
    check_once(addr, request, timeout)
        .await?
        .replica
        .ok_or_else(|| "its health answer has no x-replica header".to_string())
}

/// What a passing check read besides its verdict.
#[derive(Debug, Default)]
struct Answer {
    /// The figures in a statelab service's body.
    reported: Option<Reported>,
    /// The `x-replica` header.
    replica: Option<String>,
}

/// The health path with the query that asks for the detailed answer; a configured path with a
/// query of its own is left as it is (and reports no figures).
fn detailed(path: &str) -> String {
    if path.contains('?') {
        path.to_string()
    } else {
        format!("{path}?detail=1")
    }
}

/// Applies one check's verdict with rise/fall smoothing.
fn judge(replica: &Replica, verdict: Result<Option<Reported>, String>, config: &HealthConfig) {
    replica.set_reported(verdict.as_ref().ok().copied().flatten());
    match verdict {
        Ok(_) => {
            let ok_streak = replica.ok_streak.fetch_add(1, Ordering::Relaxed) + 1;
            replica.fail_streak.store(0, Ordering::Relaxed);
            if !replica.is_healthy() && ok_streak >= config.rise {
                if replica.is_joining() {
                    tracing::info!(replica = %replica.name, "joining replica passed its health checks, in rotation");
                } else {
                    tracing::info!(replica = %replica.name, "replica passed its health checks, back in rotation");
                }
                replica.set_healthy(true);
            }
        }
        Err(reason) => {
            let fail_streak = replica.fail_streak.fetch_add(1, Ordering::Relaxed) + 1;
            replica.ok_streak.store(0, Ordering::Relaxed);
            if replica.is_healthy() && fail_streak >= config.fall {
                tracing::warn!(replica = %replica.name, %reason, "replica failed its health checks, out of rotation");
                replica.set_healthy(false);
            }
            if fail_streak == 1 || fail_streak == config.fall {
                replica.record_failure(format!("health check: {reason}"));
            }
        }
    }
}

/// One check: connect, send, read the status line; on a pass, the figures in the body and the
/// replica's name if any.
async fn check_once(
    addr: std::net::SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Result<Answer, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = vec![0u8; MAX_ANSWER];
        let mut len = 0;
        while len < 12 {
            let n = stream
                .read(&mut buf[len..])
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            len += n;
        }
        status_verdict(&buf[..len])?;
        // The verdict is in; the rest of the answer only adds figures, so failing to read it
        // is no failure.
        while complete(&buf[..len]).is_none() && len < buf.len() {
            match stream.read(&mut buf[len..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => len += n,
            }
        }
        Ok(Answer {
            reported: complete(&buf[..len]).and_then(|body| serde_json::from_slice(body).ok()),
            replica: replica_header(&buf[..len]),
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// The body of a whole answer (a head with `Content-Length` and that many bytes after it).
fn complete(answer: &[u8]) -> Option<&[u8]> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(answer).ok()? else {
        return None;
    };
    let length: usize = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse().ok())?;
    answer.get(head..head.checked_add(length)?)
}

/// The `x-replica` header of an answer whose head is whole.
fn replica_header(answer: &[u8]) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(_) = response.parse(answer).ok()? else {
        return None;
    };
    response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("x-replica"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Pass on a `200` status line; otherwise say why, quoting at most three bytes of the code (a
/// replica may send anything, multibyte text included).
fn status_verdict(head: &[u8]) -> Result<(), String> {
    let mut parts = head.split(|&b| b == b' ');
    let code = match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with(b"HTTP/") => code,
        _ => return Err("no HTTP status line".to_string()),
    };
    if code == b"200" || code.starts_with(b"200\r") {
        return Ok(());
    }
    let shown = &code[..code.len().min(3)];
    Err(format!("status {}", String::from_utf8_lossy(shown)))
}

#[cfg(test)]
mod tests {
    use super::{complete, detailed, replica_header, status_verdict};

    #[test]
    fn detailed_answers_are_read_whole_and_only_then() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n{\"sessions_held\": 3}";
        assert_eq!(complete(answer), Some(&b"{\"sessions_held\": 3}"[..]));
        assert_eq!(complete(&answer[..answer.len() - 1]), None);
        assert_eq!(complete(b"HTTP/1.1 200 OK\r\n\r\nok"), None);
        assert_eq!(complete(b"HTTP/1.1 200 OK\r\ncontent-"), None);
        assert_eq!(detailed("/health"), "/health?detail=1");
        assert_eq!(detailed("/up?x=1"), "/up?x=1");
    }

    #[test]
    fn a_replica_names_itself_in_its_header() {
        let answer = b"HTTP/1.1 200 OK\r\nX-Replica: stateless-2\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(replica_header(answer).as_deref(), Some("stateless-2"));
        assert_eq!(
            replica_header(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(
            replica_header(b"HTTP/1.1 200 OK\r\nx-replica: a"),
            None,
            "a head cut short"
        );
    }

    #[test]
    fn status_lines_are_judged_without_panicking() {
        assert_eq!(status_verdict(b"HTTP/1.1 200 OK\r\n"), Ok(()));
        assert_eq!(status_verdict(b"HTTP/1.1 200\r\n"), Ok(()));
        assert_eq!(
            status_verdict(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Err("status 503".to_string())
        );
        // A multibyte character straddling the third byte of the code.
        let odd = "HTTP/1.1 2\u{e9}\u{e9} OK\r\n".as_bytes();
        assert!(status_verdict(odd).is_err_and(|e| e.starts_with("status ")));
        let odd = "HTTP/1.1 \u{1f600} x".as_bytes();
        assert!(status_verdict(odd).is_err());
        assert_eq!(
            status_verdict(b"garbage"),
            Err("no HTTP status line".to_string())
        );
        assert!(status_verdict(b"").is_err());
    }
}
