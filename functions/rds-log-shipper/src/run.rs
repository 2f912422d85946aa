//! The entry point and the run, one layer per function: a request → its instances
//! ([`Shipper::handle`]) → an instance's files in plan order (`ship_instance`) → a file chunk
//! after chunk (`ship_chunks`, with one chunk in `file.rs`). Decisions come from the pure
//! modules; the AWS calls from the adapters (`rds`, `store`, `upload`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use lambda_common::clock;
use lambda_common::metrics::Metrics;
use serde::Serialize;
use serde_json::Value;
use tracing::{info, warn};

use crate::catchup;
use crate::checkpoint::{self, Checkpoint, ListedFile, Pending, Work};
use crate::config::Config;
use crate::error::ShipError;
use crate::fleet_store::FleetStore;
use crate::keys;
use crate::loss;
use crate::rds::{Beginning, Portion, Rds};
use crate::report;
use crate::request::Request;
use crate::rotation::{self, Rotation};
use crate::store::{Checkpoints, Stored};
use crate::summary::{InstanceSummary, Lost, Summary, kind};

/// What became of a pending chunk ([`Shipper::settle`]).
enum Settled {
    /// It reached S3: committed.
    Committed,
    /// It did not, and the run that recorded it is past its deadline: forgotten.
    Abandoned,
    /// It may still be uploading: left.
    InFlight,
}

pub struct Shipper {
    pub(crate) rds: Rds,
    pub(crate) checkpoints: Checkpoints,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) config: Config,
    pub(crate) fleet: FleetStore,
    /// The one compressed-part buffer (see `ChunkWriter`); files are shipped one at a time.
    pub(crate) part_buffer: tokio::sync::Mutex<BytesMut>,
}

/// When an invocation stops. `stop`: no new work after it (a Distributed Map child's end,
/// inside Express's 5 minutes, or the Lambda deadline). `hard`: the Lambda's own deadline,
/// which a write-ahead chunk's expiry must outlast, as the invocation finishes the work it
/// started before `stop`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Deadline {
    hard: Option<Instant>,
    stop: Option<Instant>,
}

impl Deadline {
    /// The Lambda deadline, both to stop work and to end the invocation.
    pub(crate) fn new(hard: Option<Instant>) -> Self {
        Self { hard, stop: hard }
    }

    /// Also stops starting work at `at` (whichever comes first).
    pub(crate) fn stopping_at(self, at: Instant) -> Self {
        let stop = Some(self.stop.map_or(at, |s| s.min(at)));
        Self { stop, ..self }
    }

    /// Time left to work.
    pub(crate) fn remaining(self) -> Option<Duration> {
        clock::remaining(self.stop)
    }

    /// Time left before the invocation itself ends (`None`: no deadline known).
    pub(crate) fn hard_remaining(self) -> Option<Duration> {
        clock::remaining(self.hard)
    }

    /// True when less than `margin` is left to work.
    pub(crate) fn near(self, margin: Duration) -> bool {
        self.remaining().is_some_and(|left| left <= margin)
    }
}

/// Epoch milliseconds, as the checkpoint keeps them.
pub(crate) fn now_ms() -> i64 {
    i64::try_from(clock::now_ms()).unwrap_or(i64::MAX)
}

impl Shipper {
    pub fn new(rds: aws_sdk_rds::Client, s3: aws_sdk_s3::Client, config: Config) -> Self {
        Self {
            rds: Rds::new(rds, config.requests_per_second, config.burst),
            checkpoints: Checkpoints::new(s3.clone(), &config.bucket, &config.prefix),
            fleet: FleetStore::new(s3.clone(), &config.bucket, &config.prefix),
            s3,
            config,
            part_buffer: tokio::sync::Mutex::new(BytesMut::new()),
        }
    }

