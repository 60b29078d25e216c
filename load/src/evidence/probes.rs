//! The evidence's direct measurements, each a handful of requests against the evidence's own lab:
//! what a token shows without its key, whether a logged-out credential still works, the bytes a
//! request carries with an empty and a full cart and the CPU a replica spends on it, the memory a
//! live session takes, and a Redis round trip.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use statelab_formats::health::HealthDetail;
use statelab_formats::Design;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::client::{Client, Target};

/// Every request's bound.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The cart lines a full cart holds: the services' limit.
pub const FULL_CART_LINES: u32 = 32;

/// Where the probes go: the proxy, and each replica and Redis at the address the host reaches
/// it by (natively on loopback, in Docker in the lab network).
#[derive(Debug, Clone)]
pub struct Place {
    pub proxy: SocketAddr,
    pub addresses: BTreeMap<String, SocketAddr>,
}

impl Place {
    fn through_proxy(&self, design: Design) -> Client {
        client(&format!("http://{}/{design}", self.proxy))
    }

    fn part(&self, name: &str) -> Result<SocketAddr, String> {
        self.addresses
            .get(name)
            .copied()
            .ok_or_else(|| format!("the lab names no address for {name}"))
    }
}

fn client(url: &str) -> Client {
    // The URLs are built here from ports, so they always parse.
    let target = Target::parse(url).unwrap_or_else(|e| unreachable!("{e}"));
    Client::new(target, None, TIMEOUT)
}

/// How big each probe is.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Replays of a logged-out credential per design.
    pub replays: u32,
    /// Sessions logged in for the memory slope.
    pub sessions: u32,
    /// Requests timed for the CPU per request.
    pub cpu_requests: u32,
    /// Redis round trips.
    pub round_trips: u32,
}

/// What the probes found; each one that could not run says why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Probes {
    pub token: Option<TokenSeen>,
    pub replays: Vec<Replay>,
    pub expiry: Option<Expiry>,
    pub request_bytes: Vec<RequestBytes>,
    pub memory: Vec<MemoryPerSession>,
    pub redis_round_trip: Option<RoundTrip>,
    /// Probe name → why it did not run.
    pub not_measured: BTreeMap<String, String>,
}

/// A real token of the stateless design, read without its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenSeen {
    pub token_bytes: u64,
    /// The token's header and claims, base64url-decoded: no key needed.
    pub header: serde_json::Value,
    pub claims: serde_json::Value,
    /// The username the probe logged in as, and whether the claims show it.
    pub username: String,
    pub username_readable: bool,
    /// Cart lines the probe added, and how many of them the claims show by SKU.
    pub cart_lines: u64,
    pub cart_lines_readable: u64,
    /// Seconds from now to the token's `exp`.
    pub lifetime_left_s: Option<f64>,
}

/// A credential replayed after its session logged out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    pub design: Design,
    pub tries: u32,
    /// Replays answered 200: the credential still worked.
    pub accepted: u32,
}

/// A stateless replica with a short token lifetime: the replay before and after `exp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expiry {
    pub lifetime_s: u64,
    /// The logged-out token replayed at once was accepted.
    pub accepted_before_exp: bool,
    /// Seconds from the login to the first replay refused (401), polled every 100 ms.
    pub refused_after_s: Option<f64>,
}

/// The bytes of one `GET /cart` on the wire, from the client, and the CPU a replica spends on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestBytes {
    pub design: Design,
    pub empty_cart: u64,
    pub full_cart: u64,
    /// The credential alone (cookie value) at a full cart.
    pub credential_full_cart: u64,
    /// Replica CPU per `GET /cart` at a full cart, sent straight to one replica; `None` when the
    /// replica does not report its CPU time.
    pub cpu_us_per_request: Option<f64>,
}

/// Memory taken per live session: a count of sessions logged in and the growth it caused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryPerSession {
    pub design: Design,
    /// What was measured: `replica RSS` or `Redis used_memory`.
    pub what: String,
    pub sessions: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub bytes_per_session: f64,
}

