//! The entry point and the run, one layer per function: a request → its instances
//! ([`Shipper::handle`]) → an instance's files in plan order (`ship_instance`) → a file chunk
//! after chunk (`ship_chunks`, with one chunk in `file.rs`). Decisions come from the pure
//! modules; the AWS calls from the adapters (`rds`, `store`, `upload`).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use lambda_common::clock;
use serde::Serialize;
use serde_json::Value;
use tracing::{info, warn};

use crate::checkpoint::{self, Checkpoint, Work};
use crate::config::Config;
use crate::error::ShipError;
use crate::keys;
use crate::rds::Rds;
use crate::request::Request;
use crate::rotation::{self, Rotation};
use crate::store::{Checkpoints, Stored};
use crate::summary::{InstanceSummary, Summary};

pub struct Shipper {
    pub(crate) rds: Rds,
    pub(crate) checkpoints: Checkpoints,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) config: Config,
    /// The one compressed-part buffer (see `ChunkWriter`); files are shipped one at a time.
    pub(crate) part_buffer: tokio::sync::Mutex<BytesMut>,
}

/// True when the Lambda deadline is less than `margin` away.
pub(crate) fn near(deadline: Option<Instant>, margin: Duration) -> bool {
    clock::remaining(deadline).is_some_and(|left| left <= margin)
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
            s3,
            config,
            part_buffer: tokio::sync::Mutex::new(BytesMut::new()),
        }
    }

    /// Serves one request: `{"instances": [...]}` for `Select`, the instance's summary (flat:
    /// the state machine selects fields from it) for `Ship`, a [`Summary`] for `Run`.
    pub async fn handle(&self, request: Request, deadline: Option<Instant>) -> Result<Value, ShipError> {
        match request {
            Request::Select => {
                let instances = self.rds.select(&self.config.selection).await?;
                Ok(serde_json::json!({ "instances": instances }))
            }
            Request::Ship { instance } => to_json(&self.ship_one(&instance, deadline).await?),
            Request::Run => to_json(&self.run(deadline).await?),
        }
    }

    /// One instance (a step of the scale-out state machine): its failure is the invocation's,
    /// so that the state machine's Retry (on `Throttled`) and Catch see its error type.
    async fn ship_one(
        &self,
        instance: &str,
        deadline: Option<Instant>,
    ) -> Result<InstanceSummary, ShipError> {
        let mut s = InstanceSummary::new(instance);
        if near(deadline, self.config.reserve) {
            return Ok(s);
        }
        self.ship_instance(instance, deadline, &mut s).await?;
        log_shipped(&s);
        Ok(s)
    }

    /// The configured selection, one instance after another; one failing instance does not stop
    /// the others (its error is in its summary).
    async fn run(&self, deadline: Option<Instant>) -> Result<Summary, ShipError> {
        let mut summary = Summary::default();
        for instance in self.rds.select(&self.config.selection).await? {
            let mut s = InstanceSummary::new(&instance);
            if near(deadline, self.config.reserve) {
                summary.stopped_at_deadline = true;
                summary.instances.push(s);
                continue;
            }
            match self.ship_instance(&instance, deadline, &mut s).await {
                Ok(out_of_time) => summary.stopped_at_deadline |= out_of_time,
                Err(e) => {
                    warn!(instance = %instance, error = %lambda_common::error_chain(&e), "instance not shipped");
                    s.error = Some(e.to_string());
                }
            }
            log_shipped(&s);
            summary.instances.push(s);
        }
        Ok(summary)
    }

    /// Ships the files of one instance that have bytes not yet shipped; returns whether the run
    /// stopped at its deadline.
    async fn ship_instance(
        &self,
        instance: &str,
        deadline: Option<Instant>,
        s: &mut InstanceSummary,
    ) -> Result<bool, ShipError> {
        let mut st = self.checkpoints.read(instance).await?;
        let now = now_ms();
        let c = &self.config;
        let scope = checkpoint::listing_scope(&st.cp, now, c.full_listing_every_ms, c.overlap_ms);
        let listing = self.rds.list_files(instance, scope.since).await?;
        let today = keys::date_from_epoch_ms(now);
        let plan = checkpoint::plan(&st.cp, &listing, scope.complete, &today);
        let (mut out_of_time, mut deferred) = (false, false);
        for work in plan.work {
            if near(deadline, self.config.reserve) {
                out_of_time = true;
                break;
            }
            let Some(work) = self.prepare(instance, &mut st, work, &today, s).await? else {
                deferred = true;
                continue;
            };
            s.files += 1;
            if self.ship_chunks(instance, &mut st, work, deadline, s).await? {
                out_of_time = true;
                break;
            }
        }
        if scope.complete && !out_of_time {
            checkpoint::drop_files(&mut st.cp, &plan.dropped);
            checkpoint::prune_retired(&mut st.cp, now);
            st.cp.full_listing_at = now;
            self.checkpoints.save(&mut st).await?;
        }
        s.complete = !out_of_time && !deferred;
        Ok(out_of_time)
    }

    /// Readies a work item: its pending chunk resolved, started over as a new generation if the
    /// file was replaced under its name, or continuing the generation it was renamed from.
    /// `None`: leave the file for now.
    async fn prepare(
        &self,
        instance: &str,
        st: &mut Stored,
        work: Work,
        today: &str,
        s: &mut InstanceSummary,
    ) -> Result<Option<Work>, ShipError> {
        let Some(work) = self.resolve_pending(st, work).await? else {
            return Ok(None);
        };
        let (mut work, beginning) = self.check_replaced(instance, &st.cp, work, today, s).await?;
        if work.offset == 0
            && work.skip == 0
            && !self
                .continue_rotated(instance, &st.cp, &mut work, beginning)
                .await?
        {
            return Ok(None);
        }
        Ok(Some(work))
    }

    /// Ships a file chunk after chunk: a file larger than one chunk continues where the last one
    /// ended. Returns whether the run stopped at its deadline.
    async fn ship_chunks(
        &self,
        instance: &str,
        st: &mut Stored,
        mut work: Work,
        deadline: Option<Instant>,
        s: &mut InstanceSummary,
    ) -> Result<bool, ShipError> {
        loop {
            let outcome = self.ship_file(instance, st, &work, deadline, s).await?;
            s.bytes += outcome.bytes;
            s.objects += outcome.objects;
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
        if self.checkpoints.exists(&p.key).await? {
            checkpoint::commit_chunk(&mut st.cp, &work.name, work.size, work.last_written);
            info!(key = %p.key, "a chunk uploaded before an interruption is committed");
            if generation_matches && !work.restarted {
                work.marker = p.end_marker.clone();
                work.offset = p.end;
            }
        } else if checkpoint::pending_expired(&p, now_ms()) {
            checkpoint::abandon_chunk(&mut st.cp, &work.name);
        } else {
            // Another run may still be uploading this chunk: leave the file to it.
            info!(file = %work.name, key = %p.key, "a recent pending chunk is left to the run that recorded it");
            return Ok(None);
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
    ) -> Result<(Work, Option<String>), ShipError> {
        let recorded = cp.files.get(&work.name);
        let Some(head) = recorded.and_then(|f| f.head.as_deref()) else {
            return Ok((work, None));
        };
        if work.restarted || work.offset == 0 {
            return Ok((work, None));
        }
        let beginning = self.rds.read_beginning(instance, &work.name, work.size).await?;
        if beginning
            .as_deref()
            .is_some_and(|b| !checkpoint::same_file(head, b))
        {
            s.anomaly(format!(
                "{}: replaced under the same name; shipped again from its beginning as a new generation",
                work.name
            ));
            let generation = recorded.map_or(0, |f| f.generation) + 1;
            return Ok((checkpoint::restart(work, generation, today), beginning));
        }
        Ok((work, beginning))
    }

    /// A file read from its beginning that is an earlier file renamed by rotation (MySQL renames
    /// `x.log` to `x.log.<hour>` every hour): the bytes of it already shipped under the earlier
    /// name are read past, not shipped twice. Recognised by name (the same rotation family) and
    /// by the first bytes recorded for the earlier generation. `false`: leave the file for now.
    async fn continue_rotated(
        &self,
        instance: &str,
        cp: &Checkpoint,
        work: &mut Work,
        beginning: Option<String>,
    ) -> Result<bool, ShipError> {
        if !rotation::has_rotation_siblings(cp, &work.name) {
            return Ok(true);
        }
        let beginning = match beginning {
            Some(b) => b,
            None => self
                .rds
                .read_beginning(instance, &work.name, work.size)
                .await?
                .unwrap_or_default(),
        };
        match rotation::rotation_source(cp, &work.name, &beginning) {
            Rotation::New => Ok(true),
            Rotation::Continues { continues, skip } => {
                info!(instance, file = %work.name, from = ?continues.source, bytes = skip, "a renamed file continues one already shipped in part");
                work.skip = skip;
                work.continues = Some(continues);
                Ok(true)
            }
            Rotation::Wait(source) => {
                info!(instance, file = %work.name, from = %source, "a renamed file waits for the chunk in flight of the file it continues");
                Ok(false)
            }
        }
    }
}

fn log_shipped(s: &InstanceSummary) {
    info!(instance = %s.instance, files = s.files, bytes = s.bytes, objects = s.objects, complete = s.complete, anomalies = s.anomaly_count, "instance shipped");
}

fn to_json(summary: &impl Serialize) -> Result<Value, ShipError> {
    serde_json::to_value(summary).map_err(|e| ShipError::json("the summary", e))
}
