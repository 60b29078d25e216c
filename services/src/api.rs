//! The HTTP API, identical for all three services.
//!
//! [`App::handle`] routes a request, validates its input, hands the store one
//! [`crate::session::Change`], and renders the result. Every response — errors included —
//! carries `x-replica`, and every error is `{"error": code, "message": text}`.
//!
//! The credential travels as a cookie (HttpOnly, SameSite=Lax) named after the design
//! (`statelab_stateful`, ...), so the three services can share one browser and one proxy host
//! without overwriting each other's session. `Authorization: Bearer` is accepted too, for clients
//! without cookies; it is how the JWT's token, returned in the login body, is meant to be used.
//! A request may carry our cookie more than once; `Credentials` says which one counts.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use statelab_formats::procfs;
use statelab_formats::{
    is_room_name, AddItem, AvatarStored, CartView, Checkout, ErrorBody, HealthDetail, ImageType,
    Login, Me, Reported, MAX_AVATAR_BYTES, MAX_ROOM_LEN,
};

use crate::chat::socket::{self, Sockets, Speaker};
use crate::chat::Rooms;
use crate::error::{ApiError, IMAGES_ONLY, JSON_ONLY};
use crate::files::{Avatar, Files};
use crate::metrics::Metrics;
use crate::session::{
    now_ms, Applied, Cart, Change, Session, SessionStore, MAX_SKU_LEN, MAX_USERNAME_LEN,
};
use crate::work::Work;

/// Header naming the replica that answered.
pub const X_REPLICA: HeaderName = HeaderName::from_static("x-replica");
/// Header carrying a reissued token, for bearer clients of the JWT design.
pub const X_SESSION_TOKEN: HeaderName = HeaderName::from_static("x-session-token");
/// How long a client may take to send a body once its headers are in; a stalled body must
/// not hold a connection (and graceful shutdown) forever.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest quantity one add may carry.
pub const MAX_ADD_QTY: i64 = 1000;
/// `Retry-After` for a login refused because the session store is full. Room comes back only
/// as sessions idle out or log out, and the memory store reclaims idle ones at most 30 s
/// apart: a client retrying sooner mostly meets the same refusal.
pub const FULL_RETRY_AFTER_SECS: u64 = 30;

/// Per-process settings of the API.
#[derive(Clone, Debug)]
pub struct Settings {
    pub replica: String,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Cookie lifetime, matching the session's idle TTL.
    pub session_ttl_secs: u64,
    /// CPU work done for every API route (not `/health` or `/metrics`).
    pub work: Work,
}

/// One service: a store behind the shared API.
#[derive(Debug)]
pub struct App<S> {
    store: S,
    settings: Settings,
    replica: HeaderValue,
    cookie_name: String,
    /// The `Set-Cookie` value that clears the session cookie, built once.
    clear_cookie: HeaderValue,
    metrics: Metrics,
    /// When the service started: the clock its reported CPU time is read against.
    started: Instant,
    /// Where avatars live.
    files: Files,
    /// Where chat rooms live, and the sockets open in them.
    rooms: Arc<Rooms>,
    sockets: Arc<Sockets>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Login,
    Me,
    Cart,
    CartItems,
    Checkout,
    Logout,
    Health,
    Metrics,
    /// `GET` or `PUT` the caller's avatar.
    Avatar,
    /// `GET` anyone's avatar by name.
    AvatarOf,
    /// A WebSocket into a chat room.
    Chat,
}

impl Route {
    /// The route for a path, with the methods it accepts (as an `Allow` header lists them).
    fn of(path: &str) -> Option<(Route, &'static str)> {
        Some(match path {
            "/login" => (Route::Login, "POST"),
            "/me" => (Route::Me, "GET"),
            "/cart" => (Route::Cart, "GET"),
            "/cart/items" => (Route::CartItems, "POST"),
            "/checkout" => (Route::Checkout, "POST"),
            "/logout" => (Route::Logout, "POST"),
            "/health" => (Route::Health, "GET"),
            "/metrics" => (Route::Metrics, "GET"),
            "/avatar" => (Route::Avatar, "GET, PUT"),
            p if p.starts_with("/avatar/") => (Route::AvatarOf, "GET"),
            p if p.starts_with("/chat/") => (Route::Chat, "GET"),
            _ => return None,
        })
    }

    fn accepts(allowed: &str, method: &str) -> bool {
        allowed.split(", ").any(|m| m == method)
    }
}

