//! The state machine's three steps, orchestrated: select (the fleet, in fairness order, as the
//! run's manifest, with the Map's plan), ship a batch (one Distributed Map child), summarize (the
//! fleet from the Map's result files, and the lag index for the next run's order).

use std::time::{Duration, Instant};

use lambda_common::metrics::Metrics;
use serde::Serialize;
use tracing::{info, warn};

use crate::error::ShipError;
use crate::fairness;
use crate::fleet::{self, BatchSummary, FleetOutcome, Location, MapPlan};
use crate::report;
use crate::request::{BatchInput, InvalidRequest};
use crate::run::{Deadline, Shipper, now_ms};

/// The select step's answer: counts and locations only (the execution's state stays small
/// whatever the fleet's size).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectAnswer {
    #[serde(flatten)]
    pub plan: MapPlan,
    /// Instances left out for an unknown engine (each named in the log).
    pub skipped_unknown_engine: usize,
    pub manifest: Location,
    /// Where the Map's ResultWriter writes the run's results.
    pub results_prefix: String,
}

/// The summarize step's answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetAnswer {
    #[serde(flatten)]
    pub fleet: FleetOutcome,
    /// Selected instances that no child reported (a Map run cut short).
    pub instances_unreported: usize,
}

impl Shipper {
    /// The selection, most lag first, written as the manifest of `run`.
    pub(crate) async fn select_fleet(&self, run: &str) -> Result<SelectAnswer, ShipError> {
        let selected = self.rds.select(&self.config.selection).await?;
        let index = self.fleet.read_lag_index().await?;
        let now = now_ms();
        let order = fairness::order(selected.ids, &index, now);
        let c = &self.config;
        let plan = fleet::plan(
            order.len(),
            (c.requests_per_second, c.burst),
            c.map_concurrency,
            c.period_ms,
            now,
        );
        let order = fleet::interleave(order, plan.batch_size, plan.concurrency);
        let manifest = self.fleet.put_manifest(run, &order).await?;
        info!(
            run,
            instances = plan.instances,
            batch_size = plan.batch_size,
            concurrency = plan.concurrency,
            requests_per_second = plan.requests_per_second,
            skipped_unknown_engine = selected.unknown_engine,
            "fleet selected"
        );
        Ok(SelectAnswer {
            plan,
            skipped_unknown_engine: selected.unknown_engine,
            manifest,
            results_prefix: crate::keys::results_prefix(&c.prefix, run),
        })
    }

    /// One batch: checked whole against its manifest and the budget before anything is shipped,
    /// then each instance in order at the batch's share of the budget until the batch's
    /// deadline (or the invocation's). An instance's failure is counted, named, and does not
    /// stop the others.
    pub(crate) async fn ship_batch(
        &self,
        instances: &[String],
        input: &BatchInput,
        deadline: Deadline,
        metrics: &mut Metrics,
    ) -> Result<BatchSummary, ShipError> {
        self.check_budget(input)?;
        self.fleet
            .check_location("BatchInput.manifest", &input.manifest)?;
        let manifest = self.fleet.read_manifest(&input.manifest).await?;
        fleet::check_batch(instances, &manifest, &input.manifest.key)?;
        // Express ends a child after 5 minutes: from here, no file is started and no portion
        // read past `CHILD_WORK_MS` (less the reserve), whatever the backlog, and the chunk in
        // progress is finished before it ends. Counted from this invocation's start: the
        // child's cold start and its Task's retries (on Lambda service errors, which end an
        // attempt at once) come out of the 10 s left of Express's 300.
        let deadline = deadline.stopping_at(Instant::now() + Duration::from_millis(fleet::CHILD_WORK_MS));
        self.rds.set_rate(input.requests_per_second, input.burst).await;
        // The batch's deadline only stops new instances from starting. A write-ahead chunk's
        // expiry stays the invocation's own (hard) deadline, a time the recording run cannot
        // outlive; neither the batch deadline nor the child's stop is one.
        let left = input
            .deadline_ms
            .saturating_sub(now_ms())
            .clamp(0, fleet::EXPRESS_LIMIT_MS);
        let batch_deadline = Instant::now() + Duration::from_millis(u64::try_from(left).unwrap_or(0));
        let mut batch = BatchSummary::default();
        for instance in instances {
            // The batch deadline already leaves the period's margin: no reserve on top (the
            // child's own stop, with its reserve, is checked when each instance starts).
            if Instant::now() >= batch_deadline {
                let s = crate::summary::InstanceSummary::new(instance);
                batch.add(&s, false);
                continue;
            }
            let (s, reached) = self.ship_counted(instance, deadline).await;
            report::record_instance(&s, metrics);
            batch.add(&s, reached.is_some());
        }
        // The share was this batch's: a warm container's next request (a select, a manual ship,
        // another batch) starts from the configured budget again.
        let c = &self.config;
        self.rds.set_rate(c.requests_per_second, c.burst).await;
        batch.measured_at_ms = now_ms();
        info!(
            instances = batch.instances,
            complete = batch.complete,
            not_reached = batch.not_reached,
            failed = batch.failed_instances.len(),
            bytes = batch.bytes,
            "batch shipped"
        );
        Ok(batch)
    }

