//! The textbook's claims, each judged by figures from this run: `evidence.json`'s format and
//! the rules that give each claim its verdict. A claim whose experiment did not run says so, with
//! the reason, and carries no figure.

use serde::{Deserialize, Serialize};
use statelab_formats::Design;

use super::probes::Probes;
use crate::capacity::report::speedup_and_efficiency;
use crate::capacity::scenarios::CapacitySuite;
use crate::compare::plan::POOL_SIZE;
use crate::report::{Balance, RunReport};

/// `evidence.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub title: String,
    pub generated_unix_ms: u64,
    /// Where it ran: `native`, the machine's cores, and whether it was the short mode.
    pub mode: String,
    pub cores: u64,
    pub quick: bool,
    pub claims: Vec<Claim>,
    pub probes: Probes,
    /// The load runs, in full, as `statelab-load run` writes them (section `run-N` of the page
    /// is `runs[N]`).
    pub runs: Vec<RunReport>,
    /// Each run's directory under the output, in the same order.
    pub run_dirs: Vec<String>,
    /// The capacity curves (`OUT/capacity/capacity-report.{json,html}` too); `null` when they
    /// did not run, and then why.
    pub capacity: Option<CapacitySuite>,
    pub capacity_not_measured: Option<String>,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    pub id: String,
    /// The claim as it is usually stated.
    pub claim: String,
    pub figures: Vec<Figure>,
    pub verdict: Verdict,
    /// One sentence: why this verdict, from these figures.
    pub reason: String,
    /// The page section that produced the figures (`run-N` or `probe-NAME`); `None` when the
    /// claim was not measured.
    pub run: Option<String>,
}

/// A measured figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

fn fig(name: impl Into<String>, value: f64, unit: &str) -> Figure {
    Figure {
        name: name.into(),
        value,
        unit: unit.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    #[serde(rename = "holds")]
    Holds,
    #[serde(rename = "holds, but…")]
    HoldsBut,
    #[serde(rename = "loose")]
    Loose,
    #[serde(rename = "wrong")]
    Wrong,
    #[serde(rename = "not measured")]
    NotMeasured,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::HoldsBut => "holds, but…",
            Verdict::Loose => "loose",
            Verdict::Wrong => "wrong",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// A claimed figure off by more than this factor from the measured one is `loose`.
pub const LOOSE_FACTOR: f64 = 5.0;
/// The lowest latency must beat the next design's p50 by this share to `hold` outright.
pub const CLEAR_MARGIN: f64 = 0.10;
/// A token request at least this many times a session-id request's bytes is "heavier".
pub const HEAVIER_FACTOR: f64 = 2.0;
/// Memory per session above this is "heavy" outright; below, the claim holds with a "but".
pub const HEAVY_SESSION_BYTES: f64 = 10.0 * 1024.0;
/// The "1–5 ms to Redis" figure.
pub const REDIS_HOP_CLAIMED_MS: (f64, f64) = (1.0, 5.0);

struct Row {
    id: &'static str,
    claim: &'static str,
}

const CRASH: Row = Row {
    id: "crash-loses-sessions",
    claim: "stateful: a crash loses the sessions on that server",
};
const IMBALANCE: Row = Row {
    id: "sticky-imbalance",
    claim: "stateful: sticky routing creates load imbalance",
};
const MEMORY: Row = Row {
    id: "memory-per-session",
    claim: "stateful: resource heavy (memory per session)",
};
const LATENCY: Row = Row {
    id: "stateful-lowest-latency",
    claim: "stateful: lowest latency",
};
const HOP: Row = Row {
    id: "redis-hop-cost",
    claim: "externalized: a network hop per access, ~1–5 ms to Redis",
};
const SPOF: Row = Row {
    id: "store-spof",
    claim: "externalized: the store becomes the single point of failure",
};
const DISPOSABLE: Row = Row {
    id: "instances-disposable",
    claim: "externalized and stateless: any instance can be replaced in seconds without user-visible disruption",
};
const BYTES: Row = Row {
    id: "jwt-request-bytes",
    claim: "stateless (JWT): heavier requests, since every request repeats the data",
};
const REVOKE: Row = Row {
    id: "jwt-not-revocable",
    claim: "stateless (JWT): cannot be revoked before it expires",
};
const ENCRYPTED: Row = Row {
    id: "jwt-not-encrypted",
    claim: "stateless (JWT): an encrypted token",
};
const SCALE: Row = Row {
    id: "scale-out",
    claim: "stateless scales by adding instances; stateful scaling is hard",
};
const FILES: Row = Row {
    id: "local-file-trap",
    claim: "a file on the server's disk is not found when the next request reaches another server",
};
const SOCKETS: Row = Row {
    id: "websocket-exception",
    claim: "WebSockets (chat) are stateful: the open connection is state",
};
const REPLICATED: Row = Row {
    id: "replicated-store-loses-nothing",
    claim: "a replicated store (Sentinel) keeps the state safe",
};

impl Row {
    fn measured(
        &self,
        figures: Vec<Figure>,
        verdict: Verdict,
        reason: String,
        run: String,
    ) -> Claim {
        Claim {
            id: self.id.into(),
            claim: self.claim.into(),
            figures,
            verdict,
            reason,
            run: Some(run),
        }
    }

    fn not_measured(&self, why: impl Into<String>) -> Claim {
        Claim {
            id: self.id.into(),
            claim: self.claim.into(),
            figures: Vec::new(),
            verdict: Verdict::NotMeasured,
            reason: why.into(),
            run: None,
        }
    }
}

/// The load runs the claims read, by their directory under the output: the comparison's own
/// names ([`crate::compare::plan`]) and the evidence's Redis kill.
#[derive(Debug, Clone, Copy)]
pub struct Runs<'a> {
    pub dirs: &'a [String],
    pub reports: &'a [RunReport],
}

impl Runs<'_> {
    /// The run made in `dir`, and its section's number; `None` when it did not run (or the
    /// evidence was interrupted before it).
    fn get(&self, dir: &str) -> Option<(usize, &RunReport)> {
        let i = self.dirs.iter().position(|d| d == dir)?;
        Some((i, self.reports.get(i)?))
    }
}