    /// Serves one request: a [`SelectAnswer`](crate::fleet_run::SelectAnswer) for `Select`, a
    /// [`BatchSummary`](crate::fleet::BatchSummary) for `ShipBatch`, the instance's summary for
    /// `Ship`, a [`Summary`] for `Run`, a [`FleetAnswer`](crate::fleet_run::FleetAnswer) for
    /// `Summarize`. Records the invocation's metrics into `metrics` (see
    /// `report`), whatever the outcome; the caller flushes them.
    pub async fn handle(
        &self,
        request: Request,
        deadline: Option<Instant>,
        metrics: &mut Metrics,
    ) -> Result<Value, ShipError> {
        let deadline = Deadline::new(deadline);
        let throttled_before = self.rds.throttled();
        let answer = match request {
            Request::Select { run } => self.select_fleet(&run).await.and_then(|a| to_json(&a)),
            Request::ShipBatch { instances, input } => self
                .ship_batch(&instances, &input, deadline, metrics)
                .await
                .and_then(|b| to_json(&b)),
            Request::Ship { instance } => self
                .ship_one(&instance, deadline, metrics)
                .await
                .and_then(|s| to_json(&s)),
            Request::Run => match self.run(deadline).await {
                Ok(summary) => {
                    report::record_run(&summary, metrics);
                    to_json(&summary)
                }
                Err(e) => Err(e),
            },
            Request::Summarize { results, manifest } => self
                .summarize_fleet(&results, &manifest, metrics)
                .await
                .and_then(|f| to_json(&f)),
        };
        let throttled = self.rds.throttled().saturating_sub(throttled_before);
        metrics.count("ThrottledRequests", throttled, &[]);
        answer
    }

    /// One instance (a step of the scale-out state machine): its failure is the invocation's,
    /// so that the state machine's Retry (on `Throttled`) and Catch see its error type. Its
    /// metrics are recorded either way (what it shipped before failing is in S3).
    async fn ship_one(
        &self,
        instance: &str,
        deadline: Deadline,
        metrics: &mut Metrics,
    ) -> Result<InstanceSummary, ShipError> {
        let mut s = InstanceSummary::new(instance);
        if deadline.near(self.config.reserve) {
            return Ok(s);
        }
        let shipped = self.ship_instance(instance, deadline, &mut s).await;
        report::record_instance(&s, metrics);
        shipped?;
        log_shipped(&s);
        Ok(s)
    }

    /// The configured selection, most lag first (`fairness`), one instance after another; one
    /// failing instance does not stop the others (its error is in its summary). The lags
    /// measured go to the lag index for the next run's order.
    async fn run(&self, deadline: Deadline) -> Result<Summary, ShipError> {
        let mut summary = Summary::default();
        let selected = self.rds.select(&self.config.selection).await?;
        let index = self.fleet.read_lag_index().await?;
        let ids = selected.ids.clone();
        for instance in crate::fairness::order(selected.ids, &index, now_ms()) {
            let (s, reached) = self.ship_counted(&instance, deadline).await;
            summary.stopped_at_deadline |= reached != Some(false);
            summary.instances_failed += usize::from(s.error.is_some());
            summary.bytes_lost += s.bytes_lost;
            summary.instances.push(s);
        }
        summary.fleet_max_lag_seconds = report::max_lag(summary.instances.iter().map(|s| s.lag_seconds));
        let now = now_ms();
        let lags: Vec<_> = summary
            .instances
            .iter()
            .filter_map(|s| s.lag_seconds.map(|lag| (s.instance.clone(), lag, now)))
            .collect();
        self.save_lags(&lags, Some(&ids)).await?;
        Ok(summary)
    }

