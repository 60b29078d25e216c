//! Test harness: real servers on ephemeral ports, a real Redis (`statelab-test-support`'s
//! `RedisServer`), and a cookie-keeping client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::Value;
pub use statelab_formats::Design;
use statelab_services::api::{App, Settings};
use statelab_services::chat::{BrokerRooms, Rooms};
use statelab_services::files::{DiskFiles, Files, S3Config, S3Files};
use statelab_services::metrics::Metrics;
use statelab_services::store::{
    JwtKey, JwtStore, MemoryConfig, MemoryStore, RedisConfig, RedisStore, Topology,
};
use statelab_services::work::Work;
use statelab_services::SessionStore;
use statelab_test_support::{ObjectStore, RedisServer, TempDir};
use tokio::sync::oneshot;

/// Instantiates each named `async fn(Design)` as a test for every design: modules `stateful`,
/// `stateless` and `externalized`, one test each.
macro_rules! for_every_design {
    ($($test:ident),* $(,)?) => {
        mod stateful {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $test() { super::$test(super::Design::Stateful).await } )*
        }
        mod stateless {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $test() { super::$test(super::Design::Stateless).await } )*
        }
        mod externalized {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $test() { super::$test(super::Design::Externalized).await } )*
        }
    };
}
pub(crate) use for_every_design;

/// The secret the stateless service under test signs with.
pub const TEST_SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

/// Whether reads count in `requests_in_session`. The JWT design records only requests that
/// issue a new token: counting a read would mean a new token on every read.
pub fn counts_reads(design: Design) -> bool {
    design != Design::Stateless
}

/// Knobs a test may turn.
#[derive(Clone, Debug)]
pub struct Options {
    pub session_ttl: Duration,
    pub body_limit: usize,
    pub redis_timeout: Duration,
    /// Whether the externalized service's Redis is running when the service starts.
    pub redis_up: bool,
    /// The stateful service's cap on sessions held.
    pub max_sessions: usize,
    /// CPU work per API request.
    pub work: Work,
    /// Give the service its file store: a data directory of its own for stateful, a real
    /// object store (`s3s-fs`) for the others.
    pub files: bool,
    /// Run as another replica of `shared`'s service: the same Redis and key prefix, the same
    /// object store.
    pub shared: Option<Shared>,
    /// The stateless service's chat broker (a Redis URL); its rooms are its own without one.
    /// The externalized service's broker is always its own Redis, the stateful one has none.
    pub chat_broker: Option<String>,
}

/// What two replicas of one design share.
#[derive(Clone, Debug)]
pub struct Shared {
    pub redis_url: String,
    pub redis_prefix: String,
    pub s3: Option<S3Config>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            session_ttl: Duration::from_secs(600),
            work: Work::none(),
            body_limit: 1024,
            redis_timeout: Duration::from_millis(500),
            redis_up: true,
            max_sessions: 10_000,
            files: false,
            shared: None,
            chat_broker: None,
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
    /// The object store this app started (stateless, externalized with `files`).
    pub objects: Option<ObjectStore>,
    /// Where its object store is, started by it or shared.
    pub s3: Option<S3Config>,
    pub http: reqwest::Client,
    _files_dir: Option<TempDir>,
    _stop: oneshot::Sender<()>,
}

impl TestApp {
    /// What another replica of this service needs to share its state and files.
    pub fn shared(&self) -> Shared {
        Shared {
            redis_url: self
                .redis
                .as_ref()
                .map(RedisServer::url)
                .unwrap_or_default(),
            redis_prefix: self.redis_prefix.clone(),
            s3: self.s3.clone(),
        }
    }
}

pub async fn spawn_app(design: Design) -> TestApp {
    spawn_app_with(design, Options::default()).await
}

