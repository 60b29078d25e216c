//! HTTP from the host: a shopper with its own cookies through the proxy, and the admin API with
//! the lab's token. Each request is a connection of its own, as a fresh `curl` would make it.
//!
//! The admin API's answers are read as the shared formats (`StatusView`); the shop's bodies and
//! the dashboard's history have no shared type, so the few fields checked are read through small
//! views of their own below (a renamed field fails the check that reads it).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, COOKIE, SET_COOKIE};
use reqwest::{Client, Method};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use statelab_formats::{AddItem, CartView, ErrorBody, ImageType, Login, Me};
use statelab_formats::{AdminToken, Design, StatusView, Strategy};

/// How long a shop request may take.
const SHOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an admin request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);

/// A client that opens a new connection per request and never goes through an HTTP proxy: the
/// lab's ports are on loopback.
fn client(timeout: Duration) -> Client {
    Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .expect("an HTTP client (no TLS, no proxy)")
}

/// One answer: its status (`None` when the request itself failed), how long it took, the
/// replica that answered (`x-replica`), its media type and the body (as text, and as the bytes
/// sent, for an image).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: Option<u16>,
    pub ms: u128,
    pub replica: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn is(&self, status: u16) -> bool {
        self.status == Some(status)
    }

    /// The status as curl prints it (`000`: no answer).
    pub fn code(&self) -> String {
        self.status.map_or_else(|| "000".into(), |s| s.to_string())
    }

    pub fn replica(&self) -> &str {
        self.replica.as_deref().unwrap_or("?")
    }

    /// The body as `T`, `None` when it is not one.
    pub fn json<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(&self.body).ok()
    }

    /// The `error` code of an error answer (`None`: not one).
    pub fn error(&self) -> Option<String> {
        self.json::<ErrorBody>().map(|e| e.error)
    }

    /// The `username` of a `GET /me` answer.
    pub fn username(&self) -> Option<String> {
        self.json::<Me>().map(|me| me.username.into_owned())
    }

    /// How many of `sku` a cart answer holds (`None`: not a cart, or no such line).
    pub fn qty(&self, sku: &str) -> Option<u64> {
        let cart: CartView = self.json()?;
        cart.items.into_iter().find(|l| l.sku == sku).map(|l| l.qty)
    }

    /// "200 from stateful-2", for a check's detail.
    pub fn summary(&self) -> String {
        format!("{} from {}", self.code(), self.replica())
    }
}

/// Sends one request and reads the whole answer.
async fn send(
    client: &Client,
    method: Method,
    url: &str,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
) -> (Answer, HeaderMap) {
    let started = Instant::now();
    let mut request = client.request(method, url).headers(headers);
    if let Some(body) = body {
        request = request.body(body);
    }
    let (status, headers, bytes) = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            match response.bytes().await {
                Ok(bytes) => (Some(status), headers, bytes.to_vec()),
                Err(_) => (None, headers, Vec::new()),
            }
        }
        Err(_) => (None, HeaderMap::new(), Vec::new()),
    };
    let last = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let answer = Answer {
        status,
        ms: started.elapsed().as_millis(),
        replica: last("x-replica"),
        content_type: last("content-type"),
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    };
    (answer, headers)
}

/// One user of the shop through the proxy, with a cookie jar of its own.
#[derive(Debug)]
pub struct Shopper {
    pub name: String,
    proxy: String,
    client: Client,
    /// Cookie name to value; every cookie the lab sets has `Path=/`. Borrowed only between
    /// awaits, so a shopper can be shared by a polled check.
    jar: RefCell<BTreeMap<String, String>>,
}

impl Shopper {
    pub fn new(name: &str, proxy: &str) -> Shopper {
        Shopper {
            name: name.to_string(),
            proxy: proxy.to_string(),
            client: client(SHOP_TIMEOUT),
            jar: RefCell::new(BTreeMap::new()),
        }
    }