    /// A batch's rate within the configured account-wide budget: a batch input never raises it.
    fn check_budget(&self, input: &BatchInput) -> Result<(), ShipError> {
        let c = &self.config;
        for (field, asked, budget) in [
            (
                "BatchInput.requestsPerSecond",
                input.requests_per_second,
                c.requests_per_second,
            ),
            ("BatchInput.burst", input.burst, c.burst),
        ] {
            if asked > budget {
                let problem =
                    format!("{asked} exceeds the budget of {budget} (RDS_REQUESTS_PER_SECOND, RDS_BURST)");
                return Err(InvalidRequest::new(field, problem).into());
            }
        }
        Ok(())
    }

    /// The fleet from the Map's results; the lag index updated from the lags the children
    /// measured (and pruned to the selection) for the next run's order.
    pub(crate) async fn summarize_fleet(
        &self,
        results: &Location,
        manifest: &Location,
        metrics: &mut Metrics,
    ) -> Result<FleetAnswer, ShipError> {
        self.fleet.check_location("results", results)?;
        self.fleet.check_location("manifest", manifest)?;
        let selected: Vec<String> = self.fleet.read_manifest(manifest).await?.into_iter().collect();
        let fleet = self.fleet.read_results(results).await?;
        self.save_lags(&fleet.lags, Some(&selected)).await?;
        report::record_fleet(fleet.fleet_max_lag_seconds, fleet.instances_failed, metrics);
        let unreported = selected.len().saturating_sub(fleet.instances);
        if unreported > 0 {
            warn!(
                unreported,
                "selected instances no child reported (the Map run was cut short)"
            );
        }
        Ok(FleetAnswer {
            fleet,
            instances_unreported: unreported,
        })
    }

