//! Which part limits the pool: the one whose CPU use is closest to what it can have.
//!
//! A part with a CPU budget can have its budget. A Redis node without one can have one core: it
//! executes commands on one thread. Every other part (the proxy, the generator, a replica without
//! a budget) competes for the host, so the host itself is a candidate: its busy time over its
//! cores. The bottleneck is the candidate with the highest utilisation.

use serde::{Deserialize, Serialize};

/// What kind of part a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartKind {
    Replica,
    Store,
    /// The object store (`s3`): many threads, so the host's cores are what it can have.
    Objects,
    Proxy,
    Generator,
    Host,
}

impl PartKind {
    /// The kind of a lab part by its name (`redis-2`, `sentinel-1`, `s3`, `proxy`,
    /// `stateless-3`), or of the generator (`generator`).
    pub fn of(name: &str) -> PartKind {
        if name == "proxy" {
            PartKind::Proxy
        } else if name == "generator" {
            PartKind::Generator
        } else if name == "host" {
            PartKind::Host
        } else if name == statelab_formats::lab::OBJECTS_NAME {
            PartKind::Objects
        } else if name.starts_with("redis") || name.starts_with("sentinel") {
            PartKind::Store
        } else {
            PartKind::Replica
        }
    }
}

/// One part's CPU over a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartUse {
    pub name: String,
    pub kind: PartKind,
    /// Mean cores used over the step.
    pub cores: f64,
    /// Its budget in cores, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<f64>,
}

impl PartUse {
    /// What the part can have: its budget, one core for an unbudgeted Redis node, else nothing
    /// of its own (the host limits it).
    pub fn cap(&self) -> Option<f64> {
        match (self.budget, self.kind) {
            (Some(b), _) => Some(b),
            (None, PartKind::Store) => Some(1.0),
            _ => None,
        }
    }
}

/// The limiting part and how close to its cap it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bottleneck {
    pub name: String,
    pub kind: PartKind,
    /// Cores used over cores it can have, 0 to about 1.
    pub utilisation: f64,
    pub cores: f64,
    pub cap: f64,
}

/// The bottleneck among `parts` and the host (`host_cores` busy for `host_busy` cores).
pub fn bottleneck(parts: &[PartUse], host_busy: f64, host_cores: f64) -> Bottleneck {
    let host = Bottleneck {
        name: "host".into(),
        kind: PartKind::Host,
        utilisation: host_busy / host_cores.max(1e-9),
        cores: host_busy,
        cap: host_cores,
    };
    parts
        .iter()
        .filter_map(|p| {
            let cap = p.cap()?;
            Some(Bottleneck {
                name: p.name.clone(),
                kind: p.kind,
                utilisation: p.cores / cap.max(1e-9),
                cores: p.cores,
                cap,
            })
        })
        // A part at its cap limits before a host that is merely as busy.
        .fold(host, |best, b| {
            if b.utilisation >= best.utilisation {
                b
            } else {
                best
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, cores: f64, budget: Option<f64>) -> PartUse {
        PartUse {
            name: name.into(),
            kind: PartKind::of(name),
            cores,
            budget,
        }
    }

    #[test]
    fn kinds_come_from_the_lab_names() {
        assert_eq!(PartKind::of("stateless-4"), PartKind::Replica);
        assert_eq!(PartKind::of("s3"), PartKind::Objects);
        assert_eq!(PartKind::of("redis-cluster-2"), PartKind::Store);
        assert_eq!(PartKind::of("sentinel-1"), PartKind::Store);
        assert_eq!(PartKind::of("proxy"), PartKind::Proxy);
        assert_eq!(PartKind::of("generator"), PartKind::Generator);
    }

    #[test]
    fn a_replica_at_its_budget_is_the_bottleneck() {
        let parts = [
            part("stateless-1", 0.19, Some(0.2)),
            part("stateless-2", 0.17, Some(0.2)),
            part("proxy", 0.3, None),
            part("generator", 0.2, None),
        ];
        let b = bottleneck(&parts, 0.9, 2.0);
        assert_eq!(
            (b.name.as_str(), b.kind),
            ("stateless-1", PartKind::Replica)
        );
        assert!((b.utilisation - 0.95).abs() < 1e-9);
    }

    #[test]
    fn a_redis_node_at_its_budget_beats_replicas_with_room() {
        let parts = [
            part("externalized-1", 0.3, Some(0.5)),
            part("redis", 0.099, Some(0.1)),
        ];
        assert_eq!(bottleneck(&parts, 0.6, 2.0).kind, PartKind::Store);
    }

    #[test]
    fn an_unbudgeted_redis_can_have_one_core() {
        let parts = [part("redis", 0.97, None), part("proxy", 0.5, None)];
        let b = bottleneck(&parts, 1.6, 2.0);
        assert_eq!(b.name, "redis");
        assert_eq!(b.cap, 1.0);
    }

    #[test]
    fn without_budgets_the_busy_host_is_the_bottleneck() {
        let parts = [
            part("stateless-1", 0.6, None),
            part("stateless-2", 0.6, None),
            part("proxy", 0.5, None),
        ];
        let b = bottleneck(&parts, 1.95, 2.0);
        assert_eq!(b.kind, PartKind::Host);
        assert!((b.utilisation - 0.975).abs() < 1e-9);
    }
}
