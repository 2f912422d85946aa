//! `StartSyncExecution`, which moto does not implement: run as a real execution in moto and
//! answered as AWS answers it.
//!
//! The state machine must exist in moto (else moto's `StateMachineDoesNotExist` is passed on)
//! and be `EXPRESS`: the type it was created with through the gateway, else the one moto
//! recorded (`STANDARD` for what CloudFormation created); otherwise `StateMachineTypeNotSupported`.
//! Then the name, `includedData` and the input are checked (`InvalidName`, `ValidationException`,
//! `InvalidExecutionInput`), and the execution is started in moto under the given name (a fresh
//! UUID when none is given; a unique variant when moto already has an execution of that name,
//! Express names need not be unique) and polled every 50 ms.
//!
//! The calls made to moto carry the caller's `Authorization` header (moto does not check
//! signatures but routes by the credential scope, `…/<region>/states/aws4_request`), or a dummy
//! one with that scope.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{
    CONTENT_TYPE, EXPRESS, SfnEmulator, SfnError, TARGET_PREFIX, json_str, unqualified_state_machine_arn,
};
use crate::gateway::Gateway;

const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Express workflows are billed per started 100 ms, memory in 64 MB steps.
const BILLING_INCREMENT_MS: u128 = 100;
const MICROS_PER_MS: u128 = 1000;
const BILLED_MEMORY_MB: u64 = 64;

impl SfnEmulator {
    pub(super) async fn start_sync_execution(
        &self,
        gw: &Gateway,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Value, Response> {
        let request = SyncRequest::parse(body).map_err(IntoResponse::into_response)?;
        let moto = MotoClient::new(gw, headers);
        let described = moto
            .call(
                "DescribeStateMachine",
                json!({"stateMachineArn": request.state_machine_arn}),
            )
            .await
            .map_err(IntoResponse::into_response)?;
        let sm_type = self
            .state_machine_type(&request.state_machine_arn)
            .or_else(|| described.get("type").and_then(Value::as_str).map(str::to_owned));
        if sm_type.as_deref() != Some(EXPRESS) {
            return Err(SfnError::type_not_supported().into_response());
        }
        request.validate().map_err(IntoResponse::into_response)?;
        let start_date = SystemTime::now();
        let started = Instant::now();
        let moto_arn = self.start_in_moto(&moto, &request).await?;
        let execution_arn = express_execution_arn(
            &request.state_machine_arn,
            &request.name,
            &uuid::Uuid::new_v4().to_string(),
            &gw.region,
            &gw.account,
        );
        self.state()
            .executions
            .insert(execution_arn.clone(), moto_arn.clone());
        let outcome = self.wait_for(&moto, &moto_arn, started).await?;
        let run = SyncRun {
            execution_arn,
            start_date,
            stop_date: SystemTime::now(),
            duration: started.elapsed(),
        };
        Ok(sync_answer(&request, &run, &outcome))
    }

    /// Starts the execution in moto under the request's name, or under a unique variant of it
    /// when moto already has one of that name (Express workflows do not need unique names).
    async fn start_in_moto(&self, moto: &MotoClient<'_>, request: &SyncRequest) -> Result<String, Response> {
        let key = (
            unqualified_state_machine_arn(&request.state_machine_arn).to_owned(),
            request.name.clone(),
        );
        let fresh = self.state().names.insert(key);
        let unique = || format!("{}-{}", request.name, uuid::Uuid::new_v4().simple());
        let mut name = if fresh { request.name.clone() } else { unique() };
        let mut retried = false;
        loop {
            let mut body = json!({
                "stateMachineArn": request.state_machine_arn,
                "name": name,
                "input": request.input,
            });
            if let Some(trace) = &request.trace_header {
                body["traceHeader"] = trace.clone().into();
            }
            match moto.call("StartExecution", body).await {
                Ok(started) => {
                    return started
                        .get("executionArn")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            MotoError::Failed("StartExecution: no executionArn".into()).into_response()
                        });
                }
                Err(MotoError::Refused { code, .. })
                    if !retried && code.as_deref() == Some("ExecutionAlreadyExists") =>
                {
                    retried = true;
                    name = unique();
                }
                Err(e) => return Err(e.into_response()),
            }
        }
    }

    /// Polls moto until the execution is no longer `RUNNING`, or stops it at the time limit.
    async fn wait_for(
        &self,
        moto: &MotoClient<'_>,
        moto_arn: &str,
        started: Instant,
    ) -> Result<Outcome, Response> {
        let limit = self.express_max_duration();
        loop {
            let described = moto
                .call("DescribeExecution", json!({"executionArn": moto_arn}))
                .await
                .map_err(IntoResponse::into_response)?;
            if described.get("status").and_then(Value::as_str) != Some("RUNNING") {
                return Ok(Outcome::Finished(described));
            }
            let elapsed = started.elapsed();
            if elapsed >= limit {
                let stop = json!({"executionArn": moto_arn, "error": "States.Timeout"});
                let _ = moto.call("StopExecution", stop).await;
                return Ok(Outcome::TimedOut);
            }
            tokio::time::sleep(POLL_INTERVAL.min(limit.saturating_sub(elapsed))).await;
        }
    }
}

