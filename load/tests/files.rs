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
    let files = sticky.files.expect("file counts with --avatar").counts;
    assert!(files.stored >= 20, "{text}");
    assert!(files.read >= 20, "{text}");
    // Round-robin places the visitor: another replica's disk two times in three.
    assert!(files.lost * 3 > files.read, "{text}");
    assert_eq!(files.unavailable, 0, "{text}");
    // The shoppers' own sessions were fine: the files were lost, not the sessions.
    assert_eq!(sticky.session_losses, 0, "{text}");

    let (hashed, text) = avatar_run(&lab, &tmp, "ip-hash");
    let files = hashed.files.expect("file counts with --avatar").counts;
    assert!(files.stored >= 20 && files.read >= 20, "{text}");
    assert_eq!(files.lost, 0, "{text}");
}

/// The stateful pool shrunk under address affinity: the removed replica's disk goes with it, so
/// the read-back after the run finds the files it held lost, and only those.
#[test]
fn a_scale_in_takes_the_removed_replicas_files_and_the_object_store_keeps_its_own() {
    let tmp = TempDir::new("load-files-scale");
    let lab = NativeLab::up("load-files-scale-lab");
    lab.ok(&["strategy", "stateful", "ip-hash"]);
    let (shrunk, text) = run_load(
        &lab,
        "stateful",
        &tmp.join("shrink"),
        &[
            "--avatar",
            "--strategy",
            "ip-hash",
            "--rate",
            "10",
            "--adds",
            "1",
            "--think-ms",
            "20",
            "--sources",
            "50",
            "--duration",
            "6",
            "--scale",
            "stateful=2@3:now",
        ],
    );
    let files = shrunk.files.expect("file counts with --avatar");
    let after = files.after_run.expect("the read-back after the run");
    assert_eq!(after.asked, files.counts.stored, "{text}");
    assert!(after.lost > 0, "stateful-3's files went with it:\n{text}");
    assert!(after.lost * 2 < after.asked, "only stateful-3's:\n{text}");
    assert!(
        !lab.dir().join("data/stateful-3").exists(),
        "the removed replica's disk is gone"
    );

    // The object store killed and started again: uploads and reads refused in between, nothing
    // lost, and the sessions never noticed.
    let (away, text) = run_load(
        &lab,
        "externalized",
        &tmp.join("s3-down"),
        &[
            "--avatar",
            "--rate",
            "10",
            "--adds",
            "1",
            "--think-ms",
            "20",
            "--duration",
            "6",
            "--kill",
            "s3@2",
            "--restart",
            "@4",
        ],
    );
    let files = away.files.expect("file counts with --avatar");
    assert!(files.counts.unavailable > 0, "{text}");
    let [from, to] = files.unavailable_seconds.expect("a window of refusals");
    assert!(
        from >= 2 && to <= 4,
        "refused in seconds {from}-{to}:\n{text}"
    );
    assert_eq!(files.counts.lost, 0, "{text}");
    assert_eq!(files.after_run.map(|a| a.lost), Some(0), "{text}");
    assert_eq!(away.session_losses, 0, "{text}");
}
