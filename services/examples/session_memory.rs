//! What one in-memory session costs: fills a `MemoryStore` to its cap and reports the growth of
//! the process's resident memory per session. The figures in docs/limits.md come from here.
//!
//! Usage: `session_memory [SESSIONS] [short|full]` (defaults: 1000000 short)
//! - `short`: a login like the load generator's (`u12-3456`), empty cart;
//! - `full`: the largest session the API allows: a 64-byte username and a cart of 32 lines with
//!   64-byte SKUs.

use std::time::Duration;

use statelab_services::metrics::Metrics;
use statelab_services::session::{Change, MAX_CART_LINES, MAX_SKU_LEN, MAX_USERNAME_LEN};
use statelab_services::store::{MemoryConfig, MemoryStore};
use statelab_services::SessionStore;

/// Resident set size in bytes, from `/proc/self/statm` (Linux).
fn rss_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("/proc/self/statm has no resident field"))?
        .parse()?;
    Ok(pages * 4096)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let sessions: usize = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let full = match args.next().as_deref() {
        None | Some("short") => false,
        Some("full") => true,
        Some(other) => anyhow::bail!("unknown shape {other:?}; short or full"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let metrics = Metrics::new("stateful", "measure")?;
        let config = MemoryConfig {
            ttl: Duration::from_secs(1800),
            max_sessions: sessions,
        };
        let store = MemoryStore::new(config, &metrics)?;
        let skus: Vec<String> = (0..MAX_CART_LINES)
            .map(|i| format!("{i:0>width$}", width = MAX_SKU_LEN))
            .collect();
        let before = rss_bytes()?;
        for i in 0..sessions {
            let username = if full {
                format!("{i:0>width$}", width = MAX_USERNAME_LEN)
            } else {
                format!("u{}-{}", i % 64, i / 64)
            };
            let issued = store.create(&username, None).await?;
            if full {
                for sku in &skus {
                    let change = Change::AddItem { sku, qty: 1 };
                    store.apply(&issued.credential, change).await?;
                }
            }
        }
        let after = rss_bytes()?;
        let grown = after.saturating_sub(before);
        let shape = if full { "full" } else { "short" };
        println!(
            "{sessions} {shape} sessions: resident memory {:.1} MB -> {:.1} MB, {:.1} MB for \
             the sessions, {} bytes each",
            before as f64 / 1e6,
            after as f64 / 1e6,
            grown as f64 / 1e6,
            grown / sessions.max(1) as u64
        );
        anyhow::Ok(())
    })
}
