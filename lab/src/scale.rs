//! `scale`, built once above the platform: a pool grown with the lowest free replica numbers,
//! each started, healthy, registered with the proxy and waited for until the proxy routes to it;
//! or shrunk from its highest numbers, each taken out of the proxy first (after the drain, or at
//! once) and then stopped. A platform gives the two steps only it can do ([`Scaling`]).

use std::time::Duration;

use anyhow::Context;
use statelab_formats::lab::Scaled;

use crate::model::{check_scale, Design, Part, Replica, MAX_REPLICAS_PER_POOL};
use crate::parts::Parts;
use crate::say;

/// What a platform does to add or remove one replica.
pub(crate) trait Scaling: Parts {
    /// Starts replica `r`, a member from now on, and waits until it is healthy: the address
    /// the proxy reaches it at.
    async fn add(&mut self, r: Replica) -> anyhow::Result<String>;
    /// Stops replica `r`, which the proxy no longer routes to, and forgets it: what became of it,
    /// in the user's words.
    async fn remove(&mut self, r: Replica) -> anyhow::Result<&'static str>;
}

/// Grows or shrinks `design`'s pool to `n` replicas while it serves.
pub(crate) async fn scale(
    lab: &mut impl Scaling,
    design: Design,
    n: u8,
    drain: Option<Duration>,
) -> anyhow::Result<Scaled> {
    check_scale(n)?;
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let mut members: Vec<Replica> = lab
        .members()
        .into_iter()
        .filter(|r| r.design == design)
        .collect();
    members.sort();
    while members.len() < usize::from(n) {
        let index = (1..=MAX_REPLICAS_PER_POOL)
            .find(|i| !members.iter().any(|r| r.index == *i))
            .context("no free replica number")?;
        let r = Replica { design, index };
        let addr = lab.add(r).await?;
        lab.probe()
            .add_replica(lab.admin_port(), design.as_str(), &r.to_string(), &addr)
            .await?;
        lab.probe()
            .wait_routed(lab.admin_port(), Part::Replica(r), lab.up_timeout())
            .await?;
        say(format!("{r} added at {addr}"));
        added.push(r.to_string());
        members.push(r);
        members.sort();
    }
    while members.len() > usize::from(n) {
        let Some(r) = members.pop() else { break };
        let how = lab
            .probe()
            .remove_replica(lab.admin_port(), &r.to_string(), drain)
            .await?;
        let gone = lab.remove(r).await?;
        say(format!("{r} removed ({how}) and {gone}"));
        removed.push(r.to_string());
    }
    say(format!("{design}: {n} replica(s)"));
    Ok(Scaled {
        pool: design,
        replicas: members.iter().map(Replica::to_string).collect(),
        added,
        removed,
    })
}
