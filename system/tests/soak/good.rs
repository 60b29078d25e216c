//! The good clients: shop sessions on all three pools (login, `/me`, two cart adds, `/cart`
//! with the expected contents, logout), each client on its own keep-alive connection through
//! the generator's client, every request recorded with its times, its replica and how it failed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use statelab_load::client::{Answer, Client, ErrorKind, Target};
use tokio::time::MissedTickBehavior;

use crate::lab::{json_error_code, Pool};
use crate::REQUEST_TIMEOUT;

/// Shop clients per pool, each on its own keep-alive connection.
pub const SHOPPERS_PER_POOL: usize = 4;
/// Requests each shop client sends, one per tick.
pub const SHOPPER_REQUESTS: usize = 370;
const SHOPPER_EVERY: Duration = Duration::from_millis(80);

/// One good request as a shop client saw it.
#[derive(Debug)]
pub struct Good {
    pub pool: Pool,
    pub method: Method,
    pub what: &'static str,
    pub sent: Instant,
    pub done: Instant,
    pub replica: Option<String>,
    /// Why it counts as failed: an error kind, or a status or body it should not have had.
    pub failure: Option<Failure>,
}

#[derive(Debug)]
pub struct Failure {
    /// The proxy's documented answer for a request it could not replay: `502` `bad_gateway`.
    pub bad_gateway: bool,
    pub text: String,
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
pub async fn shopper(proxy: SocketAddr, pool: Pool, id: usize) -> Vec<Good> {
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
