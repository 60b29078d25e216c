//! A short soak of the whole native lab through the proxy: about 30 s of mixed traffic from
//! several clients at once, with a stateless and an externalized replica killed and started
//! again through `scripts/lab` while it runs. Real services, real proxy, real `redis-server`, on
//! free ports in a private lab directory; every count and every pace is fixed.
//!
//! What it holds the lab to:
//! - **Good requests** (shop sessions on all three pools: login with `Content-Type:
//!   application/json`, `/me`, two cart adds, `/cart` with the expected contents, logout) all
//!   succeed, except on the pool of a killed replica within its failover window: from the kill
//!   until the active checks must have marked it down (`health.fall` × `health.interval_ms`)
//!   plus one `retry.connect_timeout_ms`, all read from the lab's `proxy.toml`. Inside the window
//!   only a request that had reached the replica as it died may fail, and only as the proxy's
//!   documented `502` `bad_gateway` for a method it does not replay (`docs/proxy.md`): a GET is
//!   replayed and a refused connection is retried for any method. No stateful replica is killed,
//!   so no stateful request may fail.
//! - **Bad requests** (malformed JSON, a wrong media type, unknown paths and pools, an oversized
//!   body, an oversized header, no `Host`, garbage bytes, a trickled header) each get their
//!   documented status and JSON error in full, never a reset, and a refusal that closes the
//!   connection ends the stream cleanly; pipelined requests are answered in order; keep-alive
//!   connections left idle through the whole soak still serve at its end. A bad request the
//!   proxy forwards is excused the same `502` inside a failover window as a good one.
//! - **Memory**: the proxy's peak resident size (`VmHWM`) and its size once every client
//!   connection has closed (given 10 s to settle, with a probe request every 100 ms: the
//!   allocator returns freed pages lazily, on the serving thread's next allocation) stay within
//!   the bounds in `docs/limits.md`.
//!
//! The summary goes to standard error directly, past the test harness's capture of `print!`,
//! so that CI logs show the figures of a passing run too.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, StatusCode};
use statelab_formats::config::ConfigFile;
use statelab_load::client::{Answer, Client, ErrorKind, Target};
use statelab_load::wire::{self, BodyEnd};
use statelab_test_support::{eventually, NativeLab};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::MissedTickBehavior;

/// Shop clients per pool, each on its own keep-alive connection.
const SHOPPERS_PER_POOL: usize = 4;
/// Requests each shop client sends, one per tick.
const SHOPPER_REQUESTS: usize = 370;
const SHOPPER_EVERY: Duration = Duration::from_millis(80);
/// Clients sending bad requests, and the rounds each sends, one per tick.
const BAD_CLIENTS: usize = 2;
const BAD_ROUNDS: usize = 288;
const BAD_EVERY: Duration = Duration::from_millis(100);
/// Keep-alive connections that send one request at the start and then stay idle until the end.
const IDLE_CONNECTIONS: usize = 200;
/// Clients trickling a header, one byte at a time, and when each starts.
const TRICKLE_STARTS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(14)];
const TRICKLE_EVERY: Duration = Duration::from_millis(200);
/// The replica faults: (replica, killed at, started again at), from the soak's start.
const FAULTS: [(&str, Duration, Duration); 2] = [
    (
        "stateless-2",
        Duration::from_secs(7),
        Duration::from_secs(11),
    ),
    (
        "externalized-2",
        Duration::from_secs(16),
        Duration::from_secs(20),
    ),
];
/// A bound on one exchange; the lab's replicas answer in milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A bound on the whole soak, past which the test fails rather than hangs.
const SOAK_LIMIT: Duration = Duration::from_secs(50);
/// The services' default `--body-limit`, which the lab keeps.
const BODY_LIMIT: usize = 16 * 1024;

/// The proxy's memory bounds for this soak (`docs/limits.md`, "The proxy under a soak"): its
/// peak, and its size once every client connection has closed, above its size before. Measured:
/// a peak 4-6 MB over, and after it either about 3.5 MB over or, in a third of the runs, the
/// peak's pages still held (at most 5.5 MB over). Before the front door, the idle connections alone took about
/// 17 MB; a leak of 1 KB per request would leave about 5.5 MB more.
const PEAK_GROWTH_LIMIT_KB: u64 = 10 * 1024;
const AFTER_GROWTH_LIMIT_KB: u64 = 7 * 1024;

