//! CodePipeline's job-worker result API, emulated: `PutJobSuccessResult` and
//! `PutJobFailureResult` over awsJson1.1 (`X-Amz-Target: CodePipeline_20150709.<Op>`), validating
//! what AWS validates and recording every call, accepted or not, for tests and the demo.
//!
//! Unknown job ids are accepted as new in-progress jobs (the emulator does not run pipelines);
//! a job accepts one result, a second is refused with `InvalidJobStateException`.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Map, Value};

pub const TARGET_PREFIX: &str = "CodePipeline_20150709.";
/// `FailureDetails.type`'s values.
pub const FAILURE_TYPES: [&str; 6] = [
    "JobFailed",
    "ConfigurationError",
    "PermissionError",
    "RevisionOutOfSync",
    "RevisionUnavailable",
    "SystemUnavailable",
];
const MAX_OUTPUT_VARIABLES_BYTES: usize = 122_880;

/// One call to the emulated API, as recorded.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecordedCall {
    pub seq: usize,
    pub operation: String,
    pub job_id: Option<String>,
    pub request: Value,
    /// `None` when accepted; otherwise the error code returned.
    pub error: Option<String>,
}

/// An awsJson1.1 error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    fn validation(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            code: "ValidationException",
            message: message.into(),
        }
    }

    pub fn body(&self) -> String {
        serde_json::json!({"__type": self.code, "message": self.message}).to_string()
    }
}

#[derive(Default)]
pub struct CodePipelineEmulator {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    calls: Vec<RecordedCall>,
    /// Job id -> the operation that answered it.
    answered: HashMap<String, String>,
}

fn is_job_id(id: &str) -> bool {
    // JobId pattern: [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| {
            g.len() == n
                && g.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

fn string_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError {
            status: 400,
            code: "SerializationException",
            message: format!("{path}{name} must be a string"),
        }),
    }
}

fn check_len(value: Option<&str>, name: &str, min: usize, max: usize) -> Result<(), ApiError> {
    if let Some(v) = value {
        let n = v.chars().count();
        if n < min || n > max {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at '{name}' failed to satisfy constraint: \
                 Member must have length between {min} and {max} inclusive (length {n})"
            )));
        }
    }
    Ok(())
}

fn object<'a>(v: &'a Value, name: &str) -> Result<&'a Map<String, Value>, ApiError> {
    v.as_object().ok_or_else(|| ApiError {
        status: 400,
        code: "SerializationException",
        message: format!("{name} must be an object"),
    })
}

fn validate_job_id(req: &Map<String, Value>) -> Result<String, ApiError> {
    let id = string_field(req, "jobId", "")?
        .ok_or_else(|| ApiError::validation("1 validation error detected: Value null at 'jobId' failed to satisfy constraint: Member must not be null"))?;
    if !is_job_id(id) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{id}' at 'jobId' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}"
        )));
    }
    Ok(id.to_owned())
}

fn validate_success(req: &Map<String, Value>) -> Result<(), ApiError> {
    let token = string_field(req, "continuationToken", "")?;
    check_len(token, "continuationToken", 1, 2048)?;
    if let Some(details) = req.get("executionDetails").filter(|v| !v.is_null()) {
        let d = object(details, "executionDetails")?;
        check_len(
            string_field(d, "summary", "executionDetails.")?,
            "executionDetails.summary",
            1,
            2048,
        )?;
        check_len(
            string_field(d, "externalExecutionId", "executionDetails.")?,
            "executionDetails.externalExecutionId",
            1,
            1500,
        )?;
        if let Some(p) = d.get("percentComplete").filter(|v| !v.is_null())
            && !p.as_i64().is_some_and(|p| (0..=100).contains(&p))
        {
            return Err(ApiError::validation(
                "1 validation error detected: Value at 'executionDetails.percentComplete' failed to \
                 satisfy constraint: Member must have value between 0 and 100",
            ));
        }
    }
    if let Some(rev) = req.get("currentRevision").filter(|v| !v.is_null()) {
        let r = object(rev, "currentRevision")?;
        let revision = string_field(r, "revision", "currentRevision.")?;
        let change = string_field(r, "changeIdentifier", "currentRevision.")?;
        if revision.is_none() || change.is_none() {
            return Err(ApiError::validation(
                "currentRevision needs both revision and changeIdentifier",
            ));
        }
        check_len(revision, "currentRevision.revision", 1, 1500)?;
        check_len(change, "currentRevision.changeIdentifier", 1, 100)?;
    }
    if let Some(vars) = req.get("outputVariables").filter(|v| !v.is_null()) {
        let vars = object(vars, "outputVariables")?;
        if token.is_some() {
            return Err(ApiError::validation(
                "outputVariables can only be specified when the job has no continuationToken",
            ));
        }
        let mut size = 0;
        for (k, v) in vars {
            let ok_name = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'@' || b == b'-' || b == b'_');
            if !ok_name {
                return Err(ApiError::validation(format!(
                    "output variable name '{k}' must match [A-Za-z0-9@\\-_]+"
                )));
            }
            let Some(v) = v.as_str() else {
                return Err(ApiError {
                    status: 400,
                    code: "SerializationException",
                    message: format!("output variable '{k}' must be a string"),
                });
            };
            size += k.len() + v.len();
        }
        if size > MAX_OUTPUT_VARIABLES_BYTES {
            return Err(ApiError {
                status: 400,
                code: "OutputVariablesSizeExceededException",
                message: format!(
                    "The size of the output variables ({size} bytes) exceeds the limit of {MAX_OUTPUT_VARIABLES_BYTES} bytes"
                ),
            });
        }
    }
    Ok(())
}

