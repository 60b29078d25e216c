//! The statelab lab: one typed model of its parts and a supervisor for both ways of running it.
//!
//! `scripts/lab` is a thin entry that finds or builds the `statelab-lab` binary and runs it; every
//! verb the user types is implemented here (`scripts/lab --help` lists them; docs/lab.md and the
//! header of `scripts/lab` describe each, and a test holds both lists to the verbs).
//!
//! - [`model`]: the parts (the Redis nodes of the chosen topology, the object store `s3`, `stateful-1..3`, `stateless-1..3`, `externalized-1..3`, the
//!   proxy), their names, pools, strategies, fixed native ports and container addresses, and the
//!   proxy configuration of each mode, built from the proxy's own file format
//!   ([`statelab_formats::ConfigFile`]). `deploy/proxy.toml` and `deploy/compose.yaml` are
//!   committed for users who run compose by hand; a test holds them to this model.
//! - [`settings`]: the `STATELAB_*` environment, parsed once into typed values.
//! - [`labdir`]: the lab directory (`.lab/` by default): the mode, the ports, PIDs, logs and the
//!   generated configuration, which every command after `up` reads.
//! - [`probe`]: health probes (HTTP) and the proxy's admin status.
//! - [`redis_nodes`]: what the lab asks Redis and Sentinel: `PING`, roles, the primary, readiness.
//! - [`topology`]: the primary and the primaries, found once above either platform's nodes.
//! - [`cgroup`]: the native lab's CPU budgets (`--replica-cpu`, `--store-cpu`), one control group
//!   per part.
//! - [`native`]: the native lab: ports, processes in their own process group, PID records that a
//!   reused PID cannot fool, bounded health waits.
//! - [`docker`]: the container lab through the docker and compose CLIs.
//! - `parts`: `status`, `kill` and `start`, built once above the primitives each platform gives
//!   for one part.
//! - `scale`: a pool grown or shrunk while it serves, built once above the two steps each
//!   platform gives.
//! - [`swarm`]: the lab as a Docker Swarm stack, each pool following its service by DNS.
//! - [`platform`]: the running lab, native or Docker, as the one type the verbs talk to.
#![forbid(unsafe_code)]

pub mod cgroup;
pub mod docker;
pub mod labdir;
pub mod model;
pub mod native;
mod parts;
pub mod platform;
pub mod probe;
pub mod redis_nodes;
mod scale;
pub mod settings;
pub mod swarm;
pub mod topology;

/// Writes `text` to standard output. A reader that has gone away (`scripts/lab ports | head -1`)
/// ends the command quietly, as a pipe's writer does, where `print!` would panic; any other
/// failure to write ends it with status 1.
pub fn out(text: impl std::fmt::Display) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = write!(stdout, "{text}").and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        say(format!("cannot write to standard output: {e}"));
        std::process::exit(1);
    }
}

/// A message for the user on standard error, in the lab's voice.
pub fn say(msg: impl std::fmt::Display) {
    eprintln!("lab: {msg}");
}
