use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pool::{Pools, ReplicaState};
use crate::strategy::{BalanceFactor, Strategy};

use super::sampler::*;
use super::*;

#[test]
fn statuses_fall_in_their_classes_by_origin() {
    assert_eq!(class_of("200", "replica"), 0);
    assert_eq!(class_of("204", "replica"), 0);
    assert_eq!(class_of("401", "replica"), 1);
    assert_eq!(class_of("404", "replica"), 2);
    assert_eq!(class_of("503", "replica"), 3);
    assert_eq!(class_of("502", "proxy"), 4);
    assert_eq!(class_of("503", "proxy"), 5);
    assert_eq!(class_of("504", "proxy"), 6);
    assert_eq!(class_of("404", "proxy"), 7);
    assert_eq!(class_of("000", "proxy"), 7);
    assert_eq!(class_of("garbage", "replica"), 7);
}

#[test]
fn quantiles_interpolate_within_buckets() {
    let bounds = [0.001, 0.002, 0.005];
    // 100 observations: 50 under 1 ms, 49 in (1, 2] ms, 1 past 5 ms.
    assert_eq!(quantile_ms(&bounds, &[50, 99, 99], 100, 0.5), Some(1.0));
    let p99 = quantile_ms(&bounds, &[50, 99, 99], 100, 0.99).expect("some");
    assert!((p99 - 2.0).abs() < 0.01, "{p99}");
    assert_eq!(quantile_ms(&bounds, &[0, 0, 0], 4, 0.5), Some(5.0));
    assert_eq!(quantile_ms(&bounds, &[0, 0, 0], 0, 0.5), None);
}

#[test]
fn episodes_begin_at_the_threshold_and_end_after_quiet_ticks() {
    let mut e = Episode::default();
    assert_eq!(e.step(2.0, 2.0, 5.0, 5.0, 0), None);
    assert_eq!(e.step(9.0, 9.0, 5.0, 5.0, 1000), Some(Edge::Began));
    assert_eq!(e.step(4.0, 4.0, 5.0, 5.0, 2000), None);
    assert_eq!(e.step(8.0, 8.0, 5.0, 5.0, 3000), None);
    assert_eq!(e.step(0.0, 0.0, 5.0, 5.0, 4000), None);
    assert_eq!(e.step(0.0, 0.0, 5.0, 5.0, 5000), None);
    assert_eq!(
        e.step(0.0, 0.0, 5.0, 5.0, 6000),
        Some(Edge::Ended {
            total: 21.0,
            secs: 5
        })
    );
}

#[test]
fn the_query_is_since_and_after_only() {
    assert_eq!(Since::parse(None), Ok(Since::default()));
    assert_eq!(
        Since::parse(Some("since=17&after=3")),
        Ok(Since {
            since_ms: 17,
            after_seq: 3
        })
    );
    assert!(Since::parse(Some("since=x")).is_err());
    assert!(Since::parse(Some("limit=1")).is_err());
}

#[test]
fn state_changes_are_told_with_their_reason() {
    use ReplicaState::*;
    let down = state_event("s-1", Up, Down, Some("health check: connect: refused"));
    assert_eq!(
        down,
        Some((
            "down",
            "s-1 marked down: health check: connect: refused".to_string()
        ))
    );
    assert_eq!(state_event("s-1", Up, Draining, None), None);
    assert_eq!(state_event("s-1", Up, Up, None), None);
    assert!(matches!(
        state_event("s-1", Joining, Up, None),
        Some(("joined", _))
    ));
    assert!(matches!(
        state_event("s-1", Down, Up, None),
        Some(("up", _))
    ));
}

#[test]
fn the_page_and_its_files_are_served_with_their_types() {
    assert!(
        asset("/").is_some_and(|(t, b)| t.starts_with("text/html") && b.contains("dashboard.js"))
    );
    assert!(asset("/dashboard.js").is_some());
    assert!(asset("/dashboard.css").is_some());
    assert!(asset("/admin/status").is_none());
}

fn report(cpu_ms: u64, uptime_ms: u64, budget_millis: Option<u32>) -> statelab_formats::Reported {
    statelab_formats::Reported {
        cpu_ms: Some(cpu_ms),
        uptime_ms: Some(uptime_ms),
        cpu_budget_millis: budget_millis,
        ..Default::default()
    }
}

#[test]
fn two_reports_give_the_cores_used_between_them() {
    let first = Cpu::default().next(Some(&report(1_000, 10_000, Some(200))));
    assert_eq!(first.cores, None, "one report is only a mark");
    // 190 ms of CPU in 1000 ms: 0.19 of a core.
    let second = first.next(Some(&report(1_190, 11_000, Some(200))));
    assert_eq!(second.cores, Some(0.19));
    // Two cores busy for half a second.
    let third = second.next(Some(&report(2_190, 11_500, Some(200))));
    assert_eq!(third.cores, Some(2.0));
}