/// Direct Redis round trips (`PING`), one at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundTrip {
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Runs every probe; a probe that fails is recorded as not measured, with its reason.
pub async fn run(place: &Place, sizes: Sizes, bin_dir: Option<&Path>, scratch: &Path) -> Probes {
    let mut p = Probes::default();
    let mut missed = BTreeMap::new();
    let mut miss = |name: &str, why: String| {
        missed.insert(name.to_owned(), why);
    };
    match token_seen(place).await {
        Ok(t) => p.token = Some(t),
        Err(e) => miss("token", e),
    }
    match replays(place, sizes.replays).await {
        Ok(r) => p.replays = r,
        Err(e) => miss("replays", e),
    }
    match expiry(bin_dir, scratch).await {
        Ok(x) => p.expiry = Some(x),
        Err(e) => miss("expiry", e),
    }
    match request_bytes(place, sizes.cpu_requests).await {
        Ok(b) => p.request_bytes = b,
        Err(e) => miss("request_bytes", e),
    }
    match memory(place, sizes.sessions).await {
        Ok(m) => p.memory = m,
        Err(e) => miss("memory", e),
    }
    match redis_round_trip(place, sizes.round_trips).await {
        Ok(r) => p.redis_round_trip = Some(r),
        Err(e) => miss("redis_round_trip", e),
    }
    p.not_measured = missed;
    p
}