type Reply = Result<Response<Full<Bytes>>, ApiError>;

impl<S: SessionStore> App<S> {
    pub fn new(store: S, settings: Settings, metrics: Metrics) -> anyhow::Result<Self> {
        let cookie_name = format!("statelab_{}", S::DESIGN);
        let clear_cookie = HeaderValue::from_str(&format!(
            "{cookie_name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        ))?;
        let replica = HeaderValue::from_str(&settings.replica).map_err(|_| {
            anyhow::anyhow!(
                "replica name {:?} is not a valid header value",
                settings.replica
            )
        })?;
        Ok(App {
            store,
            replica,
            cookie_name,
            clear_cookie,
            settings,
            metrics,
            started: Instant::now(),
            files: Files::None,
            rooms: Arc::default(),
            sockets: Arc::default(),
        })
    }

    /// The same service keeping avatars in `files`.
    pub fn with_files(mut self, files: Files) -> Self {
        self.files = files;
        self
    }

    /// The same service keeping its chat rooms in `rooms`.
    pub fn with_rooms(mut self, rooms: Rooms) -> Self {
        self.rooms = Arc::new(rooms);
        self
    }

    /// The name of the session cookie.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// Serves one request. Never fails: every error becomes a JSON response.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let route = Route::of(req.uri().path());
        let label = route_index(route.map(|(r, _)| r));
        let result = match route {
            None => Err(ApiError::NotFound),
            Some((_, allowed)) if !Route::accepts(allowed, req.method().as_str()) => {
                Err(ApiError::MethodNotAllowed(allowed))
            }
            Some((r, _)) => self.dispatch(r, req).await,
        };
        let mut response = result.unwrap_or_else(|e| error_response(&e));
        response
            .headers_mut()
            .insert(X_REPLICA, self.replica.clone());
        self.metrics
            .observe(label, response.status(), started.elapsed().as_secs_f64());
        response
    }

    async fn dispatch<B>(&self, route: Route, req: Request<B>) -> Reply
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (mut parts, body) = req.into_parts();
        if !matches!(route, Route::Health | Route::Metrics) {
            self.settings.work.spend(parts.uri.path());
        }
        let credentials = Credentials::of(&parts.headers, &self.cookie_name);
        match route {
            Route::Login => {
                let body: Login<'static> = self.read_json(&parts.headers, body).await?;
                self.login(&body.username, &credentials).await
            }
            Route::Me => {
                let applied = self.apply(&credentials, Change::Touch).await?;
                let body = self.me_json(&applied.session, None);
                Ok(self.with_session(json_response(StatusCode::OK, &body), &applied))
            }
            Route::Cart => {
                let applied = self.apply(&credentials, Change::Touch).await?;
                let body = cart_view(&applied.session.cart);
                Ok(self.with_session(json_response(StatusCode::OK, &body), &applied))
            }
            Route::CartItems => {
                let body: AddItem<'static> = self.read_json(&parts.headers, body).await?;
                validate_sku(&body.sku)?;
                let qty = u32::try_from(body.qty)
                    .ok()
                    .filter(|q| (1..=MAX_ADD_QTY).contains(&i64::from(*q)))
                    .ok_or_else(|| {
                        ApiError::InvalidField(format!("qty must be between 1 and {MAX_ADD_QTY}"))
                    })?;
                let change = Change::AddItem {
                    sku: &body.sku,
                    qty,
                };
                let applied = self.apply(&credentials, change).await?;
                let body = cart_view(&applied.session.cart);
                Ok(self.with_session(json_response(StatusCode::OK, &body), &applied))
            }
            Route::Checkout => {
                let applied = self.apply(&credentials, Change::Checkout).await?;
                if applied.taken.is_empty() {
                    return Err(ApiError::EmptyCart);
                }
                let body = Checkout {
                    cart: cart_view(&applied.taken),
                    order_id: uuid::Uuid::new_v4().to_string(),
                    username: applied.session.username.clone(),
                };
                Ok(self.with_session(json_response(StatusCode::OK, &body), &applied))
            }
            Route::Logout => {
                // Every session the request names ends, whichever of them is live.
                for c in credentials.iter() {
                    self.store.destroy(c).await?;
                }
                let mut response = empty_response(StatusCode::NO_CONTENT);
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, self.clear_cookie.clone());
                Ok(response)
            }
            Route::Avatar if parts.method == hyper::Method::PUT => {
                let image = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(ImageType::from_content_type)
                    .ok_or(ApiError::UnsupportedMediaType(IMAGES_ONLY))?;
                let applied = self.apply(&credentials, Change::Touch).await?;
                let bytes = read_body(&parts.headers, body, MAX_AVATAR_BYTES).await?;
                if !image.matches(&bytes) {
                    return Err(ApiError::InvalidImage);
                }
                let username = applied.session.username.clone();
                let avatar = Avatar { image, bytes };
                self.files.put(&username, &avatar).await?;
                let body = AvatarStored {
                    username,
                    content_type: image.content_type().into(),
                    bytes: avatar.bytes.len() as u64,
                    replica: self.settings.replica.clone(),
                };
                Ok(self.with_session(json_response(StatusCode::OK, &body), &applied))
            }
            Route::Avatar => {
                let applied = self.apply(&credentials, Change::Touch).await?;
                let avatar = self.files.get(&applied.session.username).await?;
                let avatar = avatar.ok_or(ApiError::AvatarNotFound)?;
                Ok(self.with_session(image_response(avatar), &applied))
            }
            Route::AvatarOf => {
                let segment = parts.uri.path().trim_start_matches("/avatar/");
                let username = percent_encoding::percent_decode_str(segment)
                    .decode_utf8()
                    .map_err(|_| {
                        ApiError::InvalidField("the username in the path is not UTF-8".into())
                    })?;
                validate_username(&username)?;
                let avatar = self.files.get(&username).await?;
                Ok(image_response(avatar.ok_or(ApiError::AvatarNotFound)?))
            }
            Route::Chat => {
                let room = parts.uri.path().trim_start_matches("/chat/");
                if !is_room_name(room) {
                    return Err(ApiError::InvalidField(format!(
                        "a room is 1 to {MAX_ROOM_LEN} letters, digits, '.', '_' or '-'"
                    )));
                }
                let accept = socket::accept_key(&parts.headers).ok_or(ApiError::UpgradeRequired)?;
                let upgrade = parts
                    .extensions
                    .remove::<hyper::upgrade::OnUpgrade>()
                    .ok_or(ApiError::UpgradeRequired)?;
                let applied = self.apply(&credentials, Change::Touch).await?;
                let open = self.sockets.enter().ok_or(ApiError::ChatCapacity)?;
                let joined = self.rooms.join(room).await?;
                let speaker = Speaker {
                    room: room.to_owned(),
                    user: applied.session.username.clone(),
                    replica: self.settings.replica.clone(),
                };
                tokio::spawn(socket::serve(
                    upgrade,
                    Arc::clone(&self.rooms),
                    speaker,
                    joined,
                    open,
                ));
                let mut response = empty_response(StatusCode::SWITCHING_PROTOCOLS);
                let headers = response.headers_mut();
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
                Ok(self.with_session(response, &applied))
            }
            Route::Health if parts.uri.query() == Some("detail=1") => {
                // The proxy's health checker reads this on every check (it does not pass this
                // form on from public clients).
                let body = HealthDetail {
                    status: "ok".into(),
                    design: S::DESIGN,
                    replica: self.settings.replica.clone(),
                    reported: Reported {
                        store: self.store.figures().await?,
                        rss_bytes: crate::metrics::resident_bytes(),
                        cpu_ms: procfs::process_seconds(std::process::id())
                            .map(|s| (s * 1000.0) as u64),
                        uptime_ms: Some(self.started.elapsed().as_millis() as u64),
                        // Read at each check: a supervisor may move the process into its
                        // group after it started.
                        cpu_budget_millis: procfs::own_cpu_budget()
                            .map(|c| (c * 1000.0).round() as u32),
                    },
                };
                Ok(json_response(StatusCode::OK, &body))
            }
            Route::Health => {
                self.store.check().await?;
                let body =
                    json!({"status": "ok", "kind": S::DESIGN, "replica": self.settings.replica});
                Ok(json_response(StatusCode::OK, &body))
            }
            Route::Metrics => {
                let mut response = Response::new(Full::new(Bytes::from(self.metrics.render())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                Ok(response)
            }
        }
    }

    /// Starts a session. The sessions the request presented end: the first live one is the one
    /// the store replaces (rotation, no fixation, and at a session cap the login takes over its
    /// room), any others once the new one exists. Ending them only then means a login refused (a
    /// full store) ends nothing: the user keeps the session they had.
    async fn login(&self, username: &str, old: &Credentials<'_>) -> Reply {
        validate_username(username)?;
        let mut replaces = None;
        for credential in old.iter() {
            if self.store.apply(credential, Change::Touch).await?.is_some() {
                replaces = Some(credential);
                break;
            }
        }
        let replaces = replaces.or_else(|| old.iter().next());
        let issued = self.store.create(username, replaces).await?;
        for extra in old.iter().filter(|c| Some(*c) != replaces) {
            self.store.destroy(extra).await?;
        }
        let token = S::CREDENTIAL_IN_BODY.then_some(issued.credential.as_str());
        let body = self.me_json(&issued.session, token);
        let mut response = json_response(StatusCode::OK, &body);
        response
            .headers_mut()
            .append(header::SET_COOKIE, self.session_cookie(&issued.credential)?);
        Ok(response)
    }

    /// Applies `change` to the first presented credential that names a live session.
    async fn apply(
        &self,
        credentials: &Credentials<'_>,
        change: Change<'_>,
    ) -> Result<Applied, ApiError> {
        for credential in credentials.iter() {
            if let Some(applied) = self.store.apply(credential, change).await? {
                return Ok(applied);
            }
        }
        Err(ApiError::Unauthorized)
    }

    /// Adds the reissued credential, if the store issued one, to a response.
    fn with_session(
        &self,
        mut response: Response<Full<Bytes>>,
        applied: &Applied,
    ) -> Response<Full<Bytes>> {
        if let Some(token) = &applied.reissued {
            if let (Ok(cookie), Ok(value)) =
                (self.session_cookie(token), HeaderValue::from_str(token))
            {
                response.headers_mut().append(header::SET_COOKIE, cookie);
                response.headers_mut().insert(X_SESSION_TOKEN, value);
            }
        }
        response
    }

    /// The body of `/me` and `/login`, borrowed from the session: the benchmark's hot path.
    fn me_json<'a>(&'a self, session: &'a Session, token: Option<&'a str>) -> Me<'a> {
        Me {
            username: Cow::Borrowed(&session.username),
            replica: Cow::Borrowed(&self.settings.replica),
            session_age_ms: now_ms().saturating_sub(session.created_ms),
            requests_in_session: session.requests,
            token: token.map(Cow::Borrowed),
        }
    }

    /// The session cookie. Where the server slides the expiry on every request, the cookie is
    /// a browser-session cookie: a fixed Max-Age would end an active session at TTL after login.
    /// The JWT's own expiry slides only when a new token (and cookie) is issued, so its cookie
    /// lives exactly as long as the token.
    fn session_cookie(&self, credential: &str) -> Result<HeaderValue, ApiError> {
        let max_age = if S::CREDENTIAL_IN_BODY {
            format!("; Max-Age={}", self.settings.session_ttl_secs)
        } else {
            String::new()
        };
        HeaderValue::from_str(&format!(
            "{}={credential}; Path=/{max_age}; HttpOnly; SameSite=Lax",
            self.cookie_name
        ))
        .map_err(|_| ApiError::StoreUnavailable)
    }

    /// Reads a JSON body within the configured limit, from a request that declares it JSON
    /// (see [`declares_json`]).
    async fn read_json<T, B>(&self, headers: &HeaderMap, body: B) -> Result<T, ApiError>
    where
        T: serde::de::DeserializeOwned,
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        if !declares_json(headers) {
            return Err(ApiError::UnsupportedMediaType(JSON_ONLY));
        }
        let bytes = read_body(headers, body, self.settings.body_limit).await?;
        // Parse to a value first: serde would otherwise accept `["alice"]` for a struct.
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::InvalidJson(format!("request body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::InvalidField(
                "request body must be a JSON object".into(),
            ));
        }
        serde_json::from_value(value).map_err(|e| ApiError::InvalidField(e.to_string()))
    }
}

