//! Test harness: real servers on ephemeral ports, a real Redis, and a cookie-keeping client.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use statelab_services::api::{App, Settings};
use statelab_services::metrics::Metrics;
use statelab_services::store::{JwtKey, JwtStore, MemoryStore, RedisConfig, RedisStore};
use statelab_services::SessionStore;
use tokio::sync::oneshot;

/// The secret the stateless service under test signs with.
pub const TEST_SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

/// Which design a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Stateful,
    Stateless,
    Externalized,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Stateful => "stateful",
            Kind::Stateless => "stateless",
            Kind::Externalized => "externalized",
        }
    }

    /// Whether the server can forget a session (logout, re-login); the JWT design cannot.
    pub fn can_revoke(self) -> bool {
        self != Kind::Stateless
    }

    /// Whether reads count in `requests_in_session`. The JWT design records only requests that
    /// issue a new token: counting a read would mean a new token on every read.
    pub fn counts_reads(self) -> bool {
        self != Kind::Stateless
    }
}

/// Polls `f` until it returns `Some`, or panics after `deadline` saying what was awaited.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free TCP port on loopback (released for the caller to bind).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}

/// A `redis-server` process owned by a test, without persistence; killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    child: std::sync::Mutex<Option<Child>>,
}

impl RedisServer {
    /// Starts Redis on a free port (retrying if another process grabs the port first).
    pub async fn start() -> Self {
        for _ in 0..5 {
            let server = RedisServer::unstarted();
            if server.restart().await {
                return server;
            }
        }
        panic!("redis-server did not start on any of five free ports");
    }

