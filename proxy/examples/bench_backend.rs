//! The benchmark's upstream: the tests' tiny backend as a process.
//!
//! `bench_backend NAME PORT` serves on 127.0.0.1:PORT (0 = any; the chosen address is printed on
//! stdout as `listening on ADDR`) until killed.

#[path = "../tests/support/backend.rs"]
mod backend;

use std::net::SocketAddr;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "bench-1".to_string());
    let port: u16 = args.next().as_deref().unwrap_or("0").parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let b = backend::Backend::start_on(&name, SocketAddr::from(([127, 0, 0, 1], port))).await?;
        println!("listening on {}", b.addr);
        std::future::pending::<()>().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
