//! Step Functions where moto (5.x) falls short, in front of moto's executing engine
//! (`X-Amz-Target: AWSStepFunctions.<Op>`, awsJson1.0):
//! - state machine types: `CreateStateMachine`'s `type` (default `STANDARD`) is remembered by
//!   ARN and reported by `DescribeStateMachine`, `DescribeStateMachineForExecution` and
//!   `ListStateMachines` (moto records it only for the JSON API, not for CloudFormation);
//! - `StartSyncExecution`, which moto does not implement: only for `EXPRESS` state machines, run
//!   as a real execution in moto (`StartExecution`, then `DescribeExecution` until it is no longer
//!   `RUNNING`) and answered the way AWS answers it: `200` with `SUCCEEDED`, `FAILED` or
//!   `TIMED_OUT` (after [`EXPRESS_MAX_DURATION`], the execution then stopped in moto), an Express
//!   execution ARN, and billing details;
//! - throttling injection: the next `n` requests of an operation answered `ThrottlingException`.
//!
//! Everything else is forwarded to moto unchanged. `StartSyncExecution` lives in [`sync`].

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::gateway::{self, Gateway};

pub mod sync;

pub const TARGET_PREFIX: &str = "AWSStepFunctions.";
pub const STANDARD: &str = "STANDARD";
pub const EXPRESS: &str = "EXPRESS";
/// The longest an Express execution may run; a synchronous one still running then is stopped
/// and answered `TIMED_OUT`.
pub const EXPRESS_MAX_DURATION: Duration = Duration::from_secs(5 * 60);
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// A Step Functions error answer (awsJson1.0: `__type` and `message`, and `x-amzn-errortype`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SfnError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl SfnError {
    fn client(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    pub fn throttling() -> Self {
        Self::client("ThrottlingException", "Rate exceeded")
    }

    pub fn type_not_supported() -> Self {
        Self::client(
            "StateMachineTypeNotSupported",
            "This operation is not supported by this type of state machine",
        )
    }

    pub fn body(&self) -> String {
        json!({"__type": self.code, "message": self.message}).to_string()
    }
}

impl IntoResponse for SfnError {
    fn into_response(self) -> Response {
        let mut r = (self.status, [("content-type", CONTENT_TYPE)], self.body()).into_response();
        r.headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(self.code));
        r
    }
}

#[derive(Default)]
pub struct SfnEmulator {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// State machine ARN (unqualified) → `STANDARD` or `EXPRESS`.
    types: HashMap<String, String>,
    throttles: HashMap<String, Throttle>,
    max_duration: Option<Duration>,
    /// Express execution ARN → the ARN of the execution that ran it in moto.
    executions: HashMap<String, String>,
    /// (state machine ARN, execution name) given to moto so far.
    names: HashSet<(String, String)>,
}

#[derive(Default)]
struct Throttle {
    pending: usize,
    injected: usize,
}

impl SfnEmulator {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next `count` requests of `operation` (e.g. `DescribeExecution`) are answered
    /// `ThrottlingException` instead of reaching moto (added to any still pending).
    pub fn throttle(&self, operation: &str, count: usize) {
        self.state()
            .throttles
            .entry(operation.to_owned())
            .or_default()
            .pending += count;
    }

    /// How many requests of `operation` were answered `ThrottlingException` so far.
    pub fn throttled(&self, operation: &str) -> usize {
        self.state().throttles.get(operation).map_or(0, |t| t.injected)
    }

    fn take_throttle(&self, operation: &str) -> bool {
        let mut state = self.state();
        match state.throttles.get_mut(operation) {
            Some(t) if t.pending > 0 => {
                t.pending -= 1;
                t.injected += 1;
                true
            }
            _ => false,
        }
    }

    /// The longest a synchronous Express execution runs before it is answered `TIMED_OUT`
    /// ([`EXPRESS_MAX_DURATION`] unless set, for tests).
    pub fn express_max_duration(&self) -> Duration {
        self.state().max_duration.unwrap_or(EXPRESS_MAX_DURATION)
    }

    pub fn set_express_max_duration(&self, limit: Duration) {
        self.state().max_duration = Some(limit);
    }

    /// The type a state machine was created with through the gateway, if it was.
    pub fn state_machine_type(&self, state_machine_arn: &str) -> Option<String> {
        self.state()
            .types
            .get(unqualified_state_machine_arn(state_machine_arn))
            .cloned()
    }

    /// The ARN of the moto execution that ran a synchronous Express execution.
    pub fn moto_execution_arn(&self, express_execution_arn: &str) -> Option<String> {
        self.state().executions.get(express_execution_arn).cloned()
    }

