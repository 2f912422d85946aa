//! The action's `UserParameters`, the state machine to start and the execution input.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::event::Revision;

/// Step Functions refuses execution input larger than 256 KiB.
pub const MAX_EXECUTION_INPUT_BYTES: usize = 262_144;

/// What is wrong with the action's configuration (its `UserParameters`, the state machine, the
/// input file); reported as a `ConfigurationError` result. Not to be confused with the function's
/// environment ([`crate::config`]), which nothing rejects.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActionConfigError {
    #[error(
        "the action has no UserParameters; expected JSON such as \
         {{\"s3Bucket\": \"my-bucket\", \"stateMachineFile\": \"path/input.json\"}} or {{\"input\": {{...}}}}"
    )]
    MissingUserParameters,
    #[error("UserParameters is not valid: {0}")]
    InvalidUserParameters(String),
    #[error("UserParameters needs \"stateMachineFile\" (with \"s3Bucket\") or an inline \"input\" object")]
    NoInput,
    #[error("UserParameters sets \"stateMachineFile\" but not \"s3Bucket\"")]
    MissingBucket,
    #[error("UserParameters field \"{0}\" must not be empty")]
    EmptyField(&'static str),
    #[error(
        "no state machine to start: set \"stateMachineArn\" in UserParameters or STATE_MACHINE_ARN \
         in the function's environment"
    )]
    NoStateMachine,
    #[error(
        "\"{0}\" is not a Step Functions state machine ARN (arn:<partition>:states:<region>:<account>:stateMachine:<name>)"
    )]
    InvalidStateMachineArn(String),
    #[error(
        "state machine {arn} is in {wrong}: the trigger starts only state machines of the job's account \
         and region, whose executions it may poll; nothing was started"
    )]
    StateMachineElsewhere { arn: String, wrong: String },
    #[error("input file s3://{bucket}/{key} does not exist")]
    InputFileMissing { bucket: String, key: String },
    #[error("input file s3://{bucket}/{key} is not valid JSON: {reason}")]
    InputFileNotJson {
        bucket: String,
        key: String,
        reason: String,
    },
    #[error("input file s3://{bucket}/{key} must hold a JSON object, found {found}")]
    InputFileNotObject {
        bucket: String,
        key: String,
        found: &'static str,
    },
    #[error("input file s3://{bucket}/{key} is larger than {max} bytes")]
    InputFileTooLarge { bucket: String, key: String, max: usize },
    #[error(
        "the execution input is {bytes} bytes; Step Functions accepts at most {MAX_EXECUTION_INPUT_BYTES}"
    )]
    InputTooLarge { bytes: usize },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawUserParameters {
    s3_bucket: Option<String>,
    state_machine_file: Option<String>,
    input: Option<Map<String, Value>>,
    state_machine_arn: Option<String>,
}

/// Where the execution input file lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub bucket: String,
    pub key: String,
}

/// The validated `UserParameters`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionParams {
    pub input_file: Option<InputFile>,
    pub inline_input: Option<Map<String, Value>>,
    pub state_machine_arn: Option<String>,
}

fn non_empty(value: Option<String>, field: &'static str) -> Result<Option<String>, ActionConfigError> {
    match value {
        Some(v) if v.trim().is_empty() => Err(ActionConfigError::EmptyField(field)),
        other => Ok(other),
    }
}

