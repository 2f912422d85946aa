//! Decisions: Lambda's asynchronous-invocation destination record (the trigger's on-failure
//! destination), and what to do with it: record `JobFailed` for the original job, with a message
//! saying that the trigger failed on every attempt.
//!
//! The record, as Lambda documents it: `{"version": "1.0", "timestamp", "requestContext":
//! {"requestId", "functionArn", "condition", "approximateInvokeCount"}, "requestPayload": <the
//! original event>, "responseContext": {"statusCode", "executedVersion", "functionError"},
//! "responsePayload": <the last attempt's answer>}`. The `requestPayload` is the CodePipeline job
//! event, `artifactCredentials` included: only its job id and its continuation token are read
//! here, and of the token only the execution it names is kept.
//!
//! A record of a poll invocation (its job data carries a continuation token) ends the job while
//! the Standard execution the token names may still run: the failure names that execution, as
//! its `externalExecutionId` and in its message, so nobody retries the stage without looking.

use serde_json::Value;

use crate::event;
use crate::outcome::{self, MAX_EXTERNAL_EXECUTION_ID_CHARS, MAX_FAILURE_MESSAGE_CHARS};
use crate::token::ContinuationToken;

/// `requestContext.condition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    RetriesExhausted,
    EventAgeExceeded,
    Success,
    Other(String),
}

impl Condition {
    pub fn parse(s: &str) -> Self {
        match s {
            "RetriesExhausted" => Self::RetriesExhausted,
            "EventAgeExceeded" => Self::EventAgeExceeded,
            "Success" => Self::Success,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::RetriesExhausted => "RetriesExhausted",
            Self::EventAgeExceeded => "EventAgeExceeded",
            Self::Success => "Success",
            Self::Other(s) => s,
        }
    }
}

/// What this function reads of a destination record (never the request payload itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub condition: Condition,
    /// `requestContext.approximateInvokeCount`: the attempts made.
    pub attempts: Option<u64>,
    /// `requestContext.requestId` of the asynchronous invocation.
    pub request_id: Option<String>,
    /// `requestContext.functionArn`: the function that failed.
    pub function_arn: Option<String>,
    /// `requestPayload["CodePipeline.job"].id`, when the original event is a job event.
    pub job_id: Option<String>,
    /// The execution named by `requestPayload["CodePipeline.job"].data.continuationToken`, when
    /// the failed invocation was a poll: that execution may still be running. A token that does
    /// not parse ([`ContinuationToken::decode`]) is ignored.
    pub execution_arn: Option<String>,
    /// `responsePayload.errorType` and `.errorMessage`, when the last attempt answered with an
    /// error document.
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    /// `responseContext.functionError` (`Unhandled`).
    pub function_error: Option<String>,
}

/// Whether `payload` is a destination record (rather than a job event): a `requestContext` with
/// a `condition`, and a `requestPayload`.
pub fn is_record(payload: &Value) -> bool {
    payload
        .get("requestContext")
        .and_then(|c| c.get("condition"))
        .is_some_and(Value::is_string)
        && payload.get("requestPayload").is_some()
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The execution the original event's continuation token names; only the token is read (never
/// the job data around it, which holds the artifact credentials).
fn polled_execution(payload: &Value) -> Option<String> {
    let raw = text(
        payload,
        &["requestPayload", "CodePipeline.job", "data", "continuationToken"],
    )?;
    ContinuationToken::decode(&raw).ok().map(|t| t.execution_arn)
}

impl Record {
    /// Reads a destination record; `None` when `payload` is not one ([`is_record`]).
    pub fn from_payload(payload: &Value) -> Option<Self> {
        if !is_record(payload) {
            return None;
        }
        let response = payload.get("responsePayload").unwrap_or(&Value::Null);
        Some(Self {
            condition: Condition::parse(&text(payload, &["requestContext", "condition"])?),
            attempts: payload["requestContext"]
                .get("approximateInvokeCount")
                .and_then(Value::as_u64),
            request_id: text(payload, &["requestContext", "requestId"]),
            function_arn: text(payload, &["requestContext", "functionArn"]),
            job_id: payload
                .get("requestPayload")
                .and_then(event::job_id)
                .map(str::to_owned),
            execution_arn: polled_execution(payload),
            error_type: text(response, &["errorType"]),
            error_message: text(response, &["errorMessage"]),
            function_error: text(payload, &["responseContext", "functionError"]),
        })
    }
}

/// A record this function does not act on; each is returned to Lambda under its own
/// `errorType`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error(
        "the destination record's condition is Success: the pipeline trigger answered the job \
         itself, so there is nothing to end (is this function configured as an on-success \
         destination?)"
    )]
    NotAFailure,
    #[error("the destination record's condition is {0}, not RetriesExhausted or EventAgeExceeded")]
    UnknownCondition(String),
    #[error(
        "the destination record's requestPayload is not a CodePipeline job event: \
         \"CodePipeline.job\".\"id\" is missing"
    )]
    NotAJobEvent,
}

