//! The shipping run: select instances, list their log files, ship the bytes not yet shipped,
//! checkpoint. Decisions come from the pure modules; this module only orchestrates the calls.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use bytes::{BufMut, Bytes, BytesMut};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::checkpoint::{self, Checkpoint, ListedFile, Pending, Rotation, Work};
use crate::keys;
use crate::portion::{self, MAX_LINES, Next, Truncation};
use crate::rate::TokenBucket;

/// Which instances a run ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Ids(Vec<String>),
    Tag(String, String),
    /// Aurora clusters: every member instance.
    Clusters(Vec<String>),
}

/// Read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    pub bucket: String,
    pub prefix: String,
    pub selection: Selection,
    pub requests_per_second: f64,
    pub burst: f64,
    /// Compressed bytes per multipart part (S3's minimum is 5 MiB).
    pub part_size: usize,
    /// Uncompressed bytes per object at most; the rest goes into the next chunk.
    pub max_chunk_bytes: u64,
    pub overlap_ms: i64,
    pub full_listing_every_ms: i64,
    /// No new work starts this close to the Lambda deadline.
    pub reserve: Duration,
}

impl Config {
    /// `LOG_BUCKET` (required), `LOG_PREFIX`, `INSTANCES`, `INSTANCE_TAG` (`key=value`),
    /// `CLUSTERS`, `RDS_REQUESTS_PER_SECOND` (8), `RDS_BURST` (20), `PART_SIZE_MB` (8),
    /// `MAX_CHUNK_MB` (1024), `LISTING_OVERLAP_SECONDS` (300), `FULL_LISTING_MINUTES` (60),
    /// `DEADLINE_RESERVE_SECONDS` (20).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |k: &str| lookup(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let num = |k: &str, d: f64| -> Result<f64, String> {
            get(k).map_or(Ok(d), |v| {
                v.parse::<f64>()
                    .map_err(|_| format!("{k} must be a number, not {v}"))
            })
        };
        let list = |v: String| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        };
        let selection = if let Some(ids) = get("INSTANCES") {
            Selection::Ids(list(ids))
        } else if let Some(tag) = get("INSTANCE_TAG") {
            let (k, v) = tag.split_once('=').ok_or("INSTANCE_TAG must be key=value")?;
            Selection::Tag(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some(c) = get("CLUSTERS") {
            Selection::Clusters(list(c))
        } else {
            Selection::All
        };
        let part_mb = num("PART_SIZE_MB", 8.0)?.max(5.0);
        Ok(Self {
            bucket: get("LOG_BUCKET").ok_or("LOG_BUCKET is required")?,
            prefix: get("LOG_PREFIX").unwrap_or_else(|| "rds-logs".into()),
            selection,
            requests_per_second: num("RDS_REQUESTS_PER_SECOND", 8.0)?.clamp(0.1, 12.0),
            burst: num("RDS_BURST", 20.0)?.clamp(1.0, 300.0),
            part_size: (part_mb * 1_048_576.0) as usize,
            max_chunk_bytes: (num("MAX_CHUNK_MB", 1024.0)?.max(1.0) * 1_048_576.0) as u64,
            overlap_ms: (num("LISTING_OVERLAP_SECONDS", 300.0)? * 1000.0) as i64,
            full_listing_every_ms: (num("FULL_LISTING_MINUTES", 60.0)? * 60_000.0) as i64,
            reserve: Duration::from_secs_f64(num("DEADLINE_RESERVE_SECONDS", 20.0)?.max(0.0)),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("{operation} failed: {message}")]
    Aws {
        operation: &'static str,
        message: String,
        throttled: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("another run advanced the checkpoint of {0} first; this run stops for that instance")]
    CheckpointConflict(String),
    #[error("the checkpoint of {instance} is unreadable: {reason}")]
    CorruptCheckpoint { instance: String, reason: String },
    #[error("chunk {0} already exists although the checkpoint does not account for it")]
    ChunkExists(String),
    #[error("compressing failed: {0}")]
    Compress(#[from] std::io::Error),
}

impl lambda_common::ErrorType for ShipError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::Aws { throttled: true, .. } => "Throttled",
            Self::Aws { .. } => "AwsError",
            Self::CheckpointConflict(_) => "CheckpointConflict",
            Self::CorruptCheckpoint { .. } => "CorruptCheckpoint",
            Self::ChunkExists(_) => "ChunkExists",
            Self::Compress(_) => "CompressionFailed",
        }
    }
}

