//! What the soak saw, as one value: the summary it prints and the promises it is held to (the
//! failover windows that excuse a failure, the counts, the trickled headers, the idle
//! connections, the restarted replicas and the proxy's memory bounds).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::Method;

use crate::bad::{Bad, BadMiss, BAD_CLIENTS, BAD_ROUNDS};
use crate::faults::Fault;
use crate::good::{Good, SHOPPERS_PER_POOL, SHOPPER_REQUESTS};
use crate::idle::IDLE_CONNECTIONS;
use crate::lab::Pool;
use crate::memory::{AFTER_GROWTH_LIMIT_KB, PEAK_GROWTH_LIMIT_KB};

/// What the soak saw.
pub struct Soak {
    pub begin: Instant,
    pub good: Vec<Good>,
    pub bad_sent: BTreeMap<Bad, usize>,
    pub bad_misses: Vec<BadMiss>,
    pub trickled: Vec<Result<Duration, String>>,
    pub faults: Vec<Fault>,
    pub idle_failures: Vec<String>,
    pub soak_time: Duration,
    pub peak_kb: u64,
    pub open_at_end: Option<u64>,
}

impl Soak {
    /// Whether a request to `pool` overlapped the failover window of a replica of that pool.
    fn in_window(&self, pool: Pool, sent: Instant, done: Instant) -> bool {
        self.faults.iter().any(|f| {
            Pool::of_replica(f.replica) == pool && sent <= f.window_end && done >= f.killed
        })
    }

    /// A bad request may miss its answer only as a good one may fail: the proxy's `502` inside
    /// a failover window of its pool (a POST in flight on the replica that died).
    fn excused(&self, m: &BadMiss) -> bool {
        m.wrong.bad_gateway && self.in_window(m.pool, m.sent, m.done)
    }

    pub fn summary(&self, before: u64, after: u64, up_time: Duration, window: Duration) -> String {
        let mut s = String::from("soak summary\n");
        let mut requests = 0;
        for pool in Pool::ALL {
            let mine: Vec<&Good> = self.good.iter().filter(|g| g.pool == pool).collect();
            let failed: Vec<&&Good> = mine.iter().filter(|g| g.failure.is_some()).collect();
            let in_window = failed
                .iter()
                .filter(|g| self.in_window(g.pool, g.sent, g.done))
                .count();
            requests += mine.len();
            s += &format!(
                "  good {:<13} {:>5} requests, {} failed ({} inside a failover window)\n",
                pool.name(),
                mine.len(),
                failed.len(),
                in_window
            );
            for g in failed {
                s += &format!("    {}\n", self.line(g));
            }
        }
        for (kind, n) in &self.bad_sent {
            let missed: Vec<&BadMiss> =
                self.bad_misses.iter().filter(|m| m.kind == *kind).collect();
            let excused = missed.iter().filter(|m| self.excused(m)).count();
            requests += n;
            s += &format!(
                "  bad  {:<17} {:>4} requests, {} wrong ({} a 502 inside a failover window)\n",
                format!("{kind:?}"),
                n,
                missed.len(),
                excused
            );
            for m in missed {
                s += &format!(
                    "    on {}, {:.3} s after the soak began: {}\n",
                    m.pool.name(),
                    (m.sent - self.begin).as_secs_f64(),
                    m.wrong.text
                );
            }
        }
        requests += 2 * IDLE_CONNECTIONS + self.trickled.len();
        s += &format!(
            "  idle keep-alive connections: {IDLE_CONNECTIONS}, {} failed at the end\n",
            self.idle_failures.len()
        );
        for t in &self.trickled {
            s += &format!("  trickled header: {t:?}\n");
        }
        for f in &self.faults {
            s += &format!(
                "  {} killed, failover window {window:?}, routed again {:.1} s after the kill\n",
                f.replica,
                (f.started - f.killed).as_secs_f64()
            );
        }
        s += &format!(
            "  {requests} requests in {:.1} s (the lab came up in {:.1} s); {} client connections open at the end\n",
            self.soak_time.as_secs_f64(),
            up_time.as_secs_f64(),
            self.open_at_end
                .map_or("unknown".to_string(), |n| n.to_string())
        );
        s += &format!(
            "  proxy memory: before {:.1} MB, peak {:.1} MB (VmHWM), after {:.1} MB (VmRSS)",
            before as f64 / 1024.0,
            self.peak_kb as f64 / 1024.0,
            after as f64 / 1024.0
        );
        s
    }

