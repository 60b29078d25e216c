//! Bounded polling: a test waits for a condition, never for a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] asks again. Its checks are cheap (an in-process HTTP request, an
/// atomic), so a short interval keeps the tests fast.
const ASYNC_POLL: Duration = Duration::from_millis(20);

/// How often [`eventually_blocking`] asks again. Its checks tend to cost more (a file read, a
/// process's state, an HTTP request on a runtime of its own), so it asks less often.
const BLOCKING_POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it returns `Some`, and returns that value; panics once `within` has
/// passed, naming `what` was awaited.
///
/// A condition with nothing to return answers `(condition).then_some(())`. The check runs at
/// least once, and runs to completion: `within` bounds the polling, not one call of `check`.
///
/// # Panics
/// When `check` has not returned `Some` within `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(ASYNC_POLL).await;
    }
}

/// [`eventually`] for tests without a runtime: polls `check` on this thread, sleeping between
/// tries.
///
/// # Panics
/// When `check` has not returned `Some` within `within`.
pub fn eventually_blocking<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(BLOCKING_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_value_the_check_gives() {
        let mut tries = 0;
        let got = eventually("the third try", Duration::from_secs(5), || {
            tries += 1;
            let n = tries;
            async move { (n == 3).then_some(n * 10) }
        })
        .await;
        assert_eq!(got, 30);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for a condition that never holds")]
    async fn a_timeout_names_what_was_awaited() {
        eventually(
            "a condition that never holds",
            Duration::from_millis(50),
            || async { None::<()> },
        )
        .await;
    }

    #[test]
    #[should_panic(expected = "waiting for nothing at all")]
    fn the_blocking_twin_times_out_the_same_way() {
        eventually_blocking("nothing at all", Duration::from_millis(50), || None::<()>);
    }
}