    /// One instance of a run or a batch, its failure counted in its summary (`error`), not
    /// returned. `None`: not started (the deadline is near); `Some(out_of_time)`: shipped, and
    /// whether it stopped at the deadline.
    pub(crate) async fn ship_counted(
        &self,
        instance: &str,
        deadline: Deadline,
    ) -> (InstanceSummary, Option<bool>) {
        let mut s = InstanceSummary::new(instance);
        if deadline.near(self.config.reserve) {
            return (s, None);
        }
        let out_of_time = match self.ship_instance(instance, deadline, &mut s).await {
            Ok(out_of_time) => out_of_time,
            Err(e) => {
                warn!(instance = %instance, error = %lambda_common::error_chain(&e), error_type = lambda_common::ErrorType::error_type(&e), "instance not shipped");
                s.error = Some(e.to_string());
                false
            }
        };
        log_shipped(&s);
        (s, Some(out_of_time))
    }

    /// Ships the files of one instance that have bytes not yet shipped; returns whether the run
    /// stopped at its deadline. The instance's lag is measured at the end, from the listing and
    /// the checkpoint as the run left it, also when shipping failed after the listing was read.
    async fn ship_instance(
        &self,
        instance: &str,
        deadline: Deadline,
        s: &mut InstanceSummary,
    ) -> Result<bool, ShipError> {
        let mut st = self.checkpoints.read(instance).await?;
        let c = &self.config;
        let scope = checkpoint::listing_scope(&st.cp, now_ms(), c.full_listing_every_ms, c.overlap_ms);
        let listing = self.rds.list_files(instance, scope.since).await?;
        st.dirty |= checkpoint::record_listing(&mut st.cp, &listing);
        let shipped = self
            .ship_listed(instance, &mut st, &listing, scope.complete, deadline, s)
            .await;
        s.lag_seconds = Some(report::lag_seconds(&st.cp, &listing, now_ms()));
        shipped
    }

    /// Ships what the plan from `listing` says, then records the listing's end: after a complete
    /// listing, the files it no longer holds are dropped, and those with bytes not shipped are
    /// reported lost, except those a renamed copy waits for (see `resolve_waited`).
    async fn ship_listed(
        &self,
        instance: &str,
        st: &mut Stored,
        listing: &[ListedFile],
        complete: bool,
        deadline: Deadline,
        s: &mut InstanceSummary,
    ) -> Result<bool, ShipError> {
        let today = keys::date_from_epoch_ms(now_ms());
        let plan = checkpoint::plan(&st.cp, listing, complete, &today);
        let plan = catchup::mark(plan, &st.cp, listing, now_ms(), &self.config.catchup);
        let (mut out_of_time, mut deferred) = (false, false);
        let mut waited = BTreeSet::new();
        for work in plan.work {
            if deadline.near(self.config.reserve) {
                out_of_time = true;
                break;
            }
            let (work, first) = match self.prepare(instance, st, work, &today, s).await? {
                Prepared::Ship(work, first) => (work, first),
                Prepared::Leave(waits_for) => {
                    deferred = true;
                    waited.extend(waits_for);
                    continue;
                }
            };
            s.files += 1;
            if self.ship_chunks(instance, st, work, first, deadline, s).await? {
                out_of_time = true;
                break;
            }
        }
        if !out_of_time {
            self.resolve_waited(st, listing, &waited).await?;
        }
        if complete && !out_of_time {
            let vanished: Vec<String> = plan
                .dropped
                .into_iter()
                .filter(|name| !waited.contains(name))
                .collect();
            self.drop_vanished(st, &vanished, s).await?;
        } else if st.dirty {
            self.checkpoints.save(st).await?;
        }
        s.complete = !out_of_time && !deferred;
        Ok(out_of_time)
    }

