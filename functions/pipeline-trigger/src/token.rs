//! The continuation token handed to CodePipeline between invocations.

use serde::{Deserialize, Serialize};

/// CodePipeline accepts continuation tokens of 1-2048 characters.
pub const MAX_TOKEN_CHARS: usize = 2048;

/// A poll fails the job at the [`MAX_TRANSIENT_FAILURES`]th consecutive transient failure
/// (throttling, 5xx, timeouts, each after the SDK's own retries)...
pub const MAX_TRANSIENT_FAILURES: u32 = 5;
/// ...or once transient failures have lasted this long (seconds since the first of them).
pub const MAX_TRANSIENT_SECONDS: u64 = 900;

/// Small JSON: the execution being polled, how many polls came before, and the consecutive
/// transient failures of the latest polls (omitted when there are none). The sample's
/// `stateMachineExecutionArn` spelling is accepted, so jobs in flight survive an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinuationToken {
    #[serde(rename = "executionArn", alias = "stateMachineExecutionArn")]
    pub execution_arn: String,
    #[serde(default)]
    pub polls: u32,
    /// Consecutive polls that failed transiently.
    #[serde(rename = "transientFailures", default, skip_serializing_if = "is_zero")]
    pub transient_failures: u32,
    /// When the first of those failures happened (seconds since the epoch).
    #[serde(rename = "failingSince", default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a transient poll failure means for the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterTransient {
    /// Keep polling the same execution with this token.
    Retry(ContinuationToken),
    /// The bound is reached: fail the job with the last error.
    GiveUp { failures: u32, seconds: u64 },
}

impl ContinuationToken {
    /// A token for the first poll of `execution_arn`.
    pub fn new(execution_arn: &str, polls: u32) -> Self {
        Self {
            execution_arn: execution_arn.to_owned(),
            polls,
            transient_failures: 0,
            failing_since: None,
        }
    }

    /// The decision after this poll failed transiently at `now` (seconds since the epoch).
    pub fn after_transient_failure(&self, now: u64) -> AfterTransient {
        let failures = self.transient_failures.saturating_add(1);
        let since = self.failing_since.unwrap_or(now).min(now);
        let seconds = now - since;
        if failures >= MAX_TRANSIENT_FAILURES || seconds >= MAX_TRANSIENT_SECONDS {
            return AfterTransient::GiveUp { failures, seconds };
        }
        AfterTransient::Retry(Self {
            execution_arn: self.execution_arn.clone(),
            polls: self.polls.saturating_add(1),
            transient_failures: failures,
            failing_since: Some(since),
        })
    }

    /// Why this token may not be polled for a job of `account` in `region` (`None` when it may):
    /// a token naming another account's or region's execution is refused, so another execution's
    /// output never becomes this job's. A fact the job does not give is not compared.
    pub fn foreign_to(&self, account: Option<&str>, region: Option<&str>) -> Option<String> {
        elsewhere(&self.execution_arn, account, region).map(|wrong| {
            format!(
                "the continuation token names execution {} in {wrong}; it was not polled",
                self.execution_arn
            )
        })
    }
}

/// How `arn` (`arn:<partition>:<service>:<region>:<account>:…`) lies outside the job's account
/// or the function's region, e.g. `account 2…, not the job's account 1…`; `None` when it does
/// not. A fact the job does not give is not compared; an ARN too short to say is elsewhere.
pub fn elsewhere(arn: &str, account: Option<&str>, region: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = arn.split(':').collect();
    let (Some(arn_region), Some(arn_account)) = (parts.get(3), parts.get(4)) else {
        return Some("an ARN without a region and an account".to_owned());
    };
    let mut wrong = Vec::new();
    if let Some(account) = account.filter(|a| a != arn_account) {
        wrong.push(format!("account {arn_account}, not the job's account {account}"));
    }
    if let Some(region) = region.filter(|r| r != arn_region) {
        wrong.push(format!("region {arn_region}, not the function's region {region}"));
    }
    (!wrong.is_empty()).then(|| wrong.join(" and "))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the continuation token is not one this function issued: {0}")]
    Malformed(String),
    #[error("the continuation token would be {0} characters; CodePipeline accepts at most {MAX_TOKEN_CHARS}")]
    TooLong(usize),
}

impl ContinuationToken {
    pub fn encode(&self) -> Result<String, TokenError> {
        let json = serde_json::to_string(self).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let chars = json.chars().count();
        if chars > MAX_TOKEN_CHARS {
            return Err(TokenError::TooLong(chars));
        }
        Ok(json)
    }