/// Parses the sample's `{"s3Bucket", "stateMachineFile"}`, optionally with an inline `"input"`
/// object (merged over the file's keys) and a per-action `"stateMachineArn"`.
pub fn parse_user_parameters(raw: Option<&str>) -> Result<ActionParams, ActionConfigError> {
    let raw = raw
        .filter(|r| !r.trim().is_empty())
        .ok_or(ActionConfigError::MissingUserParameters)?;
    let parsed: RawUserParameters =
        serde_json::from_str(raw).map_err(|e| ActionConfigError::InvalidUserParameters(e.to_string()))?;
    let bucket = non_empty(parsed.s3_bucket, "s3Bucket")?;
    let file = non_empty(parsed.state_machine_file, "stateMachineFile")?;
    let state_machine_arn = non_empty(parsed.state_machine_arn, "stateMachineArn")?;
    let input_file = match (bucket, file) {
        (Some(bucket), Some(key)) => Some(InputFile { bucket, key }),
        (None, Some(_)) => return Err(ActionConfigError::MissingBucket),
        (_, None) => None,
    };
    if input_file.is_none() && parsed.input.is_none() {
        return Err(ActionConfigError::NoInput);
    }
    Ok(ActionParams {
        input_file,
        inline_input: parsed.input,
        state_machine_arn,
    })
}

/// The state machine to start: the action's `stateMachineArn`, else the function's default.
pub fn state_machine(
    params: &ActionParams,
    default_arn: Option<&str>,
) -> Result<StateMachineArn, ActionConfigError> {
    let arn = params
        .state_machine_arn
        .as_deref()
        .or(default_arn)
        .ok_or(ActionConfigError::NoStateMachine)?;
    StateMachineArn::parse(arn)
}

/// A parsed state machine ARN: `arn:<partition>:states:<region>:<account>:stateMachine:<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMachineArn {
    arn: String,
    name_start: usize,
}

impl StateMachineArn {
    pub fn parse(arn: &str) -> Result<Self, ActionConfigError> {
        let invalid = || ActionConfigError::InvalidStateMachineArn(arn.to_owned());
        let parts: Vec<&str> = arn.split(':').collect();
        let [prefix, partition, service, region, account, kind, name] = parts.as_slice() else {
            return Err(invalid());
        };
        if *prefix != "arn"
            || partition.is_empty()
            || *service != "states"
            || region.is_empty()
            || account.is_empty()
            || *kind != "stateMachine"
            || name.is_empty()
        {
            return Err(invalid());
        }
        Ok(Self {
            arn: arn.to_owned(),
            name_start: arn.len() - name.len(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.arn
    }

    pub fn name(&self) -> &str {
        &self.arn[self.name_start..]
    }

    /// The ARN Step Functions gives the execution `execution_name` of this state machine.
    pub fn execution_arn(&self, execution_name: &str) -> String {
        let prefix = &self.arn[..self.name_start - ":stateMachine:".len()];
        format!("{prefix}:execution:{}:{execution_name}", self.name())
    }
}

/// The execution name for a job: deterministic, so a retried first invocation of the same job
/// can never start a second execution. Step Functions names are 1-80 characters and must avoid
/// whitespace, brackets, wildcards and punctuation; job ids are UUIDs, anything else is mapped
/// to `-`.
pub fn execution_name(job_id: &str) -> String {
    let mut name = String::from("codepipeline-");
    name.extend(job_id.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '-'
        }
    }));
    name.truncate(80);
    name
}

/// The job context added to the execution input.
#[derive(Debug, Clone, Copy)]
pub struct JobContext<'a> {
    pub job_id: &'a str,
    pub account_id: Option<&'a str>,
    pub revision: Option<Revision<'a>>,
}

/// Builds the execution input: the file's object, then the inline input's keys, then the job
/// context (`revisionS3Bucket`, `revisionS3Key` as the sample adds them, plus `revisionId` and
/// `codePipelineJobId`).
pub fn build_execution_input(
    file: Option<Map<String, Value>>,
    inline: Option<Map<String, Value>>,
    job: JobContext<'_>,
) -> Result<String, ActionConfigError> {
    let mut input = file.unwrap_or_default();
    if let Some(inline) = inline {
        input.extend(inline);
    }
    if let Some(rev) = job.revision {
        input.insert("revisionS3Bucket".into(), Value::String(rev.bucket.to_owned()));
        input.insert("revisionS3Key".into(), Value::String(rev.key.to_owned()));
        if let Some(id) = rev.revision {
            input.insert("revisionId".into(), Value::String(id.to_owned()));
        }
    }
    input.insert("codePipelineJobId".into(), Value::String(job.job_id.to_owned()));
    if let Some(account) = job.account_id {
        input.insert("codePipelineAccountId".into(), Value::String(account.to_owned()));
    }
    let json = Value::Object(input).to_string();
    if json.len() > MAX_EXECUTION_INPUT_BYTES {
        return Err(ActionConfigError::InputTooLarge { bytes: json.len() });
    }
    Ok(json)
}

