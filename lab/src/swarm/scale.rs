//! `scale` in Swarm: `docker service scale`, and nothing said to the proxy. The proxy follows the
//! service's DNS name by itself; the lab waits until Swarm has converged and the proxy's pool is
//! exactly the service's slots, every one serving, and tells how long each took.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{bail, Context};
use statelab_formats::lab::Scaled;

use crate::docker::{docker, run};
use crate::model::{check_scale, Design, Drain, Part, Replica};
use crate::probe::wait_until;
use crate::say;

use super::Swarm;

impl Swarm {
    /// Grows or shrinks `design`'s service to `n` tasks and waits until the proxy's pool follows.
    pub async fn scale(&self, design: Design, n: u8, drain: Drain) -> anyhow::Result<Scaled> {
        check_scale(n)?;
        if drain != Drain::Default {
            bail!(
                "--drain and --now are for the native and Docker labs: in Swarm the proxy drains a \
                 replica that left the service's DNS answer for its pool's discover_drain_seconds"
            );
        }
        let before: BTreeSet<Replica> = self.pool(design).into_iter().collect();
        let service = self.service(Part::Replica(Replica { design, index: 1 }));
        let given = Instant::now();
        let out = run(docker().args(["service", "scale", "--detach", &format!("{service}={n}")]))?;
        if !out.status.success() {
            bail!(
                "docker service scale {service}={n} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let limit = self.settings.up_timeout;
        // Swarm has converged: n tasks, each running (and so past its healthcheck).
        wait_until(
            &format!("Swarm to run {n} tasks of {service}"),
            limit,
            || {
                let tasks = self.tasks(design);
                let ready = tasks.len() == usize::from(n) && tasks.values().all(|running| *running);
                async move { ready }
            },
        )
        .await
        .with_context(|| format!("see: docker service ps {service}"))?;
        let after: Vec<Replica> = self
            .slots(design)
            .into_iter()
            .map(|index| Replica { design, index })
            .collect();
        let converged = given.elapsed();
        let names: BTreeSet<String> = after.iter().map(Replica::to_string).collect();
        wait_until(
            &format!("the proxy's {design} pool to be {}", join(&names)),
            limit,
            || self.pool_is(design, &names),
        )
        .await?;
        let followed = given.elapsed();
        let after: BTreeSet<Replica> = after.into_iter().collect();
        // The first request the proxy hands a new replica: health checks through the pool until
        // one of the added answers.
        let fresh: BTreeSet<String> = after
            .iter()
            .filter(|r| !before.contains(r))
            .map(Replica::to_string)
            .collect();
        let mut first = None;
        if !fresh.is_empty() {
            let url = format!("http://127.0.0.1:{}/{design}/health", self.proxy_port);
            wait_until(
                &format!("a request to reach {}", join(&fresh)),
                limit,
                || async {
                    self.probe
                        .answered_by(&url)
                        .await
                        .is_some_and(|name| fresh.contains(&name))
                },
            )
            .await?;
            first = Some(given.elapsed());
        }
        let added: Vec<String> = after.difference(&before).map(Replica::to_string).collect();
        let removed: Vec<String> = before.difference(&after).map(Replica::to_string).collect();
        let first = first
            .map(|t| {
                format!(
                    ", the first request reached a new replica after {:.1} s",
                    t.as_secs_f64()
                )
            })
            .unwrap_or_default();
        say(format!(
            "{design}: {n} replica(s){}{}; after docker service scale, Swarm converged in {:.1} s, \
             the proxy's pool followed in {:.1} s{first}",
            listed(" (added ", &added),
            listed(" (removed ", &removed),
            converged.as_secs_f64(),
            followed.as_secs_f64(),
        ));
        Ok(Scaled {
            pool: design,
            replicas: after.iter().map(Replica::to_string).collect(),
            added,
            removed,
        })
    }

    /// The proxy's pool for `design` is exactly `names`, each serving.
    async fn pool_is(&self, design: Design, names: &BTreeSet<String>) -> bool {
        let Some(status) = self.probe.admin_status(self.admin_port).await else {
            return false;
        };
        status
            .pools
            .iter()
            .find(|p| p.name == design.as_str())
            .is_some_and(|pool| {
                let members: BTreeSet<String> =
                    pool.replicas.iter().map(|r| r.name.clone()).collect();
                &members == names && pool.replicas.iter().all(|r| r.serving())
            })
    }
}

fn join(names: &BTreeSet<String>) -> String {
    names.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// `prefix` and the names, closed, when there are any.
fn listed(prefix: &str, names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!("{prefix}{})", names.join(", "))
    }
}
