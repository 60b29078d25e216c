//! The tally: every check prints `PASS name` or `FAIL name: detail` as it is made, and the end
//! of the run prints `docker e2e: N passed, M failed` and fails the test if any check failed or
//! none was made. A later check still runs after an earlier one failed, so a run shows every
//! check, not just the first failure.
//!
//! The lines go straight to the process's standard error, past the test harness's capture: a
//! passing run shows them too, as they happen.

use std::cell::Cell;
use std::fmt::Display;
use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

/// A failure the rest of the scenario depends on: the scenario stops there (its cleanup and the
/// tally still run).
#[derive(Debug)]
pub struct Stop;

/// What a phase that can stop the scenario returns.
pub type Step<T = ()> = Result<T, Stop>;

/// The checks made so far, and the clock of the run.
#[derive(Debug)]
pub struct Checks {
    start: Instant,
    passed: Cell<usize>,
    failed: Cell<usize>,
    finished: Cell<bool>,
}

/// One line on standard error, whole.
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

impl Checks {
    pub fn new() -> Checks {
        Checks {
            start: Instant::now(),
            passed: Cell::new(0),
            failed: Cell::new(0),
            finished: Cell::new(false),
        }
    }

    /// Seconds since the run began.
    pub fn elapsed_s(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    /// A progress line, stamped with the run's time.
    pub fn log(&self, msg: impl Display) {
        say(&format!("[{:4}s] {msg}", self.elapsed_s()));
    }

    pub fn pass(&self, name: impl Display) {
        self.passed.set(self.passed.get() + 1);
        say(&format!("PASS {name}"));
    }

    pub fn fail(&self, name: impl Display, detail: impl Display) {
        self.failed.set(self.failed.get() + 1);
        say(&format!("FAIL {name}: {detail}"));
    }

    /// PASS when `ok`, else FAIL with `detail` (what was seen, against what was wanted).
    pub fn check(&self, name: impl Display, ok: bool, detail: impl Display) -> bool {
        if ok {
            self.pass(name);
        } else {
            self.fail(name, detail);
        }
        ok
    }

    /// FAIL, and the scenario stops: the rest depends on this.
    pub fn abort(&self, name: impl Display, detail: impl Display) -> Stop {
        self.fail(name, detail);
        self.log("stopping: the rest of the scenario depends on this check");
        Stop
    }

    pub fn failed(&self) -> usize {
        self.failed.get()
    }

    /// Prints the tally; panics when a check failed or none was made.
    ///
    /// # Panics
    /// When a check failed or none was made: that is the test's verdict.
    pub fn finish(&self) {
        self.finished.set(true);
        if self.passed.get() + self.failed.get() == 0 {
            self.fail("docker e2e ran no check", "nothing was tested");
        }
        let (passed, failed) = (self.passed.get(), self.failed.get());
        say(&format!("docker e2e: {passed} passed, {failed} failed"));
        assert!(
            failed == 0,
            "docker e2e: {failed} check(s) failed (the FAIL lines above)"
        );
    }
}

impl Drop for Checks {
    /// A panic outside a check (a helper that could not run at all) still ends in a FAIL line
    /// and the tally.
    fn drop(&mut self) {
        if !self.finished.get() && std::thread::panicking() {
            self.fail(
                "docker e2e stopped unexpectedly",
                "a panic outside a check (the panic message says where)",
            );
            say(&format!(
                "docker e2e: {} passed, {} failed",
                self.passed.get(),
                self.failed.get()
            ));
        }
    }
}

/// Asks `check` until it gives `Some`, every `every`, for at most `within`; `None` when it never
/// did. A check that does not hold in time is a FAIL line, not a panic, so polling here returns
/// instead of panicking as `statelab_test_support::eventually` does.
pub async fn poll<T, F, Fut>(within: Duration, every: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// How often the scenario asks again while it waits for the lab to converge.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
