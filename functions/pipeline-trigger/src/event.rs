//! The request: the parts of a CodePipeline job event that this function reads; or, when the
//! event is Lambda's on-failure destination record, the parts of that record
//! ([`crate::destination::Record`]).
//!
//! Parsing is deliberately lenient: as long as the job id can be found, the function can answer
//! the job, so every other problem becomes a `ConfigurationError` result instead of a hung job.
//! `artifactCredentials` is read only into [`ArtifactCredentials`]: not `Serialize`, its `Debug`
//! prints no value, and its only use is the S3 client that writes the output artifact (the
//! payload holding it is dropped once the request is built).

use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use serde_json::Value;
use tracing::error;

use crate::destination;
use crate::error::HandlerError;

/// One invocation's event, typed: a job to answer, or a destination record ending a job whose
/// trigger invocation failed on every attempt.
#[derive(Debug)]
pub enum Event {
    Job(Request),
    Destination(destination::Record),
}

impl TryFrom<LambdaEvent<Value>> for Event {
    type Error = HandlerError;

    /// A destination record ([`destination::is_record`]) is read as one (the payload, holding
    /// the job event's credentials, is dropped); anything else as a job event.
    fn try_from(event: LambdaEvent<Value>) -> Result<Self, HandlerError> {
        match destination::Record::from_payload(&event.payload) {
            Some(record) => Ok(Self::Destination(record)),
            None => Request::try_from(event).map(Self::Job),
        }
    }
}

/// One invocation's request: the job to answer and what its data says.
#[derive(Debug)]
pub struct Request {
    /// `CodePipeline.job.id`, the id every result must be recorded against.
    pub job_id: String,
    /// `CodePipeline.job.accountId`, when present (and a string).
    pub account_id: Option<String>,
    /// The Lambda request id, logged with the job id.
    pub request_id: String,
    /// `CodePipeline.job.data`; malformed data is kept as its error, which becomes the job's
    /// failure result (the job id is known, so the job can still be answered).
    pub data: Result<JobData, serde_json::Error>,
}

impl Request {
    /// Reads the request from a job event's payload. `None` when it has no job id: there is then
    /// nothing to answer.
    pub fn from_payload(payload: &Value, request_id: impl Into<String>) -> Option<Self> {
        Some(Self {
            job_id: job_id(payload)?.to_owned(),
            account_id: account_id(payload).map(str::to_owned),
            request_id: request_id.into(),
            data: job_data(payload),
        })
    }

    /// The job data of a first invocation (no continuation token), when it is well formed.
    pub fn first_invocation(&self) -> Option<&JobData> {
        self.data.as_ref().ok().filter(|d| d.continuation_token.is_none())
    }
}

impl TryFrom<LambdaEvent<Value>> for Request {
    type Error = HandlerError;

    /// Fails with [`HandlerError::NotAJobEvent`] (`NotACodePipelineJob`) when the event has no
    /// job id.
    fn try_from(event: LambdaEvent<Value>) -> Result<Self, HandlerError> {
        Self::from_payload(&event.payload, event.context.request_id).ok_or_else(|| {
            error!("event has no CodePipeline job id; nothing can be answered");
            HandlerError::NotAJobEvent
        })
    }
}

/// `CodePipeline.job.id`, the id every result must be recorded against.
pub fn job_id(payload: &Value) -> Option<&str> {
    payload
        .get("CodePipeline.job")?
        .get("id")?
        .as_str()
        .filter(|id| !id.trim().is_empty())
}

/// `CodePipeline.job.accountId`, when present.
pub fn account_id(payload: &Value) -> Option<&str> {
    payload.get("CodePipeline.job")?.get("accountId")?.as_str()
}

/// Reads `CodePipeline.job.data` without copying it (the credentials stay where they are).
pub fn job_data(payload: &Value) -> Result<JobData, serde_json::Error> {
    match payload.get("CodePipeline.job").and_then(|j| j.get("data")) {
        Some(data) => JobData::deserialize(data),
        None => Ok(JobData::default()),
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JobData {
    #[serde(default)]
    pub action_configuration: Option<ActionConfiguration>,
    #[serde(default)]
    pub input_artifacts: Vec<Artifact>,
    /// The artifacts the action declares it outputs; a malformed list is kept as its error,
    /// reported only if the job gets to write its output artifact.
    #[serde(
        default = "no_output_artifacts",
        deserialize_with = "lenient_output_artifacts"
    )]
    pub output_artifacts: Result<Vec<Artifact>, String>,
    /// The credentials for the job's artifacts; `None` when absent, `Some(Err(()))` when not
    /// usable (the parse error is not kept: it could quote a secret).
    #[serde(default, deserialize_with = "lenient_credentials")]
    pub artifact_credentials: Option<Result<ArtifactCredentials, ()>>,
    /// The KMS key the job's artifacts are encrypted with; absent for S3's default key. A
    /// malformed one is kept as its error, reported only if the job writes its output artifact.
    #[serde(default, deserialize_with = "lenient_key")]
    pub encryption_key: Option<Result<EncryptionKey, String>>,
    #[serde(default)]
    pub continuation_token: Option<String>,
}