fn aws<E>(operation: &'static str, err: aws_sdk_s3::error::SdkError<E>) -> ShipError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let throttled = matches!(
        err.code(),
        Some("Throttling" | "ThrottlingException" | "SlowDown")
    );
    let message = lambda_common::sdk::summary(&err);
    ShipError::Aws {
        operation,
        message,
        throttled,
        source: Box::new(err),
    }
}

fn is_precondition_failed<E: ProvideErrorMetadata>(err: &aws_sdk_s3::error::SdkError<E>) -> bool {
    err.code() == Some("PreconditionFailed") || err.raw_response().is_some_and(|r| r.status().as_u16() == 412)
}

/// The invocation's request: a scheduled event (ship every selected instance), or a step of
/// the scale-out state machine (`select`, then `ship` one instance).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub instance: Option<String>,
}

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
    /// Records an anomaly: logged always, listed in the summary up to `MAX_LISTED_ANOMALIES`.
    pub fn anomaly(&mut self, message: String) {
        warn!(instance = %self.instance, anomaly = %message, "anomaly");
        self.anomaly_count += 1;
        if self.anomalies.len() < MAX_LISTED_ANOMALIES {
            self.anomalies.push(message);
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub instances: Vec<InstanceSummary>,
    pub stopped_at_deadline: bool,
}

pub struct Shipper {
    pub rds: aws_sdk_rds::Client,
    pub s3: aws_sdk_s3::Client,
    pub config: Config,
    limiter: tokio::sync::Mutex<TokenBucket>,
    epoch: Instant,
    /// The one compressed-part buffer (see `ChunkWriter`); files are shipped one at a time.
    part_buffer: tokio::sync::Mutex<BytesMut>,
}

/// Whether a listed instance has log files to read now: DescribeDBInstances also lists
/// DocumentDB and Neptune instances (no log files through this API), and a stopped instance
/// answers every log call with an error. Instances named explicitly are not filtered.
pub fn has_reachable_logs(engine: Option<&str>, status: Option<&str>) -> bool {
    let other_service = engine.is_some_and(|e| matches!(e, "docdb" | "neptune"));
    let down =
        status.is_some_and(|s| matches!(s, "stopped" | "stopping" | "starting" | "creating" | "deleting"));
    !other_service && !down
}

/// True when the Lambda deadline is less than `margin` away.
fn near(deadline: Option<Instant>, margin: Duration) -> bool {
    deadline.is_some_and(|d| Instant::now() + margin >= d)
}

/// Until when a run may still be uploading the chunk it records now: its deadline (or the
/// longest Lambda run when there is none) plus a minute for clock differences between hosts.
fn pending_until(deadline: Option<Instant>) -> i64 {
    const LONGEST_RUN: Duration = Duration::from_secs(15 * 60);
    let left = deadline.map_or(LONGEST_RUN, |d| d.saturating_duration_since(Instant::now()));
    now_ms() + i64::try_from(left.as_millis()).unwrap_or(i64::MAX / 2) + 60_000
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Input is fed to the compressor in slices this large and the part is cut as soon as the part
/// size is reached, so what one slice adds (about the slice at worst, plus what the compressor
/// held back) stays within the part buffer's slack and the buffer does not reallocate.
const FEED: usize = 64 * 1024;
const PART_SLACK: usize = 2 * FEED;

/// One chunk on its way to S3: gzip-compressed as it is read, uploaded in parts once the
/// compressed data reaches the part size. The compressed bytes go into one part buffer that
/// lives as long as the `Shipper` and is reused for every part of every chunk, so memory is
/// bounded by the part size whatever the file size (and the allocator sees no churn of
/// multi-megabyte blocks that it might not give back).
struct ChunkWriter<'b> {
    key: String,
    encoder: GzEncoder<bytes::buf::Writer<&'b mut BytesMut>>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    part_size: usize,
}

impl<'b> ChunkWriter<'b> {
    fn new(key: String, part_size: usize, buffer: &'b mut BytesMut) -> Self {
        buffer.clear();
        buffer.reserve(part_size + PART_SLACK);
        Self {
            key,
            encoder: GzEncoder::new(buffer.writer(), Compression::default()),
            upload_id: None,
            parts: Vec::new(),
            part_size,
        }
    }

    fn buffer(&mut self) -> &mut BytesMut {
        self.encoder.get_mut().get_mut()
    }

    async fn write(&mut self, s3: &aws_sdk_s3::Client, bucket: &str, data: &[u8]) -> Result<(), ShipError> {
        for slice in data.chunks(FEED) {
            self.encoder.write_all(slice)?;
            if self.encoder.get_ref().get_ref().len() >= self.part_size {
                // The part is split off the buffer without copying; once S3 has it and the SDK
                // has dropped it, `reserve` takes the same allocation back (it allocates anew only
                // if something still holds the part).
                let body = self.buffer().split().freeze();
                self.upload_part(s3, bucket, body).await?;
                let capacity = self.part_size + PART_SLACK;
                self.buffer().reserve(capacity);
            }
        }
        Ok(())
    }

    async fn upload_part(
        &mut self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        body: Bytes,
    ) -> Result<(), ShipError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let out = s3
                    .create_multipart_upload()
                    .bucket(bucket)
                    .key(&self.key)
                    .content_type("application/gzip")
                    .send()
                    .await
                    .map_err(|e| aws("S3 CreateMultipartUpload", e))?;
                let id = out.upload_id().unwrap_or_default().to_owned();
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = i32::try_from(self.parts.len() + 1).unwrap_or(i32::MAX);
        let out = s3
            .upload_part()
            .bucket(bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| aws("S3 UploadPart", e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build(),
        );
        Ok(())
    }

    /// Creates the object, only if it does not exist yet (`If-None-Match: *`).
    async fn finish(mut self, s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), ShipError> {
        if let Err(e) = self.encoder.try_finish() {
            self.abort(s3, bucket).await;
            return Err(e.into());
        }
        let rest = self.buffer().split().freeze();
        let Some(upload_id) = self.upload_id.clone() else {
            return match s3
                .put_object()
                .bucket(bucket)
                .key(&self.key)
                .content_type("application/gzip")
                .if_none_match("*")
                .body(ByteStream::from(rest))
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_precondition_failed(&e) => Err(ShipError::ChunkExists(self.key)),
                Err(e) => Err(aws("S3 PutObject", e)),
            };
        };
        if let Err(e) = self.upload_part(s3, bucket, rest).await {
            abort_upload(s3, bucket, &self.key, &upload_id).await;
            return Err(e);
        }
        let done = s3
            .complete_multipart_upload()
            .bucket(bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await;
        match done {
            Ok(_) => Ok(()),
            Err(e) => {
                abort_upload(s3, bucket, &self.key, &upload_id).await;
                if is_precondition_failed(&e) {
                    Err(ShipError::ChunkExists(self.key))
                } else {
                    Err(aws("S3 CompleteMultipartUpload", e))
                }
            }
        }
    }

    async fn abort(self, s3: &aws_sdk_s3::Client, bucket: &str) {
        if let Some(id) = &self.upload_id {
            abort_upload(s3, bucket, &self.key, id).await;
        }
    }
}

/// Best effort: parts of an upload that is not completed are also removed by the bucket's
/// lifecycle rule.
async fn abort_upload(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, upload_id: &str) {
    if let Err(e) = s3
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        warn!(key, error = %lambda_common::sdk::summary(&e), "multipart upload not aborted");
    }
}

