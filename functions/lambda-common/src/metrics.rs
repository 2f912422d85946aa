//! CloudWatch Embedded Metric Format (EMF): one invocation's metrics, written to stdout as JSON
//! lines that CloudWatch Logs turns into metrics (no `PutMetricData`, no permission).
//!
//! Each function builds one [`Metrics`] per invocation, records into it, and flushes it once at
//! the end of the invocation ([`Metrics::flush`]), whatever the outcome. The lines coexist with
//! the JSON (or text) log lines: each is written whole under stdout's lock.
//!
//! Dimensions stay low-cardinality by construction: every datum carries the `Service` dimension
//! (the function family), and at most a few of the caller's own (a failure type, a verdict, an
//! outcome), each rolled up: a datum with dimensions `[a, b]` is published under `[Service]`,
//! `[Service, a]` and `[Service, a, b]`. Anything per job, file or instance goes in a
//! *property* ([`Metrics::sample_with`]): searchable in Logs Insights, never a dimension.
//!
//! Under Lambda's JSON log format with log-level filtering (`ApplicationLogLevel`), Lambda drops
//! application lines below the configured level, and a line without a `level` (or without an
//! RFC 3339 `timestamp`) counts as INFO: set to WARN, the metrics would vanish with the INFO
//! logs. So every document carries `level` = the configured level (`AWS_LAMBDA_LOG_LEVEL`, INFO
//! when unset) and `timestamp`, and is never filtered out.
//!
//! Why not the `metrics_cloudwatch_embedded` crate (the maintained `metrics` backend): its
//! recorder is process-global, so handler tests running in parallel cannot each see their own
//! metrics; its gauges keep their last value and are published again by every later flush (a
//! stale lag); its properties are global, so no per-instance property is possible; and its flush
//! path unwraps a mutex and the clock.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Map, Value, json};

/// The dimension every datum carries.
pub const SERVICE: &str = "Service";

/// The namespace when `METRICS_NAMESPACE` is unset (the template always sets it).
pub const DEFAULT_NAMESPACE: &str = "RustPipelineLambdas";

/// EMF allows at most 100 values per metric in one document.
const MAX_VALUES: usize = 100;

/// The units used here (a subset of CloudWatch's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    Count,
    Bytes,
    Seconds,
    Milliseconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Bytes => "Bytes",
            Self::Seconds => "Seconds",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

/// One document: a dimension set (beyond `Service`), its properties, and its metrics.
#[derive(Debug, Clone, Default, PartialEq)]
struct Group {
    dimensions: Vec<(&'static str, String)>,
    properties: BTreeMap<String, Value>,
    /// Metric name -> unit and values (summed counters hold one value).
    values: BTreeMap<&'static str, (Unit, Vec<f64>)>,
}

/// One invocation's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    namespace: String,
    service: &'static str,
    /// The `level` every document carries (see the module documentation).
    level: String,
    groups: Vec<Group>,
}

impl Metrics {
    pub fn new(namespace: impl Into<String>, service: &'static str) -> Self {
        Self {
            namespace: namespace.into(),
            service,
            level: "INFO".to_owned(),
            groups: Vec::new(),
        }
    }

    /// The `level` the documents carry: Lambda's application log level, so that its log-level
    /// filtering never drops them (an unknown or empty value is INFO).
    pub fn with_level(mut self, level: Option<&str>) -> Self {
        self.level = log_level(level);
        self
    }

