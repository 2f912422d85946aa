//! The invocation's request, read strictly from its payload: a payload that is not one of the
//! requests below is refused, naming the field, before any AWS call.
//!
//! - `{"action": "select", "run": "<execution name>"}`: the selection, written as the run's
//!   manifest, and the Map's plan (the state machine's first step);
//! - `{"Items": [{"instance": "<id>"}, ...], "BatchInput": {"action": "ship-batch", "manifest":
//!   {"bucket", "key"}, "requestsPerSecond", "burst", "deadlineMs"}}`: one batch of the
//!   Distributed Map, as its ItemBatcher sends it;
//! - `{"action": "ship", "instance": "<id>"}` (or `{"instance": "<id>"}`): one instance (a
//!   manual invoke);
//! - `{"action": "summarize", "results": {"Bucket", "Key"}, "manifest": {"bucket", "key"}}`:
//!   the fleet from the Map's ResultWriter manifest (the state machine's last step);
//! - EventBridge's scheduled event (`"source": "aws.events"`, `"detail-type": "Scheduled Event"`
//!   and its other envelope fields), `{}` or `null` (a manual invoke), or `{"action": "run"}`: the
//!   configured selection, one instance after another.

use serde_json::{Map, Value};

use crate::fleet::Location;

#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// The instances of the configured selection, as the manifest of the run `run`.
    Select { run: String },
    /// One batch of the Distributed Map: its instances and what the select step planned.
    ShipBatch {
        instances: Vec<String>,
        input: BatchInput,
    },
    /// One instance: its summary, or its error as the invocation's.
    Ship { instance: String },
    /// Every instance of the configured selection: a summary of each.
    Run,
    /// The fleet from the Map's ResultWriter manifest (`results`) and the run's selection
    /// manifest.
    Summarize { results: Location, manifest: Location },
}

/// What the select step planned for every batch (the ItemBatcher's `BatchInput`).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchInput {
    pub manifest: Location,
    pub requests_per_second: f64,
    pub burst: f64,
    pub deadline_ms: i64,
}

/// A payload that is not a request, with the field at fault (`$` for the payload itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: `{field}` {problem}")]
pub struct InvalidRequest {
    pub field: String,
    pub problem: String,
}