fn validate_failure(req: &Map<String, Value>) -> Result<(), ApiError> {
    let details = req
        .get("failureDetails")
        .filter(|v| !v.is_null())
        .ok_or_else(|| ApiError::validation("1 validation error detected: Value null at 'failureDetails' failed to satisfy constraint: Member must not be null"))?;
    let d = object(details, "failureDetails")?;
    let kind = string_field(d, "type", "failureDetails.")?.ok_or_else(|| {
        ApiError::validation("1 validation error detected: Value null at 'failureDetails.type' failed to satisfy constraint: Member must not be null")
    })?;
    if !FAILURE_TYPES.contains(&kind) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{kind}' at 'failureDetails.type' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            FAILURE_TYPES.join(", ")
        )));
    }
    let message = string_field(d, "message", "failureDetails.")?.ok_or_else(|| {
        ApiError::validation("1 validation error detected: Value null at 'failureDetails.message' failed to satisfy constraint: Member must not be null")
    })?;
    check_len(Some(message), "failureDetails.message", 1, 5000)?;
    check_len(
        string_field(d, "externalExecutionId", "failureDetails.")?,
        "failureDetails.externalExecutionId",
        1,
        1500,
    )?;
    Ok(())
}

impl CodePipelineEmulator {
    /// Handles one awsJson1.1 call. `target` is the `X-Amz-Target` header.
    pub fn handle(&self, target: &str, body: &[u8]) -> Result<Value, ApiError> {
        let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or(target).to_owned();
        let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let result = self.apply(&operation, &request);
        let job_id = request.get("jobId").and_then(Value::as_str).map(str::to_owned);
        if let Ok(mut inner) = self.inner.lock() {
            let seq = inner.calls.len() + 1;
            inner.calls.push(RecordedCall {
                seq,
                operation,
                job_id,
                request,
                error: result.as_ref().err().map(|e| e.code.to_owned()),
            });
        }
        result
    }