/// The kill runs' directories, one per design in [`Design::ALL`]'s order.
pub const KILL_RUNS: [&str; 3] = [
    "stateful-cookie",
    "stateless-round-robin",
    "externalized-round-robin",
];
/// The evidence's own run: the externalized pool's one Redis killed and started again.
pub const REDIS_KILLED: &str = "store-externalized-round-robin-redis-killed";
/// The skew runs the imbalance reads: sticky routing against round-robin.
pub const SKEW_RUNS: [&str; 3] = [
    "skew-stateful-cookie",
    "skew-stateful-ip-hash",
    "skew-stateless-round-robin",
];
/// The skewed stateful run under ip-hash from the host in the Docker lab, where Docker's NAT
/// makes every client one address; the Docker lab's ip-hash figure.
pub const NAT_SKEW_RUN: &str = "skew-stateful-ip-hash-nat";
/// The scaling runs: each design's pool grown from 3 to 4.
pub const SCALE_RUNS: [&str; 4] = [
    "stateful-cookie-3-to-4",
    "stateful-ip-hash-3-to-4",
    "stateless-round-robin-3-to-4",
    "externalized-round-robin-3-to-4",
];
/// The file runs: avatars on a stateful replica's disk against the object store.
pub const FILE_RUNS: [&str; 2] = [
    "files-stateful-cookie-kill",
    "files-externalized-round-robin-kill",
];
/// The chat runs: rooms in a replica's memory against a Redis broker, a replica killed.
pub const CHAT_RUNS: [&str; 2] = [
    "chat-stateful-cookie-kill",
    "chat-externalized-round-robin-kill",
];
/// The store runs: Sentinel's primary killed, asynchronous and with `WAIT 1`.
pub const STORE_RUNS: [&str; 2] = ["store-sentinel", "store-sentinel-wait1"];

/// The comparison's runs the evidence makes: the kill runs alone in the short mode, else every
/// group above.
pub fn wanted_runs(quick: bool) -> Vec<&'static str> {
    let mut runs = KILL_RUNS.to_vec();
    if !quick {
        for group in [
            &SKEW_RUNS[..],
            &SCALE_RUNS,
            &FILE_RUNS,
            &CHAT_RUNS,
            &STORE_RUNS,
        ] {
            runs.extend_from_slice(group);
        }
    }
    runs
}

/// How the evidence ran: the short mode, and the Docker lab.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct How {
    pub quick: bool,
    pub docker: bool,
}

impl How {
    /// Why a claim whose runs are missing was not measured.
    fn absent(self) -> String {
        if self.quick {
            SHORT_MODE.into()
        } else {
            "not measured: the evidence was interrupted before its runs".into()
        }
    }

    /// The skew runs the imbalance reads: cookie, ip-hash (in Docker from behind its NAT) and
    /// round-robin.
    pub fn skew_runs(self) -> [&'static str; 3] {
        let ip_hash = if self.docker {
            NAT_SKEW_RUN
        } else {
            SKEW_RUNS[1]
        };
        [SKEW_RUNS[0], ip_hash, SKEW_RUNS[2]]
    }

    /// The scaling runs the scale-out reads: in Docker without ip-hash, which the comparison
    /// leaves out there (every host client is one address behind the NAT).
    pub fn scale_runs(self) -> Vec<&'static str> {
        SCALE_RUNS
            .into_iter()
            .filter(|d| !(self.docker && d.contains("ip-hash")))
            .collect()
    }
}

/// Every claim, in the table's order, judged from the probes and the runs.
pub fn judge(
    probes: &Probes,
    runs: &Runs<'_>,
    capacity: Option<&CapacitySuite>,
    how: How,
) -> Vec<Claim> {
    let kills = KILL_RUNS.map(|d| {
        runs.get(d)
            .filter(|(_, r)| r.failover.is_some())
            .map(|(i, _)| i)
    });
    let reports = runs.reports;
    vec![
        crash(reports, kills),
        imbalance(runs, how),
        memory(probes),
        latency(reports, kills),
        hop(probes, reports, kills, how),
        store_spof(reports, runs.get(REDIS_KILLED).map(|(i, _)| i)),
        disposable(reports, kills),
        request_bytes(probes),
        revocable(probes),
        encrypted(probes),
        scale_out(runs, capacity, how),
        files(runs, how),
        sockets(runs, how),
        replicated(runs, how),
    ]
}

/// Why a claim whose runs are missing was not measured.
pub const SHORT_MODE: &str =
    "not measured in this run: the short mode (--quick) leaves its runs out";

fn run_id(i: usize) -> String {
    format!("run-{i}")
}

fn missing(probes: &Probes, name: &str) -> String {
    match probes.not_measured.get(name) {
        Some(why) => format!("not measured: {why}"),
        None => "not measured: the probe gave no figure".into(),
    }
}

