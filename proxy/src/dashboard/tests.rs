use crate::pool::ReplicaState;

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