impl Default for JobData {
    fn default() -> Self {
        Self {
            action_configuration: None,
            input_artifacts: Vec::new(),
            output_artifacts: no_output_artifacts(),
            artifact_credentials: None,
            encryption_key: None,
            continuation_token: None,
        }
    }
}

fn no_output_artifacts() -> Result<Vec<Artifact>, String> {
    Ok(Vec::new())
}

/// A field read whatever its shape: `None` when null (or absent, with `#[serde(default)]`), else
/// the value, or why it is not one.
fn lenient<'de, T, D>(d: D) -> Result<Option<Result<T, serde_json::Error>>, D::Error>
where
    T: serde::de::DeserializeOwned,
    D: serde::Deserializer<'de>,
{
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        other => Some(serde_json::from_value(other)),
    })
}

fn lenient_output_artifacts<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Result<Vec<Artifact>, String>, D::Error> {
    Ok(lenient(d)?.map_or_else(no_output_artifacts, |r| r.map_err(|e| e.to_string())))
}

/// The parse error is dropped at once: it could quote a secret.
fn lenient_credentials<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Result<ArtifactCredentials, ()>>, D::Error> {
    Ok(lenient(d)?.map(|r| r.map_err(|_| ())))
}

fn lenient_key<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Result<EncryptionKey, String>>, D::Error> {
    Ok(lenient(d)?.map(|r| r.map_err(|e| e.to_string())))
}

/// `artifactCredentials`: temporary credentials for the pipeline's artifact bucket (and its KMS
/// key). No value is ever printed: `Debug` shows only that they are there.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    #[serde(default)]
    expiration_time: Option<u64>,
}

impl ArtifactCredentials {
    /// The credentials for an SDK client (the expiry, in milliseconds since the epoch, when given).
    pub fn sdk_credentials(&self) -> aws_sdk_s3::config::Credentials {
        let expiry = self
            .expiration_time
            .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
        aws_sdk_s3::config::Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.clone(),
            Some(self.session_token.clone()),
            expiry,
            "codepipeline-artifact-credentials",
        )
    }
}

impl std::fmt::Debug for ArtifactCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArtifactCredentials(redacted)")
    }
}

/// `encryptionKey`: the key the pipeline encrypts its artifacts with.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct EncryptionKey {
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

impl JobData {
    /// The action's `UserParameters` string, if configured.
    pub fn user_parameters(&self) -> Option<&str> {
        self.action_configuration
            .as_ref()?
            .configuration
            .as_ref()?
            .user_parameters
            .as_deref()
    }

