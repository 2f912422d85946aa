//! The deployment's input (the sample's input file plus options) and the plan derived from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::changeset::Policy;

/// CloudFormation's limit for `TemplateBody`; larger templates go through S3 and `TemplateURL`.
pub const MAX_TEMPLATE_BODY_BYTES: usize = 51_200;
const CAPABILITIES: [&str; 3] = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("the deployment input is invalid: {0}")]
    Invalid(String),
    #[error("\"{field}\" is required in the deployment input")]
    Missing { field: &'static str },
    #[error(
        "stack name \"{0}\" is invalid: 1-128 letters, digits and hyphens, starting with a letter \
         (the stack is named <environmentName>-<stackName>)"
    )]
    StackName(String),
    #[error("unknown capability \"{0}\": use CAPABILITY_IAM, CAPABILITY_NAMED_IAM or CAPABILITY_AUTO_EXPAND")]
    Capability(String),
    #[error("\"roleArn\" {0}")]
    RoleArn(String),
}

/// What to do when the change set would remove or replace resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnUnsafe {
    /// Delete the change set and fail the deployment (default).
    #[default]
    Fail,
    /// Delete the change set and deploy the new template as a new stack under a derived name.
    BlueGreen,
    /// Keep the change set, publish a review of it and wait for a person's decision: execute it
    /// only if approved and unchanged since the review, otherwise delete it.
    Approve,
}

/// What to do when the stack has drifted from its template (checked before an update's change
/// set is created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DriftMode {
    /// Fail with `StackDrifted` and the drifted resources; also when drift cannot be detected.
    Block,
    /// List the drifted resources in the review and the outputs, and go on (default).
    #[default]
    Warn,
    /// Do not detect drift.
    Ignore,
}

/// `approvalTimeoutSeconds`: 24 hours unless given.
pub const DEFAULT_APPROVAL_TIMEOUT_SECONDS: u64 = 86_400;
/// 30 days: well inside a Standard execution's one year, so that the wait always ends (and the
/// change set is deleted) before the execution does. A pipeline's action gives up far sooner.
pub const MAX_APPROVAL_TIMEOUT_SECONDS: u64 = 2_592_000;

