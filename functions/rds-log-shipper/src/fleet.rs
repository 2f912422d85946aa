//! The Distributed Map's decisions: how the selected fleet is cut into batches and the RDS
//! request budget split across concurrent children ([`plan`]), the selection manifest the Map
//! reads, a batch checked against that manifest ([`check_batch`]), what a child answers
//! ([`BatchSummary`]) and the fleet read back from the Map's result files ([`fleet_from`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::report;
use crate::summary::InstanceSummary;

/// The most instances in one child's batch: its input (about 30 bytes an instance) and its
/// answer (about 40 bytes an instance, see [`BatchSummary`]) stay far below Step Functions'
/// 256 KiB.
pub const MAX_BATCH: usize = 1000;
/// Express child executions end after 5 minutes: a child stops starting work this long before.
pub const EXPRESS_LIMIT_MS: i64 = 280_000;
/// How long after it starts a child's invocation stops working: no file is started within the
/// reserve of it, no portion read within half the reserve, and the last chunk is finished in
/// what is left of Express's 5 minutes (300 s).
pub const CHILD_WORK_MS: u64 = 290_000;
/// Left, at the end of a schedule period, for the Map's result writing and the summarize step.
pub const PERIOD_MARGIN_MS: i64 = 30_000;
/// Children always get at least this long (a period shorter than the margin, say).
pub const MIN_CHILD_MS: i64 = 60_000;

/// An S3 object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub bucket: String,
    pub key: String,
}

/// How the Map runs one selection (the select step's answer; the Map reads its paths).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapPlan {
    /// Instances selected (in the manifest).
    pub instances: usize,
    /// Children at once (`MaxConcurrencyPath`).
    pub concurrency: usize,
    /// Instances per child (`MaxItemsPerBatchPath`).
    pub batch_size: usize,
    /// Each child's RDS rate and burst: the account-wide budget divided by `concurrency`.
    pub requests_per_second: f64,
    pub burst: f64,
    /// Epoch ms after which a child starts no new instance.
    pub deadline_ms: i64,
}

/// The plan for `instances` instances: at most `max_concurrency` children at once, and no more
/// than the burst has whole requests for (each child needs a burst of at least one request), each
/// with an equal share of the budget (`concurrency × requests_per_second` and `concurrency ×
/// burst` are the budget's), batches as equal as the concurrency allows (one wave of children
/// when the fleet fits [`MAX_BATCH`] per child), no child starting an instance after the
/// schedule period's end less [`PERIOD_MARGIN_MS`] (and Express's limit).
pub fn plan(
    instances: usize,
    budget: (f64, f64),
    max_concurrency: usize,
    period_ms: i64,
    now_ms: i64,
) -> MapPlan {
    let (rate, burst) = budget;
    // `burst` is at least 1 (the configuration's floor), so every child's share is too.
    let whole_burst = burst.floor().max(1.0) as usize;
    let concurrency = max_concurrency.clamp(1, instances.max(1)).min(whole_burst);
    let batch_size = instances.div_ceil(concurrency).clamp(1, MAX_BATCH);
    let child_ms = (period_ms - PERIOD_MARGIN_MS).clamp(MIN_CHILD_MS, EXPRESS_LIMIT_MS);
    MapPlan {
        instances,
        concurrency,
        batch_size,
        requests_per_second: rate / concurrency as f64,
        burst: burst / concurrency as f64,
        deadline_ms: now_ms + child_ms,
    }
}

/// The manifest's order for `order` (most lag first) cut into batches of `batch_size` run
/// `concurrency` at a time: the ItemBatcher cuts the manifest into consecutive batches and the
/// Map starts them in order, so each wave of `concurrency` batches gets the next most lagged
/// instances, dealt across its batches (the k-th instance of every batch of a wave before the
/// (k+1)-th of any), and every child ships its most lagged first. A period that reaches its
/// deadline has shipped the most lagged instances of the fleet, not of each batch.
pub fn interleave(order: Vec<String>, batch_size: usize, concurrency: usize) -> Vec<String> {
    let (b, c, n) = (batch_size.max(1), concurrency.max(1), order.len());
    let mut out: Vec<Option<String>> = vec![None; n];
    let mut ranked = order.into_iter();
    for wave_start in (0..n).step_by(b * c) {
        let m = (n - wave_start).min(b * c);
        let batches = m.div_ceil(b);
        let size = |j: usize| if j + 1 < batches { b } else { m - j * b };
        for k in 0..b {
            for j in (0..batches).filter(|&j| k < size(j)) {
                out[wave_start + j * b + k] = ranked.next();
            }
        }
    }
    out.into_iter().flatten().collect()
}