fn crash(runs: &[RunReport], kills: [Option<usize>; 3]) -> Claim {
    let Some(i) = kills[0] else {
        return CRASH.not_measured("not measured: the stateful kill run did not run");
    };
    let Some(f) = runs[i].failover.as_ref() else {
        return CRASH.not_measured("not measured: the stateful kill did not happen");
    };
    let Some(live) = f.sessions_on_killed.filter(|n| *n > 0) else {
        return CRASH.not_measured(format!(
            "not measured: no session was on {} when it was killed",
            f.replica
        ));
    };
    let lost = f.sessions_lost_after_kill;
    let mut figures = vec![
        fig(
            format!("stateful: sessions on {}", f.replica),
            live as f64,
            "sessions",
        ),
        fig("stateful: sessions lost", lost as f64, "sessions"),
        fig(
            "stateful: share lost",
            lost as f64 / live as f64 * 100.0,
            "%",
        ),
    ];
    let mut others_lost = 0;
    for (k, design) in [(1, Design::Stateless), (2, Design::Externalized)] {
        if let Some(o) = kills[k].and_then(|j| runs[j].failover.as_ref()) {
            others_lost += o.sessions_lost_after_kill;
            figures.push(fig(
                format!("{design}: sessions lost"),
                o.sessions_lost_after_kill as f64,
                "sessions",
            ));
        }
    }
    let (verdict, reason) = match (lost, others_lost) {
        (0, _) => (
            Verdict::Wrong,
            format!("killing {} lost no session in this run", f.replica),
        ),
        (_, 0) => (
            Verdict::Holds,
            format!(
                "{lost} of the {live} sessions on {} were lost with it; the other designs lost none",
                f.replica
            ),
        ),
        _ => (
            Verdict::HoldsBut,
            format!("{lost} stateful sessions were lost, but the other designs lost {others_lost} too"),
        ),
    };
    CRASH.measured(figures, verdict, reason, run_id(i))
}

fn memory(probes: &Probes) -> Claim {
    let of = |design: Design, what: &str| {
        probes
            .memory
            .iter()
            .find(|m| m.design == design && m.what == what)
    };
    let (Some(stateful), Some(stateless)) = (
        of(Design::Stateful, "replica RSS"),
        of(Design::Stateless, "replica RSS"),
    ) else {
        return MEMORY.not_measured(missing(probes, "memory"));
    };
    let mut figures = vec![
        fig(
            "stateful replica, per session",
            stateful.bytes_per_session,
            "bytes",
        ),
        fig(
            "stateless replica, per session",
            stateless.bytes_per_session,
            "bytes",
        ),
    ];
    let redis = of(Design::Externalized, "Redis used_memory");
    if let Some(redis) = redis {
        figures.push(fig("Redis, per session", redis.bytes_per_session, "bytes"));
    }
    figures.push(fig(
        "stateful sessions added",
        stateful.sessions as f64,
        "sessions",
    ));
    let per = stateful.bytes_per_session;
    let million = per * 1e6 / (1024.0 * 1024.0);
    let (verdict, reason) = if per <= 0.0 {
        (
            Verdict::Wrong,
            format!(
                "{} sessions grew the stateful replica by nothing measurable",
                stateful.sessions
            ),
        )
    } else if per > HEAVY_SESSION_BYTES {
        (
            Verdict::Holds,
            format!("{per:.0} bytes per session: a million live sessions take {million:.0} MiB of one server's memory"),
        )
    } else {
        let redis_words = redis.map_or(String::new(), |r| {
            format!(
                ", and Redis holds {:.0} bytes for each externalized one",
                r.bytes_per_session
            )
        });
        (
            Verdict::HoldsBut,
            format!(
                "{per:.0} bytes per session: heavy only at scale (a million take {million:.0} MiB){redis_words}; stateless replicas hold none"
            ),
        )
    };
    MEMORY.measured(figures, verdict, reason, "probe-memory".into())
}

fn before_kill_p(r: &RunReport) -> Option<(f64, f64)> {
    r.failover
        .as_ref()
        .and_then(|f| f.ok_latency_before_kill.as_ref())
        .map(|l| (l.p50_ms, l.p99_ms))
}

fn latency(runs: &[RunReport], kills: [Option<usize>; 3]) -> Claim {
    let got: Vec<(Design, usize, f64, f64)> = Design::ALL
        .iter()
        .zip(kills)
        .filter_map(|(d, i)| {
            let i = i?;
            let (p50, p99) = before_kill_p(&runs[i])?;
            Some((*d, i, p50, p99))
        })
        .collect();
    if got.len() < 3 {
        return LATENCY
            .not_measured("not measured: the three kill runs gave no latency before their kill");
    }
    let mut figures = Vec::new();
    for (d, _, p50, p99) in &got {
        figures.push(fig(format!("{d}: p50"), *p50, "ms"));
        figures.push(fig(format!("{d}: p99"), *p99, "ms"));
    }
    let stateful = got[0].2;
    let best_other = got[1..].iter().map(|g| g.2).fold(f64::INFINITY, f64::min);
    let (verdict, reason) = if stateful < best_other * (1.0 - CLEAR_MARGIN) {
        (
            Verdict::Holds,
            format!(
                "stateful's p50 of {stateful:.2} ms is the lowest, {:.0}% under the next",
                (1.0 - stateful / best_other) * 100.0
            ),
        )
    } else if stateful <= best_other {
        (
            Verdict::HoldsBut,
            format!("stateful's p50 ({stateful:.2} ms) is the lowest by less than {:.0}%: on one host the session store's cost hides in the proxy's", CLEAR_MARGIN * 100.0),
        )
    } else {
        (
            Verdict::Wrong,
            format!("stateful's p50 ({stateful:.2} ms) is not the lowest ({best_other:.2} ms)"),
        )
    };
    LATENCY.measured(figures, verdict, reason, run_id(got[0].1))
}

