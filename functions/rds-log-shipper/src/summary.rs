//! What a run answers: per instance what was shipped, what was lost, how far behind it is, and
//! whether everything was shipped.

use std::collections::BTreeMap;

use serde::Serialize;
use tracing::warn;

/// The kinds of anomaly (the `Kind` dimension of the `Anomalies` metric).
pub mod kind {
    /// A file the checkpoint knows vanished from the listing before all of it was shipped.
    pub const FILE_LOST: &str = "file_lost";
    /// RDS cut a line over 1 MB.
    pub const LINE_TRUNCATED: &str = "line_truncated";
    /// A file was replaced under its name and is shipped again as a new generation.
    pub const FILE_REPLACED: &str = "file_replaced";
    /// A file disappeared while it was being read (its loss, if any, is counted once it is no
    /// longer listed).
    pub const FILE_GONE_WHILE_READ: &str = "file_gone_while_read";
    /// A binary file, which RDS serves only whole, was skipped.
    pub const BINARY_FILE_SKIPPED: &str = "binary_file_skipped";
    /// RDS returned nothing before the listed size; resumed on a later run.
    pub const READ_STALLED: &str = "read_stalled";
}

/// Bytes lost in one file: a file lost (`file_lost`) or a line cut (`line_truncated`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Lost {
    pub kind: &'static str,
    pub file: String,
    pub bytes: u64,
    /// The bytes are only a lower bound: a file lost from a checkpoint that predates recorded
    /// listings, or a cut line whose dropped bytes are not known (then `bytes` is 0).
    pub lower_bound: bool,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSummary {
    pub instance: String,
    /// Files this run worked on.
    pub files: usize,
    /// Files of which this run wrote bytes to S3.
    pub files_shipped: usize,
    /// Log bytes (uncompressed) in the chunk objects this run created.
    pub bytes: u64,
    /// Chunk objects this run created (checkpoints not counted).
    pub objects: usize,
    /// The first `MAX_LISTED_ANOMALIES` anomalies; `anomaly_count` counts them all (a summary
    /// must stay small: it becomes Step Functions state, limited to 256 KiB).
    pub anomalies: Vec<String>,
    pub anomaly_count: usize,
    /// Anomalies by kind (see [`kind`]).
    pub anomaly_kinds: BTreeMap<&'static str, usize>,
    /// Bytes lost (see `loss`), and the first `MAX_LISTED_ANOMALIES` files they were lost from.
    pub bytes_lost: u64,
    pub lost: Vec<Lost>,
    /// The age in seconds, at the end of the run, of the oldest file listed with bytes not yet
    /// shipped (see `report::lag_seconds`); 0 when caught up; null when the listing could not
    /// be read.
    pub lag_seconds: Option<f64>,
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

    /// Records an anomaly of `kind`: logged always, listed in the summary up to
    /// `MAX_LISTED_ANOMALIES`, counted by kind.
    pub fn anomaly(&mut self, kind: &'static str, message: String) {
        warn!(instance = %self.instance, kind, anomaly = %message, "anomaly");
        self.anomaly_count += 1;
        *self.anomaly_kinds.entry(kind).or_default() += 1;
        if self.anomalies.len() < MAX_LISTED_ANOMALIES {
            self.anomalies.push(message);
        }
    }

    /// Records bytes lost (the anomaly is recorded apart).
    pub fn lost(&mut self, lost: Lost) {
        warn!(instance = %self.instance, kind = lost.kind, file = %lost.file, bytes = lost.bytes, lower_bound = lost.lower_bound, "bytes lost");
        self.bytes_lost += lost.bytes;
        if self.lost.len() < MAX_LISTED_ANOMALIES {
            self.lost.push(lost);
        }
    }
}

/// A run over the configured selection.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub instances: Vec<InstanceSummary>,
    pub stopped_at_deadline: bool,
    /// The largest `lagSeconds` of the instances (null when none was measured).
    pub fleet_max_lag_seconds: Option<f64>,
    /// Instances whose shipping failed (their `error` says why).
    pub instances_failed: usize,
    pub bytes_lost: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anomalies_are_all_counted_and_the_first_listed() {
        let mut s = InstanceSummary::new("db1");
        for i in 0..MAX_LISTED_ANOMALIES + 5 {
            let k = if i % 2 == 0 {
                kind::FILE_LOST
            } else {
                kind::READ_STALLED
            };
            s.anomaly(k, format!("anomaly {i}"));
        }
        assert_eq!(s.anomaly_count, MAX_LISTED_ANOMALIES + 5);
        assert_eq!(s.anomalies.len(), MAX_LISTED_ANOMALIES);
        assert_eq!(s.anomalies[0], "anomaly 0");
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["anomalyCount"], 15);
        assert_eq!(
            json["anomalyKinds"],
            serde_json::json!({"file_lost": 8, "read_stalled": 7})
        );
        assert!(json.get("error").is_none());
        assert!(
            json["lagSeconds"].is_null(),
            "present (null) for the state machine to select"
        );
    }

    #[test]
    fn bytes_lost_are_all_summed_and_the_first_files_listed() {
        let mut s = InstanceSummary::new("db1");
        for i in 0..MAX_LISTED_ANOMALIES + 2 {
            s.lost(Lost {
                kind: kind::FILE_LOST,
                file: format!("f{i}"),
                bytes: 10,
                lower_bound: false,
            });
        }
        assert_eq!(s.bytes_lost, 120);
        assert_eq!(s.lost.len(), MAX_LISTED_ANOMALIES);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["lost"][0],
            serde_json::json!({"kind": "file_lost", "file": "f0", "bytes": 10, "lowerBound": false})
        );
    }
}