/// What to do with a failure record: fail `job_id` with `message` (type `JobFailed`), linking
/// the execution that may still be running, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndJob {
    pub job_id: String,
    pub message: String,
    /// The polled execution's ARN (the failure's `externalExecutionId`), at most CodePipeline's
    /// limit.
    pub external_execution_id: Option<String>,
}

/// The decision for a record: end its job, or refuse it.
pub fn decide(record: &Record) -> Result<EndJob, RecordError> {
    match &record.condition {
        Condition::RetriesExhausted | Condition::EventAgeExceeded => {}
        Condition::Success => return Err(RecordError::NotAFailure),
        Condition::Other(other) => return Err(RecordError::UnknownCondition(other.clone())),
    }
    let job_id = record.job_id.clone().ok_or(RecordError::NotAJobEvent)?;
    Ok(EndJob {
        job_id,
        message: message(record),
        external_execution_id: record
            .execution_arn
            .as_deref()
            .map(|arn| outcome::truncate_chars(arn, MAX_EXTERNAL_EXECUTION_ID_CHARS)),
    })
}

/// The failure message: the trigger failed on every attempt, the condition and attempts, the
/// execution that may still be running (before the last error, so a long error never cuts it
/// off), then the last error's type and message when the record has them; at most
/// CodePipeline's limit.
pub fn message(record: &Record) -> String {
    let attempts = match record.attempts {
        Some(1) => "1 attempt".to_owned(),
        Some(n) => format!("{n} attempts"),
        None => "an unknown number of attempts".to_owned(),
    };
    let why = match record.condition {
        Condition::EventAgeExceeded => "the event's maximum age ran out before an attempt succeeded",
        _ => "Lambda's retries are exhausted",
    };
    let mut out = format!(
        "The pipeline trigger function failed on every attempt to handle this job ({}: {why}; \
         {attempts}), so its on-failure destination ended the job",
        record.condition.as_str()
    );
    if let Some(arn) = &record.execution_arn {
        out.push_str(&format!(
            ". The Step Functions execution {arn} may still be running: the job was ended while \
             the trigger was polling it, so check or stop that execution before retrying the \
             stage, or the retry starts a second one"
        ));
    }
    match (&record.error_type, &record.error_message) {
        (Some(t), Some(m)) => out.push_str(&format!(". Last error: {t}: {m}")),
        (Some(t), None) => out.push_str(&format!(". Last error: {t}")),
        (None, Some(m)) => out.push_str(&format!(". Last error: {m}")),
        (None, None) => out.push_str(". The record carries no error details"),
    }
    if let Some(arn) = &record.function_arn {
        out.push_str(&format!(" (function {arn}"));
        if let Some(id) = &record.request_id {
            out.push_str(&format!(", request {id}"));
        }
        out.push(')');
    }
    out.push_str("; see the function's logs.");
    outcome::truncate_chars(&out, MAX_FAILURE_MESSAGE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JOB: &str = "11111111-abcd-1111-abcd-111111abcdef";
    const ARN: &str = "arn:aws:lambda:us-east-1:111111111111:function:pipeline-trigger";
    const EXEC: &str = "arn:aws:states:us-east-1:111111111111:execution:deploy:codepipeline-11111111-abcd-1111-abcd-111111abcdef";
    const SECRETS: [&str; 3] = [
        "AKIAEXAMPLECREDENTIAL",
        "secretExampleValue",
        "sessionTokenExampleValue",
    ];

    fn fixture(name: &str) -> Value {
        let text = match name {
            "retries" => include_str!("../tests/fixtures/destination-retries-exhausted.json"),
            "age" => include_str!("../tests/fixtures/destination-event-age-exceeded.json"),
            "success" => include_str!("../tests/fixtures/destination-success.json"),
            "poll" => include_str!("../tests/fixtures/destination-poll-retries-exhausted.json"),
            _ => unreachable!(),
        };
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn reads_lambdas_record() {
        let record = Record::from_payload(&fixture("retries")).unwrap();
        assert_eq!(
            record,
            Record {
                condition: Condition::RetriesExhausted,
                attempts: Some(3),
                request_id: Some("e4b46cbf-b738-xmpl-8880-a18cdf61200e".into()),
                function_arn: Some(format!("{ARN}:$LATEST")),
                job_id: Some(JOB.into()),
                execution_arn: None,
                error_type: Some("Runtime.ExitError".into()),
                error_message: Some(
                    "RequestId: e4b46cbf-b738-xmpl-8880-a18cdf61200e Error: Runtime exited with error: exit status 101"
                        .into()
                ),
                function_error: Some("Unhandled".into()),
            }
        );
        let debug = format!("{record:?}");
        for secret in SECRETS {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn a_polls_record_names_the_execution_its_token_names() {
        let payload = fixture("poll");
        // The fixture's token is one this function issues.
        assert_eq!(
            payload["requestPayload"]["CodePipeline.job"]["data"]["continuationToken"],
            json!(ContinuationToken::new(EXEC, 4).encode().unwrap())
        );
        let record = Record::from_payload(&payload).unwrap();
        assert_eq!(
            record,
            Record {
                execution_arn: Some(EXEC.into()),
                ..Record::from_payload(&fixture("retries")).unwrap()
            }
        );
        let debug = format!("{record:?}");
        for secret in SECRETS.iter().chain(&["polls", "continuationToken"]) {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn a_polls_failure_links_the_execution_and_says_it_may_still_run() {
        let end = decide(&Record::from_payload(&fixture("poll")).unwrap()).unwrap();
        assert_eq!(end.job_id, JOB);
        assert_eq!(end.external_execution_id.as_deref(), Some(EXEC));
        assert_eq!(
            end.message,
            format!(
                "The pipeline trigger function failed on every attempt to handle this job \
                 (RetriesExhausted: Lambda's retries are exhausted; 3 attempts), so its on-failure \
                 destination ended the job. The Step Functions execution {EXEC} may still be \
                 running: the job was ended while the trigger was polling it, so check or stop \
                 that execution before retrying the stage, or the retry starts a second one. Last \
                 error: Runtime.ExitError: RequestId: e4b46cbf-b738-xmpl-8880-a18cdf61200e Error: \
                 Runtime exited with error: exit status 101 (function {ARN}:$LATEST, request \
                 e4b46cbf-b738-xmpl-8880-a18cdf61200e); see the function's logs."
            )
        );
        // A first invocation's record has no execution to name.
        let first = decide(&Record::from_payload(&fixture("retries")).unwrap()).unwrap();
        assert_eq!(first.external_execution_id, None);
        assert!(
            !first.message.contains("may still be running"),
            "{}",
            first.message
        );
    }

    #[test]
    fn a_token_that_does_not_parse_is_ignored() {
        let plain = decide(&Record::from_payload(&fixture("retries")).unwrap()).unwrap();
        for token in [
            json!("not json"),
            json!(""),
            json!("{}"),
            json!(r#"{"executionArn": "arn:aws:states:us-east-1:1:stateMachine:deploy"}"#),
            json!(r#"{"executionArn": "x", "polls": 2}"#),
            json!(7),
            json!({"executionArn": EXEC}),
            json!(null),
        ] {
            let mut payload = fixture("poll");
            payload["requestPayload"]["CodePipeline.job"]["data"]["continuationToken"] = token.clone();
            let record = Record::from_payload(&payload).unwrap();
            assert_eq!(record.execution_arn, None, "{token}");
            assert_eq!(decide(&record).unwrap(), plain, "{token}");
        }
        // The sample's token spelling names an execution too.
        let mut payload = fixture("retries");
        payload["requestPayload"]["CodePipeline.job"]["data"]["continuationToken"] =
            json!(format!(r#"{{"stateMachineExecutionArn": "{EXEC}"}}"#));
        let record = Record::from_payload(&payload).unwrap();
        assert_eq!(record.execution_arn.as_deref(), Some(EXEC));
    }

    #[test]
    fn a_long_error_never_cuts_off_the_running_execution() {
        let record = Record {
            error_message: Some("x".repeat(20_000)),
            ..Record::from_payload(&fixture("poll")).unwrap()
        };
        let end = decide(&record).unwrap();
        assert_eq!(end.message.chars().count(), MAX_FAILURE_MESSAGE_CHARS);
        assert!(end.message.ends_with("... [truncated]"));
        assert!(end.message.contains(&format!(
            "The Step Functions execution {EXEC} may still be running"
        )));
        assert_eq!(end.external_execution_id.as_deref(), Some(EXEC));
    }

    #[test]
    fn a_failure_record_ends_the_job_with_the_last_error() {
        let end = decide(&Record::from_payload(&fixture("retries")).unwrap()).unwrap();
        assert_eq!(end.job_id, JOB);
        assert_eq!(
            end.message,
            format!(
                "The pipeline trigger function failed on every attempt to handle this job \
                 (RetriesExhausted: Lambda's retries are exhausted; 3 attempts), so its on-failure \
                 destination ended the job. Last error: Runtime.ExitError: RequestId: \
                 e4b46cbf-b738-xmpl-8880-a18cdf61200e Error: Runtime exited with error: exit status 101 \
                 (function {ARN}:$LATEST, request e4b46cbf-b738-xmpl-8880-a18cdf61200e); see the \
                 function's logs."
            )
        );
        let aged = decide(&Record::from_payload(&fixture("age")).unwrap()).unwrap();
        assert!(
            aged.message.contains(
                "(EventAgeExceeded: the event's maximum age ran out before an attempt succeeded; 1 attempt)"
            ),
            "{}",
            aged.message
        );
        assert!(
            aged.message
                .contains("Last error: Sandbox.Timedout: Task timed out after 30.00 seconds")
        );
    }

    #[test]
    fn the_message_says_what_the_record_says() {
        let base = Record::from_payload(&fixture("retries")).unwrap();
        let function = format!("(function {ARN}:$LATEST); see");
        let cases: Vec<(Record, &str)> = vec![
            (
                Record {
                    error_message: None,
                    ..base.clone()
                },
                ". Last error: Runtime.ExitError (function",
            ),
            (
                Record {
                    error_type: None,
                    ..base.clone()
                },
                ". Last error: RequestId: e4b46cbf",
            ),
            (
                Record {
                    error_type: None,
                    error_message: None,
                    function_arn: None,
                    ..base.clone()
                },
                "ended the job. The record carries no error details; see the function's logs.",
            ),
            (
                Record {
                    attempts: None,
                    request_id: None,
                    ..base.clone()
                },
                "an unknown number of attempts), so",
            ),
            (
                Record {
                    request_id: None,
                    ..base.clone()
                },
                &function,
            ),
        ];
        for (record, expected) in cases {
            let m = message(&record);
            assert!(m.contains(expected), "{expected:?} not in {m:?}");
        }
    }

    #[test]
    fn a_long_error_is_cut_to_codepipelines_limit() {
        let record = Record {
            error_message: Some("é".repeat(20_000)),
            ..Record::from_payload(&fixture("retries")).unwrap()
        };
        let m = decide(&record).unwrap().message;
        assert_eq!(m.chars().count(), MAX_FAILURE_MESSAGE_CHARS);
        assert!(m.ends_with("... [truncated]"));
    }

    #[test]
    fn records_that_end_no_job_are_refused_by_name() {
        let success = Record::from_payload(&fixture("success")).unwrap();
        assert_eq!(success.condition, Condition::Success);
        assert_eq!(decide(&success), Err(RecordError::NotAFailure));
        let mut other = fixture("retries");
        other["requestContext"]["condition"] = json!("SomethingNew");
        assert_eq!(
            decide(&Record::from_payload(&other).unwrap()),
            Err(RecordError::UnknownCondition("SomethingNew".into()))
        );
        for payload in [
            json!({"Records": []}),
            json!("text"),
            json!(null),
            json!({"CodePipeline.job": {"id": ""}}),
        ] {
            let mut record = fixture("retries");
            record["requestPayload"] = payload;
            let record = Record::from_payload(&record).unwrap();
            assert_eq!(record.job_id, None);
            assert_eq!(decide(&record), Err(RecordError::NotAJobEvent));
        }
    }

    #[test]
    fn only_records_are_records() {
        assert!(is_record(&fixture("retries")));
        let job: Value = serde_json::from_str(include_str!("../tests/fixtures/job-first.json")).unwrap();
        assert!(!is_record(&job));
        assert_eq!(Record::from_payload(&job), None);
        assert!(!is_record(
            &json!({"requestContext": {"condition": 1}, "requestPayload": {}})
        ));
        assert!(!is_record(
            &json!({"requestContext": {"condition": "RetriesExhausted"}})
        ));
        // Any response payload: a string, a number, null.
        for response in [json!("boom"), json!(7), json!(null), json!({"errorType": 5})] {
            let mut record = fixture("retries");
            record["responsePayload"] = response;
            let record = Record::from_payload(&record).unwrap();
            assert_eq!((record.error_type, record.error_message), (None, None));
        }
    }
}
