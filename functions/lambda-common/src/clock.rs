//! Wall-clock time and the invocation's deadline, in the forms the functions need.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The invocation's deadline as an `Instant`, from the Lambda context's epoch milliseconds.
/// `None` when the runtime gave none (0), as a test harness may.
pub fn deadline(ctx: &lambda_runtime::Context) -> Option<Instant> {
    deadline_from(ctx.deadline, now_ms(), Instant::now())
}

/// [`deadline`] from its parts: the deadline and now in epoch milliseconds, and now as an
/// `Instant`. A deadline already past is now.
pub fn deadline_from(deadline_ms: u64, now_ms: u64, now: Instant) -> Option<Instant> {
    (deadline_ms > 0).then(|| now + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}

/// The time left before `deadline` (zero once it has passed); `None` without a deadline.
pub fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_from_epoch_milliseconds() {
        let now = Instant::now();
        assert_eq!(deadline_from(0, 1_000, now), None);
        assert_eq!(
            deadline_from(6_000, 1_000, now),
            Some(now + Duration::from_secs(5))
        );
        assert_eq!(deadline_from(500, 1_000, now), Some(now));
        assert_eq!(remaining(None), None);
        assert!(remaining(Some(now)).is_some_and(|d| d.is_zero()));
    }
}