    /// A server that owns a free port but is not running yet (for "Redis is down at start").
    pub fn unstarted() -> Self {
        RedisServer {
            port: free_port(),
            child: std::sync::Mutex::new(None),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit.
    pub fn kill(&self) {
        let taken = self.child.lock().map(|mut c| c.take()).unwrap_or(None);
        if let Some(mut child) = taken {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the server on its port; false if it did not come up.
    pub async fn restart(&self) -> bool {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot run redis-server ({e}); install it (Debian: apt-get install redis-server) \
                 or run scripts/test, which does"
            ),
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if self.answers_as(child.id()).await {
                if let Ok(mut slot) = self.child.lock() {
                    *slot = Some(child);
                }
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        false
    }

    /// Whether the server on our port is the process `pid` — not another test's Redis that
    /// won a race for the port.
    async fn answers_as(&self, pid: u32) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut c) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        let info: String = match redis::cmd("INFO").arg("server").query_async(&mut c).await {
            Ok(info) => info,
            Err(_) => return false,
        };
        info.lines()
            .any(|l| l.trim() == format!("process_id:{pid}"))
    }

    /// Pauses (SIGSTOP) or resumes (SIGCONT) the server: a Redis that accepts connections but
    /// never answers, the case only a timeout can catch.
    pub fn signal(&self, signal: &str) {
        let pid = self
            .child
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(Child::id))
            .expect("redis is running");
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// A plain connection for tests that inspect what the service wrote.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connecting to the test redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Knobs a test may turn.
#[derive(Clone, Debug)]
pub struct Options {
    pub session_ttl: Duration,
    pub body_limit: usize,
    pub redis_timeout: Duration,
    /// Whether the externalized service's Redis is running when the service starts.
    pub redis_up: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            session_ttl: Duration::from_secs(600),
            body_limit: 1024,
            redis_timeout: Duration::from_millis(500),
            redis_up: true,
        }
    }
}

/// A service running in this test process on an ephemeral port.
#[derive(Debug)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub replica: String,
    pub cookie_name: String,
    pub redis: Option<RedisServer>,
    pub redis_prefix: String,
    pub http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

pub async fn spawn_app(kind: Kind) -> TestApp {
    spawn_app_with(kind, Options::default()).await
}

pub async fn spawn_app_with(kind: Kind, options: Options) -> TestApp {
    let replica = format!("{}-test", kind.name());
    let metrics = Metrics::new(kind.name(), &replica).expect("metrics");
    let settings = Settings {
        replica: replica.clone(),
        body_limit: options.body_limit,
        session_ttl_secs: options.session_ttl.as_secs(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let grace = Duration::from_secs(1);
    let mut redis = None;
    static APPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = APPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let redis_prefix = format!("test{}-{n}:", std::process::id());
    let cookie_name = match kind {
        Kind::Stateful => {
            let store = MemoryStore::new(options.session_ttl, &metrics).expect("store");
            serve(listener, store, settings, metrics, shutdown, grace)
        }
        Kind::Stateless => {
            let key = JwtKey::from_secret(TEST_SECRET).expect("key");
            let store = JwtStore::new(key, vec![], options.session_ttl, &metrics).expect("store");
            serve(listener, store, settings, metrics, shutdown, grace)
        }
        Kind::Externalized => {
            let server = if options.redis_up {
                RedisServer::start().await
            } else {
                RedisServer::unstarted()
            };
            let config = RedisConfig {
                url: server.url(),
                key_prefix: redis_prefix.clone(),
                ttl: options.session_ttl,
                timeout: options.redis_timeout,
            };
            redis = Some(server);
            let store = RedisStore::new(&config, &metrics).expect("store");
            serve(listener, store, settings, metrics, shutdown, grace)
        }
    };
    TestApp {
        addr,
        replica,
        cookie_name,
        redis,
        redis_prefix,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        _stop: stop,
    }
}

fn serve<S: SessionStore>(
    listener: tokio::net::TcpListener,
    store: S,
    settings: Settings,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> String {
    let app = Arc::new(App::new(store, settings, metrics).expect("app"));
    let cookie_name = app.cookie_name().to_owned();
    tokio::spawn(statelab_services::server::run(
        listener, app, shutdown, grace,
    ));
    cookie_name
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Set-Cookie` line for `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// Asserts this is the JSON error `code` with `status`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "status; body: {}", self.text);
        assert_eq!(self.body["error"], code, "error code; body: {}", self.text);
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "message: {}",
            self.text
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request with an optional raw body and credential cookie.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        cookie: Option<&str>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        if let Some(value) = cookie {
            req = req.header("cookie", format!("{}={value}", self.cookie_name));
        }
        let response = req.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// A client that keeps its session cookie the way a browser does.
    pub fn user(&self) -> User<'_> {
        User {
            app: self,
            credential: None,
        }
    }
}

/// One end user: remembers the credential from every `Set-Cookie` it receives.
#[derive(Debug, Clone)]
pub struct User<'a> {
    pub app: &'a TestApp,
    pub credential: Option<String>,
}

impl User<'_> {
    pub async fn send(&mut self, method: Method, path: &str, body: Option<&str>) -> Reply {
        let reply = self
            .app
            .send(method, path, body, self.credential.as_deref())
            .await;
        if let Some(line) = reply.set_cookie(&self.app.cookie_name) {
            let value = line
                .split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .map(|(_, v)| v.to_owned())
                .unwrap_or_default();
            self.credential = (!value.is_empty()).then_some(value);
        }
        reply
    }

    pub async fn login(&mut self, username: &str) -> Reply {
        let body = serde_json::json!({ "username": username }).to_string();
        let reply = self.send(Method::POST, "/login", Some(&body)).await;
        assert_eq!(reply.status, StatusCode::OK, "login: {}", reply.text);
        reply
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub async fn add(&mut self, sku: &str, qty: i64) -> Reply {
        let body = serde_json::json!({ "sku": sku, "qty": qty }).to_string();
        self.send(Method::POST, "/cart/items", Some(&body)).await
    }

    pub async fn post(&mut self, path: &str) -> Reply {
        self.send(Method::POST, path, None).await
    }
}

/// Quantity of `sku` in a cart body (`{"items": [{"sku", "qty"}], ...}`), 0 if absent.
pub fn qty_of(cart: &Value, sku: &str) -> u64 {
    cart["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["sku"] == sku)
        .and_then(|i| i["qty"].as_u64())
        .unwrap_or(0)
}
