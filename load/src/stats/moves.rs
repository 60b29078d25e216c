//! Sessions across scale events: which live sessions a pool change moved to another replica, and
//! which of those it lost.
//!
//! The run numbers its scale events 1, 2, ... in the order their lab commands began ([`Epochs`]).
//! Epoch 0 is everything before the first. A session is *carried* across event `e` when it logged
//! in before `e`'s command ended (it was live while the pool changed) and sent a request after the
//! command began. It *moved* when, within epoch `e`, an answer came from a different replica than
//! the answer before it in the same session; it counts once per epoch however often it moved
//! (round-robin moves a session on nearly every request, by design). A moved session that was then
//! found lost in the same epoch counts as *moved and lost*. A session whose move came with its
//! logout is moved but not found lost: a logout answers 204 with or without a session.
//!
//! Counting happens once per session and epoch, not per request, so one mutex is enough.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The run's scale events as the sessions see them: how many commands have begun, and how many
/// have ended.
#[derive(Debug, Default)]
pub struct Epochs {
    begun: AtomicU32,
    ended: AtomicU32,
    counts: Mutex<Vec<MoveCounts>>,
}

/// What one scale event did to the sessions live across it; see the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveCounts {
    /// Sessions live across the event that sent a request after it began.
    pub carried: u64,
    /// Of those, sessions answered by another replica than before, within the event's epoch.
    pub moved: u64,
    /// Of those, sessions then found lost (401 after login, or a wrong cart).
    pub moved_lost: u64,
}

impl Epochs {
    /// A scale command begins: later requests belong to the next epoch, whose number this returns.
    pub fn begin(&self) -> u32 {
        self.begun.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The scale command of epoch `epoch` has returned.
    pub fn end(&self, epoch: u32) {
        self.ended.fetch_max(epoch, Ordering::SeqCst);
    }

    fn current(&self) -> u32 {
        self.begun.load(Ordering::SeqCst)
    }

    fn add(&self, epoch: u32, f: impl FnOnce(&mut MoveCounts)) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let i = epoch as usize;
        if counts.len() <= i {
            counts.resize(i + 1, MoveCounts::default());
        }
        f(&mut counts[i]);
    }

    /// The counts of every epoch, index = epoch (0: before any scale event).
    pub fn counts(&self) -> Vec<MoveCounts> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A fresh session's record, as it logs in now.
    pub fn session(&self) -> SessionTrack {
        SessionTrack {
            // Events whose command ended before this login cannot have carried the session.
            carried_from: self.ended.load(Ordering::SeqCst) + 1,
            last_replica: None,
            counted_in: 0,
            moved_in: None,
            last_answer_at: None,
            on_killed: false,
        }
    }
}

/// A replica kill as the sessions see it: the replica, when its kill began, and when it was
/// over. A session is *on the killed replica* when, from the kill's start on, it sends a request
/// while the last answer it had came from that replica, given before the kill was over (a later
/// one is from the replica started again). Every session pinned there that the kill costs is one
/// of them: the request that finds it lost is such a request.
#[derive(Debug, Default)]
pub struct KillMark {
    begun: OnceLock<(Box<[u8]>, Instant)>,
    over: OnceLock<Instant>,
    on_killed: AtomicU64,
}

impl KillMark {
    /// The kill of `replica` begins.
    pub fn begin(&self, replica: &str, at: Instant) {
        let _ = self.begun.set((replica.as_bytes().into(), at));
    }

    /// The kill has returned: the replica's process is gone.
    pub fn over(&self, at: Instant) {
        let _ = self.over.set(at);
    }

    /// Sessions on the killed replica (see the type's docs); `None` unless a kill was carried
    /// out.
    pub fn on_killed(&self) -> Option<u64> {
        self.over
            .get()
            .map(|_| self.on_killed.load(Ordering::Relaxed))
    }
}

/// One session's route so far, as [`Epochs`] and the [`KillMark`] need it.
#[derive(Debug, Clone)]
pub struct SessionTrack {
    /// The first epoch this session can be carried into.
    carried_from: u32,
    last_replica: Option<Box<[u8]>>,
    /// The last epoch this session was counted as carried in (0: none).
    counted_in: u32,
    /// The last epoch it was counted as moved in.
    moved_in: Option<u32>,
    /// When its last answer with a replica name came.
    last_answer_at: Option<Instant>,
    /// It was counted on the killed replica.
    on_killed: bool,
}