/// The manifest's items, in shipping order: `[{"instance": "<id>"}, ...]`.
pub fn manifest_items(order: &[String]) -> Value {
    Value::Array(
        order
            .iter()
            .map(|id| serde_json::json!({ "instance": id }))
            .collect(),
    )
}

/// A manifest that is not the one the select step writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the selection manifest {key} is malformed: {problem}")]
pub struct InvalidManifest {
    pub key: String,
    pub problem: String,
}

/// The instances of a manifest, read strictly: a JSON array of `{"instance": "<id>"}`.
pub fn parse_manifest(key: &str, bytes: &[u8]) -> Result<BTreeSet<String>, InvalidManifest> {
    let bad = |problem: String| InvalidManifest {
        key: key.to_owned(),
        problem,
    };
    let items: Vec<Value> =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not a JSON array: {e}")))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item.get("instance") {
            Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
            _ => Err(bad(format!("item {i} is not {{\"instance\": \"<id>\"}}: {item}"))),
        })
        .collect()
}

/// A batch with an instance its manifest does not select: nothing of it is shipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the batch names {instance}, which the selection manifest {key} does not hold")]
pub struct NotSelected {
    pub instance: String,
    pub key: String,
}

/// Every instance of the batch is in the manifest, or the first that is not.
pub fn check_batch(items: &[String], manifest: &BTreeSet<String>, key: &str) -> Result<(), NotSelected> {
    match items.iter().find(|id| !manifest.contains(*id)) {
        None => Ok(()),
        Some(id) => Err(NotSelected {
            instance: id.clone(),
            key: key.to_owned(),
        }),
    }
}

/// What a child (one batch) answers: counts, and each instance's lag for the fairness order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSummary {
    pub instances: usize,
    /// Instances shipped up to the end of their listing.
    pub complete: usize,
    /// Instances the child did not start before its deadline.
    pub not_reached: usize,
    pub failed_instances: Vec<String>,
    pub bytes: u64,
    pub files_shipped: usize,
    pub objects: usize,
    pub bytes_lost: u64,
    pub anomalies: usize,
    /// The lag measured of each instance the child listed (seconds).
    pub lag: BTreeMap<String, f64>,
    /// When the child ended (epoch ms): the lags' measuring time.
    pub measured_at_ms: i64,
}

impl BatchSummary {
    /// Adds one instance's summary (a failed instance carries its `error`).
    pub fn add(&mut self, s: &InstanceSummary, reached: bool) {
        self.instances += 1;
        if s.error.is_some() {
            self.failed_instances.push(s.instance.clone());
        } else if !reached {
            self.not_reached += 1;
        } else if s.complete {
            self.complete += 1;
        }
        self.bytes += s.bytes;
        self.files_shipped += s.files_shipped;
        self.objects += s.objects;
        self.bytes_lost += s.bytes_lost;
        self.anomalies += s.anomaly_count;
        if let Some(lag) = s.lag_seconds {
            self.lag.insert(s.instance.clone(), lag);
        }
    }
}

/// One child execution record of a ResultWriter result file (the fields read here).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChildRecord {
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

/// The ResultWriter manifest: the result files by status.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultManifest {
    pub result_files: BTreeMap<String, Vec<ResultFile>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultFile {
    pub key: String,
}

/// Results that are not what Step Functions' ResultWriter writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Map's results {key} are malformed: {problem}")]
pub struct InvalidResults {
    pub key: String,
    pub problem: String,
}

/// The fleet, from the Map's children: the successful ones' [`BatchSummary`]; a failed (or
/// timed-out, aborted, pending) child's batch counts as failed instances, named from its input.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetOutcome {
    pub instances: usize,
    pub instances_complete: usize,
    pub instances_not_reached: usize,
    pub instances_failed: usize,
    pub batches: usize,
    pub batches_failed: usize,
    pub fleet_max_lag_seconds: Option<f64>,
    pub bytes: u64,
    pub bytes_lost: u64,
    #[serde(skip)]
    pub lags: Vec<(String, f64, i64)>,
}