fn hop(probes: &Probes, runs: &[RunReport], kills: [Option<usize>; 3], how: How) -> Claim {
    let Some(rt) = &probes.redis_round_trip else {
        return HOP.not_measured(missing(probes, "redis_round_trip"));
    };
    let mut figures = vec![
        fig("Redis round trip: p50", rt.p50_ms, "ms"),
        fig("Redis round trip: p99", rt.p99_ms, "ms"),
    ];
    let mut run = "probe-redis".to_owned();
    if let (Some(s), Some(e)) = (kills[0], kills[2]) {
        if let (Some(a), Some(b)) = (before_kill_p(&runs[s]), before_kill_p(&runs[e])) {
            figures.push(fig("externalized over stateful: p50", b.0 - a.0, "ms"));
            figures.push(fig("externalized over stateful: p99", b.1 - a.1, "ms"));
            run = run_id(e);
        }
    }
    let (low, high) = REDIS_HOP_CLAIMED_MS;
    let p50 = rt.p50_ms;
    let here = if how.docker {
        "on one host, across Docker's bridge network,"
    } else {
        "on one host"
    };
    let (verdict, reason) = if p50 > high * LOOSE_FACTOR {
        (
            Verdict::Loose,
            format!("a Redis round trip takes {p50:.2} ms here, over {LOOSE_FACTOR:.0}× the 5 ms the figure ends at"),
        )
    } else if p50 * LOOSE_FACTOR < low {
        (
            Verdict::Loose,
            format!(
                "{here} a Redis round trip takes {p50:.3} ms, over {LOOSE_FACTOR:.0}× under the 1 ms the figure starts at; 1–5 ms is a round trip across hosts or zones"
            ),
        )
    } else if (low..=high).contains(&p50) {
        (
            Verdict::Holds,
            format!("a Redis round trip takes {p50:.2} ms here"),
        )
    } else {
        (
            Verdict::HoldsBut,
            format!("a Redis round trip takes {p50:.3} ms here, outside 1–5 ms but within {LOOSE_FACTOR:.0}×"),
        )
    };
    HOP.measured(figures, verdict, reason, run)
}

fn store_spof(runs: &[RunReport], spof: Option<usize>) -> Claim {
    let Some(i) = spof.filter(|i| *i < runs.len()) else {
        return SPOF.not_measured("not measured: the Redis kill run did not run");
    };
    let r = &runs[i];
    let Some(f) = r.failover.as_ref() else {
        return SPOF.not_measured("not measured: the Redis kill did not happen");
    };
    let window = f.failure_window.as_ref();
    let failed = window.map_or(0, |w| w.failed);
    let outage = f
        .restart_at_s
        .map_or(r.duration_s - f.kill_at_s, |at| at - f.kill_at_s);
    // The whole seconds from the kill's to the restart's: the requests sent and failed in them.
    let outage_seconds = || {
        r.timeline
            .iter()
            .filter(|s| (s.t as f64) >= f.kill_at_s.floor() && (s.t as f64) < f.kill_at_s + outage)
    };
    let in_outage: u64 = outage_seconds().map(|s| s.requests).sum();
    let failed_in_outage: u64 = outage_seconds().map(|s| s.failed).sum();
    let failing_s = window
        .and_then(|w| Some(w.last_failed_s? - w.first_failed_s?))
        .unwrap_or(0.0);
    let share = if in_outage > 0 {
        failed_in_outage as f64 / in_outage as f64 * 100.0
    } else {
        0.0
    };
    let figures = vec![
        fig("Redis down for", outage, "s"),
        fig("requests failed", failed as f64, "requests"),
        fig("share failed in the seconds Redis was down", share, "%"),
        fig("first to last failure", failing_s, "s"),
        fig(
            "sessions lost",
            f.sessions_lost_after_kill as f64,
            "sessions",
        ),
    ];
    let (verdict, reason) = if failed > 0 {
        (
            Verdict::Holds,
            format!(
                "with its one Redis down for {outage:.0} s, the externalized pool failed {share:.0}% of the requests of those seconds, on every replica at once; Sentinel and Cluster (scripts/compare --store) trade this for a failover"
            ),
        )
    } else {
        (
            Verdict::Wrong,
            "no request failed while Redis was down".to_owned(),
        )
    };
    SPOF.measured(figures, verdict, reason, run_id(i))
}

fn disposable(runs: &[RunReport], kills: [Option<usize>; 3]) -> Claim {
    let mut figures = Vec::new();
    let mut run = None;
    let (mut lost, mut failed) = (0, 0);
    for (k, design) in [
        (1, Design::Stateless),
        (2, Design::Externalized),
        (0, Design::Stateful),
    ] {
        let Some(i) = kills[k] else { continue };
        let Some(f) = runs[i].failover.as_ref() else {
            continue;
        };
        run.get_or_insert(i);
        let back = f.recovery.as_ref().and_then(|r| r.recovered_after_s);
        figures.push(fig(
            format!("{design}: requests failed"),
            f.failed_during_failover as f64,
            "requests",
        ));
        figures.push(fig(
            format!("{design}: sessions lost"),
            f.sessions_lost_after_kill as f64,
            "sessions",
        ));
        if let Some(back) = back {
            figures.push(fig(format!("{design}: back in band after"), back, "s"));
        }
        if design != Design::Stateful {
            lost += f.sessions_lost_after_kill;
            failed += f.failed_during_failover;
        }
    }
    let Some(i) = run else {
        return DISPOSABLE.not_measured("not measured: no kill run ran");
    };
    let (verdict, reason) = if lost > 0 {
        (
            Verdict::Wrong,
            format!("killing a stateless or externalized replica lost {lost} sessions"),
        )
    } else if failed == 0 {
        (
            Verdict::Holds,
            "no session lost and no request failed when a stateless or externalized replica was killed".into(),
        )
    } else {
        (
            Verdict::HoldsBut,
            format!(
                "no session was lost, but {failed} requests in flight or sent before the proxy took the dead replica out failed: a user saw them"
            ),
        )
    };
    DISPOSABLE.measured(figures, verdict, reason, run_id(i))
}

