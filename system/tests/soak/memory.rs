//! The proxy's memory figures: its bounds for the soak, its resident and peak sizes from
//! `/proc/PID/status`, and the wait for its size to settle once the clients have gone.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The proxy's memory bounds for this soak (`docs/limits.md`, "The proxy under a soak"): its
/// peak, and its size once every client connection has closed, above its size before. Measured:
/// a peak 4-6 MB over, and after it either about 3.5 MB over or, in a third of the runs, the
/// peak's pages still held (at most 5.5 MB over). Before the front door, the idle connections alone took about
/// 17 MB; a leak of 1 KB per request would leave about 5.5 MB more.
pub const PEAK_GROWTH_LIMIT_KB: u64 = 10 * 1024;
pub const AFTER_GROWTH_LIMIT_KB: u64 = 7 * 1024;

/// How long the proxy's resident size may take to come back within its bound once the last
/// connection has closed: mimalloc hands freed pages back to the system after a delay, on the
/// next allocation of the thread that freed them. The health checks and the dashboard's sampler
/// run on threads of their own, so the wait also sends one request to the public listener, as a
/// load balancer's probe would, to give the serving thread that next allocation.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// The proxy's resident size once it is at most `bound_kb`, or its last reading when
/// [`SETTLE_LIMIT`] has passed without that (the caller's assertion then fails with it). Each
/// reading that is over the bound is followed by one request to `proxy` on a new connection.
pub fn settled_rss_kb(pid: u32, bound_kb: u64, proxy: SocketAddr) -> u64 {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let rss = proc_status_kb(pid, "VmRSS");
        if rss <= bound_kb || Instant::now() >= deadline {
            return rss;
        }
        probe(proxy);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One `GET` of an unknown path (a `404` from the proxy itself), on a connection of its own that
/// is closed after the answer; any failure is ignored, since only the allocation matters.
fn probe(proxy: SocketAddr) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&proxy, Duration::from_secs(1)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /settle HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        .is_ok()
    {
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
    }
}

/// A field of `/proc/PID/status` in kB (`VmRSS`, `VmHWM`).
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{path} has no {field} in kB:\n{status}"))
}