/// Adds the records of one result file (`key`, for errors) to `fleet`.
pub fn fleet_from(
    fleet: &mut FleetOutcome,
    key: &str,
    records: &[ChildRecord],
) -> Result<(), InvalidResults> {
    let bad = |problem: String| InvalidResults {
        key: key.to_owned(),
        problem,
    };
    for (i, r) in records.iter().enumerate() {
        fleet.batches += 1;
        if r.status.as_deref() == Some("SUCCEEDED") {
            let out = r
                .output
                .as_deref()
                .ok_or_else(|| bad(format!("record {i} succeeded without an Output")))?;
            let b: BatchSummary = serde_json::from_str(out)
                .map_err(|e| bad(format!("record {i}'s Output is not a batch summary: {e}")))?;
            fleet.instances += b.instances;
            fleet.instances_complete += b.complete;
            fleet.instances_not_reached += b.not_reached;
            fleet.instances_failed += b.failed_instances.len();
            fleet.bytes += b.bytes;
            fleet.bytes_lost += b.bytes_lost;
            fleet.fleet_max_lag_seconds = report::max_lag([
                fleet.fleet_max_lag_seconds,
                b.lag.values().copied().reduce(f64::max),
            ]);
            fleet
                .lags
                .extend(b.lag.into_iter().map(|(id, lag)| (id, lag, b.measured_at_ms)));
        } else {
            let input = r
                .input
                .as_deref()
                .ok_or_else(|| bad(format!("record {i} has no Input")))?;
            let n = batch_len(input).ok_or_else(|| bad(format!("record {i}'s Input is not a batch")))?;
            fleet.batches_failed += 1;
            fleet.instances += n;
            fleet.instances_failed += n;
        }
    }
    Ok(())
}