pub async fn spawn_app_with(design: Design, options: Options) -> TestApp {
    let replica = format!("{}-test", design.as_str());
    let metrics = Metrics::new(design.as_str(), &replica).expect("metrics");
    let settings = Settings {
        replica: replica.clone(),
        body_limit: options.body_limit,
        session_ttl_secs: options.session_ttl.as_secs(),
        work: options.work,
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
    let redis_prefix = match &options.shared {
        Some(shared) => shared.redis_prefix.clone(),
        None => format!("test{}-{n}:", std::process::id()),
    };
    // The file store: a private directory for stateful; an object store for the others, this
    // app's own or the one it shares.
    let mut objects = None;
    let mut files_dir = None;
    let s3 = match (&options.shared, design) {
        (_, Design::Stateful) => None,
        (Some(shared), _) => shared.s3.clone(),
        (None, _) if options.files => {
            let store = ObjectStore::start().await;
            let config = S3Config {
                endpoint: store.url().parse().expect("the store's URL"),
                bucket: "avatars".into(),
                region: "us-east-1".into(),
                access_key: store.access_key.clone(),
                secret_key: store.secret_key.clone(),
            };
            objects = Some(store);
            Some(config)
        }
        (None, _) => None,
    };
    let files = match design {
        Design::Stateful if options.files => {
            let dir = TempDir::new("avatars");
            let files = Files::Disk(DiskFiles::new(dir.path()));
            files_dir = Some(dir);
            files
        }
        _ => match &s3 {
            Some(config) => Files::S3(Box::new(
                S3Files::new(config.clone()).expect("the S3 files"),
            )),
            None => Files::None,
        },
    };
    let cookie_name = match design {
        Design::Stateful => {
            let config = MemoryConfig {
                ttl: options.session_ttl,
                max_sessions: options.max_sessions,
            };
            let store = MemoryStore::new(config, &metrics).expect("store");
            let parts = (files, Rooms::default());
            serve(listener, store, settings, metrics, parts, shutdown, grace)
        }
        Design::Stateless => {
            let key = JwtKey::from_secret(TEST_SECRET).expect("key");
            let store = JwtStore::new(key, vec![], options.session_ttl, &metrics).expect("store");
            let rooms = match &options.chat_broker {
                Some(url) => broker(url, &redis_prefix, options.redis_timeout),
                None => Rooms::default(),
            };
            serve(
                listener,
                store,
                settings,
                metrics,
                (files, rooms),
                shutdown,
                grace,
            )
        }
        Design::Externalized => {
            let url = match &options.shared {
                Some(shared) => shared.redis_url.clone(),
                None => {
                    let server = if options.redis_up {
                        RedisServer::start().await
                    } else {
                        RedisServer::unstarted()
                    };
                    let url = server.url();
                    redis = Some(server);
                    url
                }
            };
            let rooms = broker(&url, &redis_prefix, options.redis_timeout);
            let config = RedisConfig {
                topology: Topology::Single { url },
                wait: None,
                key_prefix: redis_prefix.clone(),
                ttl: options.session_ttl,
                timeout: options.redis_timeout,
            };
            let store = RedisStore::new(&config, &metrics).expect("store");
            serve(
                listener,
                store,
                settings,
                metrics,
                (files, rooms),
                shutdown,
                grace,
            )
        }
    };
    TestApp {
        addr,
        replica,
        cookie_name,
        redis,
        redis_prefix,
        objects,
        s3,
        _files_dir: files_dir,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        _stop: stop,
    }
}

/// Chat rooms through the Redis at `url`.
fn broker(url: &str, prefix: &str, timeout: Duration) -> Rooms {
    let topology = Topology::Single {
        url: url.to_owned(),
    };
    Rooms::Broker(Box::new(
        BrokerRooms::new(&topology, prefix, timeout).expect("rooms"),
    ))
}

fn serve<S: SessionStore>(
    listener: tokio::net::TcpListener,
    store: S,
    settings: Settings,
    metrics: Metrics,
    (files, rooms): (Files, Rooms),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> String {
    let app = Arc::new(
        App::new(store, settings, metrics)
            .expect("app")
            .with_files(files)
            .with_rooms(rooms),
    );
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
            req = req.header("cookie", self.cookie(value));
        }
        self.request(req).await
    }

    /// `Cookie` header text carrying `value` as our session cookie.
    pub fn cookie(&self, value: &str) -> String {
        format!("{}={value}", self.cookie_name)
    }

    /// Sends a request built on [`TestApp::http`] as it is, for the tests that need headers
    /// [`send`](Self::send) does not write, and reads the reply.
    pub async fn request(&self, req: reqwest::RequestBuilder) -> Reply {
        let response = req.send().await.expect("request");
        let path = response.url().path().to_owned();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        // A JSON answer must parse; anything else (metrics, an empty 204) has no JSON body.
        let json = headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let body = if json {
            serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!("{path}: a JSON answer that does not parse ({e}): {text}")
            })
        } else {
            Value::Null
        };
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
            // `set_cookie` found it by its `name=` prefix; an empty value is the logout's clearing.
            let (_, value) = line
                .split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .unwrap_or_else(|| panic!("a Set-Cookie line without name=value: {line}"));
            self.credential = (!value.is_empty()).then(|| value.to_owned());
        }
        reply
    }

    pub async fn login(&mut self, username: &str) -> Reply {
        let body = serde_json::json!({ "username": username }).to_string();
        let reply = self.send(Method::POST, "/login", Some(&body)).await;
        assert_eq!(reply.status, StatusCode::OK, "login: {}", reply.text);
        reply
    }

    /// Logs in expecting a refusal for want of room: `503 code` with `Retry-After: 30`, named by
    /// the replica, and no session handed out.
    pub async fn login_refused(&mut self, username: &str, code: &str) -> Reply {
        let body = serde_json::json!({ "username": username }).to_string();
        let refused = self.send(Method::POST, "/login", Some(&body)).await;
        refused.assert_error(503, code);
        assert_eq!(refused.header("retry-after"), Some("30"));
        assert_eq!(refused.header("x-replica"), Some(self.app.replica.as_str()));
        assert_eq!(
            refused.set_cookie(&self.app.cookie_name),
            None,
            "no session handed out"
        );
        refused
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

/// Quantity of `sku` in a cart body (`{"items": [{"sku", "qty"}], ...}`), 0 if it has no such
/// line. A body that is not a cart, or a line without a count, fails the test.
/// A Redis store on `topology` with calls bounded by `timeout`, for the tests that drive the
/// store directly (Sentinel, Cluster) rather than through a service.
pub fn redis_store(topology: Topology, timeout: Duration) -> RedisStore {
    let config = RedisConfig {
        topology,
        wait: None,
        key_prefix: "t:".into(),
        ttl: Duration::from_secs(600),
        timeout,
    };
    let metrics = Metrics::new("externalized", "test").expect("metrics");
    RedisStore::new(&config, &metrics).expect("store")
}

pub fn qty_of(cart: &Value, sku: &str) -> u64 {
    let items = cart["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a cart (no items array): {cart}"));
    items.iter().find(|i| i["sku"] == sku).map_or(0, |line| {
        line["qty"]
            .as_u64()
            .unwrap_or_else(|| panic!("a cart line without a qty: {line}"))
    })
}

/// Says messages named `what` in `room` through `say` until `live` hears one (the subscription
/// connects, or comes back after a failover, in the background), within 15 s.
pub async fn heard_across(
    say: &BrokerRooms,
    room: &str,
    live: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<str>>,
    what: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut last = String::from("nothing said yet");
    for k in 0.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: nothing heard in 15 s; last: {last}"
        );
        let message = format!("{what} {k}");
        if let Err(e) = say.say(room, message.as_str().into()).await {
            last = e.to_string();
            // No primary yet may be refused at once: pace the next attempt.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let wait = Duration::from_millis(300);
        while let Ok(Ok(heard)) = tokio::time::timeout(wait, live.recv()).await {
            if heard.starts_with(what) {
                return;
            }
        }
        last = format!("{message:?} said, not heard");
    }
}
