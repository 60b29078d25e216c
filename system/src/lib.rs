//! statelab's system tests: the lab as a whole, every part at once, as `scripts/lab` brings it up
//! (the three services, the proxy and `redis-server`, natively on free ports in a private lab
//! directory), driven from outside by many kinds of client at once.
//!
//! The package holds no code of its own; its tests are the point:
//! - `tests/soak/`: the soak, about 30 s of mixed traffic through the proxy (good shop sessions on
//!   every pool, bad requests, trickled headers, idle keep-alive connections) while replicas are
//!   killed and started again, holding every answer to what the docs promise and the proxy's
//!   memory to its bounds (`docs/testing.md`, "Soak"; `docs/limits.md`, "The proxy under a soak").
//!
//! The test-side pieces it drives the lab with come from the rest of the workspace: the load
//! generator's client and wire parser (`statelab-load`), the lab's configuration format
//! (`statelab-formats`) and the native lab harness (`statelab-test-support`).
