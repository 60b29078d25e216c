//! The slow clients: a header trickled a byte at a time, which the proxy must refuse with its
//! `408` at the header deadline, neither earlier nor much later.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use statelab_load::wire;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::raw::{Raw, RawAnswer};
use crate::REQUEST_TIMEOUT;

/// Clients trickling a header, one byte at a time, and when each starts.
pub const TRICKLE_STARTS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(14)];
const TRICKLE_EVERY: Duration = Duration::from_millis(200);

/// A client that trickles a header a byte at a time: the proxy must answer `408`
/// `request_timeout` JSON at its header deadline, counted from the accept. Returns when.
pub async fn trickler(proxy: SocketAddr, deadline: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let conn = Raw::connect(proxy).await?;
    let (mut reader, mut writer) = conn.stream.into_split();
    let header = format!(
        "GET /stateless/health HTTP/1.1\r\nHost: soak\r\nX-Slow: {}\r\n",
        "s".repeat(200)
    );
    let trickle = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(TRICKLE_EVERY);
        for byte in header.into_bytes() {
            ticks.tick().await;
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(deadline + REQUEST_TIMEOUT, reader.read_to_end(&mut buf)).await;
    trickle.abort();
    let elapsed = started.elapsed();
    match read {
        Err(_) => return Err(format!("no answer within {:?}", deadline + REQUEST_TIMEOUT)),
        Ok(Err(e)) => return Err(format!("read: {e} after {} bytes", buf.len())),
        Ok(Ok(_)) => {}
    }
    let head = wire::parse_head(&buf)
        .ok()
        .flatten()
        .ok_or_else(|| format!("not an answer: {:?}", String::from_utf8_lossy(&buf)))?;
    RawAnswer {
        status: head.status,
        close: head.close,
        body: Bytes::copy_from_slice(&buf[head.len..]),
    }
    .expect_error(408, "request_timeout")
    .map_err(|wrong| wrong.text)?;
    // Not before the deadline; not much after it on a loaded 2-core machine.
    if elapsed + Duration::from_millis(50) < deadline || elapsed > deadline + Duration::from_secs(2)
    {
        return Err(format!(
            "408 after {elapsed:?}, header deadline {deadline:?}"
        ));
    }
    Ok(elapsed)
}