fn request_bytes(probes: &Probes) -> Claim {
    let of = |d: Design| probes.request_bytes.iter().find(|b| b.design == d);
    let (Some(stateful), Some(stateless)) = (of(Design::Stateful), of(Design::Stateless)) else {
        return BYTES.not_measured(missing(probes, "request_bytes"));
    };
    let mut figures = Vec::new();
    for b in &probes.request_bytes {
        figures.push(fig(
            format!("{}: empty cart", b.design),
            b.empty_cart as f64,
            "bytes",
        ));
        figures.push(fig(
            format!("{}: full cart", b.design),
            b.full_cart as f64,
            "bytes",
        ));
        if let Some(cpu) = b.cpu_us_per_request {
            figures.push(fig(
                format!("{}: replica CPU per request", b.design),
                cpu,
                "µs",
            ));
        }
    }
    let ratio = stateless.full_cart as f64 / stateful.full_cart.max(1) as f64;
    let (verdict, reason) = if ratio >= HEAVIER_FACTOR {
        (
            Verdict::Holds,
            format!(
                "at a full cart ({} lines) a stateless request carries {} bytes, {ratio:.1}× the {} of a stateful one (its session id and the proxy's affinity cookie)",
                super::probes::FULL_CART_LINES,
                stateless.full_cart,
                stateful.full_cart
            ),
        )
    } else if ratio > 1.0 {
        (
            Verdict::HoldsBut,
            format!("a stateless request is {ratio:.1}× a session id's: heavier, but by less than {HEAVIER_FACTOR:.0}×"),
        )
    } else {
        (
            Verdict::Wrong,
            format!(
                "a stateless request is no heavier ({} against {} bytes)",
                stateless.full_cart, stateful.full_cart
            ),
        )
    };
    BYTES.measured(figures, verdict, reason, "probe-bytes".into())
}

fn revocable(probes: &Probes) -> Claim {
    let of = |d: Design| probes.replays.iter().find(|r| r.design == d);
    let Some(stateless) = of(Design::Stateless) else {
        return REVOKE.not_measured(missing(probes, "replays"));
    };
    let mut figures = Vec::new();
    for r in &probes.replays {
        figures.push(fig(
            format!("{}: replays accepted after logout", r.design),
            f64::from(r.accepted),
            &format!("of {}", r.tries),
        ));
    }
    if let Some(left) = probes.token.as_ref().and_then(|t| t.lifetime_left_s) {
        figures.push(fig("a fresh token's lifetime left", left, "s"));
    }
    let expiry = probes.expiry.as_ref();
    if let Some(x) = expiry {
        if let Some(at) = x.refused_after_s {
            figures.push(fig(
                format!(
                    "short-lived token ({} s): refused after login",
                    x.lifetime_s
                ),
                at,
                "s",
            ));
        }
    }
    let others_refused = probes
        .replays
        .iter()
        .filter(|r| r.design != Design::Stateless)
        .all(|r| r.accepted == 0);
    let expired = expiry.is_some_and(|x| x.accepted_before_exp && x.refused_after_s.is_some());
    let (verdict, reason) = if stateless.accepted == stateless.tries && others_refused && expired {
        (
            Verdict::Holds,
            format!(
                "after logout the copied token still worked {} times out of {}, and stops only at its expiry; stateful and externalized refused every replay",
                stateless.accepted, stateless.tries
            ),
        )
    } else if stateless.accepted == stateless.tries {
        (
            Verdict::HoldsBut,
            "the copied token worked after logout; its expiry or the other designs' refusal was not shown in this run".into(),
        )
    } else {
        (
            Verdict::Wrong,
            format!(
                "the copied token worked {} times out of {} after logout",
                stateless.accepted, stateless.tries
            ),
        )
    };
    REVOKE.measured(figures, verdict, reason, "probe-revocation".into())
}

fn encrypted(probes: &Probes) -> Claim {
    let Some(t) = &probes.token else {
        return ENCRYPTED.not_measured(missing(probes, "token"));
    };
    let figures = vec![
        fig("token size", t.token_bytes as f64, "bytes"),
        fig(
            "username read without the key",
            f64::from(u8::from(t.username_readable)),
            "yes = 1",
        ),
        fig(
            "cart lines read without the key",
            t.cart_lines_readable as f64,
            &format!("of {}", t.cart_lines),
        ),
    ];
    let readable = t.username_readable || t.cart_lines_readable > 0;
    let (verdict, reason) = if readable {
        (
            Verdict::Wrong,
            "an HS256 JWT is signed, not encrypted: anyone holding it reads the username and the cart with a base64 decoder; the key only stops changes".to_owned(),
        )
    } else {
        (
            Verdict::Holds,
            "the claims did not show the username or the cart without the key".to_owned(),
        )
    };
    ENCRYPTED.measured(figures, verdict, reason, "probe-token".into())
}