    pub fn assert_kept_promises(&self, summary: &str, window: Duration, before: u64, after: u64) {
        let planned = Pool::ALL.len() * SHOPPERS_PER_POOL * SHOPPER_REQUESTS;
        assert_eq!(self.good.len(), planned, "{summary}");
        // No stateful replica was killed: none of its requests may fail.
        let outside: Vec<String> = self
            .good
            .iter()
            .filter(|g| g.failure.is_some() && !self.in_window(g.pool, g.sent, g.done))
            .map(|g| self.line(g))
            .collect();
        assert!(
            outside.is_empty(),
            "good requests failed outside a failover window ({window:?}):\n{}\n{summary}",
            outside.join("\n")
        );
        // Inside: only a request the replica had taken as it died, and that the proxy does not
        // replay, may fail, and only with the proxy's documented 502.
        let wrong_inside: Vec<String> = self
            .good
            .iter()
            .filter(|g| {
                g.failure
                    .as_ref()
                    .is_some_and(|f| !f.bad_gateway || g.method == Method::GET)
            })
            .map(|g| self.line(g))
            .collect();
        assert!(
            wrong_inside.is_empty(),
            "good requests failed other than a POST's 502 bad_gateway:\n{}\n{summary}",
            wrong_inside.join("\n")
        );
        let bad_failures: Vec<&BadMiss> = self
            .bad_misses
            .iter()
            .filter(|m| !self.excused(m))
            .collect();
        assert!(
            bad_failures.is_empty(),
            "bad requests without their documented answer:\n{bad_failures:#?}\n{summary}"
        );
        assert_eq!(
            self.bad_sent.values().sum::<usize>(),
            (0..BAD_CLIENTS)
                .flat_map(|id| (0..BAD_ROUNDS).map(move |r| Bad::ALL[(r + id) % Bad::ALL.len()]))
                .map(Bad::requests)
                .sum::<usize>(),
            "{summary}"
        );
        for t in &self.trickled {
            assert!(t.is_ok(), "a trickled header: {t:?}\n{summary}");
        }
        assert!(
            self.idle_failures.is_empty(),
            "{:#?}\n{summary}",
            self.idle_failures
        );
        // Each killed replica was routed to again and served good requests after its start.
        for f in &self.faults {
            let served = self
                .good
                .iter()
                .any(|g| g.sent > f.started && g.replica.as_deref() == Some(f.replica));
            assert!(
                served,
                "{} served nothing after its start\n{summary}",
                f.replica
            );
        }
        assert!(
            self.peak_kb <= before + PEAK_GROWTH_LIMIT_KB,
            "the proxy's peak exceeds its bound ({} MB over before)\n{summary}",
            PEAK_GROWTH_LIMIT_KB / 1024
        );
        assert!(
            after <= before + AFTER_GROWTH_LIMIT_KB,
            "the proxy kept more than {} MB once the connections closed\n{summary}",
            AFTER_GROWTH_LIMIT_KB / 1024
        );
    }

    fn line(&self, g: &Good) -> String {
        format!(
            "{} {} {} ({}, {:.3} s after the soak began): {}",
            g.method,
            g.pool.name(),
            g.what,
            if self.in_window(g.pool, g.sent, g.done) {
                "inside a failover window"
            } else {
                "outside every failover window"
            },
            (g.sent - self.begin).as_secs_f64(),
            g.failure.as_ref().map_or("", |f| f.text.as_str())
        )
    }
}