impl SessionTrack {
    /// An answer of this session came from `replica` (`None`: no answer, or no `x-replica`).
    pub fn answered(&mut self, epochs: &Epochs, replica: Option<&[u8]>) {
        let Some(replica) = replica else {
            return;
        };
        let epoch = epochs.current();
        if epoch >= self.carried_from {
            if self.counted_in != epoch {
                self.counted_in = epoch;
                epochs.add(epoch, |c| c.carried += 1);
            }
            let moved = self.last_replica.as_deref().is_some_and(|r| r != replica);
            if moved && self.moved_in != Some(epoch) {
                self.moved_in = Some(epoch);
                epochs.add(epoch, |c| c.moved += 1);
            }
        }
        if self.last_replica.as_deref() != Some(replica) {
            self.last_replica = Some(replica.into());
        }
        self.last_answer_at = Some(Instant::now());
    }

    /// The session sends a request now: counted on the killed replica, once (see [`KillMark`]).
    pub fn sending(&mut self, kill: &KillMark) {
        if self.on_killed {
            return;
        }
        let Some((victim, begun)) = kill.begun.get() else {
            return;
        };
        let answered_before_over = match (self.last_answer_at, kill.over.get()) {
            (Some(at), Some(over)) => at < *over,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if Instant::now() >= *begun
            && self.last_replica.as_deref() == Some(&victim[..])
            && answered_before_over
        {
            self.on_killed = true;
            kill.on_killed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The session was found lost: counted when it had moved in the current epoch.
    pub fn lost(&self, epochs: &Epochs) {
        let epoch = epochs.current();
        if self.moved_in == Some(epoch) {
            epochs.add(epoch, |c| c.moved_lost += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_session_moved_by_an_event_counts_once_and_its_loss_with_it() {
        let epochs = Epochs::default();
        let mut s = epochs.session();
        s.answered(&epochs, Some(b"a-1"));
        s.answered(&epochs, Some(b"a-1"));
        let e = epochs.begin();
        assert_eq!(e, 1);
        s.answered(&epochs, Some(b"a-1"));
        s.answered(&epochs, Some(b"a-4"));
        s.answered(&epochs, Some(b"a-2"));
        s.answered(&epochs, None);
        s.lost(&epochs);
        epochs.end(e);
        let counts = epochs.counts();
        assert_eq!(
            counts[0],
            MoveCounts::default(),
            "nothing counts before an event"
        );
        assert_eq!(
            counts[1],
            MoveCounts {
                carried: 1,
                moved: 1,
                moved_lost: 1
            }
        );
    }

    #[test]
    fn sessions_started_after_the_command_ended_are_not_carried() {
        let epochs = Epochs::default();
        let e = epochs.begin();
        // Logged in while the command ran: live while the pool changed.
        let mut during = epochs.session();
        epochs.end(e);
        let mut after = epochs.session();
        for r in [b"a-1", b"a-2"] {
            during.answered(&epochs, Some(r));
            after.answered(&epochs, Some(r));
        }
        after.lost(&epochs);
        let c = epochs.counts()[1];
        assert_eq!((c.carried, c.moved, c.moved_lost), (1, 1, 0));
    }

    #[test]
    fn a_session_that_stays_put_is_carried_not_moved() {
        let epochs = Epochs::default();
        let mut s = epochs.session();
        s.answered(&epochs, Some(b"a-1"));
        epochs.begin();
        s.answered(&epochs, Some(b"a-1"));
        s.lost(&epochs);
        assert_eq!(
            epochs.counts()[1],
            MoveCounts {
                carried: 1,
                moved: 0,
                moved_lost: 0
            }
        );
    }

    #[test]
    fn a_session_is_on_the_killed_replica_when_its_last_answer_came_from_it() {
        let (epochs, kill) = (Epochs::default(), KillMark::default());
        let (mut pinned, mut elsewhere, mut late) =
            (epochs.session(), epochs.session(), epochs.session());
        pinned.answered(&epochs, Some(b"s-2"));
        elsewhere.answered(&epochs, Some(b"s-1"));
        kill.begin("s-2", Instant::now());
        // Sent while the kill runs: counted, once.
        pinned.sending(&kill);
        assert_eq!(kill.on_killed(), None, "no count until the kill is over");
        kill.over(Instant::now());
        // A session first answered by the restarted replica was not on it at the kill.
        late.answered(&epochs, Some(b"s-2"));
        for s in [&mut pinned, &mut elsewhere, &mut late] {
            s.sending(&kill);
            s.sending(&kill);
        }
        assert_eq!(kill.on_killed(), Some(1));
    }
}
