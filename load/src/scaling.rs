//! What each scale event of a run did: when it was asked for and when a new replica took its first
//! request, the share of requests each replica had before and after, the live sessions it moved to
//! another replica and how many of those were lost, and how long until the load was spread evenly
//! again. Built from the run's record only ([`build`]), like the failover figures.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fault::{Event, FaultStep, NOT_CARRIED_OUT};
use crate::stats::{Measured, MoveCounts, SecondStats};

/// Whole seconds whose requests make the "before" and "after" shares.
pub const SHARE_SECONDS: usize = 5;
/// Consecutive seconds that must each be spread evenly to call the load even.
pub const EVEN_SECONDS: usize = 3;
/// How far a replica's share may be from an even split (1/N) and still count as even, as a
/// fraction of 1/N: with 4 replicas, each between 18.75% and 31.25%.
pub const EVEN_TOLERANCE: f64 = 0.25;
/// The most that replicas beyond the pool's new size may still serve in an even window (a removed
/// replica finishing its last requests).
pub const EVEN_LEFTOVER: f64 = 0.02;

/// One scale event of a run; `run.json`'s `scaling[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleReport {
    pub pool: String,
    /// The pool's size asked for.
    pub replicas: u8,
    /// How removed replicas went: `drain=S`, `now`, or empty for the lab's default drain.
    pub removal: String,
    /// When the scale command began, seconds since the run's start.
    pub asked_at_s: f64,
    /// How long the command took (growing: until the new replicas take traffic; shrinking:
    /// including the drain).
    pub took_s: f64,
    pub ok: bool,
    /// Where this event's figures stop: the next scale event, or the end of the run.
    pub window_end_s: f64,
    /// Replicas whose first answer in the run came after the event was asked for.
    pub joined: Vec<ReplicaMoment>,
    /// Replicas that answered before the event and gave their last answer within its window.
    pub left: Vec<ReplicaMoment>,
    /// Each replica's share of the requests (0..1) in the whole seconds before the event.
    pub share_before: BTreeMap<String, f64>,
    /// The same in the last whole seconds of the window.
    pub share_after: BTreeMap<String, f64>,
    /// Live sessions the event carried, moved and lost (see `stats::moves`).
    pub sessions: MoveCounts,
    /// Every session loss in the window, moved or not.
    pub sessions_lost_in_window: u64,
    /// Failed requests in the window.
    pub failed_in_window: u64,
    /// Seconds from the ask until the first of [`EVEN_SECONDS`] seconds in a row in each of which
    /// the pool's replicas each served an even share; `None`: never in this run.
    pub even_after_s: Option<f64>,
}

/// A replica and a moment, seconds since the run's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaMoment {
    pub replica: String,
    pub at_s: f64,
}

/// The scale events of a run, in order. Each one carried out began a scale epoch, in order, so
/// the k-th of them holds the moves of epoch k.
pub fn build(events: &[Event], m: &Measured) -> Vec<ScaleReport> {
    let scales: Vec<&Event> = events
        .iter()
        .filter(|e| e.what == FaultStep::Scale && e.detail != NOT_CARRIED_OUT)
        .collect();
    let run_end = m.series.len() as f64;
    scales
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let window_end_s = scales
                .get(i + 1)
                .map_or(run_end, |next| next.at_s.min(run_end));
            let sessions = m.moves.get(i + 1).copied().unwrap_or_default();
            one(e, window_end_s, sessions, m)
        })
        .collect()
}

