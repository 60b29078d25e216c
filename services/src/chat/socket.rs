//! The WebSocket side of `GET /chat/{room}`: the handshake's answer (RFC 6455, on hyper's
//! upgrade) and one task per socket, which sends the room's history, then everything said in the
//! room, and says in the room every message its client sends.
//!
//! A client sends [`ChatSend`] as text frames; it receives [`ChatMessage`]s, and
//! `{"error", "message"}` frames for what it sent wrong (`invalid_message`, `text_frames_only`),
//! for a message the rooms could not take (`chat_unavailable`) and for messages it fell too far
//! behind to be sent (`lagged`). The socket stays open through all of these.
//!
//! The replica pings every socket every [`PING_EVERY`]: a quiet room's sockets stay open through
//! proxies that close silent connections, and a socket whose client has answered nothing, not
//! even a ping, for [`GONE_AFTER`] is closed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use statelab_formats::{ChatMessage, ChatSend, ErrorBody, MAX_CHAT_ID, MAX_CHAT_TEXT};
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{Joined, Rooms};

/// Sockets a replica holds open at most; a handshake beyond is `503 chat_capacity`.
pub const MAX_SOCKETS: usize = 10_000;
/// The largest frame, and message, a client may send, in bytes.
pub const MAX_FRAME: usize = 4096;
/// How often a socket is pinged.
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// A socket whose client sent nothing for this long, pongs included, is closed.
pub const GONE_AFTER: Duration = Duration::from_secs(60);

/// The `Sec-WebSocket-Accept` value answering a WebSocket handshake, or `None` when the request
/// is not one: `Connection: upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a
/// `Sec-WebSocket-Key`.
pub fn accept_key(headers: &HeaderMap) -> Option<HeaderValue> {
    let names = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !names(header::CONNECTION, "upgrade") || !names(header::UPGRADE, "websocket") {
        return None;
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return None;
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()
}

/// This replica's open sockets.
#[derive(Debug, Default)]
pub struct Sockets {
    open: AtomicUsize,
}

/// One open socket, counted until it is dropped.
#[derive(Debug)]
pub struct Open(Arc<Sockets>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Sockets {
    /// Counts one more socket, or `None` at [`MAX_SOCKETS`].
    pub fn enter(self: &Arc<Self>) -> Option<Open> {
        self.open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_SOCKETS).then_some(n + 1)
            })
            .ok()
            .map(|_| Open(Arc::clone(self)))
    }
}

/// Who speaks on a socket, in which room, on which replica.
#[derive(Debug, Clone)]
pub struct Speaker {
    pub room: String,
    pub user: String,
    pub replica: String,
}

impl Speaker {
    /// The message a client's text frame says, as the room carries it, or why it says none.
    fn message(&self, frame: &str) -> Result<Arc<str>, String> {
        let sent: ChatSend<'_> =
            serde_json::from_str(frame).map_err(|e| format!("not a chat message: {e}"))?;
        if sent.id.is_empty() || sent.id.len() > MAX_CHAT_ID {
            return Err(format!("id must be 1 to {MAX_CHAT_ID} bytes"));
        }
        if sent.text.len() > MAX_CHAT_TEXT {
            return Err(format!("text must be at most {MAX_CHAT_TEXT} bytes"));
        }
        let message = ChatMessage {
            room: self.room.clone(),
            from: self.user.clone(),
            id: sent.id.into_owned(),
            text: sent.text.into_owned(),
            replica: self.replica.clone(),
            at_ms: crate::session::now_ms(),
            history: false,
        };
        serde_json::to_string(&message)
            .map(Arc::from)
            .map_err(|e| e.to_string())
    }
}

/// An `{"error", "message"}` frame.
fn error_frame(code: &str, message: impl Into<String>) -> Message {
    let body = ErrorBody {
        error: code.into(),
        message: message.into(),
    };
    Message::text(serde_json::to_string(&body).unwrap_or_default())
}

/// A message from the room's history, marked as such.
fn history_frame(stored: &str) -> Option<Message> {
    let mut message: ChatMessage = serde_json::from_str(stored).ok()?;
    message.history = true;
    serde_json::to_string(&message).ok().map(Message::text)
}

/// Serves one socket once hyper has handed over the connection, until either side closes it.
pub async fn serve(
    upgrade: OnUpgrade,
    rooms: Arc<Rooms>,
    speaker: Speaker,
    joined: Joined,
    _open: Open,
) {
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::debug!(error = %e, "chat: the upgrade did not complete");
            return;
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let mut ws =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    // A message said while the socket joined may come both in the history and live: sent once.
    let mut replayed: HashSet<Arc<str>> = HashSet::new();
    for stored in joined.history {
        if let Some(frame) = history_frame(&stored) {
            if ws.send(frame).await.is_err() {
                return;
            }
        }
        replayed.insert(stored);
    }
    let mut live = joined.live;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut heard = tokio::time::Instant::now();
    loop {
        let out = tokio::select! {
            _ = ping.tick() => {
                if heard.elapsed() >= GONE_AFTER {
                    break;
                }
                Some(Message::Ping(Default::default()))
            }
            frame = ws.next() => {
                heard = tokio::time::Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => match speaker.message(text.as_str()) {
                        Ok(message) => match rooms.say(&speaker.room, message).await {
                            Ok(()) => None,
                            Err(e) => {
                                tracing::warn!(detail = %e, "chat unavailable");
                                Some(error_frame(
                                    "chat_unavailable",
                                    "the message was not sent: chat is unavailable",
                                ))
                            }
                        },
                        Err(why) => Some(error_frame("invalid_message", why)),
                    },
                    Some(Ok(Message::Binary(_))) => Some(error_frame(
                        "text_frames_only",
                        "send chat messages as JSON in text frames",
                    )),
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    // Pings are answered by the socket itself.
                    Some(Ok(_)) => None,
                }
            }
            message = live.recv() => match message {
                Ok(message) if replayed.remove(&message) => None,
                Ok(message) => Some(Message::text(message.as_ref())),
                Err(RecvError::Lagged(n)) => Some(error_frame(
                    "lagged",
                    format!("{n} messages were skipped: this socket fell too far behind its room"),
                )),
                Err(RecvError::Closed) => break,
            },
        };
        if let Some(frame) = out {
            if ws.send(frame).await.is_err() {
                break;
            }
        }
    }
    let _ = ws.close(None).await;
}