/// How long the proxy's resident size may take to come back within its bound once the last
/// connection has closed: mimalloc hands freed pages back to the system after a delay, on the
/// next allocation of the thread that freed them. The health checks and the dashboard's sampler
/// run on threads of their own, so the wait also sends one request to the public listener, as a
/// load balancer's probe would, to give the serving thread that next allocation.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// The proxy's resident size once it is at most `bound_kb`, or its last reading when
/// [`SETTLE_LIMIT`] has passed without that (the caller's assertion then fails with it). Each
/// reading that is over the bound is followed by one request to `proxy` on a new connection.
fn settled_rss_kb(pid: u32, bound_kb: u64, proxy: SocketAddr) -> u64 {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let rss = proc_status_kb(pid, "VmRSS");
        if rss <= bound_kb || Instant::now() >= deadline {
            return rss;
        }
        probe(proxy);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One `GET` of an unknown path (a `404` from the proxy itself), on a connection of its own that
/// is closed after the answer; any failure is ignored, since only the allocation matters.
fn probe(proxy: SocketAddr) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&proxy, Duration::from_secs(1)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /settle HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        .is_ok()
    {
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
    }
}

/// `scripts/lab ARGS...` from async code, insisting on success.
async fn lab_ok_async(lab: &NativeLab, args: &[&str]) {
    let out = tokio::process::Command::from(lab.command(args))
        .output()
        .await
        .expect("run scripts/lab");
    assert!(
        out.status.success(),
        "scripts/lab {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The PID the lab recorded for a part (`pids/NAME.pid`: `PID START_TIME`).
fn lab_pid(lab: &NativeLab, part: &str) -> u32 {
    let path = lab.dir().join("pids").join(format!("{part}.pid"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("{} holds no PID: {text:?}", path.display()))
}

/// The configuration the lab gave its proxy.
fn lab_proxy_config(lab: &NativeLab) -> ConfigFile {
    let path = lab.dir().join("proxy.toml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

/// A field of `/proc/PID/status` in kB (`VmRSS`, `VmHWM`).
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{path} has no {field} in kB:\n{status}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Pool {
    Stateful,
    Stateless,
    Externalized,
}

impl Pool {
    const ALL: [Pool; 3] = [Pool::Stateful, Pool::Stateless, Pool::Externalized];

    fn name(self) -> &'static str {
        match self {
            Pool::Stateful => "stateful",
            Pool::Stateless => "stateless",
            Pool::Externalized => "externalized",
        }
    }

    fn of_replica(replica: &str) -> Pool {
        Pool::ALL
            .into_iter()
            .find(|p| {
                replica
                    .strip_prefix(p.name())
                    .is_some_and(|r| r.starts_with('-'))
            })
            .unwrap_or_else(|| panic!("{replica} is in no pool"))
    }
}

/// One good request as a shop client saw it.
#[derive(Debug)]
struct Good {
    pool: Pool,
    method: Method,
    what: &'static str,
    sent: Instant,
    done: Instant,
    replica: Option<String>,
    /// Why it counts as failed: an error kind, or a status or body it should not have had.
    failure: Option<Failure>,
}

#[derive(Debug)]
struct Failure {
    /// The proxy's documented answer for a request it could not replay: `502` `bad_gateway`.
    bad_gateway: bool,
    text: String,
}

/// One step of a shop session: the request, and what its answer must show.
#[derive(Debug, Clone, Copy)]
enum Step {
    Login,
    Me,
    AddOne,
    AddTwo,
    Cart,
    Logout,
}

impl Step {
    const SESSION: [Step; 6] = [
        Step::Login,
        Step::Me,
        Step::AddOne,
        Step::AddTwo,
        Step::Cart,
        Step::Logout,
    ];

    fn request(self, user: &str) -> (Method, &'static str, Option<Bytes>) {
        let json = |v: serde_json::Value| Some(Bytes::from(v.to_string()));
        match self {
            Step::Login => (
                Method::POST,
                "/login",
                json(serde_json::json!({ "username": user })),
            ),
            Step::Me => (Method::GET, "/me", None),
            Step::AddOne => (
                Method::POST,
                "/cart/items",
                json(serde_json::json!({"sku": "soak-a", "qty": 1})),
            ),
            Step::AddTwo => (
                Method::POST,
                "/cart/items",
                json(serde_json::json!({"sku": "soak-b", "qty": 2})),
            ),
            Step::Cart => (Method::GET, "/cart", None),
            Step::Logout => (Method::POST, "/logout", None),
        }
    }

    /// `None` when the answer is the one this step must get.
    fn check(self, user: &str, answer: &Answer) -> Option<String> {
        let want = if matches!(self, Step::Logout) {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::OK
        };
        if answer.status != want {
            return Some(format!(
                "status {} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        }
        if matches!(self, Step::Logout) {
            return None;
        }
        let body: serde_json::Value = match serde_json::from_slice(&answer.body) {
            Ok(body) => body,
            Err(e) => return Some(format!("body is not JSON ({e})")),
        };
        let good = match self {
            Step::Login | Step::Me => body["username"] == user,
            Step::AddOne => body["total_qty"] == 1,
            Step::AddTwo => body["total_qty"] == 3,
            Step::Cart => {
                body["total_qty"] == 3
                    && body["items"]
                        == serde_json::json!([{"sku": "soak-a", "qty": 1}, {"sku": "soak-b", "qty": 2}])
            }
            Step::Logout => true,
        };
        (!good).then(|| format!("unexpected body {body}"))
    }
}

/// A shop client: the same session over and over on one keep-alive connection, one request per
/// tick. A failed request ends its session (its cookies and connection are dropped) and the next
/// tick starts a new one with a login, so that one failure is counted once.
async fn shopper(proxy: SocketAddr, pool: Pool, id: usize) -> Vec<Good> {
    let target = Target::parse(&format!("http://{proxy}/{}", pool.name())).expect("a target");
    let mut client = Client::new(target, None, REQUEST_TIMEOUT);
    let mut ticks = tokio::time::interval(SHOPPER_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut session, mut step) = (0usize, 0usize);
    let mut seen = Vec::with_capacity(SHOPPER_REQUESTS);
    for _ in 0..SHOPPER_REQUESTS {
        ticks.tick().await;
        let user = format!("soak-{}-{id}-{session}", pool.name());
        let this = Step::SESSION[step];
        let (method, path, body) = this.request(&user);
        let exchange = client.send(method.clone(), path, body).await;
        let done = Instant::now();
        let (replica, failure) = match &exchange.result {
            Ok(answer) => (
                answer
                    .replica
                    .as_ref()
                    .map(|r| String::from_utf8_lossy(r).into_owned()),
                this.check(&user, answer).map(|text| Failure {
                    bad_gateway: answer.status == StatusCode::BAD_GATEWAY
                        && json_error_code(&answer.body).as_deref() == Some("bad_gateway"),
                    text,
                }),
            ),
            Err(kind) => (
                None,
                Some(Failure {
                    bad_gateway: false,
                    text: format!("{kind:?}{}", describe(*kind)),
                }),
            ),
        };
        step += 1;
        if failure.is_some() {
            client.reset();
            step = Step::SESSION.len();
        }
        if step == Step::SESSION.len() {
            step = 0;
            session += 1;
        }
        seen.push(Good {
            pool,
            method,
            what: path,
            sent: exchange.sent,
            done,
            replica,
            failure,
        });
    }
    seen
}

fn describe(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Connect => " (no connection to the proxy)",
        ErrorKind::Timeout => " (no answer in time)",
        ErrorKind::Io => " (connection broken or answer unreadable)",
        ErrorKind::Status4xx | ErrorKind::Status5xx => "",
    }
}

/// The `error` field of a JSON error body.
fn json_error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["message"].as_str()?;
    value["error"].as_str().map(str::to_owned)
}

/// An answer read from a raw connection.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    close: bool,
    body: Bytes,
}

impl RawAnswer {
    /// `Ok` when this is the documented JSON error: this status, this `error` code and a message.
    fn expect_error(&self, status: u16, code: &str) -> Result<(), Wrong> {
        let got = json_error_code(&self.body);
        if self.status == status && got.as_deref() == Some(code) {
            Ok(())
        } else {
            Err(Wrong {
                text: format!(
                    "wanted {status} {code}, got {} {:?}",
                    self.status,
                    String::from_utf8_lossy(&self.body)
                ),
                bad_gateway: self.status == 502 && got.as_deref() == Some("bad_gateway"),
            })
        }
    }
}

/// A bad request's answer that was not the documented one.
#[derive(Debug)]
struct Wrong {
    text: String,
    /// The proxy's `502` `bad_gateway`: the replica died with the request, as in a failover window.
    bad_gateway: bool,
}

impl From<String> for Wrong {
    fn from(text: String) -> Self {
        Wrong {
            text,
            bad_gateway: false,
        }
    }
}

/// A bad request that did not get its documented answer.
#[derive(Debug)]
struct BadMiss {
    kind: Bad,
    pool: Pool,
    sent: Instant,
    done: Instant,
    wrong: Wrong,
}

/// A raw client connection: exact bytes out, answers read with the generator's own parser.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn connect(proxy: SocketAddr) -> Result<Raw, String> {
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(proxy))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        Ok(Raw {
            stream,
            buf: BytesMut::new(),
        })
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Reads one complete answer within `within`; a reset or an early end is an error.
    async fn answer_within(&mut self, within: Duration) -> Result<RawAnswer, String> {
        tokio::time::timeout(within, self.read_answer())
            .await
            .map_err(|_| format!("no complete answer within {within:?}"))?
    }

    async fn answer(&mut self) -> Result<RawAnswer, String> {
        self.answer_within(REQUEST_TIMEOUT).await
    }

    async fn read_answer(&mut self) -> Result<RawAnswer, String> {
        let head = loop {
            if let Some(head) =
                wire::parse_head(&self.buf).map_err(|_| "an unreadable answer head".to_string())?
            {
                break head;
            }
            self.read_more("the answer head").await?;
        };
        loop {
            let found = wire::take_body(&self.buf[head.len..], head.body)
                .map_err(|_| "an unreadable answer body".to_string())?;
            if let Some((body, used)) = found {
                self.buf.advance(head.len + used);
                return Ok(RawAnswer {
                    status: head.status,
                    close: head.close,
                    body,
                });
            }
            if head.body == BodyEnd::Close {
                if self.read_more_or_end().await? {
                    continue;
                }
                let body = self.buf.split_off(head.len).freeze();
                self.buf.clear();
                return Ok(RawAnswer {
                    status: head.status,
                    close: true,
                    body,
                });
            }
            self.read_more("the answer body").await?;
        }
    }

    async fn read_more(&mut self, what: &str) -> Result<(), String> {
        if self.read_more_or_end().await? {
            Ok(())
        } else {
            Err(format!("the connection ended before {what} was complete"))
        }
    }

    /// `Ok(false)` at the end of the stream; a reset is an error.
    async fn read_more_or_end(&mut self) -> Result<bool, String> {
        self.buf.reserve(4096);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(format!("read: {e}")),
        }
    }
}

/// The kinds of bad request, sent in turn by each bad client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Bad {
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
    const ALL: [Bad; 9] = [
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
    fn requests(self) -> usize {
        match self {
            // The request after the refused one, on the same connection.
            Bad::OversizedBody => 2,
            Bad::Pipelined => 3,
            _ => 1,
        }
    }
}

fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: soak\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n").into_bytes()
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
async fn bad_client(proxy: SocketAddr, id: usize) -> (BTreeMap<Bad, usize>, Vec<BadMiss>) {
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

/// A client that trickles a header a byte at a time: the proxy must answer `408`
/// `request_timeout` JSON at its header deadline, counted from the accept. Returns when.
async fn trickler(proxy: SocketAddr, deadline: Duration) -> Result<Duration, String> {
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

/// Keep-alive connections that each send one request now and stay idle until [`idle_check`].
async fn idle_open(proxy: SocketAddr) -> Vec<(Pool, Raw)> {
    let mut conns = Vec::with_capacity(IDLE_CONNECTIONS);
    for i in 0..IDLE_CONNECTIONS {
        let pool = Pool::ALL[i % Pool::ALL.len()];
        let mut conn = Raw::connect(proxy).await.expect("an idle connection");
        conn.send(&get(&format!("/{}/health", pool.name())))
            .await
            .expect("a request on an idle connection");
        let answer = conn
            .answer()
            .await
            .expect("an answer on an idle connection");
        assert!(
            answer.status == 200 && !answer.close,
            "an idle connection's first answer: {answer:?}"
        );
        conns.push((pool, conn));
    }
    conns
}

/// Every idle connection still serves a request; the failures, if any.
async fn idle_check(conns: &mut [(Pool, Raw)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, (pool, conn)) in conns.iter_mut().enumerate() {
        let outcome = async {
            conn.send(&get(&format!("/{}/health", pool.name()))).await?;
            let answer = conn.answer().await?;
            if answer.status == 200 {
                Ok(())
            } else {
                Err(format!("status {}", answer.status))
            }
        }
        .await;
        if let Err(e) = outcome {
            failures.push(format!("idle connection {i}: {e}"));
        }
    }
    failures
}

/// The proxy's count of open client connections, from its admin `/metrics`.
async fn client_connections(admin: SocketAddr) -> Option<u64> {
    let target = Target::parse(&format!("http://{admin}")).expect("the admin target");
    let mut client = Client::new(target, None, REQUEST_TIMEOUT);
    let answer = client
        .send(Method::GET, "/metrics", None)
        .await
        .result
        .ok()?;
    String::from_utf8_lossy(&answer.body)
        .lines()
        .find_map(|l| l.strip_prefix("statelab_proxy_client_connections "))
        .and_then(|v| v.trim().parse().ok())
}

/// A replica fault as it happened: when the kill was issued, when the failover window it opens
/// ends, and when the replica was routed to again.
#[derive(Debug)]
struct Fault {
    replica: &'static str,
    killed: Instant,
    window_end: Instant,
    started: Instant,
}

/// Kills and starts the replicas of [`FAULTS`] at their times, through `scripts/lab`.
async fn faults(lab: Arc<NativeLab>, begin: Instant, window: Duration) -> Vec<Fault> {
    let mut done = Vec::new();
    for (replica, kill_at, start_at) in FAULTS {
        tokio::time::sleep_until((begin + kill_at).into()).await;
        let killed = Instant::now();
        lab_ok_async(&lab, &["kill", replica]).await;
        let window_end = Instant::now() + window;
        tokio::time::sleep_until((begin + start_at).into()).await;
        // `start` returns once the proxy routes to the replica again.
        lab_ok_async(&lab, &["start", replica]).await;
        done.push(Fault {
            replica,
            killed,
            window_end,
            started: Instant::now(),
        });
    }
    done
}

#[test]
fn a_thirty_second_soak_with_replica_faults_keeps_every_promise() {
    let up_started = Instant::now();
    let lab = Arc::new(NativeLab::up("soak"));
    let up_time = up_started.elapsed();
    let proxy = SocketAddr::from(([127, 0, 0, 1], lab.port("proxy")));
    let admin = SocketAddr::from(([127, 0, 0, 1], lab.port("admin")));
    let config = lab_proxy_config(&lab);
    let window = Duration::from_millis(
        u64::from(config.health.fall) * config.health.interval_ms + config.retry.connect_timeout_ms,
    );
    let header_deadline = Duration::from_millis(config.server.client_header_timeout_ms);
    let keepalive = Duration::from_millis(config.server.client_keepalive_timeout_ms);
    assert!(
        keepalive > SOAK_LIMIT,
        "idle connections must outlive the soak: keep-alive timeout {keepalive:?}"
    );
    let proxy_pid = lab_pid(&lab, "proxy");
    let rss_before = proc_status_kb(proxy_pid, "VmRSS");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let soak = runtime.block_on(async {
        tokio::time::timeout(
            SOAK_LIMIT,
            run(
                Arc::clone(&lab),
                proxy,
                admin,
                window,
                header_deadline,
                proxy_pid,
            ),
        )
        .await
    });
    let soak = soak.unwrap_or_else(|_| panic!("the soak did not end within {SOAK_LIMIT:?}"));
    let rss_after = settled_rss_kb(proxy_pid, rss_before + AFTER_GROWTH_LIMIT_KB, proxy);
    let summary = soak.summary(rss_before, rss_after, up_time, window);
    // Past the harness's capture: CI logs show the figures of a passing run too.
    let _ = writeln!(std::io::stderr(), "{summary}");
    soak.assert_kept_promises(&summary, window, rss_before, rss_after);
}

/// The soak itself: every client at once, the faults on their schedule, then every connection
/// closed.
async fn run(
    lab: Arc<NativeLab>,
    proxy: SocketAddr,
    admin: SocketAddr,
    window: Duration,
    header_deadline: Duration,
    proxy_pid: u32,
) -> Soak {
    let begin = Instant::now();
    let mut idle = idle_open(proxy).await;
    let faults = tokio::spawn(faults(Arc::clone(&lab), begin, window));
    let trickles: Vec<_> = TRICKLE_STARTS
        .into_iter()
        .map(|at| {
            tokio::spawn(async move {
                tokio::time::sleep_until((begin + at).into()).await;
                trickler(proxy, header_deadline).await
            })
        })
        .collect();
    let shoppers: Vec<_> = Pool::ALL
        .into_iter()
        .flat_map(|pool| (0..SHOPPERS_PER_POOL).map(move |id| (pool, id)))
        .map(|(pool, id)| tokio::spawn(shopper(proxy, pool, id)))
        .collect();
    let bad: Vec<_> = (0..BAD_CLIENTS)
        .map(|id| tokio::spawn(bad_client(proxy, id)))
        .collect();

    let mut good = Vec::new();
    for s in shoppers {
        good.extend(s.await.expect("a shop client"));
    }
    let (mut bad_sent, mut bad_misses) = (BTreeMap::<Bad, usize>::new(), Vec::new());
    for b in bad {
        let (sent, misses) = b.await.expect("a bad client");
        for (kind, n) in sent {
            *bad_sent.entry(kind).or_default() += n;
        }
        bad_misses.extend(misses);
    }
    let trickled: Vec<_> = join_all(trickles).await;
    let faults = faults.await.expect("the fault schedule");
    let idle_failures = idle_check(&mut idle).await;
    let soak_time = begin.elapsed();
    let peak_kb = proc_status_kb(proxy_pid, "VmHWM");
    let open_at_end = client_connections(admin).await;
    drop(idle);
    eventually(
        "the proxy to count no client connection",
        Duration::from_secs(10),
        || async { (client_connections(admin).await == Some(0)).then_some(()) },
    )
    .await;
    Soak {
        begin,
        good,
        bad_sent,
        bad_misses,
        trickled,
        faults,
        idle_failures,
        soak_time,
        peak_kb,
        open_at_end,
    }
}

/// Awaits every task in order.
async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("a task"));
    }
    out
}