    /// The namespace from `METRICS_NAMESPACE` (empty or unset: [`DEFAULT_NAMESPACE`]).
    /// The namespace from `METRICS_NAMESPACE` and the level from `AWS_LAMBDA_LOG_LEVEL` (see the
    /// module documentation).
    pub fn from_env(service: &'static str) -> Self {
        Self::new(
            namespace(std::env::var("METRICS_NAMESPACE").ok().as_deref()),
            service,
        )
        .with_level(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref())
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    fn group(&mut self, dims: &[(&'static str, &str)]) -> &mut Group {
        let at = self.groups.iter().position(|g| {
            g.properties.is_empty()
                && g.dimensions.len() == dims.len()
                && g.dimensions
                    .iter()
                    .zip(dims)
                    .all(|((k, v), (k2, v2))| k == k2 && v == v2)
        });
        let at = at.unwrap_or_else(|| {
            self.groups.push(Group {
                dimensions: dims.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
                ..Group::default()
            });
            self.groups.len() - 1
        });
        &mut self.groups[at]
    }

    /// Adds `n` to the counter `metric` under `dims` (Count).
    pub fn count(&mut self, metric: &'static str, n: u64, dims: &[(&'static str, &str)]) {
        self.add(metric, Unit::Count, n as f64, dims);
    }

    /// Adds `value` to the summed metric `metric` under `dims`.
    pub fn add(&mut self, metric: &'static str, unit: Unit, value: f64, dims: &[(&'static str, &str)]) {
        let entry = self
            .group(dims)
            .values
            .entry(metric)
            .or_insert((unit, Vec::new()));
        match entry.1.first_mut() {
            Some(sum) => *sum += value,
            None => entry.1.push(value),
        }
    }

    /// Records one sample of `metric` (each sample is its own value: CloudWatch's statistics,
    /// maximum and percentiles, see every one).
    pub fn sample(&mut self, metric: &'static str, unit: Unit, value: f64, dims: &[(&'static str, &str)]) {
        self.group(dims)
            .values
            .entry(metric)
            .or_insert((unit, Vec::new()))
            .1
            .push(value);
    }

    /// Records one sample of `metric` under `[Service]` in a document of its own carrying
    /// `properties` (per-item context such as an instance id: never a dimension).
    pub fn sample_with(
        &mut self,
        metric: &'static str,
        unit: Unit,
        value: f64,
        properties: &[(&str, Value)],
    ) {
        let mut group = Group {
            properties: properties
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            ..Group::default()
        };
        group.values.insert(metric, (unit, vec![value]));
        self.groups.push(group);
    }

    /// The EMF documents, one JSON object per element, stamped `timestamp_ms`.
    pub fn documents(&self, timestamp_ms: u64) -> Vec<Value> {
        let mut docs = Vec::new();
        for group in &self.groups {
            // Split metrics whose values exceed one document's 100.
            let rounds = group
                .values
                .values()
                .map(|(_, v)| v.len().div_ceil(MAX_VALUES))
                .max()
                .unwrap_or(0);
            for round in 0..rounds {
                docs.extend(self.document(group, round, timestamp_ms));
            }
        }
        docs
    }

    fn document(&self, group: &Group, round: usize, timestamp_ms: u64) -> Option<Value> {
        let mut doc = Map::new();
        let mut definitions = Vec::new();
        for (name, (unit, values)) in &group.values {
            let chunk: Vec<f64> = values
                .iter()
                .skip(round * MAX_VALUES)
                .take(MAX_VALUES)
                .copied()
                .collect();
            let value = match chunk.as_slice() {
                [] => continue,
                [one] => json!(one),
                many => json!(many),
            };
            definitions.push(json!({"Name": name, "Unit": unit.as_str()}));
            doc.insert((*name).to_owned(), value);
        }
        if definitions.is_empty() {
            return None;
        }
        let mut keys = vec![SERVICE];
        let mut sets = vec![Value::from(keys.clone())];
        for (k, _) in &group.dimensions {
            keys.push(k);
            sets.push(Value::from(keys.clone()));
        }
        for (k, v) in &group.properties {
            doc.insert(k.clone(), v.clone());
        }
        doc.insert(SERVICE.to_owned(), json!(self.service));
        doc.insert("level".to_owned(), json!(self.level));
        doc.insert("timestamp".to_owned(), json!(rfc3339(timestamp_ms)));
        for (k, v) in &group.dimensions {
            doc.insert((*k).to_owned(), json!(v));
        }
        doc.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": sets,
                    "Metrics": definitions,
                }],
            }),
        );
        Some(Value::Object(doc))
    }

    /// Writes the documents to `out`, one line each, and forgets them.
    pub fn write_to(&mut self, mut out: impl Write, timestamp_ms: u64) -> std::io::Result<()> {
        let mut text = String::new();
        for doc in self.documents(timestamp_ms) {
            text.push_str(&doc.to_string());
            text.push('\n');
        }
        self.groups.clear();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// Writes the documents to stdout (under its lock, so that no log line interleaves) and
    /// forgets them. A failed write is logged, never returned: metrics never fail an invocation.
    pub fn flush(&mut self) {
        if self.groups.is_empty() {
            return;
        }
        let stdout = std::io::stdout();
        if let Err(err) = self.write_to(stdout.lock(), crate::clock::now_ms()) {
            tracing::warn!(error = %err, "could not write the invocation's metrics");
        }
    }
}

/// Lambda's log level names; anything else is INFO (as Lambda reads it).
fn log_level(level: Option<&str>) -> String {
    let level = level.map(|l| l.trim().to_ascii_uppercase()).unwrap_or_default();
    match level.as_str() {
        "TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR" | "FATAL" => level,
        _ => "INFO".to_owned(),
    }
}

