//! The bad clients: malformed JSON, a wrong media type, unknown paths and pools, an oversized
//! body, an oversized header, no `Host`, garbage bytes and pipelined requests, each kind on a new
//! raw connection and held to its documented status and JSON error, and a refusal that closes
//! the connection to a clean end of the stream.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

use crate::lab::Pool;
use crate::raw::{get, post, Raw, RawAnswer, Wrong};
use crate::REQUEST_TIMEOUT;

/// Clients sending bad requests, and the rounds each sends, one per tick.
pub const BAD_CLIENTS: usize = 2;
pub const BAD_ROUNDS: usize = 288;
const BAD_EVERY: Duration = Duration::from_millis(100);
/// The services' default `--body-limit`, which the lab keeps.
const BODY_LIMIT: usize = 16 * 1024;

/// A bad request that did not get its documented answer.
#[derive(Debug)]
pub struct BadMiss {
    pub kind: Bad,
    pub pool: Pool,
    pub sent: Instant,
    pub done: Instant,
    pub wrong: Wrong,
}

/// The kinds of bad request, sent in turn by each bad client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bad {
    MalformedJson,
    WrongContentType,
    UnknownPath,
    UnknownPool,
    OversizedBody,
    OversizedHeader,
    NoHost,
    Garbage,
    Pipelined,
}

impl Bad {
    pub const ALL: [Bad; 9] = [
        Bad::MalformedJson,
        Bad::WrongContentType,
        Bad::UnknownPath,
        Bad::UnknownPool,
        Bad::OversizedBody,
        Bad::OversizedHeader,
        Bad::NoHost,
        Bad::Garbage,
        Bad::Pipelined,
    ];

    /// Requests one round of this kind sends.
    pub fn requests(self) -> usize {
        match self {
            // The request after the refused one, on the same connection.
            Bad::OversizedBody => 2,
            Bad::Pipelined => 3,
            _ => 1,
        }
    }
}