    /// `METHOD PATH` with the user's cookies, and a JSON body when given; the cookies the
    /// answer sets are kept (a `Max-Age=0` one removed).
    pub async fn req(&self, method: Method, path: &str, json: Option<String>) -> Answer {
        let body = json.map(|j| ("application/json", j.into_bytes()));
        self.request(method, path, body).await
    }

    /// `METHOD PATH` with the user's cookies and a body of this media type, if any.
    async fn request(&self, method: Method, path: &str, body: Option<(&str, Vec<u8>)>) -> Answer {
        let mut headers = HeaderMap::new();
        let cookies: Vec<String> = (self.jar.borrow().iter())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !cookies.is_empty() {
            if let Ok(value) = HeaderValue::from_str(&cookies.join("; ")) {
                headers.insert(COOKIE, value);
            }
        }
        let body = body.and_then(|(media, bytes)| {
            let media = HeaderValue::from_str(media).ok()?;
            headers.insert(reqwest::header::CONTENT_TYPE, media);
            Some(bytes)
        });
        let url = format!("{}{path}", self.proxy);
        let (answer, got) = send(&self.client, method, &url, headers, body).await;
        for value in got.get_all(SET_COOKIE) {
            if let Ok(text) = value.to_str() {
                self.keep_cookie(text);
            }
        }
        answer
    }

    fn keep_cookie(&self, set_cookie: &str) {
        let mut attrs = set_cookie.split(';').map(str::trim);
        let Some((name, value)) = attrs.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let expired = attrs.any(|a| a.eq_ignore_ascii_case("max-age=0"));
        let mut jar = self.jar.borrow_mut();
        if expired || value.is_empty() {
            jar.remove(name);
        } else {
            jar.insert(name.to_string(), value.to_string());
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.req(Method::GET, path, None).await
    }

    pub async fn login(&self, design: Design) -> Answer {
        let body = String::from_utf8_lossy(
            &Login {
                username: self.name.as_str().into(),
            }
            .to_json(),
        )
        .into_owned();
        self.req(Method::POST, &format!("/{design}/login"), Some(body))
            .await
    }

    /// `PUT /POOL/avatar`: the user's avatar, an image of this type.
    pub async fn put_avatar(&self, design: Design, image: ImageType, bytes: &[u8]) -> Answer {
        let body = Some((image.content_type(), bytes.to_vec()));
        self.request(Method::PUT, &format!("/{design}/avatar"), body)
            .await
    }

    pub async fn add(&self, design: Design, sku: &str, qty: u64) -> Answer {
        let body = String::from_utf8_lossy(
            &AddItem {
                sku: sku.into(),
                qty: i64::try_from(qty).unwrap_or(i64::MAX),
            }
            .to_json(),
        )
        .into_owned();
        self.req(Method::POST, &format!("/{design}/cart/items"), Some(body))
            .await
    }
}

/// A request through the proxy without cookies, with extra headers: a fresh client.
pub async fn anonymous_get(proxy: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let client = client(Duration::from_secs(5));
    let url = format!("{proxy}{path}");
    send(&client, Method::GET, &url, header_map(headers), None)
        .await
        .0
}

fn header_map(headers: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("a valid header name");
        let value = HeaderValue::from_str(value).expect("a valid header value");
        map.append(name, value);
    }
    map
}

/// Whether the proxy's admin status lists a replica, and as healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    Healthy,
    Unhealthy,
    /// Not in the status, or no status at all.
    Missing,
}

/// The proxy's admin API on the host, as Docker publishes it.
#[derive(Debug)]
pub struct Admin {
    base: String,
    token: AdminToken,
    client: Client,
}

impl Admin {
    pub fn new(base: &str, token: &AdminToken) -> Admin {
        Admin {
            base: base.to_string(),
            token: token.clone(),
            client: client(ADMIN_TIMEOUT),
        }
    }

