//! A raw client connection, for requests an HTTP client library would not send and for reading
//! exactly what the proxy answers and when it closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response as read off the wire.
#[derive(Debug)]
pub struct Wire {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Wire {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// The first complete response in `bytes`.
pub fn parse_one(bytes: &[u8]) -> Option<Wire> {
    parse_with_len(bytes).map(|(wire, _)| wire)
}

/// The first complete response in `bytes` and how many bytes it took.
fn parse_with_len(bytes: &[u8]) -> Option<(Wire, usize)> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .map_or(Some(0), |v| v.parse().ok())?;
    let body = bytes.get(head_end..head_end + len)?;
    let wire = Wire {
        status,
        headers,
        body: String::from_utf8_lossy(body).into_owned(),
    };
    Some((wire, head_end + len))
}

/// Sends `request` on a fresh connection; its first answer, and the connection.
pub async fn one_answer(addr: SocketAddr, request: &[u8]) -> (Wire, Raw) {
    let mut c = Raw::connect(addr).await;
    c.send(request).await;
    let r = c
        .response(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(request)));
    (r, c)
}

/// A raw client connection that keeps what it read past one response.
pub struct Raw {
    pub stream: TcpStream,
    pub pending: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the proxy");
        Raw {
            stream,
            pending: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write a request");
    }

    /// Reads once into `pending`; 0 at end of stream (a reset counts as the end too).
    pub async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                n
            }
            Err(_) => 0,
        }
    }

    /// The next complete response, or `None` if the connection ends first; panics after `within`.
    pub async fn response(&mut self, within: Duration) -> Option<Wire> {
        tokio::time::timeout(within, async {
            loop {
                if let Some((wire, len)) = parse_with_len(&self.pending) {
                    self.pending.drain(..len);
                    return Some(wire);
                }
                if self.fill().await == 0 {
                    return None;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no response within {within:?}"))
    }

    /// Waits for the proxy to close the connection; the time it took.
    pub async fn closed_within(&mut self, within: Duration) -> Duration {
        let t = Instant::now();
        tokio::time::timeout(within, async {
            while self.fill().await > 0 {
                assert!(
                    self.pending.len() < 64 * 1024,
                    "the proxy keeps sending: {:?}",
                    String::from_utf8_lossy(&self.pending)
                );
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the connection was still open after {within:?}"));
        t.elapsed()
    }
}