/// The busiest replica's share, max/mean and coefficient of variation of `shares` (0..1 each).
fn spread_of(shares: &[f64]) -> (f64, f64, f64) {
    let max = shares.iter().copied().fold(0.0, f64::max);
    Balance::of_values(shares.iter().copied())
        .map_or((max, 0.0, 0.0), |b| (max, b.max_over_mean, b.cv))
}

/// A sticky strategy is imbalanced when its busiest replica carries this many times the mean.
pub const IMBALANCED_MAX_OVER_MEAN: f64 = 1.25;

fn imbalance(runs: &Runs<'_>, how: How) -> Claim {
    let names = how.skew_runs();
    let got: Vec<(usize, &RunReport, (f64, f64, f64))> = names
        .iter()
        .filter_map(|d| {
            let (i, r) = runs.get(d)?;
            // The shares in the whole seconds before the pool grew; a replica of the pool that
            // answered nothing in them is a zero.
            let mut shares: Vec<f64> = r.scaling.first()?.share_before.values().copied().collect();
            shares.resize(shares.len().max(usize::from(POOL_SIZE)), 0.0);
            Some((i, r, spread_of(&shares)))
        })
        .collect();
    if got.len() < names.len() {
        return IMBALANCE.not_measured(how.absent());
    }
    let mut figures = Vec::new();
    for (k, (_, r, (max, ratio, cv))) in got.iter().enumerate() {
        let name = r.strategy.map_or("?", |s| s.as_str());
        // The second run is ip-hash's: in Docker, from behind its NAT.
        let nat = if k == 1 && how.docker {
            " behind Docker's NAT"
        } else {
            ""
        };
        let who = format!("{}/{name}{nat}", r.service);
        figures.push(fig(
            format!("{who}: busiest replica"),
            max * 100.0,
            "% of requests",
        ));
        figures.push(fig(format!("{who}: max/mean"), *ratio, "×"));
        figures.push(fig(format!("{who}: coefficient of variation"), *cv, ""));
    }
    let users = got[0].1.users.unwrap_or(0);
    let (cookie, ip, rr) = (got[0].2 .1, got[1].2 .1, got[2].2 .1);
    let imbalanced = |x: f64| x >= IMBALANCED_MAX_OVER_MEAN && x > rr;
    let ip_words = if how.docker {
        format!(
            "{ip:.2}× under ip-hash, where Docker's NAT makes every host client one address ({:.0}% of requests on one replica)",
            got[1].2 .0 * 100.0
        )
    } else {
        format!("{ip:.2}× under ip-hash")
    };
    let (verdict, reason) = if imbalanced(cookie) || imbalanced(ip) {
        let both = imbalanced(cookie) && imbalanced(ip);
        (
            if both { Verdict::Holds } else { Verdict::HoldsBut },
            format!(
                "with {users} users whose think times follow a Zipf law, the busiest replica carried {cookie:.2}× the mean under cookie and {ip_words}, against {rr:.2}× under round-robin{}",
                if both { "" } else { "; only one sticky strategy crossed the threshold" }
            ),
        )
    } else {
        (
            Verdict::Wrong,
            format!("the sticky strategies stayed within {IMBALANCED_MAX_OVER_MEAN}× of the mean (cookie {cookie:.2}×, ip-hash {ip:.2}×)"),
        )
    };
    IMBALANCE.measured(figures, verdict, reason, run_id(got[0].0))
}

/// A capacity curve's first and last points, the efficiency X(N)/(N·X(1)), and the bottleneck
/// named at the last point.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub design: Design,
    pub first: (f64, f64),
    pub last: (f64, f64),
    pub efficiency: f64,
    pub bottleneck: Option<String>,
}

/// The curves of a capacity suite with at least two measured points.
pub fn curves(suite: &CapacitySuite) -> Vec<Curve> {
    suite
        .curves
        .iter()
        .filter_map(|c| {
            let m = c.report.measured();
            let (first, last) = (*m.first()?, *m.last()?);
            if last.0 <= first.0 {
                return None;
            }
            let (_, efficiency) = speedup_and_efficiency(first, last)?;
            let bottleneck = c
                .report
                .points
                .iter()
                .rev()
                .find_map(|p| p.best.as_ref())
                .map(|b| b.bottleneck.name.clone());
            Some(Curve {
                design: c.report.service,
                first,
                last,
                efficiency,
                bottleneck,
            })
        })
        .collect()
}

/// The designs of a capacity suite whose curve has fewer than two measured points: no replica
/// count, or only one, met the SLO, so there is no efficiency to give.
pub fn unmeasured_curves(suite: &CapacitySuite) -> Vec<Design> {
    suite
        .curves
        .iter()
        .filter(|c| c.report.measured().len() < 2)
        .map(|c| c.report.service)
        .collect()
}

/// Efficiency at or above this is scaling "by adding instances"; below it, another replica
/// bought little.
pub const SCALES_EFFICIENCY: f64 = 0.8;