    /// After a complete listing that the run got through: the files it no longer holds are
    /// forgotten, and those that held bytes not shipped are reported lost (`loss`). The report
    /// is made only once the checkpoint write that forgets them succeeded, so each loss is
    /// reported by exactly one run: a failed write reports nothing (the next run finds the files
    /// again); a crash after the write and before the invocation's metrics are flushed loses
    /// the metric (the log line is written at once), never reports it twice.
    async fn drop_vanished(
        &self,
        st: &mut Stored,
        vanished: &[String],
        s: &mut InstanceSummary,
    ) -> Result<(), ShipError> {
        let mut landed = BTreeSet::new();
        for name in vanished {
            if let Some(p) = st.cp.files.get(name).and_then(|f| f.pending.as_ref())
                && self.checkpoints.exists(&p.key).await?
            {
                landed.insert(p.key.clone());
            }
        }
        let lost = loss::lost_files(&st.cp, vanished, &landed);
        let now = now_ms();
        checkpoint::drop_files(&mut st.cp, vanished);
        checkpoint::prune_retired(&mut st.cp, now);
        st.cp.full_listing_at = now;
        self.checkpoints.save(st).await?;
        for l in lost {
            let bound = if l.size_recorded {
                ""
            } else {
                " at least (its last listing was not recorded)"
            };
            s.anomaly(
                kind::FILE_LOST,
                format!(
                    "{}: no longer listed by RDS with {} bytes not shipped{bound} (listed size {}, shipped {})",
                    l.name, l.bytes, l.last_size, l.shipped
                ),
            );
            s.lost(Lost {
                kind: kind::FILE_LOST,
                file: l.name,
                bytes: l.bytes,
                lower_bound: !l.size_recorded,
            });
        }
        Ok(())
    }

    /// The chunk in flight of each file a renamed copy waited for (`waited`) that RDS no longer
    /// lists: no work item resolves it, so it is resolved here as `resolve_pending` would
    /// (committed if it reached S3, forgotten once expired, left while it may be uploading). The
    /// file stays in the checkpoint, not dropped nor reported lost, until the copy continues it
    /// in a later run (then it is claimed: see `loss::lost_files`).
    async fn resolve_waited(
        &self,
        st: &mut Stored,
        listing: &[ListedFile],
        waited: &BTreeSet<String>,
    ) -> Result<(), ShipError> {
        for name in waited {
            if listing.iter().any(|f| &f.name == name) {
                continue;
            }
            let Some(f) = st.cp.files.get(name) else {
                continue;
            };
            let Some(p) = f.pending.clone() else {
                continue;
            };
            // The size at the commit counts the chunk, as `loss` counts a landed one.
            let (size, last_written) = (f.size.max(p.end), f.last_written);
            match self.settle(&mut st.cp, name, &p, size, last_written).await? {
                Settled::Committed => {
                    info!(key = %p.key, file = %name, "the chunk of a file no longer listed, which a renamed copy waits for, is committed");
                }
                Settled::Abandoned => {}
                Settled::InFlight => continue,
            }
            st.dirty = true;
        }
        Ok(())
    }

    /// Readies a work item: its pending chunk resolved, started over as a new generation if the
    /// file was replaced under its name, or continuing the generation it was renamed from.
    async fn prepare(
        &self,
        instance: &str,
        st: &mut Stored,
        work: Work,
        today: &str,
        s: &mut InstanceSummary,
    ) -> Result<Prepared, ShipError> {
        let Some(work) = self.resolve_pending(st, work).await? else {
            return Ok(Prepared::Leave(None));
        };
        let (mut work, beginning) = self.check_replaced(instance, &st.cp, work, today, s).await?;
        if work.offset == 0 && work.skip == 0 {
            let text = beginning.map(|b| b.text);
            let waits_for = self.continue_rotated(instance, &st.cp, &mut work, text).await?;
            if waits_for.is_some() {
                return Ok(Prepared::Leave(waits_for));
            }
            return Ok(Prepared::Ship(work, None));
        }
        // A small file's beginning read whole holds the bytes a resumed read would ask for.
        // Not after a whole download: its marker is no RDS marker, and the rest is downloaded.
        let resumable = work.skip == 0 && work.marker != checkpoint::UNMARKED;
        let first = beginning
            .and_then(|b| b.whole)
            .filter(|_| resumable)
            .and_then(|whole| {
                let rest = crate::portion::rest_of_whole(&whole.data, work.offset)?;
                Some(Portion {
                    data: rest.to_owned(),
                    marker: whole.marker,
                    pending: false,
                })
            });
        Ok(Prepared::Ship(work, first))
    }

