//! The CodePipeline side of a Lambda invoke action: make job events, invoke the function
//! through the Lambda Invoke API, read the job's result back from the emulator and, while the
//! result carries a continuation token, invoke again with a new job, as CodePipeline does.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::codepipeline::RecordedCall;
use crate::stack::{ACCOUNT, LocalStack};

/// The fake artifact credentials put in every job event: random per action, so a test can
/// search the logs for them.
#[derive(Debug, Clone)]
pub struct FakeCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

impl FakeCredentials {
    pub fn random() -> Self {
        let r = || uuid::Uuid::new_v4().simple().to_string();
        Self {
            access_key_id: format!("ASIA{}", &r()[..16].to_uppercase()),
            secret_access_key: format!("{}{}", r(), &r()[..8]),
            session_token: format!("IQoJb3JpZ2luX2Vj{}{}{}", r(), r(), r()),
        }
    }

    pub fn values(&self) -> [&str; 3] {
        [&self.access_key_id, &self.secret_access_key, &self.session_token]
    }
}

/// The source artifact handed to the action.
#[derive(Debug, Clone)]
pub struct InputArtifact {
    pub bucket: String,
    pub key: String,
    pub revision: String,
}

/// The output artifact the action declares: where CodePipeline would have the function write it.
#[derive(Debug, Clone)]
pub struct OutputArtifact {
    pub name: String,
    pub bucket: String,
    pub key: String,
    /// The pipeline's KMS key (`encryptionKey.id`), if any.
    pub kms_key_id: Option<String>,
}

/// One pipeline action to run.
#[derive(Debug, Clone)]
pub struct ActionSpec {
    pub function: String,
    pub user_parameters: Option<String>,
    pub input_artifact: Option<InputArtifact>,
    pub output_artifact: Option<OutputArtifact>,
    pub credentials: FakeCredentials,
    /// CodePipeline waits about 30 s between continuations; locally, much less.
    pub poll_interval: Duration,
    pub max_invocations: usize,
}

impl ActionSpec {
    pub fn new(
        function: &str,
        user_parameters: Option<String>,
        input_artifact: Option<InputArtifact>,
    ) -> Self {
        Self {
            function: function.to_owned(),
            user_parameters,
            input_artifact,
            output_artifact: None,
            credentials: FakeCredentials::random(),
            poll_interval: Duration::from_millis(500),
            max_invocations: 120,
        }
    }
}

/// A CodePipeline job event as Lambda receives it.
pub fn job_event(job_id: &str, spec: &ActionSpec, continuation_token: Option<&str>) -> Value {
    let mut data = json!({
        "actionConfiguration": {"configuration": {"FunctionName": spec.function}},
        "inputArtifacts": spec.input_artifact.iter().map(|a| json!({
            "name": "SourceArtifact",
            "revision": a.revision,
            "location": {"type": "S3", "s3Location": {"bucketName": a.bucket, "objectKey": a.key}},
        })).collect::<Vec<_>>(),
        "outputArtifacts": spec.output_artifact.iter().map(|a| json!({
            "name": a.name,
            "location": {"type": "S3", "s3Location": {"bucketName": a.bucket, "objectKey": a.key}},
        })).collect::<Vec<_>>(),
        "artifactCredentials": {
            "accessKeyId": spec.credentials.access_key_id,
            "secretAccessKey": spec.credentials.secret_access_key,
            "sessionToken": spec.credentials.session_token,
            "expirationTime": 1_900_000_000_000u64,
        },
    });
    if let Some(id) = spec.output_artifact.as_ref().and_then(|a| a.kms_key_id.as_ref()) {
        data["encryptionKey"] = json!({"id": id, "type": "KMS"});
    }
    if let Some(p) = &spec.user_parameters {
        data["actionConfiguration"]["configuration"]["UserParameters"] = json!(p);
    }
    if let Some(t) = continuation_token {
        data["continuationToken"] = json!(t);
    }
    json!({"CodePipeline.job": {"id": job_id, "accountId": ACCOUNT, "data": data}})
}

/// What one invocation did.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub job_id: String,
    /// `X-Amz-Function-Error`, when the handler returned an error.
    pub function_error: Option<String>,
    pub payload: String,
    /// The result the emulator accepted for this job, if any.
    pub result: Option<RecordedCall>,
    /// Every call made for this job (accepted or refused).
    pub calls: Vec<RecordedCall>,
}