impl InvalidRequest {
    /// The same problem, its field named within `outer` (`outer.field`).
    pub fn within(mut self, outer: &str) -> Self {
        self.field = if self.field == "$" {
            outer.to_owned()
        } else {
            format!("{outer}.{}", self.field)
        };
        self
    }

    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

const ACTIONS: &str =
    r#""select", "ship", "run" or "summarize" (a batch carries "ship-batch" in its BatchInput)"#;

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
        if fields.contains_key("Items") || fields.contains_key("BatchInput") {
            return batch(&fields);
        }
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
        "select" => {
            only(fields, &["action", "run"])?;
            Ok(Request::Select {
                run: run_name(fields)?,
            })
        }
        "run" => only(fields, &["action"]).map(|()| Request::Run),
        "summarize" => {
            only(fields, &["action", "results", "manifest"])?;
            let results = object(fields, "results", r#"is required by the action "summarize""#)?;
            only(results, &["Bucket", "Key"]).map_err(|e| e.within("results"))?;
            Ok(Request::Summarize {
                results: Location {
                    bucket: string(results, "results.Bucket", "Bucket")?,
                    key: string(results, "results.Key", "Key")?,
                },
                manifest: location(fields, "manifest")?,
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

/// A batch as the ItemBatcher sends it: `Items` (1 to `fleet::MAX_BATCH` objects, each
/// `{"instance": "<id>"}`) and the `BatchInput` the state machine sets.
fn batch(fields: &Map<String, Value>) -> Result<Request, InvalidRequest> {
    only(fields, &["Items", "BatchInput"])?;
    let items = match fields.get("Items") {
        Some(Value::Array(items)) => items,
        Some(other) => return Err(wrong_type("Items", "an array", other)),
        None => return Err(InvalidRequest::new("Items", "is required in a batch")),
    };
    if items.is_empty() || items.len() > crate::fleet::MAX_BATCH {
        let problem = format!(
            "must hold 1 to {} items, not {}",
            crate::fleet::MAX_BATCH,
            items.len()
        );
        return Err(InvalidRequest::new("Items", problem));
    }
    let instances = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Some(item) = item.as_object() else {
                return Err(wrong_type(&format!("Items[{i}]"), "an object", item));
            };
            only(item, &["instance"]).map_err(|e| e.within(&format!("Items[{i}]")))?;
            instance(item).map_err(|e| e.within(&format!("Items[{i}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let input = object(fields, "BatchInput", "is required in a batch")?;
    let within = |e: InvalidRequest| e.within("BatchInput");
    only(
        input,
        &["action", "manifest", "requestsPerSecond", "burst", "deadlineMs"],
    )
    .map_err(within)?;
    match input.get("action") {
        Some(Value::String(a)) if a == "ship-batch" => {}
        _ => {
            return Err(InvalidRequest::new(
                "BatchInput.action",
                r#"must be "ship-batch""#,
            ));
        }
    }
    let positive = |name: &str| match input.get(name) {
        Some(Value::Number(n)) if n.as_f64().is_some_and(|v| v > 0.0 && v.is_finite()) => {
            Ok(n.as_f64().unwrap_or(1.0))
        }
        Some(other) => Err(wrong_type(
            &format!("BatchInput.{name}"),
            "a positive number",
            other,
        )),
        None => Err(InvalidRequest::new(format!("BatchInput.{name}"), "is required")),
    };
    let deadline_ms = match input.get("deadlineMs") {
        Some(v) => v
            .as_i64()
            .ok_or_else(|| wrong_type("BatchInput.deadlineMs", "a whole number (epoch ms)", v))?,
        None => return Err(InvalidRequest::new("BatchInput.deadlineMs", "is required")),
    };
    Ok(Request::ShipBatch {
        instances,
        input: BatchInput {
            manifest: location(input, "manifest").map_err(within)?,
            requests_per_second: positive("requestsPerSecond")?,
            burst: positive("burst")?,
            deadline_ms,
        },
    })
}

/// A field that must be an object.
fn object<'a>(
    fields: &'a Map<String, Value>,
    name: &str,
    missing: &str,
) -> Result<&'a Map<String, Value>, InvalidRequest> {
    match fields.get(name) {
        Some(Value::Object(o)) => Ok(o),
        Some(other) => Err(wrong_type(name, "an object", other)),
        None => Err(InvalidRequest::new(name, missing)),
    }
}

/// A non-empty string field (`at` names it in errors).
fn string(fields: &Map<String, Value>, at: &str, name: &str) -> Result<String, InvalidRequest> {
    match fields.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(InvalidRequest::new(at, "must not be empty")),
        Some(other) => Err(wrong_type(at, "a string", other)),
        None => Err(InvalidRequest::new(at, "is required")),
    }
}

/// An S3 location `{"bucket", "key"}`.
fn location(fields: &Map<String, Value>, name: &str) -> Result<Location, InvalidRequest> {
    let loc = object(fields, name, "is required")?;
    only(loc, &["bucket", "key"]).map_err(|e| e.within(name))?;
    Ok(Location {
        bucket: string(loc, &format!("{name}.bucket"), "bucket")?,
        key: string(loc, &format!("{name}.key"), "key")?,
    })
}

/// A Step Functions execution name (1-80 characters, no whitespace, wildcards, brackets,
/// slashes or control characters), which names the run's objects.
fn run_name(fields: &Map<String, Value>) -> Result<String, InvalidRequest> {
    let name = string(fields, "run", "run")?;
    let bad = |c: char| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c);
    if name.chars().count() > 80 || name.chars().any(bad) {
        return Err(InvalidRequest::new(
            "run",
            format!(
                "must be a Step Functions execution name (1-80 characters, no whitespace or special characters), not {name:?}"
            ),
        ));
    }
    Ok(name)
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
        assert_eq!(
            parse(json!({"action": "select", "run": "scheduled-1"})),
            Ok(Request::Select {
                run: "scheduled-1".into()
            })
        );
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
            (json!({"action": "select"}), "run"),
            (json!({"action": "select", "run": "a/b"}), "run"),
            (json!({"action": "select", "run": "a".repeat(81)}), "run"),
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

    fn batch_input() -> Value {
        json!({"action": "ship-batch", "manifest": {"bucket": "b", "key": "logs/_fleet/r/instances.json"},
               "requestsPerSecond": 2.0, "burst": 5, "deadlineMs": 1_700_000_000_000_i64})
    }

    #[test]
    fn a_batch_is_read_as_the_item_batcher_sends_it() {
        let payload =
            json!({"BatchInput": batch_input(), "Items": [{"instance": "db-1"}, {"instance": "db-2"}]});
        let Ok(Request::ShipBatch { instances, input }) = parse(payload) else {
            panic!("not a batch");
        };
        assert_eq!(instances, ["db-1", "db-2"]);
        assert_eq!(
            input,
            BatchInput {
                manifest: Location {
                    bucket: "b".into(),
                    key: "logs/_fleet/r/instances.json".into()
                },
                requests_per_second: 2.0,
                burst: 5.0,
                deadline_ms: 1_700_000_000_000,
            }
        );
        let with = |k: &str, v: Value| {
            let mut input = batch_input();
            input[k] = v;
            json!({"BatchInput": input, "Items": [{"instance": "db-1"}]})
        };
        let too_many: Vec<Value> = (0..=crate::fleet::MAX_BATCH)
            .map(|i| json!({"instance": format!("db-{i}")}))
            .collect();
        let cases = [
            (json!({"Items": [{"instance": "db-1"}]}), "BatchInput"),
            (json!({"BatchInput": batch_input()}), "Items"),
            (json!({"BatchInput": batch_input(), "Items": []}), "Items"),
            (json!({"BatchInput": batch_input(), "Items": too_many}), "Items"),
            (
                json!({"BatchInput": batch_input(), "Items": ["db-1"]}),
                "Items[0]",
            ),
            (
                json!({"BatchInput": batch_input(), "Items": [{"instance": "db_1"}]}),
                "Items[0].instance",
            ),
            (
                json!({"BatchInput": batch_input(), "Items": [{"instance": "db-1", "x": 1}]}),
                "Items[0].x",
            ),
            (
                json!({"BatchInput": batch_input(), "Items": [], "action": "run"}),
                "action",
            ),
            (with("action", json!("ship")), "BatchInput.action"),
            (
                with("requestsPerSecond", json!(0)),
                "BatchInput.requestsPerSecond",
            ),
            (with("burst", json!("5")), "BatchInput.burst"),
            (with("deadlineMs", json!(1.5)), "BatchInput.deadlineMs"),
            (
                with("manifest", json!({"bucket": "b"})),
                "BatchInput.manifest.key",
            ),
            (with("manifest", json!("s3://b/k")), "BatchInput.manifest"),
            (with("extra", json!(1)), "BatchInput.extra"),
        ];
        for (payload, field) in cases {
            assert_eq!(field_of(payload.clone()), field, "{payload}");
        }
    }

    #[test]
    fn summarize_names_the_result_writer_manifest_and_the_selection() {
        let payload = json!({"action": "summarize",
            "results": {"Bucket": "b", "Key": "logs/_fleet/r/results/m/manifest.json"},
            "manifest": {"bucket": "b", "key": "logs/_fleet/r/instances.json"}});
        assert_eq!(
            parse(payload),
            Ok(Request::Summarize {
                results: Location {
                    bucket: "b".into(),
                    key: "logs/_fleet/r/results/m/manifest.json".into()
                },
                manifest: Location {
                    bucket: "b".into(),
                    key: "logs/_fleet/r/instances.json".into()
                },
            })
        );
        let manifest = json!({"bucket": "b", "key": "k"});
        let cases = [
            (json!({"action": "summarize", "manifest": manifest}), "results"),
            (
                json!({"action": "summarize", "results": [], "manifest": manifest}),
                "results",
            ),
            (
                json!({"action": "summarize", "results": {"Bucket": "b"}, "manifest": manifest}),
                "results.Key",
            ),
            (
                json!({"action": "summarize", "results": {"Bucket": "b", "Key": "k", "X": 1}, "manifest": manifest}),
                "results.X",
            ),
            (
                json!({"action": "summarize", "results": {"Bucket": "b", "Key": "k"}}),
                "manifest",
            ),
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
            r#"invalid request: `action` must be one of "select", "ship", "run" or "summarize" (a batch carries "ship-batch" in its BatchInput), not "shipp""#
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