/// A request body of at most `limit` bytes, within [`BODY_READ_TIMEOUT`]: a declared length over
/// the limit is refused before reading.
async fn read_body<B>(headers: &HeaderMap, body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge(limit)),
        Ok(Err(_)) => Err(ApiError::BadRequestBody),
        Err(_) => Err(ApiError::RequestTimeout),
    }
}

/// An avatar as the answer's body, with its media type.
fn image_response(avatar: Avatar) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(avatar.bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(avatar.image.content_type()),
    );
    response
}

/// Whether the request declares its body JSON: exactly one `Content-Type`, whose media type is
/// `application/json` (any case, parameters such as `; charset=utf-8` allowed).
///
/// Routes that read a body insist on it because of what browsers let other sites send. An HTML
/// form posts only `application/x-www-form-urlencoded`, `multipart/form-data` or `text/plain`,
/// with no preflight; a cross-site `fetch` with `application/json` needs a CORS preflight, which
/// this API never grants. Parsing a `text/plain` body as JSON would let any page log its
/// visitors in under an account of its choosing (login CSRF; a login needs no cookie, so
/// SameSite does not stop it).
fn declares_json(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Most cookie values one request is looked up by. A browser sends one cookie per name, domain
/// and path, so a handful covers every real duplicate; each value tried costs a store lookup, so
/// a request cannot make the store look up more.
pub const MAX_CREDENTIALS: usize = 4;

/// The credentials a request presents, in the order they are tried: the first that names a
/// live session wins.
///
/// A bearer token, when there is one, is the only credential: a client that sends one chose it.
/// Otherwise every non-empty value of our cookie counts, in header order, repeats dropped, up to
/// [`MAX_CREDENTIALS`]. A browser holds one cookie per name, domain and path and sends the most
/// specific path first, so a request carries our cookie twice when a stale one survives beside
/// the live one: cleared to an empty value, set for a narrower path or a parent domain by an
/// earlier deployment, or planted by a sibling subdomain. Taking only the first value would
/// answer 401 to a user whose browser holds a valid session; refusing duplicates with a 400
/// would lock them out on every request until they clear their cookies, and hand a sibling
/// subdomain a way to do that on purpose. Trying each in turn serves the session the user has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Credentials<'a> {
    found: [&'a str; MAX_CREDENTIALS],
    len: usize,
}

impl<'a> Credentials<'a> {
    /// A plain scan rather than an iterator chain: this runs on every request.
    fn of(headers: &'a HeaderMap, cookie_name: &str) -> Self {
        let mut credentials = Credentials::default();
        if let Some(auth) = headers
            .get(header::AUTHORIZATION)
            .and_then(|a| a.to_str().ok())
        {
            // The scheme is case-insensitive (RFC 9110 §11.1).
            if let Some((scheme, token)) = auth.split_once(' ') {
                if scheme.eq_ignore_ascii_case("bearer") {
                    credentials.push(token.trim());
                    return credentials;
                }
            }
        }
        for value in headers.get_all(header::COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for pair in value.split(';') {
                let pair = pair.trim_start();
                if let Some(rest) = pair.strip_prefix(cookie_name) {
                    if let Some(v) = rest.strip_prefix('=') {
                        if !credentials.push(v.trim_end().trim_matches('"')) {
                            return credentials;
                        }
                    }
                }
            }
        }
        credentials
    }

    /// Adds a non-empty value not seen yet; false once there is no room for more.
    fn push(&mut self, value: &'a str) -> bool {
        if !value.is_empty() && !self.iter().any(|v| v == value) {
            self.found[self.len] = value;
            self.len += 1;
        }
        self.len < MAX_CREDENTIALS
    }

    fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.found[..self.len].iter().copied()
    }
}