#[test]
fn an_unchanged_report_keeps_the_last_figure() {
    let cpu = Cpu::default()
        .next(Some(&report(0, 1_000, None)))
        .next(Some(&report(500, 2_000, None)));
    assert_eq!(cpu.cores, Some(0.5));
    let again = cpu.next(Some(&report(500, 2_000, None)));
    assert_eq!(again, cpu);
    // The next new report is measured from the same mark.
    assert_eq!(
        again.next(Some(&report(750, 3_000, None))).cores,
        Some(0.25)
    );
}

#[test]
fn a_restart_resets_the_mark_and_reports_nothing_until_the_next_pair() {
    let cpu = Cpu::default()
        .next(Some(&report(5_000, 60_000, None)))
        .next(Some(&report(5_300, 61_000, None)));
    assert_eq!(cpu.cores, Some(0.3));
    // A new process: its uptime is back near zero.
    let restarted = cpu.next(Some(&report(40, 200, None)));
    assert_eq!(restarted.cores, None);
    assert_eq!(
        restarted.next(Some(&report(140, 1_200, None))).cores,
        Some(0.1),
        "measured from the new process's first report"
    );
}

#[test]
fn a_replica_without_the_figures_has_no_cpu_figure() {
    let cpu = Cpu::default()
        .next(Some(&report(0, 1_000, None)))
        .next(Some(&report(100, 2_000, None)));
    assert_eq!(cpu.cores, Some(0.1));
    // A failed check reports nothing: no figure, and the next report is measured from the mark.
    let failed = cpu.next(None);
    assert_eq!(failed.cores, None);
    assert_eq!(
        failed.next(Some(&report(400, 4_000, None))).cores,
        Some(0.15)
    );
    // A replica that is not a statelab service never has one.
    let foreign = statelab_formats::Reported::default();
    assert_eq!(
        Cpu::default()
            .next(Some(&foreign))
            .next(Some(&foreign))
            .cores,
        None
    );
}

#[test]
fn the_budget_is_in_cores_and_absent_when_unbounded() {
    assert_eq!(cpu_budget(Some(&report(0, 0, Some(200)))), Some(0.2));
    assert_eq!(cpu_budget(Some(&report(0, 0, Some(1_500)))), Some(1.5));
    assert_eq!(cpu_budget(Some(&report(0, 0, None))), None);
    assert_eq!(cpu_budget(None), None);
}

