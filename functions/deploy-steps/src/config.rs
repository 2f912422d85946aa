//! The steps' environment, read once at cold start.

use crate::plan;
use crate::poll::PollConfig;
use crate::steps::Step;

/// The names `DEPLOY_STEP` takes, for its error message.
fn step_names() -> String {
    let mut names = Step::ALL.map(Step::name).to_vec();
    names.push(APPROVE);
    names.join(", ")
}

/// An environment variable whose value the steps cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{variable} is invalid: {value:?} {problem}")]
    Invalid {
        variable: &'static str,
        value: String,
        problem: &'static str,
    },
    #[error(
        "DEPLOY_STEP must name the step this function runs ({names}), not {0:?}",
        names = step_names()
    )]
    Step(String),
}

/// What one function of the deploy family runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// A state machine step.
    Step(Step),
    /// `approve`: the approver's function URL (`deploy-approve`), outside the state machine.
    Approve,
}

/// `DEPLOY_STEP`'s value for the approve function.
pub const APPROVE: &str = "approve";

/// `DEPLOY_STEP`: which step (or `approve`) this function runs. One binary serves every function
/// of the family; each function's IAM role still grants only its own calls.
pub fn function_from_env() -> Result<Function, ConfigError> {
    function_from_lookup(|k| std::env::var(k).ok())
}

/// [`function_from_env`] from any lookup (tests).
pub fn function_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Function, ConfigError> {
    let value = lookup("DEPLOY_STEP").unwrap_or_default();
    if value.trim() == APPROVE {
        return Ok(Function::Approve);
    }
    Step::from_name(value.trim())
        .map(Function::Step)
        .ok_or(ConfigError::Step(value))
}

/// Configuration read once at cold start.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `POLL_INITIAL_SECONDS`, `POLL_MAX_SECONDS`, `POLL_MAX_ATTEMPTS` (see [`PollConfig`]).
    pub poll: PollConfig,
    /// Bucket where templates over 51,200 bytes are staged for `TemplateURL` (`TEMPLATE_BUCKET`).
    pub template_bucket: Option<String>,
    /// The CloudFormation service role used when the input names none
    /// (`CLOUDFORMATION_ROLE_ARN`): CloudFormation then acts with that role, not the steps' own.
    pub default_role_arn: Option<String>,
    /// `AWS_REGION` (default `us-east-1`), for the URL of a staged template.
    pub region: String,
    /// Bucket of the reviews (`reviews/`) and of the pending approvals' task tokens
    /// (`approvals/`) (`REVIEW_BUCKET`): the review, request-approval and approve functions.
    pub review_bucket: Option<String>,
    /// The SNS topic reviews are published to (`APPROVAL_TOPIC_ARN`).
    pub approval_topic_arn: Option<String>,
    /// The approve function's URL, for the instructions in the message (`APPROVE_URL`).
    pub approve_url: Option<String>,
}

impl Config {
    /// From the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// From any lookup (tests). Blank values count as unset; the polling values keep their
    /// defaults and bounds as [`PollConfig::from_lookup`] says.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let template_bucket = set("TEMPLATE_BUCKET");
        if let Some(bucket) = &template_bucket
            && !valid_bucket_name(bucket)
        {
            return Err(ConfigError::Invalid {
                variable: "TEMPLATE_BUCKET",
                value: bucket.clone(),
                problem: "is not an S3 bucket name (3-63 lowercase letters, digits, dots and hyphens)",
            });
        }
        let review_bucket = set("REVIEW_BUCKET");
        if let Some(bucket) = &review_bucket
            && !valid_bucket_name(bucket)
        {
            return Err(ConfigError::Invalid {
                variable: "REVIEW_BUCKET",
                value: bucket.clone(),
                problem: "is not an S3 bucket name (3-63 lowercase letters, digits, dots and hyphens)",
            });
        }
        let approval_topic_arn = set("APPROVAL_TOPIC_ARN");
        if let Some(topic) = &approval_topic_arn
            && !(topic.starts_with("arn:") && topic.split(':').nth(2) == Some("sns"))
        {
            return Err(ConfigError::Invalid {
                variable: "APPROVAL_TOPIC_ARN",
                value: topic.clone(),
                problem: "is not an SNS topic ARN",
            });
        }
        let default_role_arn = set("CLOUDFORMATION_ROLE_ARN");
        if let Some(role) = &default_role_arn
            && !plan::is_role_arn(role)
        {
            return Err(ConfigError::Invalid {
                variable: "CLOUDFORMATION_ROLE_ARN",
                value: role.clone(),
                problem: "is not an IAM role ARN",
            });
        }
        Ok(Self {
            poll: PollConfig::from_lookup(&lookup),
            template_bucket,
            default_role_arn,
            region: lookup("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
            review_bucket,
            approval_topic_arn,
            approve_url: set("APPROVE_URL"),
        })
    }
}