    pub fn decode(raw: &str) -> Result<Self, TokenError> {
        let token: Self = serde_json::from_str(raw).map_err(|e| TokenError::Malformed(e.to_string()))?;
        // arn:<partition>:states:<region>:<account>:execution:<state machine>:<name>
        let parts: Vec<&str> = token.execution_arn.split(':').collect();
        let is_execution_arn = matches!(
            parts.as_slice(),
            ["arn", partition, "states", region, account, "execution", machine, name]
                if [partition, region, account, machine, name].iter().all(|p| !p.is_empty())
        );
        if !is_execution_arn {
            return Err(TokenError::Malformed(format!(
                "\"{}\" is not a Standard execution ARN",
                token.execution_arn
            )));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:states:us-east-1:111111111111:execution:deploy:codepipeline-1";

    #[test]
    fn round_trip() {
        let t = ContinuationToken::new(ARN, 3);
        let s = t.encode().unwrap();
        assert!(s.len() < 200, "{s}");
        assert_eq!(ContinuationToken::decode(&s).unwrap(), t);
    }

    #[test]
    fn accepts_the_samples_token() {
        let t = ContinuationToken::decode(&format!(r#"{{"stateMachineExecutionArn": "{ARN}"}}"#)).unwrap();
        assert_eq!(t.execution_arn, ARN);
        assert_eq!(t.polls, 0);
    }

    #[test]
    fn rejects_garbage() {
        assert!(ContinuationToken::decode("not json").is_err());
        assert!(ContinuationToken::decode("{}").is_err());
        for arn in [
            "x",
            "arn:execution:",
            "arn:aws:states:us-east-1:1:execution:deploy",
            "arn:aws:lambda:us-east-1:1:execution:deploy:n",
            "arn:aws:states::1:execution:deploy:n",
            "arn:aws:states:us-east-1:1:express:deploy:n:id",
            "arn:aws:states:us-east-1:1:execution:deploy:n:extra",
        ] {
            let raw = format!(r#"{{"executionArn": "{arn}"}}"#);
            assert!(ContinuationToken::decode(&raw).is_err(), "{arn}");
        }
        assert_eq!(
            elsewhere("arn:aws", Some("1"), None).as_deref(),
            Some("an ARN without a region and an account")
        );
    }

    #[test]
    fn longest_real_arn_fits() {
        // State machine names and execution names are at most 80 characters each.
        let arn = format!(
            "arn:aws-us-gov:states:us-gov-west-1:123456789012:execution:{}:{}",
            "m".repeat(80),
            "e".repeat(80)
        );
        let t = ContinuationToken {
            transient_failures: MAX_TRANSIENT_FAILURES,
            failing_since: Some(u64::MAX),
            ..ContinuationToken::new(&arn, u32::MAX)
        };
        assert!(t.encode().unwrap().len() <= MAX_TOKEN_CHARS);
        let huge = ContinuationToken::new(&"a".repeat(3000), 0);
        assert!(matches!(huge.encode(), Err(TokenError::TooLong(_))));
    }

    #[test]
    fn transient_failures_are_counted_then_bounded_by_number() {
        let t = ContinuationToken::new(ARN, 2);
        assert!(
            !t.encode().unwrap().contains("transient"),
            "no failures, no field"
        );
        let mut current = t;
        for n in 1..MAX_TRANSIENT_FAILURES {
            let AfterTransient::Retry(next) = current.after_transient_failure(1_000 + u64::from(n)) else {
                panic!("failure {n} must be tolerated")
            };
            assert_eq!(next.transient_failures, n);
            assert_eq!(
                next.failing_since,
                Some(1_001),
                "the first failure's time is kept"
            );
            assert_eq!(next.execution_arn, ARN);
            let round = ContinuationToken::decode(&next.encode().unwrap()).unwrap();
            assert_eq!(round, next);
            current = next;
        }
        assert_eq!(
            current.after_transient_failure(1_010),
            AfterTransient::GiveUp {
                failures: MAX_TRANSIENT_FAILURES,
                seconds: 9
            }
        );
    }

    #[test]
    fn transient_failures_are_bounded_by_time() {
        let t = ContinuationToken {
            transient_failures: 1,
            failing_since: Some(10_000),
            ..ContinuationToken::new(ARN, 7)
        };
        assert!(matches!(
            t.after_transient_failure(10_000 + MAX_TRANSIENT_SECONDS - 1),
            AfterTransient::Retry(_)
        ));
        assert_eq!(
            t.after_transient_failure(10_000 + MAX_TRANSIENT_SECONDS),
            AfterTransient::GiveUp {
                failures: 2,
                seconds: MAX_TRANSIENT_SECONDS
            }
        );
        // A clock that went backwards never underflows.
        assert!(matches!(t.after_transient_failure(5), AfterTransient::Retry(_)));
    }

    #[test]
    fn a_token_from_another_account_or_region_is_foreign() {
        let t = ContinuationToken::new(ARN, 0);
        assert_eq!(t.foreign_to(Some("111111111111"), Some("us-east-1")), None);
        assert_eq!(t.foreign_to(None, None), None);
        assert_eq!(
            t.foreign_to(Some("222222222222"), Some("us-east-1")).unwrap(),
            format!(
                "the continuation token names execution {ARN} in account 111111111111, not the job's \
                 account 222222222222; it was not polled"
            )
        );
        let both = t.foreign_to(Some("222222222222"), Some("eu-west-1")).unwrap();
        assert!(both.contains("account 111111111111, not the job's account 222222222222 and region us-east-1, not the function's region eu-west-1"), "{both}");
    }
}