/// What the soak saw.
struct Soak {
    begin: Instant,
    good: Vec<Good>,
    bad_sent: BTreeMap<Bad, usize>,
    bad_misses: Vec<BadMiss>,
    trickled: Vec<Result<Duration, String>>,
    faults: Vec<Fault>,
    idle_failures: Vec<String>,
    soak_time: Duration,
    peak_kb: u64,
    open_at_end: Option<u64>,
}

impl Soak {
    /// Whether a request to `pool` overlapped the failover window of a replica of that pool.
    fn in_window(&self, pool: Pool, sent: Instant, done: Instant) -> bool {
        self.faults.iter().any(|f| {
            Pool::of_replica(f.replica) == pool && sent <= f.window_end && done >= f.killed
        })
    }

    /// A bad request may miss its answer only as a good one may fail: the proxy's `502` inside
    /// a failover window of its pool (a POST in flight on the replica that died).
    fn excused(&self, m: &BadMiss) -> bool {
        m.wrong.bad_gateway && self.in_window(m.pool, m.sent, m.done)
    }

    fn summary(&self, before: u64, after: u64, up_time: Duration, window: Duration) -> String {
        let mut s = String::from("soak summary\n");
        let mut requests = 0;
        for pool in Pool::ALL {
            let mine: Vec<&Good> = self.good.iter().filter(|g| g.pool == pool).collect();
            let failed: Vec<&&Good> = mine.iter().filter(|g| g.failure.is_some()).collect();
            let in_window = failed
                .iter()
                .filter(|g| self.in_window(g.pool, g.sent, g.done))
                .count();
            requests += mine.len();
            s += &format!(
                "  good {:<13} {:>5} requests, {} failed ({} inside a failover window)\n",
                pool.name(),
                mine.len(),
                failed.len(),
                in_window
            );
            for g in failed {
                s += &format!("    {}\n", self.line(g));
            }
        }
        for (kind, n) in &self.bad_sent {
            let missed: Vec<&BadMiss> =
                self.bad_misses.iter().filter(|m| m.kind == *kind).collect();
            let excused = missed.iter().filter(|m| self.excused(m)).count();
            requests += n;
            s += &format!(
                "  bad  {:<17} {:>4} requests, {} wrong ({} a 502 inside a failover window)\n",
                format!("{kind:?}"),
                n,
                missed.len(),
                excused
            );
            for m in missed {
                s += &format!(
                    "    on {}, {:.3} s after the soak began: {}\n",
                    m.pool.name(),
                    (m.sent - self.begin).as_secs_f64(),
                    m.wrong.text
                );
            }
        }
        requests += 2 * IDLE_CONNECTIONS + self.trickled.len();
        s += &format!(
            "  idle keep-alive connections: {IDLE_CONNECTIONS}, {} failed at the end\n",
            self.idle_failures.len()
        );
        for t in &self.trickled {
            s += &format!("  trickled header: {t:?}\n");
        }
        for f in &self.faults {
            s += &format!(
                "  {} killed, failover window {window:?}, routed again {:.1} s after the kill\n",
                f.replica,
                (f.started - f.killed).as_secs_f64()
            );
        }
        s += &format!(
            "  {requests} requests in {:.1} s (the lab came up in {:.1} s); {} client connections open at the end\n",
            self.soak_time.as_secs_f64(),
            up_time.as_secs_f64(),
            self.open_at_end
                .map_or("unknown".to_string(), |n| n.to_string())
        );
        s += &format!(
            "  proxy memory: before {:.1} MB, peak {:.1} MB (VmHWM), after {:.1} MB (VmRSS)",
            before as f64 / 1024.0,
            self.peak_kb as f64 / 1024.0,
            after as f64 / 1024.0
        );
        s
    }