/// Bytes no HTTP parser takes for a request: a TLS record's first bytes, then noise without a
/// line end, then a blank line so that the proxy has a complete "header" to refuse at once.
fn garbage(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = vec![0x16, 0x03, 0x01];
    for _ in 0..200 {
        // xorshift64: varied bytes, reproducible from the round.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = (x & 0xff) as u8;
        out.push(if b == b'\r' || b == b'\n' { b'x' } else { b });
    }
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// One round of a bad kind on `pool`: `Ok` when every answer was the documented one.
async fn bad_round(proxy: SocketAddr, kind: Bad, pool: Pool, round: u64) -> Result<(), Wrong> {
    let p = pool.name();
    let mut conn = Raw::connect(proxy).await?;
    match kind {
        Bad::MalformedJson => {
            conn.send(&post(
                &format!("/{p}/login"),
                "application/json",
                b"{\"username\": ",
            ))
            .await?;
            conn.answer().await?.expect_error(400, "invalid_json")
        }
        Bad::WrongContentType => {
            conn.send(&post(
                &format!("/{p}/cart/items"),
                "text/plain",
                br#"{"sku":"soak-a","qty":1}"#,
            ))
            .await?;
            conn.answer()
                .await?
                .expect_error(415, "unsupported_media_type")
        }
        Bad::UnknownPath => {
            conn.send(&get(&format!("/{p}/no/such/route"))).await?;
            conn.answer().await?.expect_error(404, "not_found")
        }
        Bad::UnknownPool => {
            conn.send(&get("/no-such-pool/me")).await?;
            conn.answer().await?.expect_error(404, "not_found")
        }
        Bad::OversizedBody => {
            let body = format!(r#"{{"username":"{}"}}"#, "a".repeat(BODY_LIMIT));
            conn.send(&post(
                &format!("/{p}/login"),
                "application/json",
                body.as_bytes(),
            ))
            .await?;
            let refused = conn.answer().await?;
            refused.expect_error(413, "payload_too_large")?;
            if refused.close {
                return Ok(());
            }
            // Kept alive: the connection carries the next request.
            conn.send(&get(&format!("/{p}/health"))).await?;
            let next = conn.answer().await?;
            if next.status == 200 {
                Ok(())
            } else {
                Err(format!("after a 413 kept alive: status {}", next.status).into())
            }
        }
        Bad::OversizedHeader => {
            let request = format!(
                "GET /{p}/health HTTP/1.1\r\nHost: soak\r\nX-Pad: {}\r\n\r\n",
                "p".repeat(40 * 1024)
            );
            conn.send(request.as_bytes()).await?;
            let answer = conn.answer().await?;
            answer.expect_error(431, "request_header_too_large")?;
            closes(&mut conn, &answer).await
        }
        Bad::NoHost => {
            conn.send(format!("GET /{p}/health HTTP/1.1\r\n\r\n").as_bytes())
                .await?;
            let answer = conn.answer().await?;
            answer.expect_error(400, "bad_request")?;
            closes(&mut conn, &answer).await
        }
        Bad::Garbage => {
            conn.send(&garbage(round)).await?;
            let answer = conn.answer().await?;
            answer.expect_error(400, "bad_request")?;
            closes(&mut conn, &answer).await
        }
        Bad::Pipelined => {
            let mut batch = get(&format!("/{p}/health"));
            batch.extend_from_slice(&get(&format!("/{p}/no/such/route")));
            batch.extend_from_slice(&post(
                &format!("/{p}/login"),
                "application/json",
                br#"{"username":"soak-pipelined"}"#,
            ));
            conn.send(&batch).await?;
            let first = conn.answer().await?;
            let second = conn.answer().await?;
            let third = conn.answer().await?;
            second.expect_error(404, "not_found")?;
            let login: Option<serde_json::Value> = serde_json::from_slice(&third.body).ok();
            let in_order = first.status == 200
                && !first.close
                && !second.close
                && third.status == 200
                && login.is_some_and(|l| l["username"] == "soak-pipelined");
            if in_order {
                Ok(())
            } else {
                Err(format!(
                    "pipelined answers out of order or closed early: {first:?} {second:?} {third:?}"
                )
                .into())
            }
        }
    }
}

/// A refusal closes the connection: it says so, and the proxy then ends the stream (no reset, no
/// more bytes).
async fn closes(conn: &mut Raw, answer: &RawAnswer) -> Result<(), Wrong> {
    if !answer.close {
        return Err(format!("a refusal without Connection: close: {}", answer.status).into());
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, conn.read_more_or_end()).await {
        Ok(Ok(false)) => Ok(()),
        Ok(Ok(true)) => Err("bytes after a closing refusal".to_string().into()),
        Ok(Err(e)) => Err(format!("after a closing refusal: {e}").into()),
        Err(_) => Err("the connection stayed open after a closing refusal"
            .to_string()
            .into()),
    }
}

/// A bad client: one round per tick, the kinds and pools in turn. Returns the requests sent by
/// kind, and the rounds that did not get their documented answers.
pub async fn bad_client(proxy: SocketAddr, id: usize) -> (BTreeMap<Bad, usize>, Vec<BadMiss>) {
    let mut ticks = tokio::time::interval(BAD_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut sent_by_kind, mut misses) = (BTreeMap::new(), Vec::new());
    for round in 0..BAD_ROUNDS {
        ticks.tick().await;
        let kind = Bad::ALL[(round + id) % Bad::ALL.len()];
        let pool = Pool::ALL[(round / Bad::ALL.len() + id) % Pool::ALL.len()];
        let sent = Instant::now();
        let outcome = bad_round(proxy, kind, pool, round as u64).await;
        *sent_by_kind.entry(kind).or_default() += kind.requests();
        if let Err(wrong) = outcome {
            misses.push(BadMiss {
                kind,
                pool,
                sent,
                done: Instant::now(),
                wrong,
            });
        }
    }
    (sent_by_kind, misses)
}
