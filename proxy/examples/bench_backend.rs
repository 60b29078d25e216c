//! The benchmark's upstream: the tests' tiny backend as a process.
//!
//! - `bench_backend N` serves N listeners on ephemeral 127.0.0.1 ports (named `bench-1..N`) from
//!   one single-threaded runtime, prints `listening on ADDR` for each, and runs until killed. One
//!   thread for all listeners keeps the upstream's CPU share identical whichever proxy is measured.
//! - `bench_backend --free-port K` prints K currently free loopback ports (for the proxies under
//!   test) and exits.
//!
//! The backend is `statelab_test_support::Backend`, the very one the proxy's tests run against.

use std::io::Write;
use std::net::SocketAddr;

use statelab_test_support::Backend;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--free-port") {
        let k: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1);
        // Hold all K at once so they are distinct, then release them together.
        let held = (0..k)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()?;
        for l in &held {
            println!("{}", l.local_addr()?.port());
        }
        return Ok(());
    }
    let n: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut running = Vec::new();
        for i in 1..=n {
            let b = Backend::start_on(&format!("bench-{i}"), SocketAddr::from(([127, 0, 0, 1], 0)))
                .await?;
            println!("listening on {}", b.addr);
            running.push(b);
        }
        std::io::stdout().flush()?;
        std::future::pending::<()>().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
