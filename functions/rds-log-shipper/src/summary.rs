//! What a run answers: per instance what was shipped, and whether everything was.

use serde::Serialize;
use tracing::warn;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSummary {
    pub instance: String,
    pub files: usize,
    pub bytes: u64,
    pub objects: usize,
    /// The first `MAX_LISTED_ANOMALIES` anomalies; `anomaly_count` counts them all (a summary
    /// must stay small: it becomes Step Functions state, limited to 256 KiB).
    pub anomalies: Vec<String>,
    pub anomaly_count: usize,
    /// Everything listed was shipped (false when the run stopped at its deadline).
    pub complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub const MAX_LISTED_ANOMALIES: usize = 10;

impl InstanceSummary {
    pub fn new(instance: &str) -> Self {
        Self {
            instance: instance.to_owned(),
            ..Self::default()
        }
    }

    /// Records an anomaly: logged always, listed in the summary up to `MAX_LISTED_ANOMALIES`.
    pub fn anomaly(&mut self, message: String) {
        warn!(instance = %self.instance, anomaly = %message, "anomaly");
        self.anomaly_count += 1;
        if self.anomalies.len() < MAX_LISTED_ANOMALIES {
            self.anomalies.push(message);
        }
    }
}

/// A run over the configured selection.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub instances: Vec<InstanceSummary>,
    pub stopped_at_deadline: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anomalies_are_all_counted_and_the_first_listed() {
        let mut s = InstanceSummary::new("db1");
        for i in 0..MAX_LISTED_ANOMALIES + 5 {
            s.anomaly(format!("anomaly {i}"));
        }
        assert_eq!(s.anomaly_count, MAX_LISTED_ANOMALIES + 5);
        assert_eq!(s.anomalies.len(), MAX_LISTED_ANOMALIES);
        assert_eq!(s.anomalies[0], "anomaly 0");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["anomalyCount"], 15);
        assert!(json.get("error").is_none());
    }
}