/// A `StartSyncExecution` request, parsed (`name` generated when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub state_machine_arn: String,
    pub name: String,
    pub input: String,
    pub trace_header: Option<String>,
    /// `includedData: METADATA_ONLY`: the answer leaves out input and output.
    pub metadata_only: bool,
    included_data: Option<String>,
}

impl SyncRequest {
    pub fn parse(body: &[u8]) -> Result<Self, SfnError> {
        let serialization = |m: &str| SfnError::client("SerializationException", m);
        let request: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            serde_json::from_slice(body).map_err(|e| serialization(&e.to_string()))?
        };
        let field = |name: &str| -> Result<Option<String>, SfnError> {
            match request.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(serialization(&format!("'{name}' must be a string"))),
            }
        };
        let state_machine_arn = field("stateMachineArn")?.ok_or_else(|| {
            SfnError::client(
                "ValidationException",
                "1 validation error detected: Value null at 'stateMachineArn' failed to satisfy constraint: \
                 Member must not be null",
            )
        })?;
        let included_data = field("includedData")?;
        Ok(Self {
            state_machine_arn,
            name: field("name")?.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            input: field("input")?.unwrap_or_else(|| "{}".to_owned()),
            trace_header: field("traceHeader")?,
            metadata_only: included_data.as_deref() == Some("METADATA_ONLY"),
            included_data,
        })
    }

    /// What AWS checks once the state machine is known: the name, `includedData`, the input.
    pub fn validate(&self) -> Result<(), SfnError> {
        if !valid_execution_name(&self.name) {
            return Err(SfnError::client(
                "InvalidName",
                format!("Invalid Name: '{}'", self.name),
            ));
        }
        if let Some(v) = self.included_data.as_deref()
            && v != "ALL_DATA"
            && v != "METADATA_ONLY"
        {
            let message = format!(
                "1 validation error detected: Value '{v}' at 'includedData' failed to satisfy constraint: \
                 Member must satisfy enum value set: [ALL_DATA, METADATA_ONLY]"
            );
            return Err(SfnError::client("ValidationException", message));
        }
        serde_json::from_str::<Value>(&self.input)
            .map(|_| ())
            .map_err(|e| {
                SfnError::client(
                    "InvalidExecutionInput",
                    format!("Invalid State Machine Execution Input: '{e}'"),
                )
            })
    }
}

/// How a synchronous execution ended in moto.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// moto's `DescribeExecution` answer once the status was no longer `RUNNING`.
    Finished(Value),
    /// Still running at the time limit (and stopped).
    TimedOut,
}

/// The timing of one synchronous execution, as the gateway measured it.
#[derive(Debug, Clone)]
pub struct SyncRun {
    pub execution_arn: String,
    pub start_date: SystemTime,
    pub stop_date: SystemTime,
    pub duration: Duration,
}