const fn default_approval_timeout() -> u64 {
    DEFAULT_APPROVAL_TIMEOUT_SECONDS
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParametersInput {
    Map(BTreeMap<String, String>),
    List(Vec<ParameterEntry>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TagsInput {
    Map(BTreeMap<String, String>),
    List(Vec<TagEntry>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ParameterEntry {
    pub parameter_key: String,
    #[serde(default)]
    pub parameter_value: Option<String>,
    #[serde(default)]
    pub use_previous_value: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TagEntry {
    pub key: String,
    pub value: String,
}

/// The execution input. Compatible with the sample's input file (`environmentName`,
/// `stackName`, `templatePath`, plus the `revisionS3Bucket`/`revisionS3Key` the trigger adds).
/// Other keys (the trigger's job context) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployInput {
    #[serde(default)]
    pub environment_name: Option<String>,
    #[serde(default)]
    pub stack_name: Option<String>,
    #[serde(default)]
    pub template_path: Option<String>,
    #[serde(default)]
    pub revision_s3_bucket: Option<String>,
    #[serde(default)]
    pub revision_s3_key: Option<String>,
    #[serde(default)]
    pub parameters: Option<ParametersInput>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub tags: Option<TagsInput>,
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub on_unsafe: OnUnsafe,
    /// Read as any JSON value so that a wrong one is refused naming the key.
    #[serde(default)]
    pub approval_timeout_seconds: Option<serde_json::Value>,
    #[serde(default)]
    pub drift: DriftMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parameter {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_previous_value: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// Where CloudFormation reads the template from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TemplateSource {
    Body(String),
    Url(String),
}

/// Everything the later steps need, computed once by the prepare step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub stack_name: String,
    pub blue_green_stack_name: String,
    pub change_set_name: String,
    pub template_path: String,
    pub template: TemplateSource,
    pub parameters: Vec<Parameter>,
    pub capabilities: Vec<String>,
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    pub policy: Policy,
    pub on_unsafe: OnUnsafe,
    /// How long an unsafe change set waits for a decision (`onUnsafe: approve`); the ASL's
    /// `TimeoutSecondsPath`.
    #[serde(default = "default_approval_timeout")]
    pub approval_timeout_seconds: u64,
    #[serde(default)]
    pub drift: DriftMode,
}

/// The validated input, before the template is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    pub stack_name: String,
    pub environment_name: Option<String>,
    pub template_path: String,
    pub artifact_bucket: String,
    pub artifact_key: String,
    pub parameters: Vec<Parameter>,
    pub capabilities: Vec<String>,
    pub tags: Vec<Tag>,
    pub role_arn: Option<String>,
    pub policy: Policy,
    pub on_unsafe: OnUnsafe,
    pub approval_timeout_seconds: u64,
    pub drift: DriftMode,
}

fn required(v: Option<String>, field: &'static str) -> Result<String, InputError> {
    v.filter(|s| !s.trim().is_empty())
        .ok_or(InputError::Missing { field })
}

/// CloudFormation stack (and change set) names: a letter, then letters, digits, hyphens; 1-128.
pub fn valid_stack_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// An IAM role ARN (`arn:<partition>:iam::<account>:role/<path and name>`), the only kind of
/// role CloudFormation can act with.
pub fn is_role_arn(arn: &str) -> bool {
    arn.starts_with("arn:") && arn.contains(":iam::") && arn.contains(":role/")
}

/// Names a resource-safe suffix: letters, digits and hyphens only.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `deploy-<execution name>`, cut to 128 characters: unique per execution.
pub fn change_set_name(execution_name: &str) -> String {
    let mut name = format!("deploy-{}", sanitize(execution_name));
    name.truncate(128);
    name.trim_end_matches('-').to_owned()
}

/// `<stack>-bg-<8 characters of the execution name>`, within 128 characters.
pub fn blue_green_stack_name(stack_name: &str, execution_name: &str) -> String {
    let tail: String = sanitize(execution_name)
        .chars()
        .rev()
        .filter(|c| *c != '-')
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let suffix = format!("-bg-{tail}");
    let mut base = stack_name.to_owned();
    base.truncate(128 - suffix.len());
    format!("{}{suffix}", base.trim_end_matches('-'))
}

fn to_parameters(input: Option<ParametersInput>) -> Vec<Parameter> {
    match input {
        None => Vec::new(),
        Some(ParametersInput::Map(m)) => m
            .into_iter()
            .map(|(key, value)| Parameter {
                key,
                value: Some(value),
                use_previous_value: false,
            })
            .collect(),
        Some(ParametersInput::List(list)) => list
            .into_iter()
            .map(|p| Parameter {
                key: p.parameter_key,
                value: p.parameter_value,
                use_previous_value: p.use_previous_value.unwrap_or(false),
            })
            .collect(),
    }
}

fn to_tags(input: Option<TagsInput>) -> Vec<Tag> {
    match input {
        None => Vec::new(),
        Some(TagsInput::Map(m)) => m.into_iter().map(|(key, value)| Tag { key, value }).collect(),
        Some(TagsInput::List(list)) => list
            .into_iter()
            .map(|t| Tag {
                key: t.key,
                value: t.value,
            })
            .collect(),
    }
}

/// Validates the execution input.
pub fn validate(raw: &serde_json::Value) -> Result<Validated, InputError> {
    let input = <DeployInput as serde::Deserialize>::deserialize(raw)
        .map_err(|e| InputError::Invalid(e.to_string()))?;
    let base = required(input.stack_name, "stackName")?;
    let environment_name = input.environment_name.filter(|e| !e.trim().is_empty());
    let stack_name = match &environment_name {
        Some(env) => format!("{env}-{base}"),
        None => base,
    };
    if !valid_stack_name(&stack_name) {
        return Err(InputError::StackName(stack_name));
    }
    for c in &input.capabilities {
        if !CAPABILITIES.contains(&c.as_str()) {
            return Err(InputError::Capability(c.clone()));
        }
    }
    if let Some(role) = &input.role_arn
        && !is_role_arn(role)
    {
        return Err(InputError::RoleArn(format!("{role} is not an IAM role ARN")));
    }
    let approval_timeout_seconds = match &input.approval_timeout_seconds {
        None => DEFAULT_APPROVAL_TIMEOUT_SECONDS,
        Some(v) => v
            .as_u64()
            .filter(|t| (1..=MAX_APPROVAL_TIMEOUT_SECONDS).contains(t))
            .ok_or_else(|| {
                InputError::Invalid(format!(
                    "\"approvalTimeoutSeconds\" must be a whole number of seconds from 1 to \
                     {MAX_APPROVAL_TIMEOUT_SECONDS} (30 days), not {v}"
                ))
            })?,
    };
    Ok(Validated {
        stack_name,
        environment_name,
        template_path: required(input.template_path, "templatePath")?,
        artifact_bucket: required(input.revision_s3_bucket, "revisionS3Bucket")?,
        artifact_key: required(input.revision_s3_key, "revisionS3Key")?,
        parameters: to_parameters(input.parameters),
        capabilities: input.capabilities,
        tags: to_tags(input.tags),
        role_arn: input.role_arn,
        policy: input.policy,
        on_unsafe: input.on_unsafe,
        approval_timeout_seconds,
        drift: input.drift,
    })
}

/// The parameters to pass: those given, plus `environmentName` when the template declares it
/// and it was not given (the sample's behaviour). Fails on parameters the template does not
/// declare, which CloudFormation would refuse later with a vaguer message.
pub fn resolve_parameters(v: &Validated, declared: &[String]) -> Result<Vec<Parameter>, InputError> {
    let undeclared: Vec<&str> = v
        .parameters
        .iter()
        .map(|p| p.key.as_str())
        .filter(|k| !declared.iter().any(|d| d == k))
        .collect();
    if !undeclared.is_empty() {
        return Err(InputError::Invalid(format!(
            "parameters not declared by template {}: {}",
            v.template_path,
            undeclared.join(", ")
        )));
    }
    let mut params = v.parameters.clone();
    if let Some(env) = &v.environment_name
        && declared.iter().any(|d| d == "environmentName")
        && !params.iter().any(|p| p.key == "environmentName")
    {
        params.push(Parameter {
            key: "environmentName".into(),
            value: Some(env.clone()),
            use_previous_value: false,
        });
    }
    Ok(params)
}

/// The S3 URL CloudFormation reads a staged template from (virtual-hosted, regional).
pub fn template_url(bucket: &str, region: &str, key: &str) -> String {
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    let key: String = key
        .split('/')
        .map(|seg| {
            seg.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/");
    format!("https://{bucket}.s3.{region}.{domain}/{key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> serde_json::Value {
        json!({
            "environmentName": "prod", "stackName": "sample-lambda-app",
            "templatePath": "infra/lambda-template.yaml",
            "revisionS3Bucket": "artifacts", "revisionS3Key": "p/Source/abc",
            "codePipelineJobId": "job", "revisionId": "c0ffee"
        })
    }

    #[test]
    fn the_samples_input_file() {
        let v = validate(&sample()).unwrap();
        assert_eq!(v.stack_name, "prod-sample-lambda-app");
        assert_eq!(v.template_path, "infra/lambda-template.yaml");
        assert_eq!(v.on_unsafe, OnUnsafe::Fail);
        assert_eq!(v.policy, Policy::default());
    }

    #[test]
    fn options() {
        let mut i = sample();
        i["parameters"] = json!({"MemorySize": "256"});
        i["tags"] = json!([{"Key": "team", "Value": "delivery"}]);
        i["capabilities"] = json!(["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]);
        i["roleArn"] = json!("arn:aws:iam::111111111111:role/cfn-deployer");
        i["onUnsafe"] = json!("blue-green");
        i["policy"] = json!({"dynamic": "allow"});
        let v = validate(&i).unwrap();
        assert_eq!(v.parameters[0].key, "MemorySize");
        assert_eq!(
            v.tags,
            [Tag {
                key: "team".into(),
                value: "delivery".into()
            }]
        );
        assert_eq!(v.on_unsafe, OnUnsafe::BlueGreen);
        assert_eq!(v.approval_timeout_seconds, DEFAULT_APPROVAL_TIMEOUT_SECONDS);
        assert_eq!(v.drift, DriftMode::Warn);
        i["onUnsafe"] = json!("approve");
        i["approvalTimeoutSeconds"] = json!(3600);
        i["drift"] = json!("block");
        let v = validate(&i).unwrap();
        assert_eq!(
            (v.on_unsafe, v.approval_timeout_seconds, v.drift),
            (OnUnsafe::Approve, 3600, DriftMode::Block)
        );
        for bad in [json!(0), json!(2_592_001), json!(-5), json!("1h")] {
            i["approvalTimeoutSeconds"] = bad.clone();
            let e = validate(&i).unwrap_err().to_string();
            assert!(e.contains("approvalTimeoutSeconds"), "{bad}: {e}");
        }
        i["approvalTimeoutSeconds"] = json!(3600);
        i["drift"] = json!("sometimes");
        assert!(
            validate(&i)
                .unwrap_err()
                .to_string()
                .contains("expected one of `block`, `warn`, `ignore`")
        );
        i["drift"] = json!("ignore");
        i["parameters"] = json!([{"ParameterKey": "A", "UsePreviousValue": true}]);
        let v = validate(&i).unwrap();
        assert!(v.parameters[0].use_previous_value);
        // Empty lists are empty, whichever field they are in.
        i["parameters"] = json!([]);
        i["tags"] = json!([]);
        let v = validate(&i).unwrap();
        assert!(v.parameters.is_empty() && v.tags.is_empty());
        i["tags"] = json!([{"ParameterKey": "A"}]);
        assert!(validate(&i).is_err(), "parameters are no tags");
    }

    #[test]
    fn bad_inputs_say_what_is_wrong() {
        let cases = [
            (json!({"templatePath": "t"}), "\"stackName\" is required"),
            (
                {
                    let mut i = sample();
                    i.as_object_mut().unwrap().remove("revisionS3Key");
                    i
                },
                "\"revisionS3Key\" is required",
            ),
            (
                {
                    let mut i = sample();
                    i["stackName"] = json!("bad_name");
                    i
                },
                "stack name \"prod-bad_name\" is invalid",
            ),
            (
                {
                    let mut i = sample();
                    i["capabilities"] = json!(["CAPABILITY_ALL"]);
                    i
                },
                "unknown capability",
            ),
            (
                {
                    let mut i = sample();
                    i["onUnsafe"] = json!("ignore");
                    i
                },
                "unknown variant `ignore`",
            ),
            (
                {
                    let mut i = sample();
                    i["policy"] = json!({"allowRemove": []});
                    i
                },
                "unknown field `allowRemove`",
            ),
            (
                {
                    let mut i = sample();
                    i["roleArn"] = json!("deployer");
                    i
                },
                "is not an IAM role ARN",
            ),
            (
                {
                    let mut i = sample();
                    i["parameters"] = json!("A=1");
                    i
                },
                "the deployment input is invalid",
            ),
        ];
        for (input, expected) in cases {
            let err = validate(&input).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} / {expected}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            change_set_name("codepipeline-1111-2222"),
            "deploy-codepipeline-1111-2222"
        );
        assert_eq!(change_set_name("a_b.c"), "deploy-a-b-c");
        assert!(change_set_name(&"x".repeat(300)).len() <= 128);
        let bg = blue_green_stack_name("prod-app", "codepipeline-11111111-abcd-1111-abcd-111111abcdef");
        assert_eq!(bg, "prod-app-bg-11abcdef");
        assert!(valid_stack_name(&bg));
        let long = blue_green_stack_name(&"s".repeat(128), "exec");
        assert!(long.len() <= 128 && valid_stack_name(&long), "{long}");
        assert!(!valid_stack_name("1abc"));
        assert!(!valid_stack_name(""));
    }

    #[test]
    fn environment_name_parameter_is_added_only_when_declared() {
        let v = validate(&sample()).unwrap();
        let p = resolve_parameters(&v, &["environmentName".into()]).unwrap();
        assert_eq!(
            p,
            [Parameter {
                key: "environmentName".into(),
                value: Some("prod".into()),
                use_previous_value: false
            }]
        );
        assert!(resolve_parameters(&v, &[]).unwrap().is_empty());
        let mut i = sample();
        i["parameters"] = json!({"Unknown": "1"});
        let v = validate(&i).unwrap();
        let err = resolve_parameters(&v, &["environmentName".into()]).unwrap_err();
        assert!(
            err.to_string()
                .contains("parameters not declared by template infra/lambda-template.yaml: Unknown")
        );
    }

    #[test]
    fn template_urls() {
        assert_eq!(
            template_url("staging", "us-east-1", "templates/prod app/t.yaml"),
            "https://staging.s3.us-east-1.amazonaws.com/templates/prod%20app/t.yaml"
        );
        assert_eq!(
            template_url("b", "cn-north-1", "k"),
            "https://b.s3.cn-north-1.amazonaws.com.cn/k"
        );
    }
}
