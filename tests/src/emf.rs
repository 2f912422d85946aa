//! The functions' CloudWatch Embedded Metric Format lines, read back from their logs as
//! CloudWatch Logs would extract them: every line that is a JSON object with an `_aws` member is
//! an EMF document, and a malformed one is an error (CloudWatch would drop it silently).

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use serde_json::Value;

/// One metric of one document under one of its dimension sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub namespace: String,
    pub name: String,
    pub unit: String,
    pub values: Vec<f64>,
    /// The dimension set's keys and values (`Service` first).
    pub dimensions: BTreeMap<String, String>,
    /// The document's other members (properties such as an instance id).
    pub properties: BTreeMap<String, Value>,
    /// The log line (from 1) of the document.
    pub line: usize,
}

/// Every datum of every EMF line in `log`.
pub fn parse(log: &str) -> anyhow::Result<Vec<Datum>> {
    let mut out = Vec::new();
    for (n, line) in log.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let Ok(doc) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if doc.get("_aws").is_none() {
            continue;
        }
        out.extend(document(&doc, n + 1).with_context(|| format!("EMF line {}: {line}", n + 1))?);
    }
    Ok(out)
}

fn document(doc: &Value, line: usize) -> anyhow::Result<Vec<Datum>> {
    // Under Lambda's log-level filtering a line without a valid `level` and RFC 3339
    // `timestamp` counts as INFO, and would be dropped at WARN with the INFO logs.
    let level = doc["level"].as_str().unwrap_or_default();
    if !["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"].contains(&level) {
        bail!("no valid level: Lambda's log-level filtering would count the line as INFO");
    }
    if !doc["timestamp"]
        .as_str()
        .is_some_and(|t| t.contains('T') && t.ends_with('Z'))
    {
        bail!("no RFC 3339 timestamp: Lambda's log-level filtering would count the line as INFO");
    }
    let aws = &doc["_aws"];
    if !aws["Timestamp"].is_u64() {
        bail!("_aws.Timestamp is not epoch milliseconds");
    }
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .context("_aws.CloudWatchMetrics is not an array")?;
    let mut used = vec!["_aws".to_owned()];
    let mut out = Vec::new();
    for d in directives {
        let namespace = d["Namespace"].as_str().context("no Namespace")?;
        let sets = d["Dimensions"].as_array().context("no Dimensions")?;
        let metrics = d["Metrics"].as_array().context("no Metrics")?;
        if metrics.len() > 100 {
            bail!("more than 100 metrics in one directive");
        }
        for m in metrics {
            let name = m["Name"].as_str().context("a metric without Name")?;
            let unit = m["Unit"].as_str().unwrap_or("None").to_owned();
            let values = match &doc[name] {
                Value::Number(n) => vec![n.as_f64().context("not a number")?],
                Value::Array(a) if !a.is_empty() && a.len() <= 100 => a
                    .iter()
                    .map(|v| v.as_f64().context("a value that is not a number"))
                    .collect::<anyhow::Result<_>>()?,
                other => bail!("metric {name} has no numeric member: {other}"),
            };
            used.push(name.to_owned());
            for set in sets {
                let keys = set.as_array().context("a dimension set that is not an array")?;
                if keys.len() > 30 {
                    bail!("more than 30 dimensions in one set");
                }
                let mut dimensions = BTreeMap::new();
                for k in keys {
                    let k = k.as_str().context("a dimension key that is not a string")?;
                    let v = doc[k]
                        .as_str()
                        .with_context(|| format!("dimension {k} has no string member"))?;
                    dimensions.insert(k.to_owned(), v.to_owned());
                    used.push(k.to_owned());
                }
                out.push(Datum {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    unit: unit.clone(),
                    values: values.clone(),
                    dimensions,
                    properties: BTreeMap::new(),
                    line,
                });
            }
        }
    }
    let properties: BTreeMap<String, Value> = doc
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !used.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    for d in &mut out {
        d.properties = properties.clone();
    }
    Ok(out)
}