/// S3's naming rules for general purpose buckets: 3-63 characters, lowercase letters, digits,
/// dots and hyphens, beginning and ending with a letter or digit.
fn valid_bucket_name(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge(name.chars().next())
        && edge(name.chars().last())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_environment() {
        let c = Config::from_lookup(env(&[
            ("TEMPLATE_BUCKET", "deploy-templates"),
            (
                "CLOUDFORMATION_ROLE_ARN",
                "arn:aws:iam::111111111111:role/cfn-deployer",
            ),
            ("AWS_REGION", "eu-west-1"),
            ("POLL_MAX_ATTEMPTS", "3"),
        ]))
        .unwrap();
        assert_eq!(c.template_bucket.as_deref(), Some("deploy-templates"));
        assert_eq!(
            c.default_role_arn.as_deref(),
            Some("arn:aws:iam::111111111111:role/cfn-deployer")
        );
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.poll.max_attempts, 3);

        let c =
            Config::from_lookup(env(&[("TEMPLATE_BUCKET", " "), ("CLOUDFORMATION_ROLE_ARN", "")])).unwrap();
        assert_eq!((c.template_bucket, c.default_role_arn), (None, None));
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.poll, PollConfig::default());
    }

    #[test]
    fn deploy_step_names_one_of_the_steps_or_approve() {
        for step in Step::ALL {
            assert_eq!(
                function_from_lookup(env(&[("DEPLOY_STEP", step.name())])).unwrap(),
                Function::Step(step)
            );
        }
        assert_eq!(
            function_from_lookup(env(&[("DEPLOY_STEP", " inspect-change-set ")])).unwrap(),
            Function::Step(Step::InspectChangeSet)
        );
        assert_eq!(
            function_from_lookup(env(&[("DEPLOY_STEP", "approve")])).unwrap(),
            Function::Approve
        );
        for bad in [
            &[][..],
            &[("DEPLOY_STEP", "")],
            &[("DEPLOY_STEP", "deploy-prepare")],
        ] {
            let err = function_from_lookup(env(bad)).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("DEPLOY_STEP must name the step this function runs (prepare, "),
                "{err}"
            );
        }
        assert_eq!(
            function_from_lookup(env(&[("DEPLOY_STEP", "deploy-prepare")]))
                .unwrap_err()
                .to_string(),
            "DEPLOY_STEP must name the step this function runs (prepare, check-stack, create-stack, \
             drift, create-change-set, change-set-status, inspect-change-set, review-change-set, \
             request-approval, execute-change-set, delete-change-set, stack-status, approve), not \
             \"deploy-prepare\""
        );
    }

    #[test]
    fn invalid_values_name_their_variable() {
        let err = Config::from_lookup(env(&[("CLOUDFORMATION_ROLE_ARN", "cfn-deployer")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CLOUDFORMATION_ROLE_ARN is invalid: \"cfn-deployer\" is not an IAM role ARN"
        );
        for bucket in ["s3://deploy-templates", "Deploy", "ab", "-deploy", "deploy."] {
            let err = Config::from_lookup(env(&[("TEMPLATE_BUCKET", bucket)])).unwrap_err();
            assert!(
                err.to_string().starts_with("TEMPLATE_BUCKET is invalid"),
                "{bucket}: {err}"
            );
        }
    }
}
