//! Lambda's asynchronous invocation (`X-Amz-Invocation-Type: Event`) for the functions a test
//! gives an event-invoke configuration ([`crate::LocalStack::set_event_invoke_config`]), as
//! Lambda does it:
//! - the event is accepted (`202`) and invoked; a function error (`Unhandled`: the handler's
//!   error, `Runtime.ExitError`, `Sandbox.Timedout`) is retried up to `max_retry_attempts` times
//!   (0-2);
//! - Lambda waits about one minute before the first retry and two before the second. **Here the
//!   waits are compressed** to [`EventInvokeConfig::retry_delays`] (by default
//!   [`DEFAULT_RETRY_DELAYS`], 200 ms and 400 ms), so a test sees the whole sequence in under a
//!   second; `max_event_age` is compared with the real time since the event was accepted, so a
//!   test makes an event age out by giving a maximum age shorter than a delay;
//! - once the retries are exhausted (condition `RetriesExhausted`), or when a retry would start
//!   after the event's maximum age (`EventAgeExceeded`), the documented destination record
//!   ([`record`]) goes to the on-failure destination, if any;
//! - the record is delivered **as the source function's execution role** would deliver it: a
//!   request through the gateway (so it is recorded in `calls.jsonl`), signed with the source
//!   function's access key id: Lambda `Invoke` with `X-Amz-Invocation-Type: Event` of the
//!   destination function, or SQS `SendMessage` (JSON protocol, `X-Amz-Target:
//!   AmazonSQS.SendMessage`) to the destination queue in moto. The `Authorization` header has
//!   SigV4's shape and credential scope (the recorder reads the caller from it; moto checks no
//!   signature), not a real signature.
//!
//! A function without a configuration keeps the stack's plain behaviour: one invocation, its
//! outcome dropped (no retries, no destination).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::{Value, json};

use crate::gateway::Gateway;
use crate::recorder::authorization;
use crate::runtime_host::{HostedFunction, Outcome};

/// The compressed waits before the first and the second retry (Lambda: about 1 and 2 minutes).
pub const DEFAULT_RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(400)];

/// Where a failed event's record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A function served by the stack, by name (invoked asynchronously).
    Function(String),
    /// A moto SQS queue, by ARN.
    Queue(String),
}

/// A function's `EventInvokeConfig` (SAM's `EventInvokeConfig`, on-failure destination only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInvokeConfig {
    /// `MaximumRetryAttempts`, 0-2.
    pub max_retry_attempts: u32,
    /// `MaximumEventAgeInSeconds`.
    pub max_event_age: Duration,
    pub on_failure: Option<Destination>,
    /// The waits before each retry (compressed; see the module documentation).
    pub retry_delays: [Duration; 2],
}

impl EventInvokeConfig {
    pub fn new(max_retry_attempts: u32, max_event_age: Duration, on_failure: Option<Destination>) -> Self {
        Self {
            max_retry_attempts: max_retry_attempts.min(2),
            max_event_age,
            on_failure,
            retry_delays: DEFAULT_RETRY_DELAYS,
        }
    }
}

/// `requestContext.condition` of a failure record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetriesExhausted => "RetriesExhausted",
            Self::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

/// How the event's attempts ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub condition: Condition,
    pub attempts: u32,
    /// The last attempt's error document (the function's `{"errorType", "errorMessage"}`).
    pub response: Value,
}

/// The decision after a failed attempt `attempt` (from 1) at `age` since the event came: retry
/// after the returned wait, or give up with the condition.
pub fn after_failure(config: &EventInvokeConfig, attempt: u32, age: Duration) -> Result<Duration, Condition> {
    if attempt > config.max_retry_attempts {
        return Err(Condition::RetriesExhausted);
    }
    let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(1).min(1);
    let wait = config.retry_delays[index];
    if age + wait >= config.max_event_age {
        return Err(Condition::EventAgeExceeded);
    }
    Ok(wait)
}

/// Lambda's destination record of a failed event.
pub fn record(function_arn: &str, request_id: &str, payload: &[u8], failure: &Failure, now_ms: u64) -> Value {
    let request_payload = serde_json::from_slice::<Value>(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()));
    let timestamp = aws_smithy_types::DateTime::from_millis(i64::try_from(now_ms).unwrap_or(i64::MAX))
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default();
    json!({
        "version": "1.0",
        "timestamp": timestamp,
        "requestContext": {
            "requestId": request_id,
            "functionArn": format!("{function_arn}:$LATEST"),
            "condition": failure.condition.as_str(),
            "approximateInvokeCount": failure.attempts,
        },
        "requestPayload": request_payload,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": failure.response,
    })
}

/// Runs the event's attempts, then delivers the failure record, if any, to the destination.
pub async fn run(gw: Arc<Gateway>, function: Arc<HostedFunction>, config: EventInvokeConfig, payload: Bytes) {
    let accepted = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut attempt = 1;
    let failure = loop {
        let response = match function.invoke(payload.clone()).await {
            Ok(Outcome::Response(_)) => return,
            Ok(Outcome::Error(body)) => serde_json::from_slice(&body).unwrap_or(Value::Null),
            Err(e) => json!({"errorType": "ServiceException", "errorMessage": e.to_string()}),
        };
        match after_failure(&config, attempt, accepted.elapsed()) {
            Ok(wait) => tokio::time::sleep(wait).await,
            Err(condition) => {
                break Failure {
                    condition,
                    attempts: attempt,
                    response,
                };
            }
        }
        attempt += 1;
    };
    let Some(destination) = &config.on_failure else {
        return;
    };
    let body = record(
        function.arn(),
        &request_id,
        &payload,
        &failure,
        lambda_common::clock::now_ms(),
    );
    if let Err(e) = deliver(&gw, &function, destination, &body).await {
        eprintln!(
            "local stack: the destination record of {} could not be delivered: {e:#}",
            function.name()
        );
    }
}