    fn apply(&self, operation: &str, request: &Value) -> Result<Value, ApiError> {
        let validate = match operation {
            "PutJobSuccessResult" => validate_success,
            "PutJobFailureResult" => validate_failure,
            other => {
                return Err(ApiError {
                    status: 400,
                    code: "UnknownOperationException",
                    message: format!("the local CodePipeline emulator does not implement {other}"),
                });
            }
        };
        let req = request.as_object().ok_or_else(|| ApiError {
            status: 400,
            code: "SerializationException",
            message: "the request body must be a JSON object".into(),
        })?;
        let job_id = validate_job_id(req)?;
        validate(req)?;
        let mut inner = self.inner.lock().map_err(|_| ApiError {
            status: 500,
            code: "InternalFailure",
            message: "emulator state poisoned".into(),
        })?;
        if let Some(previous) = inner.answered.get(&job_id) {
            return Err(ApiError {
                status: 400,
                code: "InvalidJobStateException",
                message: format!("Job {job_id} is not in progress: it was already answered by {previous}"),
            });
        }
        inner.answered.insert(job_id, operation.to_owned());
        Ok(Value::Object(Map::new()))
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.inner.lock().map(|i| i.calls.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JOB: &str = "0123abcd-0123-4567-89ab-0123456789ab";
    const SUCCESS: &str = "CodePipeline_20150709.PutJobSuccessResult";
    const FAILURE: &str = "CodePipeline_20150709.PutJobFailureResult";

    fn call(e: &CodePipelineEmulator, target: &str, body: Value) -> Result<Value, ApiError> {
        e.handle(target, body.to_string().as_bytes())
    }

    #[test]
    fn a_job_is_answered_once() {
        let e = CodePipelineEmulator::default();
        assert!(call(&e, SUCCESS, json!({"jobId": JOB, "continuationToken": "t"})).is_ok());
        let again = call(
            &e,
            FAILURE,
            json!({"jobId": JOB, "failureDetails": {"type": "JobFailed", "message": "m"}}),
        );
        assert_eq!(again.unwrap_err().code, "InvalidJobStateException");
        let calls = e.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].error, None);
        assert_eq!(calls[1].error.as_deref(), Some("InvalidJobStateException"));
    }

    #[test]
    fn validation() {
        let e = CodePipelineEmulator::default();
        let cases = [
            (SUCCESS, json!({}), "ValidationException"),
            (SUCCESS, json!({"jobId": "not-a-job"}), "ValidationException"),
            (
                SUCCESS,
                json!({"jobId": JOB, "continuationToken": ""}),
                "ValidationException",
            ),
            (
                SUCCESS,
                json!({"jobId": JOB, "continuationToken": "x".repeat(2049)}),
                "ValidationException",
            ),
            (
                SUCCESS,
                json!({"jobId": JOB, "executionDetails": {"summary": ""}}),
                "ValidationException",
            ),
            (
                SUCCESS,
                json!({"jobId": JOB, "executionDetails": {"summary": "s".repeat(2049)}}),
                "ValidationException",
            ),
            (
                SUCCESS,
                json!({"jobId": JOB, "executionDetails": {"externalExecutionId": "e".repeat(1501)}}),
                "ValidationException",
            ),
            (
                SUCCESS,
                json!({"jobId": JOB, "executionDetails": {"percentComplete": 101}}),
                "ValidationException",
            ),
            (
                SUCCESS,
                json!({"jobId": JOB, "continuationToken": "t", "outputVariables": {"a": "b"}}),
                "ValidationException",
            ),
            (
                SUCCESS,
                json!({"jobId": JOB, "outputVariables": {"a.b": "c"}}),
                "ValidationException",
            ),
            (
                SUCCESS,
                json!({"jobId": JOB, "outputVariables": {"a": "v".repeat(122_880)}}),
                "OutputVariablesSizeExceededException",
            ),
            (
                SUCCESS,
                json!({"jobId": JOB, "continuationToken": 5}),
                "SerializationException",
            ),
            (FAILURE, json!({"jobId": JOB}), "ValidationException"),
            (
                FAILURE,
                json!({"jobId": JOB, "failureDetails": {"type": "Oops", "message": "m"}}),
                "ValidationException",
            ),
            (
                FAILURE,
                json!({"jobId": JOB, "failureDetails": {"type": "JobFailed"}}),
                "ValidationException",
            ),
            (
                FAILURE,
                json!({"jobId": JOB, "failureDetails": {"type": "JobFailed", "message": ""}}),
                "ValidationException",
            ),
            (
                FAILURE,
                json!({"jobId": JOB, "failureDetails": {"type": "JobFailed", "message": "m".repeat(5001)}}),
                "ValidationException",
            ),
            (
                "CodePipeline_20150709.GetPipeline",
                json!({}),
                "UnknownOperationException",
            ),
        ];
        for (target, body, code) in cases {
            let err = call(&e, target, body.clone()).expect_err(&body.to_string());
            assert_eq!(err.code, code, "{body}");
        }
        // None of the refused calls answered the job.
        assert!(
            call(
                &e,
                FAILURE,
                json!({"jobId": JOB, "failureDetails": {"type": "JobFailed", "message": "m".repeat(5000)}})
            )
            .is_ok()
        );
        assert!(call(&e, SUCCESS, json!({"jobId": "11111111-2222-3333-4444-555555555555", "outputVariables": {"a": "v".repeat(122_879)}})).is_ok());
    }
}