/// Parses the input file's bytes: it must be one JSON object.
pub fn parse_input_file(file: &InputFile, bytes: &[u8]) -> Result<Map<String, Value>, ActionConfigError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ActionConfigError::InputFileNotJson {
        bucket: file.bucket.clone(),
        key: file.key.clone(),
        reason: e.to_string(),
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ActionConfigError::InputFileNotObject {
            bucket: file.bucket.clone(),
            key: file.key.clone(),
            found: lambda_common::json_kind(&other),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sample_parameters() {
        let p = parse_user_parameters(Some(r#"{"s3Bucket": "b", "stateMachineFile": "k/in.json"}"#)).unwrap();
        assert_eq!(
            p.input_file,
            Some(InputFile {
                bucket: "b".into(),
                key: "k/in.json".into()
            })
        );
        assert_eq!(p.inline_input, None);
        assert_eq!(p.state_machine_arn, None);
    }

    #[test]
    fn inline_input_and_arn_override() {
        let p = parse_user_parameters(Some(
            r#"{"input": {"stackName": "x"}, "stateMachineArn": "arn:aws:states:eu-west-1:1:stateMachine:m"}"#,
        ))
        .unwrap();
        assert_eq!(p.input_file, None);
        assert_eq!(p.inline_input.unwrap()["stackName"], "x");
        assert_eq!(
            p.state_machine_arn.as_deref(),
            Some("arn:aws:states:eu-west-1:1:stateMachine:m")
        );
    }

    #[test]
    fn configuration_errors_name_the_problem() {
        assert_eq!(
            parse_user_parameters(None),
            Err(ActionConfigError::MissingUserParameters)
        );
        assert_eq!(
            parse_user_parameters(Some("  ")),
            Err(ActionConfigError::MissingUserParameters)
        );
        assert_eq!(parse_user_parameters(Some("{}")), Err(ActionConfigError::NoInput));
        assert_eq!(
            parse_user_parameters(Some(r#"{"stateMachineFile": "a"}"#)),
            Err(ActionConfigError::MissingBucket)
        );
        assert_eq!(
            parse_user_parameters(Some(r#"{"s3Bucket": "", "stateMachineFile": "a"}"#)),
            Err(ActionConfigError::EmptyField("s3Bucket"))
        );
        let typo = parse_user_parameters(Some(r#"{"s3bucket": "b", "stateMachineFile": "a"}"#)).unwrap_err();
        assert!(typo.to_string().contains("unknown field `s3bucket`"), "{typo}");
        let not_json = parse_user_parameters(Some("s3Bucket=b")).unwrap_err();
        assert!(matches!(not_json, ActionConfigError::InvalidUserParameters(_)));
        let wrong_type = parse_user_parameters(Some(r#"{"input": [1]}"#)).unwrap_err();
        assert!(wrong_type.to_string().contains("invalid type"), "{wrong_type}");
        let array = parse_user_parameters(Some("[]")).unwrap_err();
        assert!(matches!(array, ActionConfigError::InvalidUserParameters(_)));
    }

    #[test]
    fn state_machine_arns() {
        let arn =
            StateMachineArn::parse("arn:aws:states:us-east-1:123456789012:stateMachine:deploy").unwrap();
        assert_eq!(arn.name(), "deploy");
        assert_eq!(
            arn.execution_arn("codepipeline-x"),
            "arn:aws:states:us-east-1:123456789012:execution:deploy:codepipeline-x"
        );
        let cn = StateMachineArn::parse("arn:aws-cn:states:cn-north-1:1:stateMachine:m").unwrap();
        assert_eq!(
            cn.execution_arn("e"),
            "arn:aws-cn:states:cn-north-1:1:execution:m:e"
        );
        for bad in [
            "",
            "deploy",
            "arn:aws:states:us-east-1:1:execution:m:e",
            "arn:aws:lambda:us-east-1:1:stateMachine:m",
            "arn:aws:states:us-east-1:1:stateMachine:",
            "arn:aws:states:us-east-1:1:stateMachine:m:alias",
        ] {
            assert!(StateMachineArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_action_s_state_machine_wins_over_the_default() {
        let own = "arn:aws:states:us-east-1:1:stateMachine:own";
        let default = Some("arn:aws:states:us-east-1:1:stateMachine:default");
        let named = parse_user_parameters(Some(&format!(r#"{{"input": {{}}, "stateMachineArn": "{own}"}}"#)))
            .unwrap();
        let unnamed = parse_user_parameters(Some(r#"{"input": {}}"#)).unwrap();
        assert_eq!(state_machine(&named, default).unwrap().name(), "own");
        assert_eq!(state_machine(&named, Some("not an arn")).unwrap().name(), "own");
        assert_eq!(state_machine(&unnamed, default).unwrap().name(), "default");
        assert_eq!(
            state_machine(&unnamed, None),
            Err(ActionConfigError::NoStateMachine)
        );
        assert_eq!(
            state_machine(&unnamed, Some("not an arn")),
            Err(ActionConfigError::InvalidStateMachineArn("not an arn".into()))
        );
    }

    #[test]
    fn execution_names_are_deterministic_and_valid() {
        let id = "11111111-abcd-1111-abcd-111111abcdef";
        assert_eq!(execution_name(id), execution_name(id));
        assert_eq!(execution_name(id), format!("codepipeline-{id}"));
        assert_eq!(execution_name("a b/c*d"), "codepipeline-a-b-c-d");
        assert_eq!(execution_name(&"x".repeat(200)).len(), 80);
    }

    #[test]
    fn execution_input_merges_file_inline_and_job_context() {
        let file = json!({"environmentName": "prod", "stackName": "app", "templatePath": "t.yaml"});
        let inline = json!({"stackName": "override", "extra": true});
        let rev = Revision {
            bucket: "artifacts",
            key: "p/Source/abc",
            revision: Some("c0ffee"),
        };
        let json = build_execution_input(
            file.as_object().cloned(),
            inline.as_object().cloned(),
            JobContext {
                job_id: "job-1",
                account_id: Some("111"),
                revision: Some(rev),
            },
        )
        .unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v,
            json!({
                "environmentName": "prod", "stackName": "override", "templatePath": "t.yaml",
                "extra": true, "revisionS3Bucket": "artifacts", "revisionS3Key": "p/Source/abc",
                "revisionId": "c0ffee", "codePipelineJobId": "job-1", "codePipelineAccountId": "111"
            })
        );
    }

    #[test]
    fn execution_input_limit() {
        let mut big = Map::new();
        big.insert(
            "blob".into(),
            Value::String("x".repeat(MAX_EXECUTION_INPUT_BYTES)),
        );
        let err = build_execution_input(
            Some(big),
            None,
            JobContext {
                job_id: "j",
                account_id: None,
                revision: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, ActionConfigError::InputTooLarge { .. }));
    }

    #[test]
    fn input_file_must_be_an_object() {
        let f = InputFile {
            bucket: "b".into(),
            key: "k".into(),
        };
        assert!(parse_input_file(&f, br#"{"a": 1}"#).is_ok());
        assert_eq!(
            parse_input_file(&f, b"[1]").unwrap_err().to_string(),
            "input file s3://b/k must hold a JSON object, found an array"
        );
        assert!(matches!(
            parse_input_file(&f, b"{nope").unwrap_err(),
            ActionConfigError::InputFileNotJson { .. }
        ));
    }
}