    fn assert_kept_promises(&self, summary: &str, window: Duration, before: u64, after: u64) {
        let planned = Pool::ALL.len() * SHOPPERS_PER_POOL * SHOPPER_REQUESTS;
        assert_eq!(self.good.len(), planned, "{summary}");
        // No stateful replica was killed: none of its requests may fail.
        let outside: Vec<String> = self
            .good
            .iter()
            .filter(|g| g.failure.is_some() && !self.in_window(g.pool, g.sent, g.done))
            .map(|g| self.line(g))
            .collect();
        assert!(
            outside.is_empty(),
            "good requests failed outside a failover window ({window:?}):\n{}\n{summary}",
            outside.join("\n")
        );
        // Inside: only a request the replica had taken as it died, and that the proxy does not
        // replay, may fail, and only with the proxy's documented 502.
        let wrong_inside: Vec<String> = self
            .good
            .iter()
            .filter(|g| {
                g.failure
                    .as_ref()
                    .is_some_and(|f| !f.bad_gateway || g.method == Method::GET)
            })
            .map(|g| self.line(g))
            .collect();
        assert!(
            wrong_inside.is_empty(),
            "good requests failed other than a POST's 502 bad_gateway:\n{}\n{summary}",
            wrong_inside.join("\n")
        );
        let bad_failures: Vec<&BadMiss> = self
            .bad_misses
            .iter()
            .filter(|m| !self.excused(m))
            .collect();
        assert!(
            bad_failures.is_empty(),
            "bad requests without their documented answer:\n{bad_failures:#?}\n{summary}"
        );
        assert_eq!(
            self.bad_sent.values().sum::<usize>(),
            (0..BAD_CLIENTS)
                .flat_map(|id| (0..BAD_ROUNDS).map(move |r| Bad::ALL[(r + id) % Bad::ALL.len()]))
                .map(Bad::requests)
                .sum::<usize>(),
            "{summary}"
        );
        for t in &self.trickled {
            assert!(t.is_ok(), "a trickled header: {t:?}\n{summary}");
        }
        assert!(
            self.idle_failures.is_empty(),
            "{:#?}\n{summary}",
            self.idle_failures
        );
        // Each killed replica was routed to again and served good requests after its start.
        for f in &self.faults {
            let served = self
                .good
                .iter()
                .any(|g| g.sent > f.started && g.replica.as_deref() == Some(f.replica));
            assert!(
                served,
                "{} served nothing after its start\n{summary}",
                f.replica
            );
        }
        assert!(
            self.peak_kb <= before + PEAK_GROWTH_LIMIT_KB,
            "the proxy's peak exceeds its bound ({} MB over before)\n{summary}",
            PEAK_GROWTH_LIMIT_KB / 1024
        );
        assert!(
            after <= before + AFTER_GROWTH_LIMIT_KB,
            "the proxy kept more than {} MB once the connections closed\n{summary}",
            AFTER_GROWTH_LIMIT_KB / 1024
        );
    }

    fn line(&self, g: &Good) -> String {
        format!(
            "{} {} {} ({}, {:.3} s after the soak began): {}",
            g.method,
            g.pool.name(),
            g.what,
            if self.in_window(g.pool, g.sent, g.done) {
                "inside a failover window"
            } else {
                "outside every failover window"
            },
            (g.sent - self.begin).as_secs_f64(),
            g.failure.as_ref().map_or("", |f| f.text.as_str())
        )
    }
}
