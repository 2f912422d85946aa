//! What an invocation reports as metrics (CloudWatch EMF, service `RdsLogShipper`), decided from
//! its summaries, and the lag measure. Pure: the entry point hands the outcome over, `main.rs`
//! flushes.
//!
//! - `BytesShipped` (Bytes): log bytes (uncompressed) in the chunk objects the invocation
//!   created. A chunk created by an earlier, interrupted invocation and committed by this one is
//!   not counted again.
//! - `FilesShipped` (Count): files of which the invocation wrote at least one byte to S3.
//! - `ObjectsWritten` (Count): chunk objects created (PutObject or a completed multipart
//!   upload); checkpoints are not counted.
//! - `BytesLost` (Bytes): see `loss`; files lost and bytes RDS dropped from cut lines.
//! - `Anomalies` (Count, dimension `Kind`, see `summary::kind`); 0 under `[Service]` when none.
//! - `LagSeconds` (Seconds): one sample per instance whose listing was read, with the property
//!   `DBInstanceIdentifier` (never a dimension); see [`lag_seconds`].
//! - `FleetMaxLagSeconds` (Seconds): the largest `LagSeconds` of the instances of a `run`, or of
//!   the state machine's Map (its `summarize` step).
//! - `InstancesFailed` (Count): instances whose shipping failed, from a `run` or from the
//!   state machine's `summarize` step: the instances whose shipping failed in a batch, and every
//!   instance of a batch whose child failed (each counted once, however often it was retried).
//! - `ThrottledRequests` (Count): RDS answers that were throttling errors, retried ones included.
//!
//! Every `ship`, batch and `run` invocation reports its counters, zeros included, so the series have no
//! gaps; a failed one reports what it did before it failed.

use lambda_common::metrics::{Metrics, Unit};
use serde_json::json;

use crate::checkpoint::{Checkpoint, FileState, ListedFile};
use crate::summary::{InstanceSummary, Summary};

/// The `Service` dimension's value.
pub const SERVICE: &str = "RdsLogShipper";

/// Whether a file still holds bytes not shipped, by the same rules as the plan: it is new and
/// not empty, or grew past what was shipped, or has a chunk unresolved; a generation with a line
/// RDS cut, when its size changed since it was last read.
fn unshipped(st: Option<&FileState>, size: u64) -> bool {
    match st {
        None => size > 0,
        Some(st) if st.pending.is_some() => true,
        Some(st) if size < st.shipped => size > 0,
        Some(st) if st.lossy => size != st.size,
        Some(st) => size > st.shipped.max(st.skip),
    }
}

/// The lag of an instance at `now_ms`: the age in seconds of the file with the oldest
/// `LastWritten` among those listed (this run's listing, or the last listing recorded for files
/// this one did not include) that still hold bytes not shipped; 0 when every listed byte is
/// shipped. A file's unshipped bytes were written at or before its `LastWritten`, so the age of
/// the oldest byte listed but not shipped is at least this: a lower bound, exact when that
/// file's unshipped bytes were its last ones written. Bytes written after the listing are
/// younger than it and change nothing.
pub fn lag_seconds(cp: &Checkpoint, listing: &[ListedFile], now_ms: i64) -> f64 {
    let listed = listing
        .iter()
        .filter(|f| unshipped(cp.files.get(&f.name), f.size))
        .map(|f| f.last_written);
    let recorded = cp
        .files
        .iter()
        .filter(|(name, _)| !listing.iter().any(|f| &f.name == *name))
        .filter_map(|(_, st)| st.listed.filter(|seen| unshipped(Some(st), seen.size)))
        .map(|seen| seen.last_written);
    listed.chain(recorded).min().map_or(0.0, |oldest| {
        (now_ms.saturating_sub(oldest)).max(0) as f64 / 1000.0
    })
}

/// One instance's metrics.
pub fn record_instance(s: &InstanceSummary, m: &mut Metrics) {
    m.add("BytesShipped", Unit::Bytes, s.bytes as f64, &[]);
    m.count("FilesShipped", s.files_shipped as u64, &[]);
    m.count("ObjectsWritten", s.objects as u64, &[]);
    m.add("BytesLost", Unit::Bytes, s.bytes_lost as f64, &[]);
    m.count("Anomalies", 0, &[]);
    for (kind, n) in &s.anomaly_kinds {
        m.count("Anomalies", *n as u64, &[("Kind", kind)]);
    }
    if let Some(lag) = s.lag_seconds {
        m.sample_with(
            "LagSeconds",
            Unit::Seconds,
            lag,
            &[("DBInstanceIdentifier", json!(s.instance))],
        );
    }
}

/// The fleet's metrics: its largest lag (when one was measured) and its failed instances.
pub fn record_fleet(max_lag: Option<f64>, failed: usize, m: &mut Metrics) {
    if let Some(lag) = max_lag {
        m.sample("FleetMaxLagSeconds", Unit::Seconds, lag, &[]);
    }
    m.count("InstancesFailed", failed as u64, &[]);
}

/// A `run`'s metrics: each instance's, and the fleet's.
pub fn record_run(summary: &Summary, m: &mut Metrics) {
    for s in &summary.instances {
        record_instance(s, m);
    }
    record_fleet(summary.fleet_max_lag_seconds, summary.instances_failed, m);
}