fn one(e: &Event, window_end_s: f64, sessions: MoveCounts, m: &Measured) -> ScaleReport {
    let (asked, pool, replicas, removal) = (
        e.at_s,
        parse_pool(&e.replica),
        parse_size(&e.replica),
        parse_removal(&e.replica),
    );
    let first = (asked.floor() as usize).min(m.series.len());
    let end = (window_end_s.ceil() as usize).clamp(first, m.series.len());
    let window = &m.series[first..end];
    let before = &m.series[first.saturating_sub(SHARE_SECONDS)..first];
    let after = &window[window.len().saturating_sub(SHARE_SECONDS)..];
    let in_window = |at: f64| at >= asked && at < window_end_s;
    let joined = m
        .first_seen
        .iter()
        .filter(|(_, at)| in_window(**at))
        .map(|(name, at)| ReplicaMoment {
            replica: name.clone(),
            at_s: *at,
        })
        .collect();
    let before_names = requests(before);
    let left = m
        .last_seen
        .iter()
        .filter(|(name, at)| before_names.contains_key(*name) && in_window(**at))
        // Still answering in the window's last second: it has not left.
        .filter(|(name, _)| {
            window
                .last()
                .is_none_or(|s| !s.per_replica.contains_key(*name))
        })
        .map(|(name, at)| ReplicaMoment {
            replica: name.clone(),
            at_s: *at,
        })
        .collect();
    let even_after_s = (replicas > 0)
        .then(|| even_from(window, usize::from(replicas)))
        .flatten()
        .map(|t| (t as f64 - asked).max(0.0));
    ScaleReport {
        pool,
        replicas,
        removal,
        asked_at_s: asked,
        took_s: e.took_s,
        ok: e.ok,
        window_end_s,
        joined,
        left,
        share_before: shares(before),
        share_after: shares(after),
        sessions,
        sessions_lost_in_window: window.iter().map(|s| s.session_losses).sum(),
        failed_in_window: window.iter().map(|s| s.failed).sum(),
        even_after_s,
    }
}

/// `POOL` of an event's subject `POOL=N[ option]`.
fn parse_pool(subject: &str) -> String {
    subject.split('=').next().unwrap_or("").to_owned()
}