/// The `StartSyncExecution` answer for an execution that ended with `outcome`.
pub fn sync_answer(request: &SyncRequest, run: &SyncRun, outcome: &Outcome) -> Value {
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let (status, error, cause, output) = match outcome {
        Outcome::TimedOut => ("TIMED_OUT", Some("States.Timeout".to_owned()), None, None),
        Outcome::Finished(d) => match d.get("status").and_then(Value::as_str) {
            Some("SUCCEEDED") => (
                "SUCCEEDED",
                None,
                None,
                Some(text(d, "output").unwrap_or_else(|| "null".into())),
            ),
            Some("TIMED_OUT") => ("TIMED_OUT", text(d, "error"), text(d, "cause"), None),
            _ => ("FAILED", text(d, "error"), text(d, "cause"), None),
        },
    };
    let mut answer = json!({
        "executionArn": run.execution_arn,
        "stateMachineArn": request.state_machine_arn,
        "name": request.name,
        "startDate": epoch_seconds(run.start_date),
        "stopDate": epoch_seconds(run.stop_date),
        "status": status,
        "inputDetails": {"included": !request.metadata_only},
        "billingDetails": {
            "billedMemoryUsedInMB": BILLED_MEMORY_MB,
            "billedDurationInMilliseconds": billed_duration_ms(run.duration),
        },
    });
    let mut set = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            answer[key] = Value::String(v);
        }
    };
    set("error", error);
    set("cause", cause);
    set("traceHeader", request.trace_header.clone());
    if !request.metadata_only {
        set("input", Some(request.input.clone()));
    }
    if let Some(output) = output {
        answer["outputDetails"] = json!({"included": !request.metadata_only});
        if !request.metadata_only {
            answer["output"] = Value::String(output);
        }
    }
    answer
}

/// Seconds since the epoch with millisecond precision, as awsJson timestamps are sent.
pub fn epoch_seconds(t: SystemTime) -> f64 {
    let millis = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    u64::try_from(millis).map_or(0.0, |m| m as f64 / 1000.0)
}

/// The duration billed for an Express execution: rounded up to the next 100 ms.
pub fn billed_duration_ms(duration: Duration) -> u64 {
    let increment = BILLING_INCREMENT_MS * MICROS_PER_MS;
    let billed = duration.as_micros().max(1).div_ceil(increment) * BILLING_INCREMENT_MS;
    u64::try_from(billed).unwrap_or(u64::MAX)
}

/// `arn:<partition>:states:<region>:<account>:express:<state machine>:<name>:<id>`, the ARN AWS
/// gives an Express execution (`region`/`account` used when the state machine ARN is not one).
pub fn express_execution_arn(
    state_machine_arn: &str,
    name: &str,
    id: &str,
    region: &str,
    account: &str,
) -> String {
    let parts: Vec<&str> = state_machine_arn.split(':').collect();
    match parts.as_slice() {
        [
            "arn",
            partition,
            "states",
            sm_region,
            sm_account,
            "stateMachine",
            sm_name,
            ..,
        ] => {
            format!("arn:{partition}:states:{sm_region}:{sm_account}:express:{sm_name}:{name}:{id}")
        }
        _ => {
            let sm_name = parts.last().copied().unwrap_or_default();
            format!("arn:aws:states:{region}:{account}:express:{sm_name}:{name}:{id}")
        }
    }
}

/// AWS's execution name rule: 1 to 80 characters, no white space, brackets (`<>{}[]`),
/// wildcards (`?*`), special characters (`"#%\^|~$&,;:/` and the backtick) or control characters.
pub fn valid_execution_name(name: &str) -> bool {
    const FORBIDDEN: &str = "<>{}[]?*\"#%\\^|~`$&,;:/";
    let length = name.chars().count();
    (1..=80).contains(&length)
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || FORBIDDEN.contains(c))
}

/// A failed call from the gateway to moto.
#[derive(Debug)]
enum MotoError {
    /// moto's error answer, passed on as it is.
    Refused {
        status: StatusCode,
        code: Option<String>,
        body: Bytes,
    },
    Failed(String),
}

impl IntoResponse for MotoError {
    fn into_response(self) -> Response {
        match self {
            Self::Refused { status, code, body } => {
                let mut r = (status, [("content-type", CONTENT_TYPE)], body).into_response();
                if let Some(v) = code.and_then(|c| HeaderValue::from_str(&c).ok()) {
                    r.headers_mut().insert("x-amzn-errortype", v);
                }
                r
            }
            Self::Failed(message) => (StatusCode::BAD_GATEWAY, message).into_response(),
        }
    }
}

/// Step Functions calls from the gateway to moto.
struct MotoClient<'a> {
    gw: &'a Gateway,
    authorization: String,
}

impl<'a> MotoClient<'a> {
    fn new(gw: &'a Gateway, headers: &HeaderMap) -> Self {
        let authorization = moto_authorization(headers, &gw.region);
        Self { gw, authorization }
    }

