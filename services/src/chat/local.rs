//! Rooms in the replica's memory: each a broadcast channel and its latest messages.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use statelab_formats::CHAT_HISTORY;
use tokio::sync::broadcast;

use super::{room_within_limit, ChatError, Joined, ROOM_BACKLOG};

#[derive(Debug)]
struct Room {
    live: broadcast::Sender<Arc<str>>,
    history: VecDeque<Arc<str>>,
}

/// Rooms that live and die with this replica.
#[derive(Debug, Default)]
pub struct LocalRooms {
    rooms: Mutex<HashMap<String, Room>>,
}

impl LocalRooms {
    /// Joins `room`: its history and its live messages taken under one lock, so a message is
    /// in one or the other, never both or neither.
    pub fn join(&self, room: &str) -> Result<Joined, ChatError> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        // Rooms nobody is in go first, history and all.
        let r = room_within_limit(
            &mut rooms,
            room,
            |r| r.live.receiver_count() > 0,
            || Room {
                live: broadcast::channel(ROOM_BACKLOG).0,
                history: VecDeque::new(),
            },
        )?;
        Ok(Joined {
            history: r.history.iter().cloned().collect(),
            live: r.live.subscribe(),
        })
    }

    /// Keeps `message` in the room's history and sends it to its sockets.
    pub fn say(&self, room: &str, message: Arc<str>) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        // A socket joined before it speaks, so the room exists unless it was just evicted.
        let Some(r) = rooms.get_mut(room) else { return };
        if r.history.len() == CHAT_HISTORY {
            r.history.pop_front();
        }
        r.history.push_back(Arc::clone(&message));
        // No receiver is no error: the speaker may have just left.
        let _ = r.live.send(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_joiner_gets_the_bounded_history_then_what_follows() {
        let rooms = LocalRooms::default();
        let mut first = rooms.join("r").expect("join");
        for i in 0..CHAT_HISTORY + 5 {
            rooms.say("r", Arc::from(format!("m{i}")));
        }
        assert_eq!(first.live.recv().await.expect("live").as_ref(), "m0");
        let second = rooms.join("r").expect("join");
        assert_eq!(second.history.len(), CHAT_HISTORY);
        assert_eq!(second.history[0].as_ref(), "m5");
        let other = rooms.join("s").expect("join");
        assert!(other.history.is_empty(), "rooms are apart");
    }
}