    /// Records measured lags in the lag index (read, updated, written).
    pub(crate) async fn save_lags(
        &self,
        lags: &[(String, f64, i64)],
        selected: Option<&[String]>,
    ) -> Result<(), ShipError> {
        let mut index = self.fleet.read_lag_index().await?;
        index.update(lags, selected);
        self.fleet.write_lag_index(&index).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_rds::operation::describe_db_log_files::DescribeDbLogFilesOutput;
    use aws_sdk_rds::operation::download_db_log_file_portion::DownloadDbLogFilePortionOutput;
    use aws_sdk_rds::types::DescribeDbLogFilesDetails;
    use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
    use aws_sdk_s3::operation::put_object::PutObjectOutput;
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::error::NoSuchKey;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use lambda_common::metrics::Metrics;

    use super::*;
    use crate::Config;

    /// One batch of `db1` (one 14-byte file) shipped under `deadline`: the batch's answer, the
    /// RDS client's limit after it, and the checkpoint bodies written.
    async fn batch(deadline: Deadline) -> (BatchSummary, (f64, f64), Vec<String>) {
        let config = Config::from_lookup(|k| match k {
            "LOG_BUCKET" => Some("archive".into()),
            "RDS_REQUESTS_PER_SECOND" => Some("12".into()),
            "RDS_BURST" => Some("300".into()),
            _ => None,
        })
        .unwrap();
        let manifest = mock!(aws_sdk_s3::Client::get_object)
            .match_requests(|r| r.key() == Some("rds-logs/_fleet/r1/instances.json"))
            .then_output(|| {
                GetObjectOutput::builder()
                    .body(ByteStream::from_static(br#"[{"instance": "db1"}]"#))
                    .build()
            });
        let no_checkpoint = mock!(aws_sdk_s3::Client::get_object)
            .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let seen = written.clone();
        let puts = mock!(aws_sdk_s3::Client::put_object)
            .match_requests(move |r| {
                if r.key().is_some_and(|k| k.ends_with("checkpoint.json")) {
                    let body = r.body().bytes().map(|b| String::from_utf8_lossy(b).into_owned());
                    seen.lock().unwrap().extend(body);
                }
                true
            })
            .then_output(|| PutObjectOutput::builder().e_tag("\"e1\"").build());
        let listing = mock!(aws_sdk_rds::Client::describe_db_log_files).then_output(|| {
            DescribeDbLogFilesOutput::builder()
                .describe_db_log_files(
                    DescribeDbLogFilesDetails::builder()
                        .log_file_name("error/postgresql.log")
                        .size(14)
                        .last_written(1_000)
                        .build(),
                )
                .build()
        });
        let portion = mock!(aws_sdk_rds::Client::download_db_log_file_portion).then_output(|| {
            DownloadDbLogFilePortionOutput::builder()
                .log_file_data("line 1\nline 2\n")
                .marker("1:14")
                .additional_data_pending(false)
                .build()
        });
        let s = Shipper::new(
            mock_client!(aws_sdk_rds, RuleMode::MatchAny, [&listing, &portion]),
            mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&manifest, &no_checkpoint, &puts]),
            config,
        );
        let input = BatchInput {
            manifest: Location {
                bucket: "archive".into(),
                key: "rds-logs/_fleet/r1/instances.json".into(),
            },
            requests_per_second: 3.0,
            burst: 5.0,
            deadline_ms: now_ms() + 60_000,
        };
        let mut metrics = Metrics::new("Ns", report::SERVICE);
        let batch = s
            .ship_batch(&["db1".to_owned()], &input, deadline, &mut metrics)
            .await
            .unwrap();
        let limit = s.rds.limit().await;
        let written = written.lock().unwrap().clone();
        (batch, limit, written)
    }

    #[tokio::test]
    async fn a_batch_s_share_of_the_budget_ends_with_the_batch() {
        let (batch, limit, _) = batch(Deadline::default()).await;
        assert_eq!(
            (batch.instances, batch.complete, batch.bytes),
            (1, 1, 14),
            "{batch:?}"
        );
        assert_eq!(
            limit,
            (12.0, 300.0),
            "a warm container's next request pages at the configured budget, not the batch's share"
        );
    }

    #[tokio::test]
    async fn a_write_ahead_chunk_expires_after_the_invocation_not_at_the_child_s_stop() {
        // A 15-minute invocation: the child stops working within Express's 5 minutes, but a
        // chunk it recorded may still be uploading until the invocation ends.
        let hard = Instant::now() + Duration::from_secs(900);
        let (batch, _, written) = batch(Deadline::new(Some(hard))).await;
        assert_eq!(batch.complete, 1, "{batch:?}");
        let pending: Vec<i64> = written
            .iter()
            .filter_map(|body| serde_json::from_str::<serde_json::Value>(body).ok())
            .filter_map(|cp| cp["files"]["error/postgresql.log"]["pending"]["until"].as_i64())
            .collect();
        assert_eq!(pending.len(), 1, "one write-ahead record: {written:?}");
        assert!(
            pending[0] >= now_ms() + 890_000,
            "the expiry outlasts the invocation (900 s), not the child's stop (290 s): {}",
            pending[0] - now_ms()
        );
    }
}
