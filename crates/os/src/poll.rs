//! Waiting for a condition with a deadline: the one polling loop everything else uses.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Checks `condition` every `period` until it holds or `limit` has passed; returns whether it
/// held. It is checked once more at the deadline, so a limit of zero still checks once.
pub async fn poll_until(
    limit: Duration,
    period: Duration,
    mut condition: impl FnMut() -> bool,
) -> bool {
    poll_until_async(limit, period, || std::future::ready(condition())).await
}

/// `poll_until` with a condition that must itself await (a network call, say).
pub async fn poll_until_async<F, Fut>(limit: Duration, period: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let step = || {
        let check = condition();
        async move { Ok::<_, std::convert::Infallible>(check.await.then_some(())) }
    };
    matches!(poll_for(limit, period, step).await, Ok(Some(())))
}

/// Runs `step` every `period` until it yields a value (`Ok(Some)`) or fails (`Err`, which ends
/// the wait at once), at most `limit`. `Ok(None)` means the deadline passed first.
pub async fn poll_for<T, E, F, Fut>(
    limit: Duration,
    period: Duration,
    mut step: F,
) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = step().await? {
            return Ok(Some(value));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(period.min(deadline - Instant::now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn returns_as_soon_as_the_condition_holds() {
        let calls = AtomicU32::new(0);
        let held = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
            calls.fetch_add(1, Ordering::Relaxed) >= 3
        })
        .await;
        assert!(held);
        assert_eq!(calls.load(Ordering::Relaxed), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_ends_the_wait_at_once() {
        let start = Instant::now();
        let calls = AtomicU32::new(0);
        let result: Result<Option<()>, &str> =
            poll_for(Duration::from_secs(10), Duration::from_millis(100), || {
                let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
                async move {
                    if n == 3 {
                        Err("exited")
                    } else {
                        Ok(None)
                    }
                }
            })
            .await;
        assert_eq!(result, Err("exited"));
        assert_eq!(start.elapsed(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_the_deadline_after_a_last_check() {
        let start = Instant::now();
        let held = poll_until(Duration::from_secs(1), Duration::from_millis(300), || false).await;
        assert!(!held);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