/// The data of metric `name` whose dimension set is exactly `Service` plus `dims`.
pub fn select<'a>(data: &'a [Datum], name: &str, dims: &[(&str, &str)]) -> Vec<&'a Datum> {
    data.iter()
        .filter(|d| d.name == name)
        .filter(|d| {
            d.dimensions.len() == dims.len() + 1
                && d.dimensions.contains_key("Service")
                && dims
                    .iter()
                    .all(|(k, v)| d.dimensions.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The sum of every value of [`select`].
pub fn sum(data: &[Datum], name: &str, dims: &[(&str, &str)]) -> f64 {
    select(data, name, dims)
        .iter()
        .flat_map(|d| d.values.iter())
        .sum()
}

/// Every value of [`select`], in order.
pub fn values(data: &[Datum], name: &str, dims: &[(&str, &str)]) -> Vec<f64> {
    select(data, name, dims)
        .iter()
        .flat_map(|d| d.values.iter().copied())
        .collect()
}

/// The EMF data every function of a stack logged in `log_dir` (one `<function>.log` each) past the
/// lines already seen, which `seen` records per file and is moved forward: a demo prints what
/// each of its parts produced.
pub fn since(log_dir: &std::path::Path, seen: &mut BTreeMap<String, usize>) -> anyhow::Result<Vec<Datum>> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(log_dir)
        .with_context(|| format!("reading {}", log_dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    for path in files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let from = seen.get(&name).copied().unwrap_or(0);
        let data = parse(&text).with_context(|| format!("the EMF lines of {name}"))?;
        out.extend(data.into_iter().filter(|d| d.line > from));
        seen.insert(name, text.lines().count());
    }
    Ok(out)
}

/// A small table of `data` for people: one row per metric and dimension set, with the number of
/// values, their sum and their maximum. Only the finest dimension set of each document is shown
/// (its roll-ups repeat the same values).
pub fn table(data: &[Datum]) -> String {
    let mut rows: BTreeMap<(String, String, String), (usize, f64, f64)> = BTreeMap::new();
    for d in data {
        // Skip a roll-up when the same document also publishes a finer set of this metric.
        let finer = data.iter().any(|o| {
            o.line == d.line
                && o.name == d.name
                && o.dimensions.len() > d.dimensions.len()
                && d.dimensions.iter().all(|(k, v)| o.dimensions.get(k) == Some(v))
        });
        if finer {
            continue;
        }
        let dims = d
            .dimensions
            .iter()
            .filter(|(k, _)| k.as_str() != "Service")
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let service = d.dimensions.get("Service").cloned().unwrap_or_default();
        let row = rows
            .entry((service, d.name.clone(), dims))
            .or_insert((0, 0.0, f64::MIN));
        row.0 += d.values.len();
        row.1 += d.values.iter().sum::<f64>();
        row.2 = d.values.iter().copied().fold(row.2, f64::max);
    }
    let number = |x: f64| {
        if x.fract() == 0.0 && x.abs() < 1e15 {
            format!("{x:.0}")
        } else {
            format!("{x:.3}")
        }
    };
    let mut out = format!(
        "  {:<16} {:<26} {:<42} {:>7} {:>12} {:>10}\n",
        "Service", "metric", "dimensions", "samples", "sum", "max"
    );
    for ((service, name, dims), (n, sum, max)) in rows {
        let (sum, max) = (number(sum), number(max));
        out.push_str(&format!(
            "  {service:<16} {name:<26} {dims:<42} {n:>7} {sum:>12} {max:>10}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_documents_between_log_lines() {
        let log = concat!(
            "{\"level\":\"INFO\",\"message\":\"hello\"}\n",
            "{\"_aws\":{\"Timestamp\":1,\"CloudWatchMetrics\":[{\"Namespace\":\"N\",",
            "\"Dimensions\":[[\"Service\"],[\"Service\",\"FailureType\"]],",
            "\"Metrics\":[{\"Name\":\"JobsFailed\",\"Unit\":\"Count\"}]}]},",
            "\"Service\":\"PipelineTrigger\",\"FailureType\":\"JobFailed\",\"JobsFailed\":2,\"jobId\":\"x\",",
            "\"level\":\"WARN\",\"timestamp\":\"2026-12-02T00:00:00Z\"}\n",
            "not json\n",
        );
        let data = parse(log).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(data.len(), 2);
        assert_eq!(sum(&data, "JobsFailed", &[]), 2.0);
        assert_eq!(sum(&data, "JobsFailed", &[("FailureType", "JobFailed")]), 2.0);
        assert_eq!(sum(&data, "JobsFailed", &[("FailureType", "Other")]), 0.0);
        assert_eq!(data[0].properties.get("jobId"), Some(&Value::from("x")));
        let table = table(&data);
        assert_eq!(table.lines().count(), 2, "{table}");
        assert!(table.contains("FailureType=JobFailed"), "{table}");
    }

    #[test]
    fn refuses_malformed_documents() {
        for bad in [
            r#"{"level":"INFO","timestamp":"2026-12-02T00:00:00Z","_aws":{"Timestamp":"x","CloudWatchMetrics":[]}}"#,
            r#"{"level":"INFO","timestamp":"2026-12-02T00:00:00Z","_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["Service"]],"Metrics":[{"Name":"M"}]}]},"Service":"S"}"#,
            r#"{"level":"INFO","timestamp":"2026-12-02T00:00:00Z","_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["Service"]],"Metrics":[{"Name":"M"}]}]},"M":1}"#,
            r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["Service"]],"Metrics":[{"Name":"M"}]}]},"M":1,"Service":"S"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