    /// Serves one Step Functions request (`op` is the `X-Amz-Target` after the prefix).
    pub async fn handle(
        &self,
        gw: &Gateway,
        op: &str,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        if self.take_throttle(op) {
            return SfnError::throttling().into_response();
        }
        match op {
            "StartSyncExecution" => match self.start_sync_execution(gw, headers, &body).await {
                Ok(answer) => (
                    StatusCode::OK,
                    [("content-type", CONTENT_TYPE)],
                    answer.to_string(),
                )
                    .into_response(),
                Err(r) => r,
            },
            "CreateStateMachine" => self.create_state_machine(gw, uri, headers, body).await,
            "DeleteStateMachine" => {
                let arn = json_str(&body, "stateMachineArn");
                let answer = gateway::forward(gw, Method::POST, uri, headers, body).await;
                if let (Ok(a), Some(arn)) = (&answer, arn)
                    && a.status.is_success()
                {
                    self.forget(&arn);
                }
                answer.map_or_else(|r| r, IntoResponse::into_response)
            }
            "DescribeStateMachine" | "DescribeStateMachineForExecution" | "ListStateMachines" => {
                match gateway::forward(gw, Method::POST, uri, headers, body).await {
                    Ok(mut a) => {
                        if a.status.is_success()
                            && let Ok(v) = serde_json::from_slice::<Value>(&a.body)
                        {
                            a.body = with_types(v, &self.state().types).to_string().into();
                        }
                        a.into_response()
                    }
                    Err(r) => r,
                }
            }
            _ => gateway::forward(gw, Method::POST, uri, headers, body)
                .await
                .map_or_else(|r| r, IntoResponse::into_response),
        }
    }

    async fn create_state_machine(
        &self,
        gw: &Gateway,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let sm_type = json_str(&body, "type").unwrap_or_else(|| STANDARD.to_owned());
        if sm_type != STANDARD && sm_type != EXPRESS {
            let message = format!(
                "1 validation error detected: Value '{sm_type}' at 'type' failed to satisfy constraint: \
                 Member must satisfy enum value set: [STANDARD, EXPRESS]"
            );
            return SfnError::client("ValidationException", message).into_response();
        }
        match gateway::forward(gw, Method::POST, uri, headers, body).await {
            Ok(answer) => {
                if answer.status.is_success()
                    && let Some(arn) = json_str(&answer.body, "stateMachineArn")
                {
                    // moto answers a second create of the same name with the first machine.
                    self.state().types.entry(arn).or_insert(sm_type);
                }
                answer.into_response()
            }
            Err(r) => r,
        }
    }

    fn forget(&self, state_machine_arn: &str) {
        let arn = unqualified_state_machine_arn(state_machine_arn);
        let mut state = self.state();
        state.types.remove(arn);
        state.names.retain(|(sm, _)| sm != arn);
    }
}

/// A state machine ARN without a version or alias qualifier (`…:stateMachine:<name>`).
pub fn unqualified_state_machine_arn(arn: &str) -> &str {
    arn.match_indices(':').nth(6).map_or(arn, |(i, _)| &arn[..i])
}

/// A forwarded `DescribeStateMachine`, `DescribeStateMachineForExecution` or
/// `ListStateMachines` answer with `type` set from `types` where known.
pub fn with_types(mut answer: Value, types: &HashMap<String, String>) -> Value {
    let patch = |item: &mut Value| {
        let known = item
            .get("stateMachineArn")
            .and_then(Value::as_str)
            .and_then(|arn| types.get(unqualified_state_machine_arn(arn)));
        if let Some(t) = known {
            item["type"] = Value::String(t.clone());
        }
    };
    match answer.get_mut("stateMachines").and_then(Value::as_array_mut) {
        Some(items) => items.iter_mut().for_each(patch),
        None => patch(&mut answer),
    }
    answer
}

fn json_str(body: &[u8], key: &str) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:express-pass";

    #[test]
    fn types_in_answers() {
        let types = HashMap::from([(SM.to_owned(), EXPRESS.to_owned())]);
        let described = json!({"stateMachineArn": SM, "type": "STANDARD", "name": "express-pass"});
        assert_eq!(with_types(described, &types)["type"], "EXPRESS");
        let version = json!({"stateMachineArn": format!("{SM}:2"), "type": "STANDARD"});
        assert_eq!(with_types(version, &types)["type"], "EXPRESS");
        let other =
            json!({"stateMachineArn": "arn:aws:states:us-east-1:1:stateMachine:o", "type": "STANDARD"});
        assert_eq!(with_types(other, &types)["type"], "STANDARD");
        let listed = json!({"stateMachines": [
            {"stateMachineArn": SM, "type": "STANDARD"},
            {"stateMachineArn": "arn:aws:states:us-east-1:1:stateMachine:o", "type": "STANDARD"},
        ]});
        let listed = with_types(listed, &types);
        assert_eq!(listed["stateMachines"][0]["type"], "EXPRESS");
        assert_eq!(listed["stateMachines"][1]["type"], "STANDARD");
    }

    #[test]
    fn throttling() {
        let sfn = SfnEmulator::default();
        sfn.throttle("DescribeExecution", 2);
        assert!(!sfn.take_throttle("StartExecution"));
        assert!(sfn.take_throttle("DescribeExecution"));
        assert!(sfn.take_throttle("DescribeExecution"));
        assert!(!sfn.take_throttle("DescribeExecution"));
        assert_eq!(
            (
                sfn.throttled("DescribeExecution"),
                sfn.throttled("StartExecution")
            ),
            (2, 0)
        );
        let e = SfnError::throttling();
        assert_eq!(
            e.body(),
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#
        );
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()["x-amzn-errortype"], "ThrottlingException");
        assert_eq!(r.headers()["content-type"], CONTENT_TYPE);
    }

    #[test]
    fn time_limit() {
        let sfn = SfnEmulator::default();
        assert_eq!(sfn.express_max_duration(), Duration::from_secs(300));
        sfn.set_express_max_duration(Duration::from_secs(1));
        assert_eq!(sfn.express_max_duration(), Duration::from_secs(1));
    }
}
