//! Ports and signals.

use std::net::TcpListener;

use nix::sys::signal::kill;
use nix::unistd::Pid;

pub use nix::sys::signal::Signal;

/// A TCP port on 127.0.0.1 that was free a moment ago, released for the caller to bind.
///
/// Another process may take it before the caller does; callers that start a server on it retry
/// with a new port when the server does not come up (see [`crate::RedisServer::start`]).
///
/// # Panics
/// When no ephemeral port can be bound at all.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port on 127.0.0.1")
}

/// Sends `signal` to process `pid` with kill(2): SIGTERM as Docker sends on stop, SIGINT as
/// Ctrl-C does, SIGSTOP/SIGCONT to freeze a server. A system call rather than the `kill`
/// command, which a fresh machine need not have.
///
/// # Panics
/// When the signal cannot be sent (no such process, or not ours): the test's premise is wrong.
pub fn send_signal(pid: u32, signal: Signal) {
    let raw = i32::try_from(pid).unwrap_or_else(|_| panic!("pid {pid} does not fit a pid_t"));
    kill(Pid::from_raw(raw), signal)
        .unwrap_or_else(|e| panic!("kill -{} {pid}: {e}", signal.as_str()));
}