/// How one chunk's shipping ended.
struct FileOutcome {
    bytes: u64,
    objects: usize,
    out_of_time: bool,
    /// The chunk reached `max_chunk_bytes`: the file continues in a new chunk.
    chunk_full: bool,
}

impl Shipper {
    pub fn new(rds: aws_sdk_rds::Client, s3: aws_sdk_s3::Client, config: Config) -> Self {
        let limiter = TokenBucket::new(config.requests_per_second, config.burst, 0.0);
        Self {
            rds,
            s3,
            config,
            limiter: tokio::sync::Mutex::new(limiter),
            epoch: Instant::now(),
            part_buffer: tokio::sync::Mutex::new(BytesMut::new()),
        }
    }

    /// Waits for an RDS request token (client-side rate limit within RDS's shared budget).
    async fn throttle(&self) {
        loop {
            let wait = {
                let mut bucket = self.limiter.lock().await;
                bucket.take(self.epoch.elapsed().as_secs_f64())
            };
            match wait {
                Ok(()) => return,
                Err(d) => tokio::time::sleep(d).await,
            }
        }
    }

    /// The selected instances, every page read.
    pub async fn select(&self) -> Result<Vec<String>, ShipError> {
        let mut ids = Vec::new();
        match &self.config.selection {
            Selection::Ids(list) => ids.extend(list.iter().cloned()),
            Selection::Clusters(clusters) => {
                for c in clusters {
                    self.throttle().await;
                    let out = match self
                        .rds
                        .describe_db_clusters()
                        .db_cluster_identifier(c)
                        .send()
                        .await
                    {
                        Ok(out) => out,
                        // A deleted cluster must not stop the others from being shipped.
                        Err(e) if e.code() == Some("DBClusterNotFoundFault") => {
                            warn!(cluster = %c, "cluster not found; skipped");
                            continue;
                        }
                        Err(e) => return Err(aws("RDS DescribeDBClusters", e)),
                    };
                    for cluster in out.db_clusters() {
                        ids.extend(
                            cluster
                                .db_cluster_members()
                                .iter()
                                .filter_map(|m| m.db_instance_identifier().map(str::to_owned)),
                        );
                    }
                }
            }
            Selection::All | Selection::Tag(..) => {
                let mut marker: Option<String> = None;
                loop {
                    self.throttle().await;
                    let out = self
                        .rds
                        .describe_db_instances()
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| aws("RDS DescribeDBInstances", e))?;
                    for db in out.db_instances() {
                        if !has_reachable_logs(db.engine(), db.db_instance_status()) {
                            continue;
                        }
                        let wanted = match &self.config.selection {
                            Selection::Tag(k, v) => db
                                .tag_list()
                                .iter()
                                .any(|t| t.key() == Some(k.as_str()) && t.value() == Some(v.as_str())),
                            _ => true,
                        };
                        if wanted && let Some(id) = db.db_instance_identifier() {
                            ids.push(id.to_owned());
                        }
                    }
                    marker = out.marker().map(str::to_owned).filter(|m| !m.is_empty());
                    if marker.is_none() {
                        break;
                    }
                }
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn list_files(&self, instance: &str, since: Option<i64>) -> Result<Vec<ListedFile>, ShipError> {
        let mut files = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            self.throttle().await;
            let out = self
                .rds
                .describe_db_log_files()
                .db_instance_identifier(instance)
                .set_file_last_written(since)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| aws("RDS DescribeDBLogFiles", e))?;
            for f in out.describe_db_log_files() {
                if let Some(name) = f.log_file_name() {
                    files.push(ListedFile {
                        name: name.to_owned(),
                        size: u64::try_from(f.size().unwrap_or(0)).unwrap_or(0),
                        last_written: f.last_written().unwrap_or(0),
                    });
                }
            }
            marker = out.marker().map(str::to_owned).filter(|m| !m.is_empty());
            if marker.is_none() {
                break;
            }
        }
        Ok(files)
    }

