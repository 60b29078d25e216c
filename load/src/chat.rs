//! The chat workflow (`--workflow chat`): the closed model's users in rooms of `--room-size`,
//! each logging in, opening `GET /chat/{room}` through the target with its session (and the
//! proxy's affinity cookie) and saying a message every `--think-ms` while it listens. A socket
//! that ends is opened again after a backoff (100 ms, doubling to 2 s), as a browser's page
//! would, logging in again first when the session is gone.
//!
//! Every message a user should hear is one a peer in its room said after the user first joined;
//! it is **delivered** when the user heard it, live or in the history a socket is sent when it
//! joins. Delivery is what was heard of what should have been; fan-out latency runs from the
//! sender's send to a peer's live hearing. Rooms and message ids carry the run's tag, so another
//! run's history is never counted.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use http::Method;
use statelab_formats::{ChatMessage, Login};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::client::{Client, Target};

/// The chat workflow's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatFlow {
    /// Users per room.
    pub room_size: u64,
    /// Between two messages of a user.
    pub think: Duration,
    /// Marks this run's rooms and message ids.
    pub run_tag: u64,
}

/// The first wait before a socket is opened again.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Messages said this close to the run's end are not counted as owed: they may still be on
/// their way when the sockets close.
pub const SETTLE: Duration = Duration::from_millis(500);

/// What the run's chat users did, as they did it: every message said, when each user first
/// joined, what each heard. One entry per message and per hearing, so it grows with users ×
/// duration / think time (a 30 s run of 40 users at 200 ms: 6,000 messages).
#[derive(Debug)]
pub struct ChatLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Message id → who said it, in which room, when.
    said: HashMap<String, Said>,
    /// User → when its first socket opened.
    joined: HashMap<u64, Instant>,
    /// (user, message id) heard, and whether first in a history.
    heard: HashMap<(u64, String), bool>,
    fanout_us: Option<Histogram<u64>>,
    sockets_opened: u64,
    sockets_lost: u64,
    refused: u64,
}

#[derive(Debug, Clone, Copy)]
struct Said {
    room: u64,
    user: u64,
    at: Instant,
}

/// What the chat log says of a run: `run.json`'s `chat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChatReport {
    pub users: u64,
    pub room_size: u64,
    /// Messages the users said.
    pub said: u64,
    /// Hearings owed: each message, once for each peer of its room that had joined before it.
    pub owed: u64,
    /// Of those, heard live.
    pub heard_live: u64,
    /// Of those, heard only in the history a socket was sent on joining.
    pub heard_in_history: u64,
    /// Heard of owed, 0 to 1.
    pub delivery: f64,
    /// From a message's send to a peer hearing it live.
    pub fanout_p50_ms: f64,
    pub fanout_p99_ms: f64,
    /// Sockets opened, and of them the ones that ended before the run did.
    pub sockets_opened: u64,
    pub sockets_lost: u64,
    /// Handshakes and logins refused or failed.
    pub refused: u64,
}

impl Default for ChatLog {
    fn default() -> Self {
        ChatLog {
            inner: Mutex::new(Inner {
                fanout_us: Histogram::new_with_bounds(1, 60_000_000, 2).ok(),
                ..Inner::default()
            }),
        }
    }
}

impl ChatLog {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn said(&self, id: String, room: u64, user: u64) {
        let at = Instant::now();
        self.with(|i| i.said.insert(id, Said { room, user, at }));
    }

    fn opened(&self, user: u64) {
        let now = Instant::now();
        self.with(|i| {
            i.sockets_opened += 1;
            i.joined.entry(user).or_insert(now);
        });
    }

    fn heard(&self, user: u64, message: &ChatMessage) {
        let now = Instant::now();
        self.with(|i| {
            let Some(said) = i.said.get(&message.id).copied() else {
                return;
            };
            if said.user == user {
                return;
            }
            if let Entry::Vacant(slot) = i.heard.entry((user, message.id.clone())) {
                slot.insert(message.history);
                if !message.history {
                    let us = now.saturating_duration_since(said.at).as_micros() as u64;
                    if let Some(h) = i.fanout_us.as_mut() {
                        let _ = h.record(us.max(1));
                    }
                }
            }
        });
    }

    /// The figures, counting what was owed until `end` less [`SETTLE`].
    pub fn report(&self, flow: &ChatFlow, users: u64, end: Instant) -> ChatReport {
        self.with(|i| {
            let cutoff = end.checked_sub(SETTLE).unwrap_or(end);
            let mut r = ChatReport {
                users,
                room_size: flow.room_size,
                said: i.said.len() as u64,
                sockets_opened: i.sockets_opened,
                sockets_lost: i.sockets_lost,
                refused: i.refused,
                ..ChatReport::default()
            };
            for (id, said) in &i.said {
                if said.at > cutoff {
                    continue;
                }
                let room = said.room * flow.room_size..(said.room + 1) * flow.room_size;
                for peer in room.filter(|p| *p != said.user && *p < users) {
                    if i.joined.get(&peer).is_none_or(|j| *j > said.at) {
                        continue;
                    }
                    r.owed += 1;
                    match i.heard.get(&(peer, id.clone())) {
                        Some(false) => r.heard_live += 1,
                        Some(true) => r.heard_in_history += 1,
                        None => {}
                    }
                }
            }
            if r.owed > 0 {
                r.delivery = (r.heard_live + r.heard_in_history) as f64 / r.owed as f64;
            }
            if let Some(h) = i.fanout_us.as_ref().filter(|h| !h.is_empty()) {
                r.fanout_p50_ms = h.value_at_quantile(0.5) as f64 / 1000.0;
                r.fanout_p99_ms = h.value_at_quantile(0.99) as f64 / 1000.0;
            }
            r
        })
    }
}