#[test]
fn the_sampler_puts_each_replicas_cpu_and_budget_in_its_columns() {
    let config = Config::from_toml_str("").expect("the default config");
    let metrics = Metrics::new();
    let pools = Pools::new(&config, &metrics);
    let members = pools.pools[0].members();
    let (bounded, unbounded) = (&members.replicas[0], &members.replicas[1]);
    let history = History::new();
    let mut sampler = Sampler::new(Arc::clone(&pools), metrics);

    bounded.set_reported(Some(report(1_000, 10_000, Some(200))));
    unbounded.set_reported(Some(report(3_000, 20_000, None)));
    sampler.tick(&history);
    bounded.set_reported(Some(report(1_190, 11_000, Some(200))));
    unbounded.set_reported(Some(report(3_350, 21_000, None)));
    sampler.tick(&history);

    let json: serde_json::Value =
        serde_json::from_slice(&history.render(&pools, &Since::default())).expect("JSON");
    let replica = |name: &str| {
        json["pools"][0]["replicas"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {json}"))
    };
    let b = replica(&bounded.name);
    assert_eq!(b["series"]["cpu_cores"], serde_json::json!([null, 0.19]));
    assert_eq!(b["series"]["cpu_budget"], serde_json::json!([0.2, 0.2]));
    let u = replica(&unbounded.name);
    assert_eq!(u["series"]["cpu_cores"], serde_json::json!([null, 0.35]));
    assert_eq!(u["series"]["cpu_budget"], serde_json::json!([null, null]));
}

#[test]
fn the_json_carries_each_pools_balance_factor_and_its_moves() {
    let config = Config::from_toml_str("").expect("the default config");
    let metrics = Metrics::new();
    let pools = Pools::new(&config, &metrics);
    let stateful = pools.pool_by_name("stateful").expect("the stateful pool");
    let stateless = pools.pool_by_name("stateless").expect("the stateless pool");
    assert_eq!(stateful.strategy(), Strategy::Cookie);
    assert_eq!(stateless.strategy(), Strategy::RoundRobin);
    let history = History::new();
    let mut sampler = Sampler::new(Arc::clone(&pools), metrics);
    let json = |after: u64| -> serde_json::Value {
        let since = Since {
            since_ms: 0,
            after_seq: after,
        };
        serde_json::from_slice(&history.render(&pools, &since)).expect("JSON")
    };
    let pool = |json: &serde_json::Value, name: &str| {
        json["pools"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {json}"))
    };

    // A factor already set at the first tick is the starting point, not a change.
    stateless.set_balance_factor(BalanceFactor::new(150).ok());
    sampler.tick(&history);
    let first = json(0);
    assert_eq!(
        first["balance_factor_range"],
        serde_json::json!([100, 1000])
    );
    assert_eq!(first["events"], serde_json::json!([]), "{first}");
    let p = pool(&first, "stateful");
    assert_eq!(p["balance_factor"], serde_json::Value::Null);
    assert_eq!(p["bounded_moves"], 0);
    assert_eq!(
        p["balance_strategies"],
        serde_json::json!(["cookie", "ip-hash"])
    );
    // Kept while the strategy is one it does not bound.
    assert_eq!(pool(&first, "stateless")["balance_factor"], 150);

    stateful.set_balance_factor(BalanceFactor::new(125).ok());
    stateful.count_bounded_move();
    stateful.count_bounded_move();
    sampler.tick(&history);
    let on = json(0);
    assert_eq!(pool(&on, "stateful")["balance_factor"], 125);
    assert_eq!(pool(&on, "stateful")["bounded_moves"], 2);
    assert_eq!(
        on["events"],
        serde_json::json!([{
            "seq": 1,
            "t_ms": on["events"][0]["t_ms"],
            "kind": "balance-factor",
            "pool": "stateful",
            "text": "pool stateful: balance factor off → 125",
        }])
    );

    stateful.set_balance_factor(None);
    sampler.tick(&history);
    let off = json(1);
    assert_eq!(
        pool(&off, "stateful")["balance_factor"],
        serde_json::Value::Null
    );
    assert_eq!(
        pool(&off, "stateful")["bounded_moves"],
        2,
        "moves stay counted"
    );
    let events = off["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "{off}");
    assert_eq!(events[0]["kind"], "balance-factor");
    assert_eq!(events[0]["text"], "pool stateful: balance factor 125 → off");

    // Switching the round-robin pool to ip-hash makes its factor apply: one strategy line.
    stateless.set_strategy(Strategy::IpHash);
    sampler.tick(&history);
    let switched = json(2);
    let events = switched["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "{switched}");
    assert_eq!(events[0]["kind"], "strategy");
    assert_eq!(
        events[0]["text"],
        "pool stateless: strategy round-robin → ip-hash; balance factor 150 applies"
    );
}

#[test]
fn the_timeline_says_when_a_factor_applies() {
    let f = BalanceFactor::new(125).ok();
    assert_eq!(
        balance_factor_text("p", None, f, Strategy::IpHash),
        "pool p: balance factor off → 125"
    );
    assert_eq!(
        balance_factor_text("p", f, BalanceFactor::new(200).ok(), Strategy::Cookie),
        "pool p: balance factor 125 → 200"
    );
    assert_eq!(
        balance_factor_text("p", None, f, Strategy::LeastRequests),
        "pool p: balance factor off → 125 (no effect on least-requests: it bounds cookie and \
         ip-hash only)"
    );
    assert_eq!(
        balance_factor_text("p", f, None, Strategy::RoundRobin),
        "pool p: balance factor 125 → off"
    );
    assert_eq!(
        strategy_text("p", Strategy::RoundRobin, Strategy::IpModulo, f),
        "pool p: strategy round-robin → ip-modulo"
    );
    assert_eq!(
        strategy_text("p", Strategy::IpHash, Strategy::Cookie, f),
        "pool p: strategy ip-hash → cookie"
    );
    assert_eq!(
        strategy_text("p", Strategy::Cookie, Strategy::RoundRobin, f),
        "pool p: strategy cookie → round-robin; balance factor 125 no longer applies (it bounds \
         cookie and ip-hash only)"
    );
    assert_eq!(
        strategy_text("p", Strategy::RoundRobin, Strategy::IpHash, None),
        "pool p: strategy round-robin → ip-hash"
    );
}

#[test]
fn the_timeline_says_when_a_name_stops_and_starts_resolving() {
    let config = Config::from_toml_str(
        "[[pool]]\nname = \"stateless\"\ndiscover = \"tasks.stateless:8000\"\n",
    )
    .expect("a discovering pool");
    let metrics = Metrics::new();
    let pools = Pools::new(&config, &metrics);
    let found = pools
        .pool_by_name("stateless")
        .and_then(|p| p.discovery())
        .expect("the pool follows a name");
    let history = History::new();
    let mut sampler = Sampler::new(Arc::clone(&pools), metrics);
    let events = |after: u64| -> Vec<serde_json::Value> {
        let since = Since {
            since_ms: 0,
            after_seq: after,
        };
        let json: serde_json::Value =
            serde_json::from_slice(&history.render(&pools, &since)).expect("JSON");
        json["events"].as_array().cloned().unwrap_or_default()
    };
    sampler.tick(&history);
    assert!(events(0).is_empty());

    found.update(|v| v.error = Some("no such host".into()));
    sampler.tick(&history);
    sampler.tick(&history);
    let failed = events(0);
    assert_eq!(failed.len(), 1, "once per change: {failed:?}");
    assert_eq!(failed[0]["kind"], "discovery");
    assert_eq!(
        failed[0]["text"],
        "tasks.stateless:8000 did not resolve (no such host): pool stateless keeps its 0 replicas"
    );

    found.update(|v| {
        v.error = None;
        v.addresses = vec!["10.0.0.7:8000".into()];
    });
    sampler.tick(&history);
    let back = events(1);
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(
        back[0]["text"],
        "tasks.stateless:8000 resolves again: 1 address(es)"
    );
}
