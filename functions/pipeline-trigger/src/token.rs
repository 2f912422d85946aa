//! The continuation token handed to CodePipeline between invocations.

use serde::{Deserialize, Serialize};

/// CodePipeline accepts continuation tokens of 1-2048 characters.
pub const MAX_TOKEN_CHARS: usize = 2048;

/// Small JSON: the execution being polled and how many polls came before. The sample's
/// `stateMachineExecutionArn` spelling is accepted, so jobs in flight survive an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinuationToken {
    #[serde(rename = "executionArn", alias = "stateMachineExecutionArn")]
    pub execution_arn: String,
    #[serde(default)]
    pub polls: u32,
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
        if !token.execution_arn.starts_with("arn:") || !token.execution_arn.contains(":execution:") {
            return Err(TokenError::Malformed(format!(
                "\"{}\" is not an execution ARN",
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
        let t = ContinuationToken {
            execution_arn: ARN.into(),
            polls: 3,
        };
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
        assert!(ContinuationToken::decode(r#"{"executionArn": "x"}"#).is_err());
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
            execution_arn: arn,
            polls: u32::MAX,
        };
        assert!(t.encode().unwrap().len() <= MAX_TOKEN_CHARS);
        let huge = ContinuationToken {
            execution_arn: "a".repeat(3000),
            polls: 0,
        };
        assert!(matches!(huge.encode(), Err(TokenError::TooLong(_))));
    }
}
