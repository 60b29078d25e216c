//! Integration tests for the three services, in one test binary.
//!
//! - `contract`: the API contract, written once and run against every design.
//! - `stateful`, `stateless`, `externalized`: what only one design does (the session cap, JWT
//!   forgery, Redis outages).
//! - `sentinel`, `cluster`: the Redis store behind a real Sentinel topology and a real Cluster,
//!   failovers included.
//! - `binaries`: the real executables: configuration errors, SIGTERM.
//! - `chat`: chat rooms over real WebSockets on every design: the handshake's refusals, a message
//!   round trip, and rooms split across replicas without a broker and joined through one.
//! - `files`: avatars on every design: the routes and their limits, a second replica that does or
//!   does not find the file, the object store taken away.
//!
//! `helpers` starts a service in-process on an ephemeral port (and, for the externalized one,
//! a real `redis-server` on a free port of its own) and drives it over real HTTP.

mod binaries;
mod chat;
mod cluster;
mod contract;
mod externalized;
mod files;
mod helpers;
mod sentinel;
mod stateful;
mod stateless;

/// This file's list and docs/testing.md name every test module: a module added without a word
/// on what it covers fails here.
#[test]
fn every_test_module_is_described() {
    let this = include_str!("main.rs");
    let testing = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/testing.md"),
    )
    .expect("docs/testing.md");
    let doc: String = this.lines().take_while(|l| l.starts_with("//!")).collect();
    let modules: Vec<&str> = this
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    assert!(modules.len() >= 8, "{modules:?}");
    for m in modules {
        assert!(
            doc.contains(&format!("`{m}`")),
            "main.rs's list lacks `{m}`"
        );
        if m != "helpers" {
            assert!(
                testing.contains(&format!("{m}.rs")),
                "docs/testing.md does not describe {m}.rs"
            );
        }
    }
}