fn validate_username(username: &str) -> Result<(), ApiError> {
    if username.trim().is_empty() {
        return Err(ApiError::InvalidField("username must not be empty".into()));
    }
    if username.len() > MAX_USERNAME_LEN {
        return Err(ApiError::InvalidField(format!(
            "username must be at most {MAX_USERNAME_LEN} bytes"
        )));
    }
    if username.chars().any(char::is_control) {
        return Err(ApiError::InvalidField(
            "username must not contain control characters".into(),
        ));
    }
    Ok(())
}

fn validate_sku(sku: &str) -> Result<(), ApiError> {
    let ok_chars = sku
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if sku.is_empty() || sku.len() > MAX_SKU_LEN || !ok_chars {
        return Err(ApiError::InvalidField(format!(
            "sku must be 1 to {MAX_SKU_LEN} characters of A-Z, a-z, 0-9, '-', '_' or '.'"
        )));
    }
    Ok(())
}

/// The route's index in [`crate::metrics::ROUTES`].
fn route_index(route: Option<Route>) -> usize {
    match route {
        Some(Route::Login) => 0,
        Some(Route::Me) => 1,
        Some(Route::Cart) => 2,
        Some(Route::CartItems) => 3,
        Some(Route::Checkout) => 4,
        Some(Route::Logout) => 5,
        Some(Route::Health) => 6,
        Some(Route::Metrics) => 7,
        Some(Route::Avatar) => 8,
        Some(Route::AvatarOf) => 9,
        Some(Route::Chat) => 10,
        None => 11,
    }
}