/// Sends the record to the destination through the gateway, as the source function.
async fn deliver(
    gw: &Gateway,
    source: &HostedFunction,
    to: &Destination,
    record: &Value,
) -> anyhow::Result<()> {
    let key = source
        .env_var("AWS_ACCESS_KEY_ID")
        .ok_or_else(|| anyhow::anyhow!("{} has no access key id", source.name()))?;
    let now = aws_smithy_types::DateTime::from_millis(i64::try_from(lambda_common::clock::now_ms())?)
        .fmt(aws_smithy_types::date_time::Format::DateTime)?;
    let amz_date: String = now
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(15)
        .collect();
    let amz_date = format!("{amz_date}Z");
    let date = &amz_date[..8];
    let (url, service, target, content_type, body) = match to {
        Destination::Function(name) => (
            format!("{}/2015-03-31/functions/{name}/invocations", gw.endpoint),
            "lambda",
            None,
            "application/json",
            record.to_string(),
        ),
        Destination::Queue(arn) => {
            let name = arn.rsplit(':').next().unwrap_or(arn);
            let account = arn.split(':').nth(4).unwrap_or(&gw.account);
            let queue_url = format!("{}/{account}/{name}", gw.endpoint);
            let body = json!({"QueueUrl": queue_url, "MessageBody": record.to_string()});
            (
                format!("{}/", gw.endpoint),
                "sqs",
                Some("AmazonSQS.SendMessage"),
                "application/x-amz-json-1.0",
                body.to_string(),
            )
        }
    };
    let mut request = gw
        .http
        .post(url)
        .header("content-type", content_type)
        .header("x-amz-date", &amz_date)
        .header("authorization", authorization(key, date, &gw.region, service))
        .body(body);
    if let Some(token) = source.env_var("AWS_SESSION_TOKEN") {
        request = request.header("x-amz-security-token", token);
    }
    request = match target {
        Some(target) => request.header("x-amz-target", target),
        None => request.header("x-amz-invocation-type", "Event"),
    };
    let response = request.send().await?;
    let status = response.status();
    anyhow::ensure!(
        status.is_success(),
        "{service} answered {status}: {}",
        response.text().await.unwrap_or_default()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(retries: u32, age_ms: u64) -> EventInvokeConfig {
        EventInvokeConfig::new(retries, Duration::from_millis(age_ms), None)
    }

    #[test]
    fn retries_then_gives_up() {
        let c = config(2, 60_000);
        let ms = Duration::from_millis;
        assert_eq!(after_failure(&c, 1, ms(0)), Ok(DEFAULT_RETRY_DELAYS[0]));
        assert_eq!(after_failure(&c, 2, ms(300)), Ok(DEFAULT_RETRY_DELAYS[1]));
        assert_eq!(after_failure(&c, 3, ms(800)), Err(Condition::RetriesExhausted));
        assert_eq!(
            after_failure(&config(0, 60_000), 1, ms(0)),
            Err(Condition::RetriesExhausted)
        );
        // A retry that would start after the maximum age: the event ages out.
        assert_eq!(
            after_failure(&config(2, 100), 1, ms(0)),
            Err(Condition::EventAgeExceeded)
        );
        assert_eq!(
            after_failure(&config(2, 500), 2, ms(250)),
            Err(Condition::EventAgeExceeded)
        );
        assert_eq!(EventInvokeConfig::new(7, ms(1), None).max_retry_attempts, 2);
    }

    #[test]
    fn the_record_has_lambdas_shape() {
        let failure = Failure {
            condition: Condition::RetriesExhausted,
            attempts: 3,
            response: json!({"errorType": "Runtime.ExitError", "errorMessage": "boom"}),
        };
        let r = record(
            "arn:aws:lambda:us-east-1:123456789012:function:f",
            "req",
            br#"{"a": 1}"#,
            &failure,
            1_700_000_000_123,
        );
        assert_eq!(
            r,
            json!({
                "version": "1.0",
                "timestamp": "2023-11-14T22:13:20.123Z",
                "requestContext": {
                    "requestId": "req",
                    "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST",
                    "condition": "RetriesExhausted",
                    "approximateInvokeCount": 3
                },
                "requestPayload": {"a": 1},
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                "responsePayload": {"errorType": "Runtime.ExitError", "errorMessage": "boom"}
            })
        );
        assert_eq!(
            authorization("AKIALOCAL00000000001", "20231114", "us-east-1", "sqs"),
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIALOCAL00000000001/20231114/us-east-1/sqs/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, Signature={}",
                "0".repeat(64)
            )
        );
        let parsed =
            crate::recorder::parse_authorization(&authorization("K", "20231114", "us-east-1", "lambda"))
                .unwrap();
        assert_eq!(parsed.access_key_id, "K");
        assert_eq!(parsed.service.as_deref(), Some("lambda"));
    }
}