/// Epoch milliseconds as an RFC 3339 UTC timestamp, millisecond precision.
fn rfc3339(epoch_ms: u64) -> String {
    let ms = i64::try_from(epoch_ms).unwrap_or(i64::MAX);
    aws_smithy_types::DateTime::from_millis(ms)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// The namespace: `METRICS_NAMESPACE`'s value, or [`DEFAULT_NAMESPACE`] when it is empty.
pub fn namespace(var: Option<&str>) -> String {
    match var.map(str::trim) {
        Some(ns) if !ns.is_empty() => ns.to_owned(),
        _ => DEFAULT_NAMESPACE.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(m: &Metrics) -> Vec<Value> {
        m.documents(1_700_000_000_000)
    }

    #[test]
    fn counters_sum_and_roll_up_their_dimensions() {
        let mut m = Metrics::new("Ns", "PipelineTrigger");
        m.count("JobsFailed", 1, &[("FailureType", "JobFailed")]);
        m.count("JobsFailed", 2, &[("FailureType", "JobFailed")]);
        m.count("JobsStarted", 1, &[]);
        let d = docs(&m);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0]["JobsFailed"], json!(3.0));
        assert_eq!(d[0]["Service"], "PipelineTrigger");
        assert_eq!(d[0]["FailureType"], "JobFailed");
        let directive = &d[0]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Ns");
        assert_eq!(
            directive["Dimensions"],
            json!([["Service"], ["Service", "FailureType"]])
        );
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "JobsFailed", "Unit": "Count"}])
        );
        assert_eq!(d[0]["_aws"]["Timestamp"], 1_700_000_000_000_u64);
        assert_eq!(d[1]["JobsStarted"], json!(1.0));
        assert_eq!(
            d[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Service"]])
        );
    }

    #[test]
    fn samples_stay_separate_and_split_at_one_hundred() {
        let mut m = Metrics::new("Ns", "RdsLogShipper");
        for i in 0..150 {
            m.sample("LagSeconds", Unit::Seconds, f64::from(i), &[]);
        }
        m.add("BytesShipped", Unit::Bytes, 10.0, &[]);
        let d = docs(&m);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0]["LagSeconds"].as_array().map(Vec::len), Some(100));
        assert_eq!(d[0]["BytesShipped"], json!(10.0));
        assert_eq!(d[1]["LagSeconds"].as_array().map(Vec::len), Some(50));
        assert!(d[1].get("BytesShipped").is_none());
        let metrics = &d[1]["_aws"]["CloudWatchMetrics"][0]["Metrics"];
        assert_eq!(metrics, &json!([{"Name": "LagSeconds", "Unit": "Seconds"}]));
    }

    #[test]
    fn properties_never_become_dimensions() {
        let mut m = Metrics::new("Ns", "RdsLogShipper");
        m.sample_with(
            "LagSeconds",
            Unit::Seconds,
            4.0,
            &[("DBInstanceIdentifier", json!("db-1"))],
        );
        m.sample_with(
            "LagSeconds",
            Unit::Seconds,
            9.0,
            &[("DBInstanceIdentifier", json!("db-2"))],
        );
        let d = docs(&m);
        assert_eq!(d.len(), 2);
        assert_eq!(d[1]["DBInstanceIdentifier"], "db-2");
        assert_eq!(d[1]["LagSeconds"], json!(9.0));
        assert_eq!(
            d[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Service"]])
        );
    }

    #[test]
    fn writes_whole_lines_and_forgets_them() {
        let mut m = Metrics::new("Ns", "DeployWorkflow");
        let mut out = Vec::new();
        m.write_to(&mut out, 1).unwrap_or_else(|e| panic!("{e}"));
        assert!(out.is_empty());
        m.count("StepOutcomes", 1, &[("Outcome", "Success"), ("Step", "prepare")]);
        m.write_to(&mut out, 1).unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8(out).unwrap_or_default();
        assert_eq!(text.lines().count(), 1);
        let doc: Value = serde_json::from_str(text.trim_end()).unwrap_or_default();
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([
                ["Service"],
                ["Service", "Outcome"],
                ["Service", "Outcome", "Step"]
            ])
        );
        assert!(m.is_empty());
    }

    #[test]
    fn documents_carry_the_configured_level_and_a_timestamp() {
        let mut m = Metrics::new("Ns", "PipelineTrigger").with_level(Some("warn"));
        m.count("JobsStarted", 1, &[]);
        let d = docs(&m);
        assert_eq!(d[0]["level"], "WARN");
        assert_eq!(d[0]["timestamp"], "2023-11-14T22:13:20Z");
        let m = Metrics::new("Ns", "S").with_level(Some("loud"));
        assert_eq!(m.level, "INFO");
        assert_eq!(Metrics::new("Ns", "S").with_level(None).level, "INFO");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn namespace_defaults_when_unset_or_empty() {
        assert_eq!(namespace(None), DEFAULT_NAMESPACE);
        assert_eq!(namespace(Some("  ")), DEFAULT_NAMESPACE);
        assert_eq!(namespace(Some("prod-pipelines")), "prod-pipelines");
    }
}
