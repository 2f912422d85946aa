//! Bounded polling with exponential backoff. Standard workflows bill per state transition, so
//! every wait loop has a cap on its attempts and grows its interval.

use serde::{Deserialize, Serialize};

/// From the function's environment, read once at cold start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollConfig {
    pub initial_seconds: u64,
    pub max_seconds: u64,
    pub max_attempts: u32,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            initial_seconds: 5,
            max_seconds: 60,
            max_attempts: 60,
        }
    }
}

impl PollConfig {
    /// `POLL_INITIAL_SECONDS`, `POLL_MAX_SECONDS`, `POLL_MAX_ATTEMPTS`; defaults 5 s, 60 s, 60.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let d = Self::default();
        let num = |k: &str| lookup(k).and_then(|v| v.trim().parse::<u64>().ok());
        let initial_seconds = num("POLL_INITIAL_SECONDS").unwrap_or(d.initial_seconds).max(1);
        Self {
            initial_seconds,
            max_seconds: num("POLL_MAX_SECONDS")
                .unwrap_or(d.max_seconds)
                .max(initial_seconds),
            max_attempts: num("POLL_MAX_ATTEMPTS")
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(d.max_attempts)
                .max(1),
        }
    }
}

/// The polling state carried through the workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Poll {
    /// Polls made so far in this wait loop.
    pub attempt: u32,
    /// How long the next Wait state waits (`SecondsPath`).
    pub wait_seconds: u64,
    /// No attempts left: the workflow stops waiting and fails.
    pub exhausted: bool,
}

/// The state after one more poll that found the operation still in progress.
pub fn next(previous: Option<Poll>, config: &PollConfig) -> Poll {
    let attempt = previous.map_or(0, |p| p.attempt).saturating_add(1);
    let shift = attempt.saturating_sub(1).min(16);
    let wait_seconds = config
        .initial_seconds
        .saturating_mul(1 << shift)
        .min(config.max_seconds);
    Poll {
        attempt,
        wait_seconds,
        exhausted: attempt >= config.max_attempts,
    }
}

/// The longest a loop can wait in all: what the README quotes.
pub fn total_wait_bound(config: &PollConfig) -> u64 {
    let mut p = None;
    let mut total = 0;
    for _ in 0..config.max_attempts {
        let n = next(p, config);
        total += n.wait_seconds;
        p = Some(n);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_and_stops() {
        let c = PollConfig {
            initial_seconds: 5,
            max_seconds: 30,
            max_attempts: 5,
        };
        let mut p = None;
        let mut waits = Vec::new();
        for _ in 0..5 {
            let n = next(p, &c);
            waits.push((n.wait_seconds, n.exhausted));
            p = Some(n);
        }
        assert_eq!(
            waits,
            [(5, false), (10, false), (20, false), (30, false), (30, true)]
        );
        assert_eq!(total_wait_bound(&c), 95);
    }

    #[test]
    fn config_from_env() {
        let c = PollConfig::from_lookup(|k| match k {
            "POLL_INITIAL_SECONDS" => Some("1".into()),
            "POLL_MAX_SECONDS" => Some("0".into()),
            "POLL_MAX_ATTEMPTS" => Some("x".into()),
            _ => None,
        });
        assert_eq!(
            c,
            PollConfig {
                initial_seconds: 1,
                max_seconds: 1,
                max_attempts: 60
            }
        );
        assert_eq!(PollConfig::from_lookup(|_| None), PollConfig::default());
        // Huge attempt counts never overflow.
        let big = PollConfig {
            initial_seconds: 5,
            max_seconds: 60,
            max_attempts: 1000,
        };
        assert_eq!(
            next(
                Some(Poll {
                    attempt: 999,
                    wait_seconds: 60,
                    exhausted: false
                }),
                &big
            )
            .wait_seconds,
            60
        );
    }
}