/// The largest of the lags measured.
pub fn max_lag(lags: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    lags.into_iter().flatten().reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::tests::{listed, state};
    use crate::checkpoint::{Pending, Seen};
    use crate::summary::{Lost, kind};
    use serde_json::Value;

    #[test]
    fn the_lag_is_the_age_of_the_oldest_listed_file_with_bytes_not_shipped() {
        let mut cp = Checkpoint::new("db1");
        cp.files.insert("done".into(), state("m", 100, 100, 1_000));
        cp.files.insert("behind".into(), state("m", 100, 100, 5_000));
        let mut lossy = state("m", 50, 100, 2_000);
        lossy.lossy = true;
        cp.files.insert("lossy".into(), lossy);
        let now = 60_000;
        // Caught up (a lossy file counts fewer bytes than it holds, by design): 0.
        let listing = [
            listed("done", 100, 1_000),
            listed("behind", 100, 5_000),
            listed("lossy", 100, 2_000),
            listed("empty-new", 0, 500),
        ];
        assert_eq!(lag_seconds(&cp, &listing, now), 0.0);
        // One grew, one is new: the older of the two.
        let listing = [
            listed("done", 100, 1_000),
            listed("behind", 150, 9_000),
            listed("new", 10, 12_000),
        ];
        assert_eq!(lag_seconds(&cp, &listing, now), 51.0);
        // A chunk unresolved, a lossy file whose size changed.
        cp.files.get_mut("done").unwrap().pending = Some(Pending {
            key: "k".into(),
            start: 100,
            end: 150,
            end_marker: "m".into(),
            until: 0,
        });
        assert_eq!(lag_seconds(&cp, &[listed("done", 100, 1_000)], now), 59.0);
        assert_eq!(lag_seconds(&cp, &[listed("lossy", 120, 3_000)], now), 57.0);
        // A file this listing left out (filtered by last-written) whose recorded listing shows
        // bytes not shipped still counts.
        cp.files.get_mut("behind").unwrap().listed = Some(Seen {
            size: 400,
            last_written: 4_000,
        });
        assert_eq!(lag_seconds(&cp, &[listed("new", 10, 12_000)], now), 56.0);
        // A clock behind the listing: never negative.
        assert_eq!(lag_seconds(&cp, &[listed("new", 10, 12_000)], 0), 0.0);
    }

    fn docs(m: &Metrics) -> Vec<Value> {
        m.documents(0)
    }

    #[test]
    fn a_run_records_each_instance_and_the_fleet() {
        let mut a = InstanceSummary::new("db-a");
        a.bytes = 1_000;
        a.files_shipped = 2;
        a.objects = 3;
        a.lag_seconds = Some(12.5);
        a.anomaly(kind::FILE_LOST, "x: lost".into());
        a.lost(Lost {
            kind: kind::FILE_LOST,
            file: "x".into(),
            bytes: 70,
            lower_bound: false,
        });
        let mut b = InstanceSummary::new("db-b");
        b.bytes = 24;
        b.lag_seconds = Some(40.0);
        b.anomaly(kind::LINE_TRUNCATED, "y: cut".into());
        b.anomaly(kind::FILE_LOST, "z: lost".into());
        let c = InstanceSummary {
            error: Some("RDS DescribeDBLogFiles failed".into()),
            ..InstanceSummary::new("db-c")
        };
        let summary = Summary {
            fleet_max_lag_seconds: max_lag([a.lag_seconds, b.lag_seconds, c.lag_seconds]),
            instances_failed: 1,
            instances: vec![a, b, c],
            ..Summary::default()
        };
        let mut m = Metrics::new("Ns", SERVICE);
        record_run(&summary, &mut m);
        let d = docs(&m);
        let plain = &d[0];
        assert_eq!(plain["Service"], "RdsLogShipper");
        assert_eq!(plain["BytesShipped"], 1_024.0);
        assert_eq!(plain["FilesShipped"], 2.0);
        assert_eq!(plain["ObjectsWritten"], 3.0);
        assert_eq!(plain["BytesLost"], 70.0);
        assert_eq!(plain["Anomalies"], 0.0);
        assert_eq!(plain["InstancesFailed"], 1.0);
        assert_eq!(plain["FleetMaxLagSeconds"], 40.0);
        let by_kind = |k: &str| {
            d.iter()
                .find(|doc| doc["Kind"] == k)
                .map(|doc| doc["Anomalies"].clone())
        };
        assert_eq!(by_kind("file_lost"), Some(2.0.into()));
        assert_eq!(by_kind("line_truncated"), Some(1.0.into()));
        let lags: Vec<(Value, Value)> = d
            .iter()
            .filter(|doc| doc.get("LagSeconds").is_some())
            .map(|doc| (doc["DBInstanceIdentifier"].clone(), doc["LagSeconds"].clone()))
            .collect();
        assert_eq!(
            lags,
            [("db-a".into(), 12.5.into()), ("db-b".into(), 40.0.into())],
            "one sample per instance measured, the instance a property"
        );
        for doc in &d {
            let sets = doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"].to_string();
            assert!(!sets.contains("DBInstanceIdentifier"), "{sets}");
        }
    }

    #[test]
    fn the_fleet_maximum_is_of_the_lags_measured() {
        assert_eq!(max_lag([Some(3.0), None, Some(7.5)]), Some(7.5));
        assert_eq!(max_lag([None, None]), None);
        let mut m = Metrics::new("Ns", SERVICE);
        record_fleet(None, 0, &mut m);
        let d = docs(&m);
        assert_eq!(d[0]["InstancesFailed"], 0.0);
        assert!(d[0].get("FleetMaxLagSeconds").is_none());
    }
}