/// One request that must answer 2xx; its body.
async fn ok(
    c: &mut Client,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Result<Bytes, String> {
    let answer = c
        .send(
            method.clone(),
            path,
            body.map(|b| Bytes::from(b.to_owned())),
        )
        .await
        .result
        .map_err(|e| format!("{method} {path}: {e:?}"))?;
    if !answer.status.is_success() {
        return Err(format!("{method} {path} answered {}", answer.status));
    }
    Ok(answer.body)
}

async fn status(c: &mut Client, method: Method, path: &str) -> Result<StatusCode, String> {
    c.send(method.clone(), path, None)
        .await
        .result
        .map(|a| a.status)
        .map_err(|e| format!("{method} {path}: {e:?}"))
}

async fn login(c: &mut Client, username: &str) -> Result<serde_json::Value, String> {
    let body = ok(
        c,
        Method::POST,
        "/login",
        Some(&format!(r#"{{"username":"{username}"}}"#)),
    )
    .await?;
    serde_json::from_slice(&body).map_err(|e| format!("the login's answer: {e}"))
}

fn sku(i: u32) -> String {
    format!("sku-{i:02}")
}

async fn fill_cart(c: &mut Client, lines: u32) -> Result<(), String> {
    for i in 0..lines {
        ok(
            c,
            Method::POST,
            "/cart/items",
            Some(&format!(r#"{{"sku":"{}","qty":1}}"#, sku(i))),
        )
        .await?;
    }
    Ok(())
}

fn cookie_name(design: Design) -> String {
    format!("statelab_{design}")
}

/// The claims of a JWT, base64url-decoded: what anyone holding the token can read.
pub fn decode_jwt(token: &str) -> Result<(serde_json::Value, serde_json::Value), String> {
    let mut parts = token.split('.');
    let (Some(head), Some(body), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT (three dot-separated parts)".into());
    };
    let read = |part: &str| -> Result<serde_json::Value, String> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| format!("not base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
    };
    Ok((read(head)?, read(body)?))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

async fn token_seen(place: &Place) -> Result<TokenSeen, String> {
    let mut c = place.through_proxy(Design::Stateless);
    let username = "evidence-reader";
    login(&mut c, username).await?;
    let lines = 3;
    fill_cart(&mut c, lines).await?;
    let token = c
        .cookie(&cookie_name(Design::Stateless))
        .ok_or("the stateless login set no token cookie")?
        .to_owned();
    let (header, claims) = decode_jwt(&token)?;
    let text = claims.to_string();
    Ok(TokenSeen {
        token_bytes: token.len() as u64,
        username_readable: text.contains(username),
        cart_lines_readable: (0..lines).filter(|i| text.contains(&sku(*i))).count() as u64,
        username: username.into(),
        cart_lines: u64::from(lines),
        lifetime_left_s: claims["exp"].as_f64().map(|exp| exp - unix_now()),
        header,
        claims,
    })
}

/// Per design: log in, copy the browser's cookies, log out, then replay the copy `tries` times
/// from a fresh client.
async fn replays(place: &Place, tries: u32) -> Result<Vec<Replay>, String> {
    let mut out = Vec::new();
    for design in Design::ALL {
        let mut c = place.through_proxy(design);
        login(&mut c, "evidence-replay").await?;
        ok(
            &mut c,
            Method::POST,
            "/cart/items",
            Some(r#"{"sku":"kept","qty":1}"#),
        )
        .await?;
        let name = cookie_name(design);
        if c.cookie(&name).is_none() {
            return Err(format!("{design}: no {name} cookie after login"));
        }
        // Every cookie the browser holds, the proxy's affinity cookie with the session's: the
        // copy reaches the replica that made the session.
        let copied = c.cookies().to_vec();
        ok(&mut c, Method::POST, "/logout", None).await?;
        let mut thief = place.through_proxy(design);
        for (n, v) in &copied {
            thief.set_cookie(n, v);
        }
        let mut accepted = 0;
        for _ in 0..tries {
            if status(&mut thief, Method::GET, "/cart").await? == StatusCode::OK {
                accepted += 1;
            }
        }
        out.push(Replay {
            design,
            tries,
            accepted,
        });
    }
    Ok(out)
}

/// The token lifetime of the short-lived stateless replica.
const SHORT_LIFETIME_S: u64 = 2;

/// A stateless replica of its own, with a token lifetime of [`SHORT_LIFETIME_S`]: a logged-out
/// token replayed at once, then every 100 ms until it is refused (at most 10 s past `exp`).
async fn expiry(bin_dir: Option<&Path>, scratch: &Path) -> Result<Expiry, String> {
    let bin = stateless_binary(bin_dir)?;
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let secret = scratch.join("short-lived-jwt-secret");
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("no random key: {e}"))?;
    let key: String = key.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&secret, &key)?;
    let mut child = tokio::process::Command::new(&bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--replica",
            "stateless-short-lived",
        ])
        .args(["--log-format", "json", "--session-ttl"])
        .arg(SHORT_LIFETIME_S.to_string())
        .arg("--jwt-secret-file")
        .arg(&secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let port = serving_port(&mut child).await?;
    let mut c = client(&format!("http://127.0.0.1:{port}"));
    let logged_in = Instant::now();
    login(&mut c, "evidence-expiry").await?;
    let name = cookie_name(Design::Stateless);
    let copied = c.cookie(&name).ok_or("no token cookie")?.to_owned();
    ok(&mut c, Method::POST, "/logout", None).await?;
    let mut thief = client(&format!("http://127.0.0.1:{port}"));
    thief.set_cookie(&name, &copied);
    let accepted_before_exp = status(&mut thief, Method::GET, "/cart").await? == StatusCode::OK;
    let deadline = logged_in + Duration::from_secs(SHORT_LIFETIME_S + 10);
    let mut refused_after_s = None;
    while Instant::now() < deadline {
        if status(&mut thief, Method::GET, "/cart").await? == StatusCode::UNAUTHORIZED {
            refused_after_s = Some(logged_in.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill().await;
    Ok(Expiry {
        lifetime_s: SHORT_LIFETIME_S,
        accepted_before_exp,
        refused_after_s,
    })
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The `stateless` program: in `STATELAB_BIN_DIR`'s directories, else beside this one.
fn stateless_binary(bin_dir: Option<&Path>) -> Result<PathBuf, String> {
    let here = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    bin_dir
        .into_iter()
        .map(Path::to_path_buf)
        .chain(here)
        .map(|d| d.join("stateless"))
        .find(|p| p.is_file())
        .ok_or_else(|| "no stateless program in STATELAB_BIN_DIR or beside statelab-load".into())
}

/// The port a service bound to `127.0.0.1:0` names in its `serving` log line (JSON logs, on
/// standard output or standard error), within 10 s.
async fn serving_port(child: &mut tokio::process::Child) -> Result<u16, String> {
    let out = child.stdout.take().ok_or("no standard output")?;
    let err = child.stderr.take().ok_or("no standard error")?;
    let mut out = BufReader::new(out).lines();
    let mut err = BufReader::new(err).lines();
    let find = async {
        loop {
            let line = tokio::select! {
                l = out.next_line() => l,
                l = err.next_line() => l,
            };
            match line {
                Ok(Some(line)) => {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                        continue;
                    };
                    let listen = v["fields"]["listen"].as_str().or(v["listen"].as_str());
                    if let Some(port) = listen
                        .and_then(|l| l.rsplit(':').next())
                        .and_then(|p| p.parse().ok())
                    {
                        return Ok(port);
                    }
                }
                Ok(None) | Err(_) => return Err("the replica exited before serving".to_owned()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), find)
        .await
        .map_err(|_| "the replica did not log its address within 10 s".to_owned())?
}

/// Per design, `GET /cart` at an empty cart and at a full one, through the proxy; then
/// `cpu_requests` of them at a full cart straight to the design's first replica, timed by the
/// replica's own CPU time.
async fn request_bytes(place: &Place, cpu_requests: u32) -> Result<Vec<RequestBytes>, String> {
    let mut out = Vec::new();
    for design in Design::ALL {
        let mut c = place.through_proxy(design);
        login(&mut c, "evidence-bytes").await?;
        ok(&mut c, Method::GET, "/cart", None).await?;
        let empty_cart = c.last_request_bytes() as u64;
        fill_cart(&mut c, FULL_CART_LINES).await?;
        ok(&mut c, Method::GET, "/cart", None).await?;
        let full_cart = c.last_request_bytes() as u64;
        let name = cookie_name(design);
        let credential = c.cookie(&name).ok_or("no session cookie")?.to_owned();
        let replica = place.part(&format!("{design}-1"))?;
        let mut direct = client(&format!("http://{replica}"));
        // The externalized and stateless sessions work on any replica; the stateful one only
        // where it was made, so it logs in again there.
        if design == Design::Stateful {
            login(&mut direct, "evidence-bytes").await?;
            fill_cart(&mut direct, FULL_CART_LINES).await?;
        } else {
            direct.set_cookie(&name, &credential);
        }
        let before = health(replica).await?;
        for _ in 0..cpu_requests {
            ok(&mut direct, Method::GET, "/cart", None).await?;
        }
        let after = health(replica).await?;
        let cpu_us_per_request = match (before.reported.cpu_ms, after.reported.cpu_ms) {
            (Some(a), Some(b)) if cpu_requests > 0 => {
                Some(b.saturating_sub(a) as f64 * 1000.0 / f64::from(cpu_requests))
            }
            _ => None,
        };
        out.push(RequestBytes {
            design,
            empty_cart,
            full_cart,
            credential_full_cart: credential.len() as u64,
            cpu_us_per_request,
        });
    }
    Ok(out)
}

async fn health(replica: SocketAddr) -> Result<HealthDetail, String> {
    let mut c = client(&format!("http://{replica}"));
    let body = ok(&mut c, Method::GET, "/health?detail=1", None).await?;
    serde_json::from_slice(&body).map_err(|e| format!("the health answer: {e}"))
}

/// `sessions` logins on one replica of each design, straight to it, each from a client without
/// cookies (a login that presents a session ends it): the growth of the replica's resident
/// memory, and for externalized of Redis's `used_memory`, over the sessions the server counts
/// as added (the stateful replica's sessions held, Redis's keys), else over the logins.
async fn memory(place: &Place, sessions: u32) -> Result<Vec<MemoryPerSession>, String> {
    let mut out = Vec::new();
    for design in Design::ALL {
        let replica = place.part(&format!("{design}-1"))?;
        let rss = |h: &HealthDetail| h.reported.rss_bytes.ok_or("the replica reports no RSS");
        let held = |h: &HealthDetail| {
            h.reported
                .store
                .sessions_held
                .or(h.reported.store.store_sessions)
        };
        let redis_before = match design {
            Design::Externalized => Some(redis_used_memory(place).await?),
            _ => None,
        };
        let first = health(replica).await?;
        let mut c = client(&format!("http://{replica}"));
        for i in 0..sessions {
            c.reset();
            login(&mut c, &format!("evidence-mem-{i}")).await?;
        }
        let last = health(replica).await?;
        let added = match (held(&first), held(&last)) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => u64::from(sessions),
        };
        let per = |a: u64, b: u64| (b as f64 - a as f64) / added.max(1) as f64;
        let (before, after) = (rss(&first)?, rss(&last)?);
        out.push(MemoryPerSession {
            design,
            what: "replica RSS".into(),
            sessions: added,
            bytes_before: before,
            bytes_after: after,
            bytes_per_session: per(before, after),
        });
        if let Some(redis_before) = redis_before {
            let redis_after = redis_used_memory(place).await?;
            out.push(MemoryPerSession {
                design,
                what: "Redis used_memory".into(),
                sessions: added,
                bytes_before: redis_before,
                bytes_after: redis_after,
                bytes_per_session: per(redis_before, redis_after),
            });
        }
    }
    Ok(out)
}

async fn redis_connection(place: &Place) -> Result<redis::aio::MultiplexedConnection, String> {
    let redis = place.part("redis")?;
    let client =
        redis::Client::open(format!("redis://{redis}/")).map_err(|e| format!("Redis: {e}"))?;
    tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| "Redis did not answer within 5 s".to_owned())?
        .map_err(|e| format!("Redis: {e}"))
}

async fn redis_used_memory(place: &Place) -> Result<u64, String> {
    let mut conn = redis_connection(place).await?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("Redis INFO: {e}"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "Redis INFO memory has no used_memory".into())
}

async fn redis_round_trip(place: &Place, requests: u32) -> Result<RoundTrip, String> {
    let mut conn = redis_connection(place).await?;
    let mut h = crate::stats::new_histogram(3);
    for _ in 0..requests {
        let t = Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("Redis PING: {e}"))?;
        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
    }
    Ok(RoundTrip {
        requests: u64::from(requests),
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
    })
}