    /// The S3 location of the first input artifact, the revision the pipeline is working on.
    pub fn first_input_revision(&self) -> Option<Revision<'_>> {
        let artifact = self.input_artifacts.first()?;
        let s3 = artifact.location.as_ref()?.s3_location.as_ref()?;
        Some(Revision {
            bucket: &s3.bucket_name,
            key: &s3.object_key,
            revision: artifact.revision.as_deref(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub revision: Option<&'a str>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ActionConfiguration {
    #[serde(default)]
    pub configuration: Option<ActionConfigurationValues>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ActionConfigurationValues {
    #[serde(rename = "UserParameters", default)]
    pub user_parameters: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    #[serde(default)]
    pub name: Option<Value>,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub location: Option<ArtifactLocation>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactLocation {
    #[serde(default)]
    pub s3_location: Option<S3Location>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct S3Location {
    pub bucket_name: String,
    pub object_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture() -> Value {
        serde_json::from_str(include_str!("../tests/fixtures/job-first.json")).unwrap()
    }

    #[test]
    fn reads_the_sample_event() {
        let event = fixture();
        assert_eq!(job_id(&event), Some("11111111-abcd-1111-abcd-111111abcdef"));
        assert_eq!(account_id(&event), Some("111111111111"));
        let data = job_data(&event).unwrap();
        assert_eq!(
            data.user_parameters(),
            Some(r#"{"s3Bucket": "pipeline-inputs", "stateMachineFile": "deploy/prod.json"}"#)
        );
        assert_eq!(data.continuation_token, None);
        let rev = data.first_input_revision().unwrap();
        assert_eq!(rev.bucket, "codepipeline-artifacts");
        assert_eq!(rev.key, "MyPipeline/SourceArti/abcdEFG");
        assert_eq!(rev.revision, Some("3b9a7c1e"));
    }

    #[test]
    fn continuation_event_has_token() {
        let event: Value =
            serde_json::from_str(include_str!("../tests/fixtures/job-continuation.json")).unwrap();
        let data = job_data(&event).unwrap();
        assert!(data.continuation_token.unwrap().contains("executionArn"));
    }

    #[test]
    fn missing_pieces_are_not_fatal() {
        let event = json!({"CodePipeline.job": {"id": "j1"}});
        assert_eq!(job_id(&event), Some("j1"));
        let data = job_data(&event).unwrap();
        assert_eq!(data.user_parameters(), None);
        assert_eq!(data.first_input_revision(), None);
    }

    #[test]
    fn no_job_id() {
        assert_eq!(job_id(&json!({})), None);
        assert_eq!(job_id(&json!({"CodePipeline.job": {"id": ""}})), None);
        assert_eq!(job_id(&json!({"CodePipeline.job": {"id": 7}})), None);
    }

    #[test]
    fn wrong_types_are_reported() {
        let event = json!({"CodePipeline.job": {"id": "j", "data": {"inputArtifacts": "nope"}}});
        assert!(job_data(&event).is_err());
    }

    #[test]
    fn credentials_are_not_part_of_the_model() {
        let data = job_data(&fixture()).unwrap();
        let debug = format!("{data:?}");
        assert!(!debug.contains("AKIAEXAMPLECREDENTIAL"));
        assert!(!debug.contains("secretExampleValue"));
        let request = Request::from_payload(&fixture(), "req").unwrap();
        let debug = format!("{request:?}");
        assert!(debug.contains("11111111-abcd-1111-abcd-111111abcdef"), "{debug}");
        assert!(!debug.contains("AKIAEXAMPLECREDENTIAL"));
        assert!(!debug.contains("secretExampleValue"));
        assert!(!debug.contains("sessionTokenExampleValue"));
    }

    fn event(payload: Value) -> LambdaEvent<Value> {
        let mut context = lambda_runtime::Context::default();
        context.request_id = "req-1".into();
        LambdaEvent::new(payload, context)
    }

    #[test]
    fn the_request_of_a_job_event() {
        let request = Request::try_from(event(fixture())).unwrap();
        assert_eq!(request.job_id, "11111111-abcd-1111-abcd-111111abcdef");
        assert_eq!(request.account_id.as_deref(), Some("111111111111"));
        assert_eq!(request.request_id, "req-1");
        assert_eq!(request.data.as_ref().unwrap(), &job_data(&fixture()).unwrap());
        assert!(request.first_invocation().is_some());
        let continuation: Value =
            serde_json::from_str(include_str!("../tests/fixtures/job-continuation.json")).unwrap();
        assert!(
            Request::try_from(event(continuation))
                .unwrap()
                .first_invocation()
                .is_none()
        );
    }

    #[test]
    fn malformed_job_data_still_makes_a_request_for_the_job() {
        let request = Request::try_from(event(
            json!({"CodePipeline.job": {"id": "j", "data": {"inputArtifacts": "nope"}}}),
        ))
        .unwrap();
        assert_eq!(request.job_id, "j");
        assert_eq!(request.account_id, None);
        assert!(request.data.is_err());
        assert!(request.first_invocation().is_none());
    }

    #[test]
    fn an_event_without_a_job_id_is_not_a_request() {
        for payload in [
            json!({}),
            json!({"CodePipeline.job": {"id": " "}}),
            json!({"Records": []}),
        ] {
            let err = Request::try_from(event(payload)).unwrap_err();
            assert!(matches!(err, HandlerError::NotAJobEvent), "{err:?}");
        }
    }

    #[test]
    fn fields_this_function_does_not_read_may_have_any_shape() {
        let payload = json!({"CodePipeline.job": {"id": "j", "data": {
            "actionConfiguration": {"configuration": {"FunctionName": 7, "UserParameters": "{}"}},
            "inputArtifacts": [{"name": ["x"], "revision": "r", "location": {"type": {"S3": true},
                "s3Location": {"bucketName": "b", "objectKey": "k"}}}],
            "outputArtifacts": "anything",
            "artifactCredentials": 42
        }}});
        let data = job_data(&payload).unwrap();
        assert_eq!(data.user_parameters(), Some("{}"));
        assert_eq!(
            data.first_input_revision(),
            Some(Revision {
                bucket: "b",
                key: "k",
                revision: Some("r")
            })
        );
    }
}