impl ChatReport {
    /// `chat: 4,812 of 4,830 hearings owed made (99.6%: 4,790 live, 22 in history); fan-out p50
    /// 0.41 ms, p99 2.10 ms; 40 sockets opened, 0 lost; 0 refused`.
    pub fn words(&self) -> String {
        format!(
            "{} of {} hearings owed made ({:.1}%: {} live, {} in history) in rooms of {}; \
             fan-out p50 {:.2} ms, p99 {:.2} ms; {} messages said; {} sockets opened, {} lost; \
             {} handshakes or logins refused",
            self.heard_live + self.heard_in_history,
            self.owed,
            self.delivery * 100.0,
            self.heard_live,
            self.heard_in_history,
            self.room_size,
            self.fanout_p50_ms,
            self.fanout_p99_ms,
            self.said,
            self.sockets_opened,
            self.sockets_lost,
            self.refused
        )
    }
}

/// Why a socket could not be had.
enum Refused {
    /// 401: the session is gone; log in again.
    Unauthorized,
    Other,
}

/// One chat user until `deadline`.
pub async fn chat_user(
    id: u64,
    target: Target,
    source: Option<IpAddr>,
    timeout: Duration,
    flow: ChatFlow,
    log: std::sync::Arc<ChatLog>,
    deadline: Instant,
) {
    let room = id / flow.room_size.max(1);
    let room_name = format!("r{:x}-{room}", flow.run_tag);
    let username = format!("c{:x}-{id}", flow.run_tag % 0x10000);
    let mut client = Client::new(target.clone(), source, timeout);
    let mut logged_in = false;
    let mut backoff = FIRST_BACKOFF;
    let mut said = 0u64;
    while Instant::now() < deadline {
        if !logged_in {
            let body = Bytes::from(
                Login {
                    username: username.as_str().into(),
                }
                .to_json(),
            );
            let exchange = client.send(Method::POST, "/login", Some(body)).await;
            logged_in = exchange.result.is_ok_and(|a| a.status.is_success());
        }
        if logged_in {
            match open(&target, source, client.cookie_line(), &room_name, timeout).await {
                Ok(socket) => {
                    log.opened(id);
                    backoff = FIRST_BACKOFF;
                    let kept = converse(socket, id, room, &flow, &log, deadline, &mut said).await;
                    if kept {
                        return;
                    }
                    log.with(|i| i.sockets_lost += 1);
                }
                Err(Refused::Unauthorized) => {
                    logged_in = false;
                    client.reset();
                    log.with(|i| i.refused += 1);
                }
                Err(Refused::Other) => log.with(|i| i.refused += 1),
            }
        } else {
            log.with(|i| i.refused += 1);
        }
        let wake = (Instant::now() + backoff).min(deadline);
        tokio::time::sleep_until(wake.into()).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Opens the room's socket from `source`, with the client's cookies.
async fn open(
    target: &Target,
    source: Option<IpAddr>,
    cookies: Option<&str>,
    room: &str,
    timeout: Duration,
) -> Result<WebSocketStream<TcpStream>, Refused> {
    let url = format!("ws://{}{}/chat/{room}", target.host, target.prefix);
    let mut request = url.into_client_request().map_err(|_| Refused::Other)?;
    if let Some(line) = cookies.and_then(|c| HeaderValue::from_str(c).ok()) {
        request.headers_mut().insert("cookie", line);
    }
    let handshake = async {
        let socket = match target.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|_| Refused::Other)?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|_| Refused::Other)?;
        }
        let stream = socket
            .connect(target.addr)
            .await
            .map_err(|_| Refused::Other)?;
        let _ = stream.set_nodelay(true);
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401 => {
                Err(Refused::Unauthorized)
            }
            Err(_) => Err(Refused::Other),
        }
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .unwrap_or(Err(Refused::Other))
}

/// Says a message every think time and hears the room until `deadline` (true: the socket was
/// kept to the end) or until the socket ends (false).
async fn converse(
    socket: WebSocketStream<TcpStream>,
    id: u64,
    room: u64,
    flow: &ChatFlow,
    log: &ChatLog,
    deadline: Instant,
    said: &mut u64,
) -> bool {
    let (mut tx, mut rx) = socket.split();
    let mut next = Instant::now() + flow.think;
    loop {
        let wake = next.min(deadline);
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {
                if Instant::now() >= deadline {
                    let _ = tx.send(Message::Close(None)).await;
                    return true;
                }
                *said += 1;
                let message_id = format!("{:x}-{id}-{said}", flow.run_tag);
                let frame = serde_json::json!({"id": message_id, "text": "hello"}).to_string();
                log.said(message_id, room, id);
                if tx.send(Message::text(frame)).await.is_err() {
                    return false;
                }
                next += flow.think;
            }
            frame = rx.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(message) = serde_json::from_str::<ChatMessage>(text.as_str()) {
                        log.heard(id, &message);
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return false,
                Some(Ok(_)) => {}
            },
        }
    }
}
