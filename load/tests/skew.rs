//! Heavy users and a crowded source address against the real native lab: ip-hash sends the
//! crowded address's users to one replica, round-robin spreads the same skewed load evenly; the
//! heaviest users' latency is reported apart.

mod support;

use statelab_load::report::RunReport;
use statelab_test_support::{NativeLab, TempDir};
use support::run_load;

fn skewed_run(lab: &NativeLab, tmp: &TempDir, service: &str, name: &str) -> (RunReport, String) {
    run_load(
        lab,
        service,
        &tmp.join(name),
        &[
            "--model",
            "closed",
            "--users",
            "40",
            "--skew",
            "zipf:1.1",
            "--sources-skew",
            "zipf:1",
            "--think-ms",
            "20",
            "--duration",
            "5",
        ],
    )
}

#[test]
fn ip_hash_piles_a_crowded_address_on_one_replica_and_round_robin_does_not() {
    let tmp = TempDir::new("load-skew");
    let lab = NativeLab::up("load-skew-lab");
    lab.ok(&["strategy", "stateful", "ip-hash"]);
    let (hashed, text) = skewed_run(&lab, &tmp, "stateful", "hashed");
    let b = hashed.balance.expect("a balance");
    // The first of eight addresses carries 15 of the 40 users, the two heaviest among them.
    assert!(b.max_over_mean > 1.5, "{text}");
    // Its live sessions pile up there too.
    let live = hashed.session_balance.expect("live sessions counted");
    assert!(live.max_over_mean > 1.3, "{text}");
    assert_eq!(hashed.skew.as_deref(), Some("zipf:1.1"));
    let heavy = hashed.heavy.expect("the heaviest users' figures");
    assert_eq!(heavy.users, 2);
    // Two users of forty sent over a fifth of the requests: they think least.
    assert!(heavy.requests * 5 > hashed.requests, "{text}");

    let (spread, text) = skewed_run(&lab, &tmp, "stateless", "spread");
    let b = spread.balance.expect("a balance");
    assert!(b.max_over_mean < 1.1, "{text}");
    assert_eq!(spread.session_losses, 0, "{text}");
}