fn cart_view(cart: &Cart) -> CartView {
    CartView::new(
        cart.iter()
            .map(|(sku, qty)| (sku.as_str(), u64::from(*qty))),
    )
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    // Serialising our own types and `Value`s cannot fail. Most bodies fit 256 bytes.
    let mut bytes = Vec::with_capacity(256);
    let _ = serde_json::to_writer(&mut bytes, body);
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn empty_response(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// The JSON error response for `e`, with the headers its status calls for.
fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    let body = ErrorBody::new(e.code(), e.to_string());
    let mut response = json_response(e.status(), &body);
    let headers = response.headers_mut();
    match e {
        ApiError::StoreUnavailable => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        ApiError::SessionCapacity | ApiError::StoreFull => {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(FULL_RETRY_AFTER_SECS),
            );
        }
        ApiError::MethodNotAllowed(allowed) => {
            headers.insert(header::ALLOW, HeaderValue::from_static(allowed));
        }
        // Refused while its body was unread or half read: the connection closes after the
        // answer, and says so, so that no client sends its next request on it.
        ApiError::PayloadTooLarge(_) | ApiError::RequestTimeout | ApiError::BadRequestBody => {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_labelled_with_its_own_path() {
        let (other, paths) = crate::metrics::ROUTES.split_last().expect("labels");
        for path in paths {
            let route = Route::of(path).map(|(r, _)| r);
            assert!(route.is_some(), "{path} is a label but not a route");
            assert_eq!(crate::metrics::ROUTES[route_index(route)], *path);
        }
        assert_eq!(crate::metrics::ROUTES[route_index(None)], *other);
        assert!(Route::of("/x").is_none());
    }

    fn presented(cookies: &[&'static str], authorization: Option<&'static str>) -> Vec<String> {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(header::COOKIE, HeaderValue::from_static(c));
        }
        if let Some(a) = authorization {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(a));
        }
        let credentials = Credentials::of(&h, "statelab_stateful");
        credentials.iter().map(str::to_owned).collect()
    }

    #[test]
    fn bearer_wins_over_cookie_and_cookies_are_found_among_others() {
        assert_eq!(
            presented(&["a=1; statelab_stateful=abc; b=2"], None),
            ["abc"]
        );
        assert!(presented(&["a=1; statelab_stateless=abc"], None).is_empty());
        assert!(presented(&["statelab_statefulx=abc"], None).is_empty());
        assert_eq!(
            presented(&["statelab_stateful=abc"], Some("Bearer tok")),
            ["tok"]
        );
        assert_eq!(
            presented(&["statelab_stateful=abc"], Some("Basic dXNlcjpwYXNz")),
            ["abc"]
        );
    }

    #[test]
    fn every_non_empty_value_of_our_cookie_counts_in_order() {
        assert_eq!(
            presented(&["statelab_stateful=; statelab_stateful=abc"], None),
            ["abc"]
        );
        assert_eq!(
            presented(&["statelab_stateful=\"\"; statelab_stateful=abc"], None),
            ["abc"]
        );
        assert_eq!(
            presented(
                &["statelab_stateful=new; x=1", "statelab_stateful=old"],
                None
            ),
            ["new", "old"]
        );
        assert_eq!(
            presented(&["statelab_stateful=a; statelab_stateful=\"a\""], None),
            ["a"],
            "repeats are looked up once"
        );
        assert_eq!(
            presented(
                &[
                    "statelab_stateful=1; statelab_stateful=2; statelab_stateful=3; \
                   statelab_stateful=4; statelab_stateful=5"
                ],
                None
            ),
            ["1", "2", "3", "4"],
            "at most MAX_CREDENTIALS"
        );
    }

    #[test]
    fn only_a_json_media_type_declares_json() {
        let with = |values: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::CONTENT_TYPE, HeaderValue::from_static(v));
            }
            declares_json(&h)
        };
        for yes in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON ; charset=UTF-8",
            " application/json",
        ] {
            assert!(with(&[yes]), "{yes:?}");
        }
        for no in [
            "text/plain",
            "text/plain; x=application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "application/json-seq",
            "text/json",
            "",
        ] {
            assert!(!with(&[no]), "{no:?}");
        }
        assert!(!with(&[]), "no Content-Type");
        assert!(
            !with(&["application/json", "text/plain"]),
            "two Content-Types are ambiguous"
        );
    }
}
