//! The invocation's request, read strictly from its payload: a payload that is not one of the
//! requests below is refused, naming the field, before any AWS call.
//!
//! - `{"action": "select"}`: the selected instances (the state machine's first step);
//! - `{"action": "ship", "instance": "<id>"}` (or `{"instance": "<id>"}`): one instance (a step
//!   of the state machine's Map);
//! - `{"action": "summarize", "results": [...]}`: the fleet from the Map's results (the state
//!   machine's last step), each an instance's summary fields or, for an iteration that ended in
//!   its `Catch`, the iteration's input with its `error`;
//! - EventBridge's scheduled event (`"source": "aws.events"`, `"detail-type": "Scheduled Event"`
//!   and its other envelope fields), `{}` or `null` (a manual invoke), or `{"action": "run"}`: the
//!   configured selection, one instance after another.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// The instances of the configured selection.
    Select,
    /// One instance: its summary, or its error as the invocation's.
    Ship { instance: String },
    /// Every instance of the configured selection: a summary of each.
    Run,
    /// The fleet's lag and failures from the state machine's Map results (no AWS call).
    Summarize { results: Vec<ShipResult> },
}

/// One result of the state machine's Map.
#[derive(Debug, Clone, PartialEq)]
pub struct ShipResult {
    pub instance: String,
    /// `lagSeconds` (null or absent: not measured).
    pub lag_seconds: Option<f64>,
    pub bytes_lost: u64,
    /// The iteration ended in its `Catch`: it carries an `error`.
    pub failed: bool,
}

/// A payload that is not a request, with the field at fault (`$` for the payload itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: `{field}` {problem}")]
pub struct InvalidRequest {
    pub field: String,
    pub problem: String,
}

impl InvalidRequest {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

const ACTIONS: &str = r#""select", "ship", "run" or "summarize""#;

/// The fields of EventBridge's event envelope (`replay-name` on events replayed from an archive).
const EVENT_FIELDS: [&str; 10] = [
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
    "replay-name",
];

impl TryFrom<Value> for Request {
    type Error = InvalidRequest;

    fn try_from(payload: Value) -> Result<Self, InvalidRequest> {
        let fields = match payload {
            Value::Object(fields) => fields,
            Value::Null => return Ok(Self::Run),
            other => {
                let problem = format!("must be a JSON object, not {}", lambda_common::json_kind(&other));
                return Err(InvalidRequest::new("$", problem));
            }
        };
        if let Some(action) = fields.get("action") {
            return tagged(action, &fields);
        }
        if fields.contains_key("source") || fields.contains_key("detail-type") {
            scheduled_event(&fields)?;
            return Ok(Self::Run);
        }
        if fields.contains_key("instance") {
            only(&fields, &["instance"])?;
            return Ok(Self::Ship {
                instance: instance(&fields)?,
            });
        }
        only(&fields, &[])?;
        Ok(Self::Run)
    }
}

/// A request named by its `action`.
fn tagged(action: &Value, fields: &Map<String, Value>) -> Result<Request, InvalidRequest> {
    let Some(action) = action.as_str() else {
        let problem = format!(
            "must be one of {ACTIONS}, not {}",
            lambda_common::json_kind(action)
        );
        return Err(InvalidRequest::new("action", problem));
    };
    match action {
        "select" => only(fields, &["action"]).map(|()| Request::Select),
        "run" => only(fields, &["action"]).map(|()| Request::Run),
        "summarize" => {
            only(fields, &["action", "results"])?;
            Ok(Request::Summarize {
                results: results(fields)?,
            })
        }
        "ship" => {
            only(fields, &["action", "instance"])?;
            Ok(Request::Ship {
                instance: instance(fields)?,
            })
        }
        other => Err(InvalidRequest::new(
            "action",
            format!("must be one of {ACTIONS}, not {other:?}"),
        )),
    }
}

/// The instance to ship: a non-empty string.
fn instance(fields: &Map<String, Value>) -> Result<String, InvalidRequest> {
    match fields.get("instance") {
        None => Err(InvalidRequest::new(
            "instance",
            r#"is required by the action "ship""#,
        )),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(InvalidRequest::new("instance", "must not be empty"))
        }
        Some(Value::String(s)) if !is_instance_identifier(s) => Err(InvalidRequest::new(
            "instance",
            format!(
                "must be a DB instance identifier (1-63 letters, digits or hyphens, starting with a \
                 letter, no trailing or double hyphen), not {s:?}"
            ),
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(InvalidRequest::new(
            "instance",
            format!("must be a string, not {}", lambda_common::json_kind(other)),
        )),
    }
}

/// The Map's results: an array of objects, each with its `instance` and either an `error` or a
/// `lagSeconds` (a number or null) and a `bytesLost` (a whole number); other fields of the
/// summary are passed over.
fn results(fields: &Map<String, Value>) -> Result<Vec<ShipResult>, InvalidRequest> {
    let Some(items) = fields.get("results") else {
        return Err(InvalidRequest::new(
            "results",
            r#"is required by the action "summarize""#,
        ));
    };
    let Some(items) = items.as_array() else {
        return Err(wrong_type("results", "an array", items));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |name: &str| format!("results[{i}].{name}");
            let Some(item) = item.as_object() else {
                return Err(wrong_type(&format!("results[{i}]"), "an object", item));
            };
            let instance = match item.get("instance") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => return Err(wrong_type(&at("instance"), "a string", other)),
                None => return Err(InvalidRequest::new(at("instance"), "is required")),
            };
            let lag_seconds = match item.get("lagSeconds") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => n.as_f64().filter(|v| *v >= 0.0),
                Some(other) => return Err(wrong_type(&at("lagSeconds"), "a number or null", other)),
            };
            let bytes_lost = match item.get("bytesLost") {
                None | Some(Value::Null) => 0,
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| wrong_type(&at("bytesLost"), "a whole number", v))?,
            };
            Ok(ShipResult {
                instance,
                lag_seconds,
                bytes_lost,
                failed: item.contains_key("error"),
            })
        })
        .collect()
}