    /// Ships a file chunk after chunk: a file larger than one chunk continues where the last one
    /// ended. Returns whether the run stopped at its deadline.
    async fn ship_chunks(
        &self,
        instance: &str,
        st: &mut Stored,
        mut work: Work,
        mut first: Option<Portion>,
        deadline: Deadline,
        s: &mut InstanceSummary,
    ) -> Result<bool, ShipError> {
        let mut shipped_any = false;
        loop {
            let outcome = self
                .ship_file(instance, st, &work, first.take(), deadline, s)
                .await?;
            if outcome.bytes > 0 && !shipped_any {
                shipped_any = true;
                s.files_shipped += 1;
            }
            if outcome.out_of_time {
                return Ok(true);
            }
            if !outcome.chunk_full {
                return Ok(false);
            }
            let Some(next) = checkpoint::next_chunk(&st.cp, work) else {
                return Ok(false);
            };
            work = next;
        }
    }

    /// A pending chunk of file `name`: committed (at `size`) if it reached S3, forgotten once
    /// the run that recorded it is past its deadline, left while it may still be uploading.
    async fn settle(
        &self,
        cp: &mut Checkpoint,
        name: &str,
        p: &Pending,
        size: u64,
        last_written: i64,
    ) -> Result<Settled, ShipError> {
        if self.checkpoints.exists(&p.key).await? {
            checkpoint::commit_chunk(cp, name, size, last_written);
            Ok(Settled::Committed)
        } else if checkpoint::pending_expired(p, now_ms()) {
            checkpoint::abandon_chunk(cp, name);
            Ok(Settled::Abandoned)
        } else {
            Ok(Settled::InFlight)
        }
    }

    /// A chunk recorded before a crash: committed if it reached S3, forgotten otherwise once the
    /// run that recorded it is past its deadline; `None` (leave the file) until then.
    async fn resolve_pending(&self, st: &mut Stored, mut work: Work) -> Result<Option<Work>, ShipError> {
        let Some(p) = work.pending.take() else {
            return Ok(Some(work));
        };
        let generation_matches = st
            .cp
            .files
            .get(&work.name)
            .is_some_and(|f| f.generation == work.generation);
        match self
            .settle(&mut st.cp, &work.name, &p, work.size, work.last_written)
            .await?
        {
            Settled::Committed => {
                info!(key = %p.key, "a chunk uploaded before an interruption is committed");
                if generation_matches && !work.restarted {
                    work.marker = p.end_marker.clone();
                    work.offset = p.end;
                }
            }
            Settled::Abandoned => {}
            Settled::InFlight => {
                // Another run may still be uploading this chunk: leave the file to it.
                info!(file = %work.name, key = %p.key, "a recent pending chunk is left to the run that recorded it");
                return Ok(None);
            }
        }
        self.checkpoints.save(st).await?;
        Ok(Some(work))
    }

    /// A file resumed whose first bytes were recorded is read from marker "0" (one request): if
    /// it begins differently, it was replaced under its name (MySQL's `.log.N` reused the next
    /// day, say) and is shipped again from its beginning as a new generation. Returns the work
    /// and the beginning read, if one was.
    async fn check_replaced(
        &self,
        instance: &str,
        cp: &Checkpoint,
        work: Work,
        today: &str,
        s: &mut InstanceSummary,
    ) -> Result<(Work, Option<Beginning>), ShipError> {
        let recorded = cp.files.get(&work.name);
        let Some(head) = recorded.and_then(|f| f.head.as_deref()) else {
            return Ok((work, None));
        };
        if work.restarted || work.offset == 0 {
            return Ok((work, None));
        }
        let beginning = self
            .rds
            .read_beginning(instance, &work.name, work.size, true)
            .await?;
        if beginning
            .as_ref()
            .is_some_and(|b| !checkpoint::same_file(head, &b.text))
        {
            s.anomaly(
                kind::FILE_REPLACED,
                format!(
                    "{}: replaced under the same name; shipped again from its beginning as a new generation",
                    work.name
                ),
            );
            let generation = recorded.map_or(0, |f| f.generation) + 1;
            return Ok((checkpoint::restart(work, generation, today), beginning));
        }
        Ok((work, beginning))
    }