    async fn read_checkpoint(&self, instance: &str) -> Result<(Checkpoint, Option<String>), ShipError> {
        let key = keys::checkpoint_key(&self.config.prefix, instance);
        match self
            .s3
            .get_object()
            .bucket(&self.config.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = out.e_tag().map(str::to_owned);
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| ShipError::CorruptCheckpoint {
                        instance: instance.to_owned(),
                        reason: e.to_string(),
                    })?
                    .into_bytes();
                let cp = serde_json::from_slice(&bytes).map_err(|e| ShipError::CorruptCheckpoint {
                    instance: instance.to_owned(),
                    reason: e.to_string(),
                })?;
                Ok((cp, etag))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                Ok((Checkpoint::new(instance), None))
            }
            Err(e) => Err(aws("S3 GetObject (checkpoint)", e)),
        }
    }

    /// Compare-and-swap: replaces the checkpoint only if it is still the one this run read.
    async fn save_checkpoint(&self, cp: &Checkpoint, etag: &mut Option<String>) -> Result<(), ShipError> {
        let key = keys::checkpoint_key(&self.config.prefix, &cp.instance);
        let body = serde_json::to_vec(cp).map_err(|e| ShipError::CorruptCheckpoint {
            instance: cp.instance.clone(),
            reason: e.to_string(),
        })?;
        let req = self
            .s3
            .put_object()
            .bucket(&self.config.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        let req = match etag.as_deref() {
            Some(tag) => req.if_match(tag),
            None => req.if_none_match("*"),
        };
        match req.send().await {
            Ok(out) => {
                *etag = out.e_tag().map(str::to_owned);
                Ok(())
            }
            Err(e) if is_precondition_failed(&e) || e.code() == Some("ConditionalRequestConflict") => {
                Err(ShipError::CheckpointConflict(cp.instance.clone()))
            }
            Err(e) => Err(aws("S3 PutObject (checkpoint)", e)),
        }
    }

    async fn object_exists(&self, key: &str) -> Result<bool, ShipError> {
        match self
            .s3
            .head_object()
            .bucket(&self.config.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
            Err(e) => Err(aws("S3 HeadObject", e)),
        }
    }

    /// Ships the instances of the request; one failing instance does not stop the others. With
    /// `instance` set the answer is that instance's summary, without it a `Summary`.
    pub async fn run(
        &self,
        request: Request,
        deadline: Option<Instant>,
    ) -> Result<serde_json::Value, ShipError> {
        if request.action.as_deref() == Some("select") {
            return Ok(serde_json::json!({"instances": self.select().await?}));
        }
        // One instance (a step of the scale-out state machine): its failure is the invocation's,
        // so that the state machine's Retry (on `Throttled`) and Catch see its error type.
        let single = request.instance.is_some();
        let instances = match request.instance {
            Some(i) => vec![i],
            None => self.select().await?,
        };
        let mut summary = Summary::default();
        for instance in instances {
            if near(deadline, self.config.reserve) {
                summary.stopped_at_deadline = true;
                summary.instances.push(InstanceSummary {
                    instance,
                    ..InstanceSummary::default()
                });
                continue;
            }
            let mut s = InstanceSummary {
                instance: instance.clone(),
                ..InstanceSummary::default()
            };
            match self.ship_instance(&instance, deadline, &mut s).await {
                Ok(out_of_time) => summary.stopped_at_deadline |= out_of_time,
                Err(e) if single => return Err(e),
                Err(e) => {
                    warn!(instance = %instance, error = %lambda_common::error_chain(&e), "instance not shipped");
                    s.error = Some(e.to_string());
                }
            }
            info!(instance = %s.instance, files = s.files, bytes = s.bytes, objects = s.objects, complete = s.complete, anomalies = s.anomaly_count, "instance shipped");
            summary.instances.push(s);
        }
        let out = match summary.instances.pop() {
            // One instance: its summary, flat (the state machine selects fields from it).
            Some(one) if single => serde_json::to_value(&one),
            Some(last) => {
                summary.instances.push(last);
                serde_json::to_value(&summary)
            }
            None => serde_json::to_value(&summary),
        };
        out.map_err(|e| ShipError::Compress(std::io::Error::other(e)))
    }

    /// Returns whether the run stopped at its deadline.
    async fn ship_instance(
        &self,
        instance: &str,
        deadline: Option<Instant>,
        s: &mut InstanceSummary,
    ) -> Result<bool, ShipError> {
        let (mut cp, mut etag) = self.read_checkpoint(instance).await?;
        let now = now_ms();
        let complete_listing = now - cp.full_listing_at >= self.config.full_listing_every_ms;
        let since = if complete_listing {
            None
        } else {
            cp.files
                .values()
                .map(|f| f.last_written)
                .max()
                .map(|m| m - self.config.overlap_ms)
        };
        let listing = self.list_files(instance, since).await?;
        let today = keys::date_from_epoch_ms(now);
        let plan = checkpoint::plan(&cp, &listing, complete_listing, &today);
        let (mut out_of_time, mut deferred) = (false, false);
        for work in plan.work {
            if near(deadline, self.config.reserve) {
                out_of_time = true;
                break;
            }
            let Some(mut work) = self.resolve_pending(&mut cp, &mut etag, work).await? else {
                deferred = true;
                continue;
            };
            let mut beginning: Option<String> = None;
            if !work.restarted && work.offset > 0 {
                let head = cp.files.get(&work.name).and_then(|f| f.head.clone());
                if let Some(head) = head {
                    beginning = self.read_beginning(instance, &work.name, work.size).await?;
                    if beginning
                        .as_deref()
                        .is_some_and(|b| !checkpoint::same_file(&head, b))
                    {
                        s.anomaly(format!(
                            "{}: replaced under the same name; shipped again from its beginning as a new generation",
                            work.name
                        ));
                        let generation = cp.files.get(&work.name).map_or(0, |f| f.generation) + 1;
                        work = checkpoint::restart(work, generation, &today);
                    }
                }
            }
            if work.offset == 0
                && work.skip == 0
                && !self.continue_rotated(instance, &cp, &mut work, beginning).await?
            {
                deferred = true;
                continue;
            }
            s.files += 1;
            loop {
                let outcome = self
                    .ship_file(instance, &mut cp, &mut etag, &work, deadline, s)
                    .await?;
                s.bytes += outcome.bytes;
                s.objects += outcome.objects;
                if outcome.out_of_time {
                    out_of_time = true;
                    break;
                }
                if !outcome.chunk_full {
                    break;
                }
                // A file larger than one chunk: the next chunk starts where the last one ended.
                let Some(entry) = cp.files.get(&work.name) else {
                    break;
                };
                work = Work {
                    marker: entry.marker.clone(),
                    offset: entry.shipped,
                    generation: entry.generation,
                    date: entry.date.clone(),
                    pending: None,
                    restarted: false,
                    ..work
                };
            }
            if out_of_time {
                break;
            }
        }
        if complete_listing && !out_of_time {
            checkpoint::drop_files(&mut cp, &plan.dropped);
            checkpoint::prune_retired(&mut cp, now);
            cp.full_listing_at = now;
            self.save_checkpoint(&cp, &mut etag).await?;
        }
        s.complete = !out_of_time && !deferred;
        Ok(out_of_time)
    }

    /// A chunk recorded before a crash: committed if it reached S3, forgotten otherwise once the
    /// run that recorded it is past its deadline; `None` (leave the file) until then.
    async fn resolve_pending(
        &self,
        cp: &mut Checkpoint,
        etag: &mut Option<String>,
        mut work: Work,
    ) -> Result<Option<Work>, ShipError> {
        let Some(p) = work.pending.take() else {
            return Ok(Some(work));
        };
        let generation_matches = cp
            .files
            .get(&work.name)
            .is_some_and(|f| f.generation == work.generation);
        if self.object_exists(&p.key).await? {
            checkpoint::commit_chunk(cp, &work.name, work.size, work.last_written);
            info!(key = %p.key, "a chunk uploaded before an interruption is committed");
            if generation_matches && !work.restarted {
                work.marker = p.end_marker.clone();
                work.offset = p.end;
            }
        } else if checkpoint::pending_expired(&p, now_ms()) {
            checkpoint::abandon_chunk(cp, &work.name);
        } else {
            // Another run may still be uploading this chunk: leave the file to it.
            info!(file = %work.name, key = %p.key, "a recent pending chunk is left to the run that recorded it");
            return Ok(None);
        }
        self.save_checkpoint(cp, etag).await?;
        Ok(Some(work))
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
        if !checkpoint::has_rotation_siblings(cp, &work.name) {
            return Ok(true);
        }
        let beginning = match beginning {
            Some(b) => b,
            None => self
                .read_beginning(instance, &work.name, work.size)
                .await?
                .unwrap_or_default(),
        };
        match checkpoint::rotation_source(cp, &work.name, &beginning) {
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

    /// The first bytes of a file (from marker "0", up to `HEAD_BYTES` or its listed size), to
    /// check which file it is. RDS may answer with a short portion: a few more requests follow
    /// the marker. `None` if it is gone (the read that follows says so).
    async fn read_beginning(
        &self,
        instance: &str,
        file: &str,
        size: u64,
    ) -> Result<Option<String>, ShipError> {
        let want = usize::try_from(size)
            .unwrap_or(usize::MAX)
            .min(checkpoint::HEAD_BYTES);
        let mut beginning = String::new();
        let mut marker = "0".to_owned();
        for _ in 0..4 {
            self.throttle().await;
            let out = match self
                .rds
                .download_db_log_file_portion()
                .db_instance_identifier(instance)
                .log_file_name(file)
                .marker(&marker)
                .number_of_lines(64)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if e.code() == Some("DBLogFileNotFoundFault") => return Ok(None),
                Err(e) if e.code() == Some("InvalidParameterValue") => return Ok(None),
                Err(e) => return Err(aws("RDS DownloadDBLogFilePortion", e)),
            };
            let data = out.log_file_data().unwrap_or_default();
            beginning.push_str(data);
            match out.marker().filter(|m| !m.is_empty()) {
                Some(m) if !data.is_empty() && beginning.len() < want => marker = m.to_owned(),
                _ => break,
            }
        }
        Ok(Some(beginning))
    }

    async fn ship_file(
        &self,
        instance: &str,
        cp: &mut Checkpoint,
        etag: &mut Option<String>,
        work: &Work,
        deadline: Option<Instant>,
        s: &mut InstanceSummary,
    ) -> Result<FileOutcome, ShipError> {
        // The first byte this chunk ships: bytes before `skip` are already in another file's
        // objects (a file renamed by rotation) and are read past.
        let start = work.offset.max(work.skip);
        // The date partition is the day the chunk is written: a file written for weeks (an
        // Oracle alert log, say) keeps landing under recent dates, where Athena looks for it.
        let key = keys::chunk_key(
            &self.config.prefix,
            instance,
            &work.name,
            work.generation,
            &keys::date_from_epoch_ms(now_ms()),
            start,
        );
        let mut buffer = self.part_buffer.lock().await;
        let mut writer = ChunkWriter::new(key.clone(), self.config.part_size, &mut buffer);
        let mut marker = work.marker.clone();
        let mut offset = work.offset;
        let mut lines = MAX_LINES;
        let mut empties = 0;
        let mut out_of_time = false;
        // The file's first bytes (up to `HEAD_BYTES`), extended portion after portion while they
        // cover everything read: from this chunk's start at the beginning, or from those
        // recorded when they end where this chunk starts.
        let mut head: Option<String> = if work.offset == 0 {
            Some(String::new())
        } else {
            cp.files
                .get(&work.name)
                .and_then(|f| f.head.clone())
                .filter(|h| h.len() as u64 == work.offset)
        };
        // A line over 1 MB was cut by RDS (in this chunk or earlier in this generation): bytes
        // counted fall short of the file's, and RDS's `AdditionalDataPending` tells the end.
        let lossy_before = cp
            .files
            .get(&work.name)
            .is_some_and(|f| f.lossy && f.generation == work.generation && !work.restarted);
        let mut lossy = false;
        loop {
            if near(deadline, self.config.reserve / 2) {
                out_of_time = true;
                break;
            }
            if offset.saturating_sub(start) >= self.config.max_chunk_bytes {
                break;
            }
            self.throttle().await;
            let resp = self
                .rds
                .download_db_log_file_portion()
                .db_instance_identifier(instance)
                .log_file_name(&work.name)
                .marker(&marker)
                .number_of_lines(i32::try_from(lines).unwrap_or(i32::MAX))
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) if e.code() == Some("DBLogFileNotFoundFault") => {
                    s.anomaly(format!("{}: removed or rotated away while being read", work.name));
                    break;
                }
                Err(e)
                    if e.code() == Some("InvalidParameterValue")
                        && e.message().is_some_and(|m| m.contains("binary")) =>
                {
                    warn!(file = %work.name, "binary log file skipped: RDS serves it only through DownloadCompleteLogFile");
                    s.anomaly(format!("{}: binary file skipped", work.name));
                    writer.abort(&self.s3, &self.config.bucket).await;
                    let _ = checkpoint::touch(
                        cp,
                        &Work {
                            offset: work.size,
                            ..work.clone()
                        },
                    );
                    if let Some(f) = cp.files.get_mut(&work.name) {
                        f.shipped = f.shipped.max(work.size);
                    }
                    self.save_checkpoint(cp, etag).await?;
                    return Ok(FileOutcome {
                        bytes: 0,
                        objects: 0,
                        out_of_time: false,
                        chunk_full: false,
                    });
                }
                Err(e) => {
                    writer.abort(&self.s3, &self.config.bucket).await;
                    return Err(aws("RDS DownloadDBLogFilePortion", e));
                }
            };
            let data = resp.log_file_data().unwrap_or("");
            if portion::is_truncated(data) {
                match portion::on_truncated(lines) {
                    Truncation::RetryWith(n) => {
                        lines = n;
                        continue;
                    }
                    Truncation::AcceptAndFlag => {
                        lossy = true;
                        s.anomaly(format!(
                            "{}: a line over 1 MB near byte {offset} was truncated by RDS",
                            work.name
                        ));
                    }
                }
            }
            lines = portion::lines_for_next(data);
            if data.is_empty() {
                empties += 1;
            } else {
                empties = 0;
                if let Some(h) = head.as_mut()
                    && h.len() as u64 == offset
                    && h.len() < checkpoint::HEAD_BYTES
                {
                    *h = checkpoint::head_of(&format!("{h}{}", checkpoint::head_of(data)));
                }
                let from = usize::try_from(start.saturating_sub(offset))
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                if from < data.len()
                    && let Err(e) = writer
                        .write(&self.s3, &self.config.bucket, &data.as_bytes()[from..])
                        .await
                {
                    writer.abort(&self.s3, &self.config.bucket).await;
                    return Err(e);
                }
                offset += data.len() as u64;
            }
            if let Some(m) = resp.marker().filter(|m| !m.is_empty()) {
                marker = m.to_owned();
            }
            let pending = resp.additional_data_pending().unwrap_or(false);
            // After a cut line the byte count falls short of `Size`: the end is RDS's empty answer
            // with nothing pending (a short portion may also say nothing is pending).
            if (lossy || lossy_before) && !pending && data.is_empty() {
                break;
            }
            match portion::next(pending, offset, work.size, data.len(), empties) {
                Next::Continue => {}
                Next::Done => break,
                Next::Stalled => {
                    s.anomaly(format!(
                        "{}: RDS returned no data before the listed size; resuming next run",
                        work.name
                    ));
                    break;
                }
            }
        }
        let head = head.filter(|h| !h.is_empty());
        let chunk_full = offset.saturating_sub(start) >= self.config.max_chunk_bytes;
        if offset <= start {
            // Nothing to upload: nothing was read, or everything read was already shipped under
            // the name this file had before (a file renamed by rotation).
            writer.abort(&self.s3, &self.config.bucket).await;
            let changed = if offset > work.offset {
                checkpoint::read_past(cp, work, marker, offset, head, lossy);
                true
            } else {
                // Saved now, or a file with nothing to read would be listed and read every run.
                checkpoint::touch(cp, work)
            };
            if changed {
                self.save_checkpoint(cp, etag).await?;
            }
            return Ok(FileOutcome {
                bytes: 0,
                objects: 0,
                out_of_time,
                chunk_full: false,
            });
        }
        // Write-ahead: the chunk is recorded before it exists, committed once it does.
        checkpoint::begin_chunk(
            cp,
            work,
            Pending {
                key: key.clone(),
                start,
                end: offset,
                end_marker: marker,
                until: pending_until(deadline),
            },
            head,
            lossy,
        );
        if let Err(e) = self.save_checkpoint(cp, etag).await {
            writer.abort(&self.s3, &self.config.bucket).await;
            return Err(e);
        }
        writer.finish(&self.s3, &self.config.bucket).await?;
        checkpoint::commit_chunk(cp, &work.name, work.size, work.last_written);
        self.save_checkpoint(cp, etag).await?;
        Ok(FileOutcome {
            bytes: offset - start,
            objects: 1,
            out_of_time,
            chunk_full,
        })
    }
}
