//! statelab's test support: the helpers every crate's integration tests share.
//!
//! The services, the proxy, the load generator and the lab each test against real processes
//! (a real `redis-server`, the real proxy binary, a native lab on free ports). The helpers those
//! tests need were written once per crate and had drifted apart; they live here so that there is
//! one definition of each, and one place where a failure is made loud:
//!
//! - [`eventually`] / [`eventually_blocking`]: bounded polling instead of sleeps; a timeout panics
//!   naming what was awaited.
//! - [`RedisServer`]: a real `redis-server` on a free port, killed on drop, that a test can kill,
//!   restart on the same port, pause (SIGSTOP) and resume.
//! - [`ObjectStore`]: a real S3-compatible object store (`s3s-fs`) on a free port, killed on drop.
//! - [`Backend`]: a tiny HTTP/1.1 upstream for the proxy's tests and its benchmark.
//! - [`TempDir`], [`lab_bin_dir`], [`workspace_root`]: private directories and the binaries of the
//!   build profile the tests run in.
//! - [`NativeLab`]: a native lab brought up and taken down through `scripts/lab`, on free ports.
//! - [`free_port`], [`send_signal`]: the process-level odds and ends.
//!
//! It is a dev-dependency only (and of `proxy/examples/bench_backend.rs`); nothing that ships
//! depends on it. Every helper panics with a message saying what went wrong rather than
//! returning a fallback value: in a test, a value that hides a failure is worse than a panic.

pub mod backend;
mod dirs;
mod native_lab;
mod object_store;
mod process;
mod redis_server;
mod wait;

pub use backend::Backend;
pub use dirs::{lab_bin_dir, profile_bin_dir, workspace_root, TempDir};
pub use native_lab::NativeLab;
pub use object_store::{s3s_fs_binary, ObjectStore};
pub use process::{free_port, send_signal, Signal};
pub use redis_server::{RedisCluster, RedisServer, SentinelServer};
pub use wait::{eventually, eventually_blocking};