fn scale_out(runs: &Runs<'_>, capacity: Option<&CapacitySuite>, how: How) -> Claim {
    let names = how.scale_runs();
    let got: Vec<(usize, &RunReport, &crate::scaling::ScaleReport)> = names
        .iter()
        .filter_map(|d| {
            let (i, r) = runs.get(d)?;
            Some((i, r, r.scaling.first()?))
        })
        .collect();
    if got.len() < names.len() {
        return SCALE.not_measured(how.absent());
    }
    let even_after = |dir: &str| {
        runs.get(dir)
            .and_then(|(_, r)| r.scaling.first()?.even_after_s)
    };
    let mut figures = Vec::new();
    let (mut stateless_lost, mut stateful_lost) = (0, 0);
    let mut stateless_even = true;
    for (_, r, sc) in &got {
        let who = format!("{}/{}", r.service, r.strategy.map_or("?", |s| s.as_str()));
        figures.push(fig(
            format!("{who}: sessions lost at 3 → 4"),
            sc.sessions_lost_in_window as f64,
            "sessions",
        ));
        match sc.even_after_s {
            Some(s) => figures.push(fig(format!("{who}: even load after"), s, "s")),
            None if r.service != Design::Stateful => stateless_even = false,
            None => {}
        }
        if r.service == Design::Stateful {
            stateful_lost += sc.sessions_lost_in_window;
        } else {
            stateless_lost += sc.sessions_lost_in_window;
        }
    }
    let curves = capacity.map(curves).unwrap_or_default();
    let unmeasured = capacity.map(unmeasured_curves).unwrap_or_default();
    for c in &curves {
        let d = c.design;
        figures.push(fig(
            format!("{d}: capacity at {}", c.first.0),
            c.first.1,
            "req/s",
        ));
        figures.push(fig(
            format!("{d}: capacity at {}", c.last.0),
            c.last.1,
            "req/s",
        ));
        figures.push(fig(
            format!("{d}: efficiency X(N)/(N·X(1))"),
            c.efficiency * 100.0,
            "%",
        ));
    }
    let slow_cookie = even_after(SCALE_RUNS[0])
        .is_none_or(|s| even_after(SCALE_RUNS[2]).is_some_and(|fast| s > fast));
    let stateless_clean = stateless_lost == 0 && stateless_even;
    let moves_cleanly = stateless_clean && (stateful_lost > 0 || slow_cookie);
    let capped: Vec<&Curve> = curves
        .iter()
        .filter(|c| c.efficiency < SCALES_EFFICIENCY)
        .collect();
    let mut capacity_words = match (curves.is_empty(), capped.first()) {
        (true, _) => "whether a replica adds capacity was not measured in this run".to_owned(),
        (false, None) => {
            "and every curve gained at least 80% of a replica's capacity per replica".to_owned()
        }
        (false, Some(c)) => {
            let held = c.bottleneck.as_deref().unwrap_or("an unnamed part");
            if c.last.1 < c.first.1 {
                format!(
                    "but {} served less at {} replicas than at {} ({:.0} against {:.0} req/s), held by {held}",
                    c.design, c.last.0, c.first.0, c.last.1, c.first.1
                )
            } else {
                format!(
                    "but {} kept {:.0}% of a replica's capacity per replica from {} to {}, held by {held}",
                    c.design,
                    c.efficiency * 100.0,
                    c.first.0,
                    c.last.0
                )
            }
        }
    };
    for d in &unmeasured {
        capacity_words.push_str(&format!(
            "; {d} met the SLO at fewer than two replica counts, so its efficiency was not measured"
        ));
    }
    let (verdict, reason) = if moves_cleanly {
        (
            if capped.is_empty() && !curves.is_empty() && unmeasured.is_empty() {
                Verdict::Holds
            } else {
                Verdict::HoldsBut
            },
            format!(
                "a fourth stateless or externalized replica took an even share and lost nothing, while stateful {}; {capacity_words}",
                if how.docker {
                    "under cookie waited for old sessions to end (ip-hash, which moves them, sees one client behind Docker's NAT)".to_owned()
                } else {
                    format!("lost {stateful_lost} sessions under ip-hash or waited for old sessions under cookie")
                }
            ),
        )
    } else if stateless_clean {
        (
            Verdict::Wrong,
            "stateful grew as cleanly as stateless: no session lost, and an even load as soon"
                .to_owned(),
        )
    } else {
        (
            Verdict::Wrong,
            format!("stateless and externalized lost {stateless_lost} sessions when the pool grew, or never evened out"),
        )
    };
    SCALE.measured(figures, verdict, reason, run_id(got[0].0))
}

fn files(runs: &Runs<'_>, how: How) -> Claim {
    let (Some((i, disk)), Some((_, store))) = (runs.get(FILE_RUNS[0]), runs.get(FILE_RUNS[1]))
    else {
        return FILES.not_measured(how.absent());
    };
    let (Some(d), Some(s)) = (disk.files.as_ref(), store.files.as_ref()) else {
        return FILES.not_measured("not measured: the file runs counted no avatar");
    };
    let share = |lost: u64, read: u64| {
        if read > 0 {
            lost as f64 / read as f64 * 100.0
        } else {
            0.0
        }
    };
    let figures = vec![
        fig(
            "stateful disk: reads not found",
            d.counts.lost as f64,
            &format!("of {}", d.counts.read),
        ),
        fig(
            "stateful disk: share not found",
            share(d.counts.lost, d.counts.read),
            "%",
        ),
        fig(
            "object store: reads not found",
            s.counts.lost as f64,
            &format!("of {}", s.counts.read),
        ),
    ];
    let (verdict, reason) = if d.counts.lost > 0 && s.counts.lost == 0 {
        (
            Verdict::Holds,
            format!(
                "{:.0}% of the reads of avatars kept on a stateful replica's disk found nothing (readers placed on another replica, and the killed one's files); the object store lost none",
                share(d.counts.lost, d.counts.read)
            ),
        )
    } else {
        (
            Verdict::Wrong,
            format!(
                "files lost: {} on the disks, {} in the object store",
                d.counts.lost, s.counts.lost
            ),
        )
    };
    FILES.measured(figures, verdict, reason, run_id(i))
}

