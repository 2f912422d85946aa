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
use crate::run::{Shipper, now_ms};

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
        deadline: Option<Instant>,
        metrics: &mut Metrics,
    ) -> Result<BatchSummary, ShipError> {
        self.check_budget(input)?;
        self.fleet
            .check_location("BatchInput.manifest", &input.manifest)?;
        let manifest = self.fleet.read_manifest(&input.manifest).await?;
        fleet::check_batch(instances, &manifest, &input.manifest.key)?;
        self.rds.set_rate(input.requests_per_second, input.burst).await;
        // The batch's deadline only stops new instances from starting. The invocation's own
        // (hard) deadline is what the shipping below gets: a write-ahead chunk's expiry must be a
        // time the recording run cannot outlive, and the batch deadline is not one.
        let left = input
            .deadline_ms
            .saturating_sub(now_ms())
            .clamp(0, fleet::EXPRESS_LIMIT_MS);
        let batch_deadline = Instant::now() + Duration::from_millis(u64::try_from(left).unwrap_or(0));
        let mut batch = BatchSummary::default();
        for instance in instances {
            if crate::run::near(Some(batch_deadline), self.config.reserve) {
                let s = crate::summary::InstanceSummary::new(instance);
                batch.add(&s, false);
                continue;
            }
            let (s, reached) = self.ship_counted(instance, deadline).await;
            report::record_instance(&s, metrics);
            batch.add(&s, reached.is_some());
        }
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