    async fn call(&self, op: &str, body: Value) -> Result<Value, MotoError> {
        let base = self.gw.moto_url.read().map(|u| u.clone()).unwrap_or_default();
        let resp = self
            .gw
            .http
            .post(format!("{base}/"))
            .header("x-amz-target", format!("{TARGET_PREFIX}{op}"))
            .header("content-type", CONTENT_TYPE)
            .header("authorization", &self.authorization)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| MotoError::Failed(format!("moto is not reachable: {e}")))?;
        let status = resp.status();
        let header_code = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|c| c.split(':').next().unwrap_or(c).to_owned());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| MotoError::Failed(format!("moto {op} failed: {e}")))?;
        if !status.is_success() {
            let code = header_code.or_else(|| json_str(&bytes, "__type"));
            return Err(MotoError::Refused {
                status,
                code,
                body: bytes,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| MotoError::Failed(format!("moto {op}: {e}")))
    }
}

/// The `Authorization` header for the gateway's own calls to moto: the caller's when it is
/// scoped to Step Functions (so moto sees the caller's access key, hence account), else a
/// SigV4-shaped dummy moto routes to Step Functions in `region`.
fn moto_authorization(headers: &HeaderMap, region: &str) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .filter(|a| a.contains("/states/aws4_request"))
        .map_or_else(
            || crate::recorder::authorization("test", "20250101", region, "states"),
            str::to_owned,
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:express-pass";

    fn request(body: Value) -> SyncRequest {
        SyncRequest::parse(body.to_string().as_bytes()).unwrap()
    }

    fn run(ms: u64) -> SyncRun {
        let start_date = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        SyncRun {
            execution_arn: "arn:aws:states:us-east-1:123456789012:express:express-pass:n:id".into(),
            start_date,
            stop_date: start_date + Duration::from_millis(ms),
            duration: Duration::from_millis(ms),
        }
    }

    #[test]
    fn authorization_for_moto() {
        let mut headers = HeaderMap::new();
        let dummy = moto_authorization(&headers, "eu-west-1");
        assert!(
            dummy.contains("Credential=test/20250101/eu-west-1/states/aws4_request,"),
            "{dummy}"
        );
        let signed = "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/states/aws4_request, \
                      SignedHeaders=host, Signature=abc";
        headers.insert("authorization", HeaderValue::from_static(signed));
        assert_eq!(moto_authorization(&headers, "eu-west-1"), signed);
        let s3 = "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/s3/aws4_request, Signature=abc";
        headers.insert("authorization", HeaderValue::from_static(s3));
        assert_eq!(moto_authorization(&headers, "eu-west-1"), dummy);
    }

    #[test]
    fn requests() {
        let r = request(json!({"stateMachineArn": SM}));
        assert_eq!(r.input, "{}");
        assert_eq!(uuid::Uuid::parse_str(&r.name).map(|u| u.get_version_num()), Ok(4));
        assert!(!r.metadata_only && r.trace_header.is_none());
        assert_eq!(r.validate(), Ok(()));
        let r = request(json!({"stateMachineArn": SM, "name": "n", "input": "{\"a\":1}",
            "traceHeader": "Root=1-2", "includedData": "METADATA_ONLY"}));
        assert_eq!((r.name.as_str(), r.input.as_str()), ("n", "{\"a\":1}"));
        assert!(r.metadata_only);
        assert_eq!(r.trace_header.as_deref(), Some("Root=1-2"));

        let code = |body: &[u8]| SyncRequest::parse(body).unwrap_err().code;
        assert_eq!(code(b"{}"), "ValidationException");
        assert_eq!(code(b"not json"), "SerializationException");
        assert_eq!(code(br#"{"stateMachineArn": 1}"#), "SerializationException");
        let invalid = |body: Value| request(body).validate().unwrap_err();
        let e = invalid(json!({"stateMachineArn": SM, "input": "{nope"}));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "InvalidExecutionInput")
        );
        assert!(
            e.message.starts_with("Invalid State Machine Execution Input: '"),
            "{}",
            e.message
        );
        assert_eq!(
            invalid(json!({"stateMachineArn": SM, "name": "a b"})).code,
            "InvalidName"
        );
        assert_eq!(
            invalid(json!({"stateMachineArn": SM, "includedData": "SOME"})).code,
            "ValidationException"
        );
    }

    #[test]
    fn execution_names() {
        assert!(valid_execution_name("job-1_2.3"));
        assert!(valid_execution_name(&"x".repeat(80)));
        for bad in ["", "a b", "a:b", "a/b", "a\u{7}", "a*", "{x}", &"x".repeat(81)] {
            assert!(!valid_execution_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn succeeded_answers() {
        let r =
            request(json!({"stateMachineArn": SM, "name": "n", "input": "{\"a\":1}", "traceHeader": "t"}));
        let done = Outcome::Finished(json!({"status": "SUCCEEDED", "output": "{\"b\": 2}"}));
        let answer = sync_answer(&r, &run(130), &done);
        assert_eq!(
            answer,
            json!({
                "executionArn": "arn:aws:states:us-east-1:123456789012:express:express-pass:n:id",
                "stateMachineArn": SM,
                "name": "n",
                "startDate": 1_700_000_000.123,
                "stopDate": 1_700_000_000.253,
                "status": "SUCCEEDED",
                "input": "{\"a\":1}",
                "inputDetails": {"included": true},
                "output": "{\"b\": 2}",
                "outputDetails": {"included": true},
                "traceHeader": "t",
                "billingDetails": {"billedMemoryUsedInMB": 64, "billedDurationInMilliseconds": 200},
            })
        );
        let quiet = request(json!({"stateMachineArn": SM, "includedData": "METADATA_ONLY"}));
        let answer = sync_answer(&quiet, &run(5), &done);
        assert!(answer.get("input").is_none() && answer.get("output").is_none());
        assert_eq!(answer["inputDetails"], json!({"included": false}));
        assert_eq!(answer["outputDetails"], json!({"included": false}));
    }

    #[test]
    fn failed_and_timed_out_answers() {
        let r = request(json!({"stateMachineArn": SM, "name": "n"}));
        let failed = Outcome::Finished(json!({"status": "FAILED", "error": "Boom", "cause": "why"}));
        let answer = sync_answer(&r, &run(1), &failed);
        assert_eq!(
            (&answer["status"], &answer["error"], &answer["cause"]),
            (&json!("FAILED"), &json!("Boom"), &json!("why"))
        );
        assert!(answer.get("output").is_none() && answer.get("outputDetails").is_none());
        assert_eq!(answer["billingDetails"]["billedDurationInMilliseconds"], 100);
        let aborted = Outcome::Finished(json!({"status": "ABORTED"}));
        assert_eq!(sync_answer(&r, &run(1), &aborted)["status"], "FAILED");
        let answer = sync_answer(&r, &run(300_000), &Outcome::TimedOut);
        assert_eq!(
            (&answer["status"], &answer["error"]),
            (&json!("TIMED_OUT"), &json!("States.Timeout"))
        );
        assert!(answer.get("cause").is_none());
        assert_eq!(answer["billingDetails"]["billedDurationInMilliseconds"], 300_000);
    }

    #[test]
    fn billing_and_timestamps() {
        assert_eq!(billed_duration_ms(Duration::ZERO), 100);
        assert_eq!(billed_duration_ms(Duration::from_millis(100)), 100);
        assert_eq!(billed_duration_ms(Duration::from_micros(100_001)), 200);
        assert_eq!(epoch_seconds(UNIX_EPOCH + Duration::from_micros(1_500_999)), 1.5);
    }

    #[test]
    fn express_arns() {
        assert_eq!(
            express_execution_arn(SM, "job-1", "5f1c", "eu-west-1", "000000000000"),
            "arn:aws:states:us-east-1:123456789012:express:express-pass:job-1:5f1c"
        );
        assert_eq!(
            express_execution_arn(&format!("{SM}:3"), "n", "i", "r", "a"),
            "arn:aws:states:us-east-1:123456789012:express:express-pass:n:i"
        );
        assert_eq!(
            express_execution_arn(
                "arn:aws-cn:states:cn-north-1:1:stateMachine:m",
                "n",
                "i",
                "r",
                "a"
            ),
            "arn:aws-cn:states:cn-north-1:1:express:m:n:i"
        );
        assert_eq!(
            express_execution_arn("m", "n", "i", "us-east-1", "123456789012"),
            "arn:aws:states:us-east-1:123456789012:express:m:n:i"
        );
        assert_eq!(unqualified_state_machine_arn(&format!("{SM}:live")), SM);
        assert_eq!(unqualified_state_machine_arn(SM), SM);
    }
}