/// RDS's rules for a DB instance identifier (the value also becomes part of S3 keys).
fn is_instance_identifier(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// EventBridge's scheduled event: its envelope fields only, each of its type, from the source
/// `aws.events` (a schedule; an event of another source is not for this function).
fn scheduled_event(fields: &Map<String, Value>) -> Result<(), InvalidRequest> {
    only(fields, &EVENT_FIELDS)?;
    match fields.get("source") {
        Some(Value::String(s)) if s == "aws.events" => {}
        Some(Value::String(s)) => {
            let problem = format!(r#"must be "aws.events" (a schedule), not {s:?}"#);
            return Err(InvalidRequest::new("source", problem));
        }
        Some(other) => return Err(wrong_type("source", "a string", other)),
        None => {
            return Err(InvalidRequest::new(
                "source",
                "is required in an EventBridge event",
            ));
        }
    }
    match fields.get("detail-type") {
        None => {}
        Some(Value::String(s)) if s == "Scheduled Event" => {}
        Some(other) => {
            let problem = format!(r#"must be "Scheduled Event", not {other}"#);
            return Err(InvalidRequest::new("detail-type", problem));
        }
    }
    for (name, value) in fields {
        let fits = match name.as_str() {
            "resources" => value.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            "detail" => value.is_object(),
            _ => value.is_string(),
        };
        if !fits {
            let expected = match name.as_str() {
                "resources" => "an array of strings",
                "detail" => "an object",
                _ => "a string",
            };
            return Err(wrong_type(name, expected, value));
        }
    }
    Ok(())
}

/// Refuses the first field not in `allowed`.
fn only(fields: &Map<String, Value>, allowed: &[&str]) -> Result<(), InvalidRequest> {
    match fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(InvalidRequest::new(k.as_str(), "is not a field of this request")),
    }
}

fn wrong_type(field: &str, expected: &str, value: &Value) -> InvalidRequest {
    InvalidRequest::new(
        field,
        format!("must be {expected}, not {}", lambda_common::json_kind(value)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Request, InvalidRequest> {
        Request::try_from(v)
    }

    fn field_of(v: Value) -> String {
        parse(v.clone()).map_or_else(|e| e.field, |r| panic!("{v} was accepted as {r:?}"))
    }

    #[test]
    fn the_requests_the_state_machine_and_the_schedule_send() {
        assert_eq!(parse(json!({"action": "select"})), Ok(Request::Select));
        assert_eq!(
            parse(json!({"action": "ship", "instance": "db1"})),
            Ok(Request::Ship {
                instance: "db1".into()
            })
        );
        assert_eq!(
            parse(json!({"instance": "db1"})),
            Ok(Request::Ship {
                instance: "db1".into()
            })
        );
        assert_eq!(parse(json!({"action": "run"})), Ok(Request::Run));
        assert_eq!(parse(json!({})), Ok(Request::Run));
        assert_eq!(parse(Value::Null), Ok(Request::Run));
        assert_eq!(parse(json!({"source": "aws.events"})), Ok(Request::Run));
        assert_eq!(
            parse(json!({"source": "aws.events", "detail-type": "Scheduled Event"})),
            Ok(Request::Run)
        );
        let event = json!({
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2026-11-22T16:53:06Z",
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/ship-rds-logs"],
            "detail": {}
        });
        assert_eq!(parse(event), Ok(Request::Run));
    }

    #[test]
    fn anything_else_is_refused_naming_the_field() {
        let cases = [
            (json!({"action": "shipp"}), "action"),
            (json!({"action": "SELECT"}), "action"),
            (json!({"action": 1}), "action"),
            (json!({"action": null}), "action"),
            (json!({"action": "ship"}), "instance"),
            (json!({"action": "ship", "instance": 42}), "instance"),
            (json!({"action": "ship", "instance": null}), "instance"),
            (json!({"action": "ship", "instance": ""}), "instance"),
            (json!({"action": "ship", "instance": ["db1"]}), "instance"),
            (json!({"instance": 42}), "instance"),
            (json!({"action": "select", "instance": "db1"}), "instance"),
            (
                json!({"action": "ship", "instance": "db1", "force": true}),
                "force",
            ),
            (json!({"instances": ["db1"]}), "instances"),
            (
                json!({"source": "aws.rds", "detail-type": "Scheduled Event"}),
                "source",
            ),
            (json!({"source": 1}), "source"),
            (json!({"detail-type": "Scheduled Event"}), "source"),
            (
                json!({"source": "aws.events", "detail-type": "RDS DB Instance Event"}),
                "detail-type",
            ),
            (json!({"source": "aws.events", "detail": "x"}), "detail"),
            (json!({"source": "aws.events", "resources": [1]}), "resources"),
            (json!({"source": "aws.events", "region": 5}), "region"),
            (json!({"source": "aws.events", "instance": "db1"}), "instance"),
            (json!("select"), "$"),
            (json!([{"action": "select"}]), "$"),
            (json!(42), "$"),
        ];
        for (payload, field) in cases {
            assert_eq!(field_of(payload.clone()), field, "{payload}");
        }
    }

    #[test]
    fn the_map_results_are_read_for_the_fleet() {
        let payload = json!({"action": "summarize", "results": [
            {"instance": "a", "files": 1, "bytes": 10, "objects": 1, "anomalyCount": 0,
             "complete": true, "lagSeconds": 4.5, "bytesLost": 7},
            {"instance": "b", "lagSeconds": null, "bytesLost": 0},
            {"action": "ship", "instance": "c",
             "error": {"Error": "AwsError", "Cause": "{}"}}
        ]});
        let Ok(Request::Summarize { results }) = parse(payload) else {
            panic!("not a summarize request");
        };
        assert_eq!(
            results,
            [
                ShipResult {
                    instance: "a".into(),
                    lag_seconds: Some(4.5),
                    bytes_lost: 7,
                    failed: false
                },
                ShipResult {
                    instance: "b".into(),
                    lag_seconds: None,
                    bytes_lost: 0,
                    failed: false
                },
                ShipResult {
                    instance: "c".into(),
                    lag_seconds: None,
                    bytes_lost: 0,
                    failed: true
                },
            ]
        );
        let cases = [
            (json!({"action": "summarize"}), "results"),
            (json!({"action": "summarize", "results": {}}), "results"),
            (json!({"action": "summarize", "results": [1]}), "results[0]"),
            (
                json!({"action": "summarize", "results": [{}]}),
                "results[0].instance",
            ),
            (
                json!({"action": "summarize", "results": [{"instance": "a", "lagSeconds": "1"}]}),
                "results[0].lagSeconds",
            ),
            (
                json!({"action": "summarize", "results": [{"instance": "a", "bytesLost": -1}]}),
                "results[0].bytesLost",
            ),
            (json!({"action": "summarize", "results": [], "x": 1}), "x"),
        ];
        for (payload, field) in cases {
            assert_eq!(field_of(payload.clone()), field, "{payload}");
        }
    }

    #[test]
    fn the_message_says_what_is_wrong() {
        let err = parse(json!({"action": "shipp"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid request: `action` must be one of "select", "ship", "run" or "summarize", not "shipp""#
        );
        let err = parse(json!({"instance": 42})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid request: `instance` must be a string, not a number"
        );
        let err = parse(json!({"action": "ship"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid request: `instance` is required by the action "ship""#
        );
    }
}