/// Invokes the function once with `event` (RequestResponse) and collects the job's results.
/// The event's artifact credentials are registered as caller
/// [`crate::recorder::ARTIFACT_CREDENTIALS`] first.
pub async fn invoke_job(
    stack: &LocalStack,
    function: &str,
    job_id: &str,
    event: &Value,
) -> anyhow::Result<Invocation> {
    let job_data = &event["CodePipeline.job"]["data"];
    if let Some(key) = str_at(job_data, &["artifactCredentials", "accessKeyId"]) {
        stack.register_caller(key, crate::recorder::ARTIFACT_CREDENTIALS);
    }
    let out = stack
        .lambda()
        .invoke()
        .function_name(function)
        .payload(aws_smithy_types::Blob::new(event.to_string()))
        .send()
        .await
        .context("Lambda Invoke")?;
    let payload = out
        .payload()
        .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
        .unwrap_or_default();
    let calls: Vec<RecordedCall> = stack
        .codepipeline_calls()
        .into_iter()
        .filter(|c| c.job_id.as_deref() == Some(job_id))
        .collect();
    let result = calls.iter().find(|c| c.error.is_none()).cloned();
    Ok(Invocation {
        job_id: job_id.to_owned(),
        function_error: out.function_error().map(str::to_owned),
        payload,
        result,
        calls,
    })
}

/// How the action ended, as a pipeline operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionStatus {
    Succeeded,
    Failed {
        failure_type: String,
        message: String,
    },
    /// An invocation left its job without a result: in CodePipeline the action would hang.
    NoResult {
        job_id: String,
        function_error: Option<String>,
        payload: String,
    },
    /// Still in progress after `max_invocations`.
    StillRunning,
}

impl ActionStatus {
    /// `(failure type, message)` of a failed action.
    pub fn failure(&self) -> Option<(&str, &str)> {
        match self {
            Self::Failed {
                failure_type,
                message,
            } => Some((failure_type, message)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ActionOutcome {
    pub status: ActionStatus,
    pub summaries: Vec<String>,
    pub external_execution_id: Option<String>,
    pub output_variables: BTreeMap<String, String>,
    pub invocations: Vec<Invocation>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Runs the action to its end: first job, then one new job per continuation.
pub async fn run_action(stack: &LocalStack, spec: &ActionSpec) -> anyhow::Result<ActionOutcome> {
    let mut token: Option<String> = None;
    let mut outcome = ActionOutcome {
        status: ActionStatus::StillRunning,
        summaries: Vec::new(),
        external_execution_id: None,
        output_variables: BTreeMap::new(),
        invocations: Vec::new(),
    };
    for n in 0..spec.max_invocations {
        if n > 0 {
            tokio::time::sleep(spec.poll_interval).await;
        }
        let job_id = uuid::Uuid::new_v4().to_string();
        let event = job_event(&job_id, spec, token.as_deref());
        let inv = invoke_job(stack, &spec.function, &job_id, &event).await?;
        let Some(result) = inv.result.clone() else {
            outcome.status = ActionStatus::NoResult {
                job_id,
                function_error: inv.function_error.clone(),
                payload: inv.payload.clone(),
            };
            outcome.invocations.push(inv);
            return Ok(outcome);
        };
        outcome.invocations.push(inv);
        let req = &result.request;
        if let Some(s) = str_at(req, &["executionDetails", "summary"]) {
            outcome.summaries.push(s.to_owned());
        }
        if let Some(id) = str_at(req, &["executionDetails", "externalExecutionId"])
            .or_else(|| str_at(req, &["failureDetails", "externalExecutionId"]))
        {
            outcome.external_execution_id = Some(id.to_owned());
        }
        match result.operation.as_str() {
            "PutJobSuccessResult" => match str_at(req, &["continuationToken"]) {
                Some(t) => token = Some(t.to_owned()),
                None => {
                    if let Some(vars) = req.get("outputVariables").and_then(Value::as_object) {
                        outcome.output_variables = vars
                            .iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect();
                    }
                    outcome.status = ActionStatus::Succeeded;
                    return Ok(outcome);
                }
            },
            "PutJobFailureResult" => {
                outcome.status = ActionStatus::Failed {
                    failure_type: str_at(req, &["failureDetails", "type"])
                        .unwrap_or_default()
                        .to_owned(),
                    message: str_at(req, &["failureDetails", "message"])
                        .unwrap_or_default()
                        .to_owned(),
                };
                return Ok(outcome);
            }
            other => bail!("unexpected recorded operation {other}"),
        }
    }
    Ok(outcome)
}