fn sockets(runs: &Runs<'_>, how: How) -> Claim {
    let (Some((i, mem)), Some((_, broker))) = (runs.get(CHAT_RUNS[0]), runs.get(CHAT_RUNS[1]))
    else {
        return SOCKETS.not_measured(how.absent());
    };
    let (Some(m), Some(b)) = (mem.chat.as_ref(), broker.chat.as_ref()) else {
        return SOCKETS.not_measured("not measured: the chat runs reported no chat");
    };
    let figures = vec![
        fig("rooms in memory: delivered", m.delivery * 100.0, "%"),
        fig(
            "rooms in memory: sockets lost",
            m.sockets_lost as f64,
            &format!("of {}", m.sockets_opened),
        ),
        fig("Redis broker: delivered", b.delivery * 100.0, "%"),
        fig(
            "Redis broker: sockets lost",
            b.sockets_lost as f64,
            &format!("of {}", b.sockets_opened),
        ),
    ];
    let (verdict, reason) = if b.sockets_lost > 0 && m.sockets_lost > 0 && b.delivery > m.delivery {
        (
            Verdict::HoldsBut,
            format!(
                "a killed replica dropped its open sockets in both designs ({} and {}): the connection is state no design moves; but with the room in a Redis broker {:.1}% of messages arrived, against {:.1}% with rooms in memory",
                m.sockets_lost, b.sockets_lost, b.delivery * 100.0, m.delivery * 100.0
            ),
        )
    } else {
        (
            Verdict::Loose,
            format!(
                "sockets lost to the kill: {} with rooms in memory, {} with the broker; delivered {:.1}% against {:.1}%",
                m.sockets_lost, b.sockets_lost, m.delivery * 100.0, b.delivery * 100.0
            ),
        )
    };
    SOCKETS.measured(figures, verdict, reason, run_id(i))
}

/// Why the Docker lab has no store runs.
pub const STORE_RUNS_NATIVE: &str = "not measured: the store runs are native only (each topology in a lab of its own on free ports); the evidence without --docker makes them";

fn replicated(runs: &Runs<'_>, how: How) -> Claim {
    let (Some((i, asynch)), Some((_, wait))) = (runs.get(STORE_RUNS[0]), runs.get(STORE_RUNS[1]))
    else {
        return REPLICATED.not_measured(if how.docker && !how.quick {
            STORE_RUNS_NATIVE.to_owned()
        } else {
            how.absent()
        });
    };
    let lost = |r: &RunReport| {
        let f = r.failover.as_ref();
        (
            f.and_then(|f| f.acknowledged_adds_lost).unwrap_or(0),
            f.and_then(|f| f.acknowledged_logins_lost).unwrap_or(0),
            r.failed_requests,
        )
    };
    let (a, w) = (lost(asynch), lost(wait));
    let figures = vec![
        fig(
            "Sentinel, asynchronous: acknowledged adds lost",
            a.0 as f64,
            "adds",
        ),
        fig(
            "Sentinel, asynchronous: acknowledged logins lost",
            a.1 as f64,
            "logins",
        ),
        fig(
            "Sentinel, asynchronous: requests failed",
            a.2 as f64,
            "requests",
        ),
        fig(
            "Sentinel, WAIT 1: acknowledged adds lost",
            w.0 as f64,
            "adds",
        ),
        fig(
            "Sentinel, WAIT 1: acknowledged logins lost",
            w.1 as f64,
            "logins",
        ),
        fig("Sentinel, WAIT 1: requests failed", w.2 as f64, "requests"),
    ];
    let lost = a.0 + a.1 + w.0 + w.1;
    let (verdict, reason) = if lost > 0 {
        (
            Verdict::Wrong,
            format!(
                "killing the primary lost {lost} acknowledged writes ({} asynchronous, {} with WAIT 1)",
                a.0 + a.1,
                w.0 + w.1
            ),
        )
    } else {
        (
            Verdict::HoldsBut,
            "killing the primary lost no acknowledged write here: a killed process has already sent what it wrote to its replicas; a network partition, which this run does not make, is what loses them".to_owned(),
        )
    };
    REPLICATED.measured(figures, verdict, reason, run_id(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_reads_the_nat_run_and_scales_without_ip_hash() {
        let docker = How {
            quick: false,
            docker: true,
        };
        assert_eq!(docker.skew_runs()[1], NAT_SKEW_RUN);
        assert_eq!(
            docker.scale_runs(),
            [SCALE_RUNS[0], SCALE_RUNS[2], SCALE_RUNS[3]]
        );
        let native = How::default();
        assert_eq!(native.skew_runs(), SKEW_RUNS);
        assert_eq!(native.scale_runs(), SCALE_RUNS);
    }

    #[test]
    fn a_claim_without_its_runs_says_why_and_carries_no_figure() {
        let runs = Runs {
            dirs: &[],
            reports: &[],
        };
        let reason = |how: How, id: &str| {
            let claims = judge(&Probes::default(), &runs, None, how);
            assert!(claims
                .iter()
                .all(|c| c.verdict == Verdict::NotMeasured && c.figures.is_empty()));
            claims
                .into_iter()
                .find(|c| c.id == id)
                .map(|c| c.reason)
                .unwrap_or_default()
        };
        let docker = How {
            quick: false,
            docker: true,
        };
        assert_eq!(
            reason(docker, "replicated-store-loses-nothing"),
            STORE_RUNS_NATIVE
        );
        assert!(reason(docker, "scale-out").contains("interrupted"));
        let quick = How {
            quick: true,
            docker: true,
        };
        assert_eq!(reason(quick, "replicated-store-loses-nothing"), SHORT_MODE);
        assert_eq!(reason(quick, "sticky-imbalance"), SHORT_MODE);
    }
}
