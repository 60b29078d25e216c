//! Open sockets: client connections upgraded (WebSocket and the like) and tunnelled to a replica.
//!
//! An upgraded connection is no longer a request that ends on its own: it stays on the replica
//! that answered its `101` for as long as the client keeps it, whatever the pool's strategy says
//! afterwards. Each replica keeps the set of its open sockets, so the proxy can show how many
//! there are and, when a drain runs out, hang every one of them up.
//!
//! Hanging up is a flag and a waker on the client connection ([`Hangup`]): the connection's next
//! read, or the one it is waiting in, ends as if the client had closed it, and pingora tears the
//! tunnel down both ways by its own end-of-stream path. Nothing reaches into a socket from outside.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;

use futures_util::task::AtomicWaker;

/// A client connection's hang-up switch, shared between the connection and the replica it is
/// tunnelled to.
#[derive(Debug, Default)]
pub struct Hangup {
    done: AtomicBool,
    reader: AtomicWaker,
}

impl Hangup {
    /// Ends the connection: its reads report the end of the stream from now on.
    pub fn hang_up(&self) {
        self.done.store(true, Ordering::Release);
        self.reader.wake();
    }

    /// Whether the connection was hung up; if not, `cx` is woken when it is.
    pub fn poll_hung_up(&self, cx: &mut Context<'_>) -> bool {
        if self.done.load(Ordering::Acquire) {
            return true;
        }
        self.reader.register(cx.waker());
        self.done.load(Ordering::Acquire)
    }

    pub fn is_hung_up(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

/// The open sockets of one replica.
#[derive(Debug, Default)]
pub struct Sockets {
    open: Mutex<Open>,
    next: AtomicU64,
}

#[derive(Debug, Default)]
struct Open {
    sockets: HashMap<u64, Arc<Hangup>>,
    /// The replica is gone: a socket whose `101` arrives later (its handshake was under way, or
    /// it was routed by the membership before the removal) is hung up as it opens.
    closed: bool,
}

impl Sockets {
    /// Counts a tunnel as open until the returned guard is dropped.
    pub fn open(self: &Arc<Self>, hangup: Arc<Hangup>) -> OpenSocket {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut open = self.lock();
        if open.closed {
            hangup.hang_up();
        }
        open.sockets.insert(id, hangup);
        OpenSocket {
            sockets: Arc::clone(self),
            id,
        }
    }

    pub fn count(&self) -> usize {
        self.lock().sockets.len()
    }

    /// Hangs up every open socket, and every one that opens from now on; returns how many were
    /// open.
    pub fn hang_up_all(&self) -> usize {
        let mut open = self.lock();
        open.closed = true;
        for hangup in open.sockets.values() {
            hangup.hang_up();
        }
        open.sockets.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One socket counted open on a replica; dropping it (the tunnel ended, however it ended) takes
/// it out of the count.
#[derive(Debug)]
pub struct OpenSocket {
    sockets: Arc<Sockets>,
    id: u64,
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.sockets.lock().sockets.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Wake, Waker};

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_socket_counts_while_its_guard_lives_and_a_hang_up_wakes_its_reader() {
        let sockets = Arc::new(Sockets::default());
        let (first, second) = (Arc::new(Hangup::default()), Arc::new(Hangup::default()));
        let one = sockets.open(Arc::clone(&first));
        let two = sockets.open(Arc::clone(&second));
        assert_eq!(sockets.count(), 2);

        let woken = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        assert!(!first.poll_hung_up(&mut cx));

        drop(two);
        assert_eq!(sockets.count(), 1);
        assert_eq!(sockets.hang_up_all(), 1);
        assert!(
            woken.0.load(Ordering::SeqCst),
            "the waiting reader was woken"
        );
        assert!(first.poll_hung_up(&mut cx));
        assert!(!second.is_hung_up(), "a closed socket is not hung up again");
        drop(one);
        assert_eq!(sockets.count(), 0);

        let late = Arc::new(Hangup::default());
        let _late = sockets.open(Arc::clone(&late));
        assert!(
            late.is_hung_up(),
            "a socket opening on a gone replica is hung up at once"
        );
    }
}