    /// `Authorization: Bearer TOKEN`.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token.as_str())
    }

    /// The status of one admin request (`None` when it got no answer), with exactly the headers
    /// given (the token too only when given).
    pub async fn code(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Option<u16> {
        let url = format!("{}{path}", self.base);
        let body = body.map(|b| b.as_bytes().to_vec());
        let (answer, _) = send(&self.client, method, &url, header_map(headers), body).await;
        answer.status
    }

    /// `GET PATH` with the token, its body as `T`.
    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Option<T> {
        let auth = self.bearer();
        let url = format!("{}{path}", self.base);
        let headers = header_map(&[("authorization", &auth)]);
        let (answer, _) = send(&self.client, Method::GET, &url, headers, None).await;
        if answer.is(200) {
            answer.json()
        } else {
            None
        }
    }

    /// `GET /admin/status`.
    pub async fn status(&self) -> Option<StatusView> {
        self.get_json("/admin/status").await
    }

    pub async fn listed(&self, replica: &str) -> Listed {
        match self
            .status()
            .await
            .as_ref()
            .and_then(|s| s.replica(replica))
        {
            Some(r) if r.healthy => Listed::Healthy,
            Some(_) => Listed::Unhealthy,
            None => Listed::Missing,
        }
    }

    /// The nine replicas the lab starts with are all healthy in the admin status.
    pub async fn all_nine_healthy(&self) -> bool {
        let Some(status) = self.status().await else {
            return false;
        };
        Design::ALL.iter().all(|d| {
            (1..=3).all(|k| {
                status
                    .replica(&format!("{d}-{k}"))
                    .is_some_and(|r| r.healthy)
            })
        })
    }

    /// `PUT /admin/pools/POOL/strategy`; true on a 2xx answer.
    pub async fn set_strategy(&self, pool: Design, strategy: Strategy) -> bool {
        let body = serde_json::json!({ "strategy": strategy.as_str() }).to_string();
        let auth = self.bearer();
        let path = format!("/admin/pools/{pool}/strategy");
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let code = self.code(Method::PUT, &path, &headers, Some(&body)).await;
        code.is_some_and(|c| (200..300).contains(&c))
    }

    /// From `GET /admin/dashboard.json`: the replicas, those reporting their resident memory,
    /// and the stateful ones reporting the sessions they hold.
    pub async fn dashboard_figures(&self) -> Option<DashboardFigures> {
        let dashboard: Dashboard = self.get_json("/admin/dashboard.json").await?;
        let replicas: Vec<&DashboardReplica> =
            dashboard.pools.iter().flat_map(|p| &p.replicas).collect();
        let memory = replicas
            .iter()
            .filter(|r| r.series.rss_bytes.iter().any(|v| v.is_some_and(|b| b > 0)))
            .count();
        let stateful_sessions = replicas
            .iter()
            .filter(|r| r.name.starts_with("stateful-"))
            .filter(|r| r.series.sessions_held.iter().any(Option::is_some))
            .count();
        Some(DashboardFigures {
            replicas: replicas.len(),
            memory,
            stateful_sessions,
        })
    }
}

/// What the dashboard check counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DashboardFigures {
    pub replicas: usize,
    pub memory: usize,
    pub stateful_sessions: usize,
}

/// `GET /admin/dashboard.json`, the fields checked.
#[derive(Debug, Deserialize)]
struct Dashboard {
    pools: Vec<DashboardPool>,
}

#[derive(Debug, Deserialize)]
struct DashboardPool {
    replicas: Vec<DashboardReplica>,
}

#[derive(Debug, Deserialize)]
struct DashboardReplica {
    name: String,
    series: DashboardSeries,
}

/// A replica's per-second samples, from the health checks' detailed answers.
#[derive(Debug, Deserialize)]
struct DashboardSeries {
    rss_bytes: Vec<Option<u64>>,
    sessions_held: Vec<Option<u64>>,
}
