//! Reading a handler's [`Metrics`] back, as CloudWatch would from its EMF documents.

#![allow(dead_code)] // each test file uses what it needs

use deploy_steps::metrics::SERVICE;
use lambda_common::metrics::Metrics;
use serde_json::Value;

/// Every value of metric `name` published under the dimension set `Service` plus `dims` (keys
/// and values), roll-ups included, as CloudWatch would see it.
pub fn values(m: &Metrics, name: &str, dims: &[(&str, &str)]) -> Vec<f64> {
    let mut out = Vec::new();
    for doc in m.documents(0) {
        assert_eq!(doc["Service"], SERVICE, "{doc}");
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        let wanted: Vec<&str> = std::iter::once("Service")
            .chain(dims.iter().map(|(k, _)| *k))
            .collect();
        let published = directive["Dimensions"].as_array().is_some_and(|sets| {
            sets.iter().any(|set| {
                set.as_array()
                    .is_some_and(|keys| keys.iter().map(Value::as_str).eq(wanted.iter().map(|k| Some(*k))))
            })
        });
        if !published || !dims.iter().all(|(k, v)| doc[*k] == *v) {
            continue;
        }
        match &doc[name] {
            Value::Number(n) => out.extend(n.as_f64()),
            Value::Array(a) => out.extend(a.iter().filter_map(Value::as_f64)),
            _ => {}
        }
    }
    out
}

/// The sum of [`values`].
pub fn sum(m: &Metrics, name: &str, dims: &[(&str, &str)]) -> f64 {
    values(m, name, dims).iter().sum()
}

/// Every `StepOutcomes` datum as (outcome, step, count).
pub fn outcomes(m: &Metrics) -> Vec<(String, String, f64)> {
    m.documents(0)
        .into_iter()
        .filter_map(|doc| {
            let n = doc["StepOutcomes"].as_f64()?;
            Some((
                doc["Outcome"].as_str()?.to_owned(),
                doc["Step"].as_str()?.to_owned(),
                n,
            ))
        })
        .collect()
}