/// The number of items of a batch input (`{"Items": [...], ...}`).
fn batch_len(input: &str) -> Option<usize> {
    let v: Value = serde_json::from_str(input).ok()?;
    v.get("Items")?.as_array().map(Vec::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_split_across_the_children_and_batches_fill_one_wave() {
        let p = plan(1000, (8.0, 20.0), 4, 300_000, 1_000);
        assert_eq!((p.concurrency, p.batch_size), (4, 250));
        assert_eq!(
            p.requests_per_second * p.concurrency as f64,
            8.0,
            "concurrency x rate = budget"
        );
        assert_eq!(p.burst, 5.0);
        assert_eq!(p.deadline_ms, 1_000 + 270_000);
        // A small fleet: fewer children than the configured concurrency, the whole budget shared.
        let p = plan(3, (8.0, 20.0), 4, 300_000, 0);
        assert_eq!(
            (p.concurrency, p.batch_size, p.requests_per_second),
            (3, 1, 8.0 / 3.0)
        );
        // Nothing selected: one child at most (the Map has no item to run it on).
        let p = plan(0, (8.0, 20.0), 4, 300_000, 0);
        assert_eq!((p.concurrency, p.batch_size), (1, 1));
        // 10,000 instances: batches capped, more batches than children (waves).
        let p = plan(10_000, (8.0, 20.0), 4, 300_000, 0);
        assert_eq!((p.concurrency, p.batch_size, p.burst), (4, MAX_BATCH, 5.0));
        // A burst of 2 has whole requests for 2 children only: 4 children at a burst of 1 each
        // would spend twice the budget's burst at once.
        let p = plan(10_000, (8.0, 2.5), 4, 300_000, 0);
        assert_eq!((p.concurrency, p.requests_per_second, p.burst), (2, 4.0, 1.25));
        // Periods longer than Express's 5 minutes, and shorter than the margin.
        assert_eq!(
            plan(10, (8.0, 20.0), 4, 3_600_000, 0).deadline_ms,
            EXPRESS_LIMIT_MS
        );
        assert_eq!(plan(10, (8.0, 20.0), 4, 60_000, 0).deadline_ms, MIN_CHILD_MS);
    }

    #[test]
    fn the_children_together_never_exceed_the_budget_s_rate_or_burst() {
        for instances in [0, 1, 2, 3, 7, 40, 999, 4_001, 10_000] {
            for max_concurrency in 1..=40 {
                for (rate, burst) in [(1.0, 1.0), (8.0, 1.5), (8.0, 3.0), (12.0, 20.0), (0.5, 300.0)] {
                    let p = plan(instances, (rate, burst), max_concurrency, 300_000, 0);
                    let c = p.concurrency as f64;
                    let case = format!("{instances} instances, {max_concurrency} children, {rate}/{burst}");
                    assert!(p.concurrency >= 1 && p.concurrency <= max_concurrency, "{case}");
                    assert!(p.burst >= 1.0, "every child can send a request: {case}");
                    assert!(c * p.burst <= burst + 1e-9, "burst: {case}");
                    assert!((c * p.requests_per_second - rate).abs() < 1e-9, "rate: {case}");
                    assert!(
                        p.batch_size * p.concurrency >= instances.min(MAX_BATCH * p.concurrency),
                        "{case}"
                    );
                }
            }
        }
    }

    #[test]
    fn each_wave_of_children_gets_the_most_lagged_dealt_across_its_batches() {
        let ranks: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        // 11 instances, batches of 3, 2 at a time: waves [0..6) and [6..11).
        let m = interleave(ranks.clone(), 3, 2);
        assert_eq!(m, ["0", "2", "4", "1", "3", "5", "6", "8", "10", "7", "9"]);
        // Every instance once.
        let mut sorted = m.clone();
        sorted.sort_by_key(|s| s.parse::<u32>().unwrap());
        assert_eq!(sorted, ranks);
        // One batch per child: each child's batch is every c-th instance.
        assert_eq!(
            interleave(ranks.clone(), 6, 2),
            ["0", "2", "4", "6", "8", "10", "1", "3", "5", "7", "9"]
        );
        assert_eq!(interleave(ranks.clone(), 20, 4), ranks);
        assert!(interleave(vec![], 5, 4).is_empty());
    }

    #[test]
    fn a_manifest_is_read_strictly() {
        let items = manifest_items(&["db-2".into(), "db-1".into()]);
        let bytes = serde_json::to_vec(&items).unwrap();
        let m = parse_manifest("k", &bytes).unwrap();
        assert_eq!(m.into_iter().collect::<Vec<_>>(), ["db-1", "db-2"]);
        for bad in [
            &b"{}"[..],
            b"[\"db-1\"]",
            b"[{\"instance\": 3}]",
            b"[{\"instance\": \"\"}]",
            b"not json",
        ] {
            let err = parse_manifest("logs/_fleet/r/instances.json", bad).unwrap_err();
            assert_eq!(err.key, "logs/_fleet/r/instances.json");
            assert!(
                err.to_string()
                    .starts_with("the selection manifest logs/_fleet/r/instances.json is malformed: "),
                "{err}"
            );
        }
    }

    #[test]
    fn a_batch_is_shipped_only_if_the_manifest_holds_every_instance() {
        let manifest: BTreeSet<String> = ["a", "b"].map(String::from).into();
        assert_eq!(check_batch(&["b".into(), "a".into()], &manifest, "k"), Ok(()));
        let err = check_batch(&["a".into(), "z".into()], &manifest, "k").unwrap_err();
        assert_eq!(err.instance, "z");
        assert_eq!(
            err.to_string(),
            "the batch names z, which the selection manifest k does not hold"
        );
    }

    fn summary(id: &str, lag: Option<f64>, complete: bool, error: bool) -> InstanceSummary {
        InstanceSummary {
            lag_seconds: lag,
            complete,
            bytes: 10,
            error: error.then(|| "x".into()),
            ..InstanceSummary::new(id)
        }
    }

    #[test]
    fn the_fleet_counts_succeeded_batches_from_their_output_and_failed_ones_from_their_input() {
        let mut b = BatchSummary::default();
        b.add(&summary("a", Some(5.0), true, false), true);
        b.add(&summary("b", Some(50.0), false, true), true);
        b.add(&summary("c", None, false, false), false);
        b.measured_at_ms = 7;
        assert_eq!(
            (b.instances, b.complete, b.not_reached, b.failed_instances.len()),
            (3, 1, 1, 1)
        );
        let ok = ChildRecord {
            input: Some("{}".into()),
            output: Some(serde_json::to_string(&b).unwrap()),
            status: Some("SUCCEEDED".into()),
        };
        let failed = ChildRecord {
            input: Some(r#"{"BatchInput": {}, "Items": [{"instance": "d"}, {"instance": "e"}]}"#.into()),
            output: None,
            status: Some("FAILED".into()),
        };
        let mut fleet = FleetOutcome::default();
        fleet_from(&mut fleet, "k", &[ok, failed]).unwrap();
        assert_eq!(
            (fleet.instances, fleet.instances_failed, fleet.instances_complete),
            (5, 3, 1)
        );
        assert_eq!((fleet.batches, fleet.batches_failed, fleet.bytes), (2, 1, 30));
        assert_eq!(fleet.fleet_max_lag_seconds, Some(50.0));
        assert_eq!(fleet.lags, [("a".into(), 5.0, 7), ("b".into(), 50.0, 7)]);
        let garbled = ChildRecord {
            input: None,
            output: Some("{".into()),
            status: Some("SUCCEEDED".into()),
        };
        let err = fleet_from(&mut FleetOutcome::default(), "r/SUCCEEDED_0.json", &[garbled]).unwrap_err();
        assert!(
            err.to_string()
                .contains("record 0's Output is not a batch summary"),
            "{err}"
        );
    }
}