fn parse_size(subject: &str) -> u8 {
    subject
        .split_whitespace()
        .next()
        .and_then(|w| w.split_once('='))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

fn parse_removal(subject: &str) -> String {
    subject.split_whitespace().nth(1).unwrap_or("").to_owned()
}

/// Requests per replica over some seconds.
fn requests(seconds: &[SecondStats]) -> BTreeMap<String, u64> {
    let mut sum = BTreeMap::new();
    for s in seconds {
        for (name, n) in &s.per_replica {
            *sum.entry(name.clone()).or_insert(0) += n;
        }
    }
    sum
}

/// Each replica's share of the requests over some seconds.
fn shares(seconds: &[SecondStats]) -> BTreeMap<String, f64> {
    let sum = requests(seconds);
    let total: u64 = sum.values().sum();
    sum.into_iter()
        .map(|(name, n)| (name, n as f64 / total.max(1) as f64))
        .collect()
}

/// Whether requests are spread evenly over `n` replicas: the `n` busiest each within
/// [`EVEN_TOLERANCE`] of 1/n, the rest together under [`EVEN_LEFTOVER`].
pub fn is_even(per_replica: &BTreeMap<String, u64>, n: usize) -> bool {
    let total: u64 = per_replica.values().sum();
    if total == 0 || per_replica.len() < n {
        return false;
    }
    let mut counts: Vec<u64> = per_replica.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let fair = 1.0 / n as f64;
    let share = |c: u64| c as f64 / total as f64;
    let busiest_even = counts[..n]
        .iter()
        .all(|&c| (share(c) - fair).abs() <= fair * EVEN_TOLERANCE);
    let leftover: u64 = counts[n..].iter().sum();
    busiest_even && share(leftover) < EVEN_LEFTOVER
}

/// The first second `t` of `window` from which [`EVEN_SECONDS`] seconds in a row are each even
/// (fewer at the end of a short window). Each second on its own: summed over several, a replica
/// that joined late in the first would pass for even before it took its share.
fn even_from(window: &[SecondStats], n: usize) -> Option<u64> {
    window
        .windows(EVEN_SECONDS.min(window.len()).max(1))
        .find(|w| w.iter().all(|s| is_even(&s.per_replica, n)))
        .map(|w| w[0].t)
}

/// One line for the terminal: the event and what it did.
pub fn describe(r: &ScaleReport) -> String {
    let removal = if r.removal.is_empty() {
        String::new()
    } else {
        format!(" ({})", r.removal)
    };
    let mut text = format!(
        "scale {} to {}{removal} asked at {:.2} s (took {:.2} s{})",
        r.pool,
        r.replicas,
        r.asked_at_s,
        r.took_s,
        if r.ok { "" } else { ", FAILED" }
    );
    for j in &r.joined {
        text.push_str(&format!(
            "; {} first answered at {:.2} s",
            j.replica, j.at_s
        ));
    }
    for l in &r.left {
        text.push_str(&format!("; {} last answered at {:.2} s", l.replica, l.at_s));
    }
    let c = r.sessions;
    text.push_str(&format!(
        "; live sessions {}, moved {}, moved and lost {}; even load {}",
        c.carried,
        c.moved,
        c.moved_lost,
        r.even_after_s.map_or_else(
            || "never in this run".to_owned(),
            |s| format!("after {s:.1} s")
        )
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ErrorCounts;

    fn second(t: u64, per: &[(&str, u64)], losses: u64) -> SecondStats {
        let per_replica: BTreeMap<String, u64> =
            per.iter().map(|(n, c)| (n.to_string(), *c)).collect();
        let ok = per_replica.values().sum();
        SecondStats {
            t,
            requests: ok,
            ok,
            failed: 0,
            errors: ErrorCounts::default(),
            session_losses: losses,
            p50_ms: 1.0,
            p99_ms: 2.0,
            per_replica,
            sessions_per_replica: BTreeMap::new(),
        }
    }

    fn measured(series: Vec<SecondStats>, moves: Vec<MoveCounts>) -> Measured {
        let mut first_seen = BTreeMap::new();
        let mut last_seen = BTreeMap::new();
        for s in &series {
            for name in s.per_replica.keys() {
                first_seen.entry(name.clone()).or_insert(s.t as f64 + 0.5);
                last_seen.insert(name.clone(), s.t as f64 + 0.5);
            }
        }
        Measured {
            latency: crate::stats::new_histogram(2),
            heavy_latency: crate::stats::new_histogram(2),
            service: crate::stats::new_histogram(2),
            series,
            last_seen,
            first_seen,
            moves,
            on_killed: None,
            loss_unauthorized: 0,
            loss_cart: 0,
            steps_late: 0,
            max_step_lag_ms: 0.0,
            detail: Vec::new(),
            moments: Default::default(),
        }
    }

    fn scale_event(at_s: f64, subject: &str) -> Event {
        Event {
            at_s,
            what: FaultStep::Scale,
            replica: subject.into(),
            took_s: 1.2,
            ok: true,
            detail: String::new(),
            killed: None,
            cut_off: None,
        }
    }

    #[test]
    fn evenness_needs_every_member_near_its_share_and_no_leftover() {
        let per = |v: &[u64]| -> BTreeMap<String, u64> {
            v.iter()
                .enumerate()
                .map(|(i, c)| (format!("r-{i}"), *c))
                .collect()
        };
        assert!(is_even(&per(&[25, 25, 25, 25]), 4));
        assert!(is_even(&per(&[30, 20, 25, 25]), 4));
        assert!(!is_even(&per(&[33, 33, 34, 0]), 4), "the new replica idle");
        assert!(!is_even(&per(&[33, 33, 34]), 4), "only three answer");
        assert!(!is_even(&per(&[40, 20, 20, 20]), 4));
        assert!(
            is_even(&per(&[33, 33, 34, 1]), 3),
            "a removed replica's last request"
        );
        assert!(
            !is_even(&per(&[30, 30, 30, 10]), 3),
            "a removed replica still busy"
        );
        assert!(!is_even(&per(&[]), 1));
    }

    #[test]
    fn a_growth_that_evens_out_later() {
        // Three replicas, the fourth asked for at 3.4 s: it takes its first request in second 5
        // and a fair share from second 8 on (sessions pinned elsewhere ending first).
        let mut series = Vec::new();
        for t in 0..12u64 {
            let new = match t {
                0..=4 => 0,
                5..=7 => 5,
                _ => 25,
            };
            let old = (100 - new) / 3;
            let mut per = vec![("s-1", old), ("s-2", old), ("s-3", 100 - new - 2 * old)];
            if new > 0 {
                per.push(("s-4", new));
            }
            series.push(second(t, &per, u64::from(t == 6)));
        }
        let moves = vec![
            MoveCounts::default(),
            MoveCounts {
                carried: 40,
                moved: 0,
                moved_lost: 0,
            },
        ];
        let m = measured(series, moves);
        let reports = build(&[scale_event(3.4, "stateful=4")], &m);
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert_eq!(
            (r.pool.as_str(), r.replicas, r.removal.as_str()),
            ("stateful", 4, "")
        );
        assert_eq!(
            r.joined,
            vec![ReplicaMoment {
                replica: "s-4".into(),
                at_s: 5.5
            }]
        );
        assert!(r.left.is_empty());
        assert_eq!(r.share_before.get("s-4"), None);
        // The window's last five seconds (7 to 11): 5 requests in second 7, then 25 a second.
        assert!((r.share_after["s-4"] - 105.0 / 500.0).abs() < 1e-9);
        assert_eq!(r.sessions.carried, 40);
        assert_eq!(r.sessions_lost_in_window, 1);
        let even = r.even_after_s.expect("even from second 8");
        assert!((even - (8.0 - 3.4)).abs() < 1e-9, "{even}");
    }

    #[test]
    fn a_shrink_names_the_replica_that_left_and_may_never_even_out() {
        let mut series = Vec::new();
        for t in 0..10u64 {
            let per: Vec<(&str, u64)> = if t < 6 {
                vec![("s-1", 25), ("s-2", 25), ("s-3", 25), ("s-4", 25)]
            } else {
                // Three left, but one of them takes half: never even.
                vec![("s-1", 50), ("s-2", 25), ("s-3", 25)]
            };
            series.push(second(t, &per, 0));
        }
        let m = measured(series, vec![MoveCounts::default(); 2]);
        let r = &build(&[scale_event(4.0, "stateful=3 now")], &m)[0];
        assert_eq!(r.removal, "now");
        assert_eq!(
            r.left,
            vec![ReplicaMoment {
                replica: "s-4".into(),
                at_s: 5.5
            }]
        );
        assert_eq!(r.even_after_s, None);
    }

    #[test]
    fn each_event_keeps_to_its_own_window_and_epoch() {
        let series = (0..20u64)
            .map(|t| second(t, &[("s-1", 10), ("s-2", 10), ("s-3", 10)], 0))
            .collect();
        let moves = vec![
            MoveCounts::default(),
            MoveCounts {
                carried: 1,
                moved: 1,
                moved_lost: 0,
            },
            MoveCounts {
                carried: 2,
                moved: 2,
                moved_lost: 2,
            },
        ];
        let m = measured(series, moves);
        let mut skipped = scale_event(15.0, "stateful=5");
        skipped.detail = NOT_CARRIED_OUT.into();
        let events = [
            scale_event(5.0, "stateful=4"),
            Event {
                what: FaultStep::Kill,
                ..scale_event(7.0, "stateful-1")
            },
            scale_event(10.0, "stateful=3"),
            skipped,
        ];
        let r = build(&events, &m);
        assert_eq!(r.len(), 2, "the step never carried out has no figures");
        assert_eq!((r[0].window_end_s, r[1].window_end_s), (10.0, 20.0));
        assert_eq!(r[0].sessions.moved, 1);
        assert_eq!(r[1].sessions.moved_lost, 2);
        assert_eq!(r[1].even_after_s, Some(0.0));
    }
}
