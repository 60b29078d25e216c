//! Chat rooms behind `GET /chat/{room}`: the services' third seam, beside the session store and
//! the file store. Where a room lives decides who shares it:
//!
//! - [`LocalRooms`]: in the replica's memory. Users whose sockets the proxy put on different
//!   replicas are in different rooms of the same name without knowing it, and a replica that dies
//!   takes its rooms' sockets and history along. The stateful design's rooms, and any design's
//!   without a broker.
//! - [`BrokerRooms`]: fanned out through a Redis (`PUBLISH` / `PSUBSCRIBE`), the latest
//!   messages kept in a bounded Redis list, so users on any replica share one room and a socket
//!   that joins (or rejoins) is sent the room's recent history.
//!
//! A message travels as the JSON of [`statelab_formats::ChatMessage`], built once by the socket
//! that took it; rooms only carry it. [`socket`] is the WebSocket side: the handshake and one
//! task per socket.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast;

mod broker;
mod local;
pub mod socket;

pub use broker::BrokerRooms;
pub use local::LocalRooms;

/// Rooms a replica holds at most, each with at least one socket or its history.
pub const MAX_ROOMS: usize = 10_000;
/// Messages a slow socket may fall behind its room before it skips the oldest (and is told).
pub const ROOM_BACKLOG: usize = 256;

/// The room `room` of `rooms`, made with `make` when it is new. At [`MAX_ROOMS`] the rooms no
/// socket is in (`occupied` says which are) are dropped first; still full, it is refused.
fn room_within_limit<'a, V>(
    rooms: &'a mut HashMap<String, V>,
    room: &str,
    occupied: impl Fn(&V) -> bool,
    make: impl FnOnce() -> V,
) -> Result<&'a mut V, ChatError> {
    if !rooms.contains_key(room) && rooms.len() >= MAX_ROOMS {
        rooms.retain(|_, r| occupied(r));
        if rooms.len() >= MAX_ROOMS {
            return Err(ChatError::Full);
        }
    }
    Ok(rooms.entry(room.to_owned()).or_insert_with(make))
}

/// Why a room cannot be joined or spoken in.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The replica holds [`MAX_ROOMS`] rooms, or [`socket::MAX_SOCKETS`] sockets.
    #[error("at capacity")]
    Full,
    /// The broker does not answer.
    #[error("{0}")]
    Unavailable(String),
}

/// A socket's place in a room: the latest messages, oldest first, and every message from then on.
#[derive(Debug)]
pub struct Joined {
    pub history: Vec<Arc<str>>,
    pub live: broadcast::Receiver<Arc<str>>,
}

/// Where this replica's rooms live.
#[derive(Debug)]
pub enum Rooms {
    Local(LocalRooms),
    Broker(Box<BrokerRooms>),
}

impl Default for Rooms {
    fn default() -> Self {
        Rooms::Local(LocalRooms::default())
    }
}

impl Rooms {
    /// Joins `room`, made on first use.
    pub async fn join(&self, room: &str) -> Result<Joined, ChatError> {
        match self {
            Rooms::Local(rooms) => rooms.join(room),
            Rooms::Broker(rooms) => rooms.join(room).await,
        }
    }

    /// Sends `message` (a [`statelab_formats::ChatMessage`]'s JSON) to everyone in `room`.
    pub async fn say(&self, room: &str, message: Arc<str>) -> Result<(), ChatError> {
        match self {
            Rooms::Local(rooms) => {
                rooms.say(room, message);
                Ok(())
            }
            Rooms::Broker(rooms) => rooms.say(room, message).await,
        }
    }

    /// `local` or `redis`, for the log.
    pub fn kind(&self) -> &'static str {
        match self {
            Rooms::Local(_) => "local",
            Rooms::Broker(_) => "redis",
        }
    }
}