    /// A file read from its beginning that is an earlier file renamed by rotation (MySQL renames
    /// `x.log` to `x.log.<hour>` every hour): the bytes of it already shipped under the earlier
    /// name are read past, not shipped twice. Recognised by name (the same rotation family) and
    /// by the first bytes recorded for the earlier generation. `Some(source)`: leave the file for
    /// now, it waits for the chunk in flight of `source`.
    async fn continue_rotated(
        &self,
        instance: &str,
        cp: &Checkpoint,
        work: &mut Work,
        beginning: Option<String>,
    ) -> Result<Option<String>, ShipError> {
        if !rotation::has_rotation_siblings(cp, &work.name) {
            return Ok(None);
        }
        let beginning = match beginning {
            Some(b) => b,
            None => self
                .rds
                .read_beginning(instance, &work.name, work.size, false)
                .await?
                .map(|b| b.text)
                .unwrap_or_default(),
        };
        match rotation::rotation_source(cp, &work.name, &beginning) {
            Rotation::New => Ok(None),
            Rotation::Continues { continues, skip } => {
                info!(instance, file = %work.name, from = ?continues.source, bytes = skip, "a renamed file continues one already shipped in part");
                work.skip = skip;
                work.continues = Some(continues);
                Ok(None)
            }
            Rotation::Wait(source) => {
                info!(instance, file = %work.name, from = %source, "a renamed file waits for the chunk in flight of the file it continues");
                Ok(Some(source))
            }
        }
    }
}

/// What `prepare` makes of a work item.
#[allow(clippy::large_enum_variant)] // one a file, moved once: boxing would buy nothing
enum Prepared {
    /// Ship it; with the first portion when the file's beginning already read holds it.
    Ship(Work, Option<Portion>),
    /// Leave the file for now; `Some(source)`: it is a renamed copy that waits for the chunk in
    /// flight of the file `source`, which it continues.
    Leave(Option<String>),
}

fn log_shipped(s: &InstanceSummary) {
    info!(instance = %s.instance, files = s.files, bytes = s.bytes, objects = s.objects, complete = s.complete, anomalies = s.anomaly_count, "instance shipped");
}

fn to_json(summary: &impl Serialize) -> Result<Value, ShipError> {
    serde_json::to_value(summary).map_err(|e| ShipError::json("the summary", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_stops_at_the_earlier_deadline_and_the_invocation_ends_at_its_own() {
        let now = Instant::now();
        let hard = Deadline::new(Some(now + Duration::from_secs(900)));
        let child = hard.stopping_at(now + Duration::from_secs(290));
        assert!(child.remaining().unwrap() <= Duration::from_secs(290));
        assert!(child.hard_remaining().unwrap() > Duration::from_secs(800));
        assert!(!child.near(Duration::from_secs(20)));
        assert!(
            child.near(Duration::from_secs(300)),
            "near the stop, not the hard deadline"
        );
        // A later stop never extends the work past the Lambda deadline.
        let late = hard.stopping_at(now + Duration::from_secs(3_600));
        assert!(late.remaining().unwrap() <= Duration::from_secs(900));
        // No Lambda deadline (a local run): the stop alone; the expiry falls back to its default.
        let local = Deadline::new(None).stopping_at(now + Duration::from_secs(290));
        assert!(local.remaining().is_some() && local.hard_remaining().is_none());
        assert!(!Deadline::default().near(Duration::from_secs(3_600)));
    }
}
