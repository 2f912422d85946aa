//! The function's environment, read once at cold start.
//!
//! Nothing here is rejected at cold start, so there is no error type. The default state machine
//! ARN could be validated here, but an invalid one is deliberately reported to each job instead,
//! as a `ConfigurationError` result naming it (exactly like an invalid `stateMachineArn` in
//! `UserParameters`, see [`crate::params::state_machine`]): a function that fails its cold start
//! answers no job, so every job would hang until CodePipeline's timeout with no message, and an
//! action that names its own state machine does not need the default at all.

/// The environment variables that name the default state machine, in order of precedence
/// (`stateMachineArn` is the sample's spelling).
pub const STATE_MACHINE_ARN_VARIABLES: [&str; 2] = ["STATE_MACHINE_ARN", "stateMachineArn"];

/// Configuration read once at cold start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The state machine started when the action does not name one (`STATE_MACHINE_ARN`, or the
    /// sample's `stateMachineArn`); blank values are ignored. Validated per job.
    pub default_state_machine_arn: Option<String>,
    /// The function's region (`AWS_REGION`): a continuation token naming an execution in another
    /// region is refused.
    pub region: Option<String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a test's map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let default_state_machine_arn = STATE_MACHINE_ARN_VARIABLES
            .into_iter()
            .find_map(|k| lookup(k).filter(|v| !v.trim().is_empty()));
        Self {
            default_state_machine_arn,
            region: lookup("AWS_REGION").filter(|v| !v.trim().is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SM: &str = "arn:aws:states:us-east-1:111111111111:stateMachine:deploy";

    #[test]
    fn the_state_machine_comes_from_the_environment() {
        let c = Config::from_lookup(|k| (k == "stateMachineArn").then(|| SM.to_owned()));
        assert_eq!(c.default_state_machine_arn.as_deref(), Some(SM));
        let c = Config::from_lookup(|k| match k {
            "STATE_MACHINE_ARN" => Some("a".into()),
            "stateMachineArn" => Some("b".into()),
            _ => None,
        });
        assert_eq!(c.default_state_machine_arn.as_deref(), Some("a"));
        assert_eq!(
            Config::from_lookup(|_| Some(" ".into())).default_state_machine_arn,
            None
        );
    }

    #[test]
    fn an_invalid_default_is_kept_for_the_jobs_to_report() {
        let c = Config::from_lookup(|k| (k == "STATE_MACHINE_ARN").then(|| "not an arn".to_owned()));
        assert_eq!(c.default_state_machine_arn.as_deref(), Some("not an arn"));
        assert_eq!(Config::from_lookup(|_| None), Config::default());
    }
}
