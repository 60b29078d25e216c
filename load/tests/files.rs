//! Avatars against the real native lab: on the stateful design the file lives on one replica's
//! disk. Another visitor reading it by name has no affinity cookie, so under `cookie` the proxy
//! places it afresh, mostly on another replica, which finds nothing; under `ip-hash` the visitor
//! (from the shopper's address) lands where the file is.

mod support;

use statelab_load::report::RunReport;
use statelab_test_support::{NativeLab, TempDir};
use support::run_load;

fn avatar_run(lab: &NativeLab, tmp: &TempDir, strategy: &str) -> (RunReport, String) {
    lab.ok(&["strategy", "stateful", strategy]);
    run_load(
        lab,
        "stateful",
        &tmp.join(strategy),
        &[
            "--avatar",
            "--strategy",
            strategy,
            "--rate",
            "10",
            "--adds",
            "1",
            "--think-ms",
            "20",
            "--duration",
            "4",
        ],
    )
}

#[test]
fn stateful_avatars_are_not_found_by_visitors_placed_on_another_replica() {
    let tmp = TempDir::new("load-files");
    let lab = NativeLab::up("load-files-lab");
    let (sticky, text) = avatar_run(&lab, &tmp, "cookie");
    let files = sticky.files.expect("file counts with --avatar");
    assert!(files.stored >= 20, "{text}");
    assert!(files.read >= 20, "{text}");
    // Round-robin places the visitor: another replica's disk two times in three.
    assert!(files.lost * 3 > files.read, "{text}");
    assert_eq!(files.unavailable, 0, "{text}");
    // The shoppers' own sessions were fine: the files were lost, not the sessions.
    assert_eq!(sticky.session_losses, 0, "{text}");

    let (hashed, text) = avatar_run(&lab, &tmp, "ip-hash");
    let files = hashed.files.expect("file counts with --avatar");
    assert!(files.stored >= 20 && files.read >= 20, "{text}");
    assert_eq!(files.lost, 0, "{text}");
}
