//! The RDS side: select instances, list an instance's log files, read a portion of a file, read
//! a file's beginning, download a file whole (`complete`). Every request first takes a token of
//! the client-side rate limit; SDK answers are mapped into the pure types here, and SDK errors
//! into [`ShipError`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aws_sdk_rds::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_rds::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_rds::operation::describe_db_clusters::DescribeDBClustersError;
use aws_sdk_rds::operation::describe_db_instances::DescribeDBInstancesError;
use aws_sdk_rds::operation::describe_db_log_files::DescribeDBLogFilesError;

use aws_sdk_rds::operation::download_db_log_file_portion::DownloadDbLogFilePortionOutput;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use lambda_common::sdk::ErrorKind;
use tracing::warn;

use crate::checkpoint::{self, ListedFile};
use crate::complete::{Answer, CompleteDownloads};
use crate::error::{DownloadError as WholeError, ShipError};
use crate::rate::TokenBucket;
use crate::selection::{self, ListedInstance, Selection};

/// The RDS client, with more retries than the default: throttling is expected under a budget
/// shared by the account (8 attempts, with backoff).
pub fn client(sdk: &aws_config::SdkConfig) -> aws_sdk_rds::Client {
    let conf = aws_sdk_rds::config::Builder::from(sdk)
        .retry_config(aws_sdk_rds::config::retry::RetryConfig::standard().with_max_attempts(8))
        .build();
    aws_sdk_rds::Client::from_conf(conf)
}

/// RDS, within the client-side rate limit.
pub struct Rds {
    client: aws_sdk_rds::Client,
    limiter: tokio::sync::Mutex<TokenBucket>,
    epoch: Instant,
    throttled: Arc<AtomicU64>,
    /// `DownloadCompleteLogFile`, when configured (`Shipper::with_complete_downloads`).
    complete: Option<CompleteDownloads>,
}

/// Counts the attempts that RDS answered with a throttling error, the SDK's retried attempts
/// included (an interceptor sees every attempt; the error of the last one is all the caller
/// sees).
#[derive(Debug)]
struct ThrottleCounter(Arc<AtomicU64>);

impl Intercept for ThrottleCounter {
    fn name(&self) -> &'static str {
        "ThrottleCounter"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let Some(Err(err)) = context.output_or_error() else {
            return Ok(());
        };
        let status = context.response().map(|r| r.status().as_u16());
        let code = err.as_operation_error().and_then(|e| {
            e.downcast_ref::<DescribeDBLogFilesError>()
                .and_then(ProvideErrorMetadata::code)
                .or_else(|| {
                    e.downcast_ref::<DownloadError>()
                        .and_then(ProvideErrorMetadata::code)
                })
                .or_else(|| {
                    e.downcast_ref::<DescribeDBInstancesError>()
                        .and_then(ProvideErrorMetadata::code)
                })
                .or_else(|| {
                    e.downcast_ref::<DescribeDBClustersError>()
                        .and_then(ProvideErrorMetadata::code)
                })
        });
        if lambda_common::sdk::classify_parts(code, status) == lambda_common::sdk::ErrorKind::Throttled {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The selected instances, and those left out for an unknown engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selected {
    pub ids: Vec<String>,
    pub unknown_engine: usize,
}

/// A portion of a log file, as RDS returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portion {
    pub data: String,
    /// The marker after it (`None` when RDS sent none or an empty one).
    pub marker: Option<String>,
    /// `AdditionalDataPending`.
    pub pending: bool,
}

/// Files listed at most this size are asked for whole when their beginning is read (one RDS
/// portion holds up to 1 MB).
pub const WHOLE_BEGINNING_BYTES: u64 = 1_000_000;

/// A file's beginning, read from marker "0" (see [`Rds::read_beginning`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beginning {
    /// Its first bytes (at least `HEAD_BYTES` of them, or all).
    pub text: String,
    /// The whole file, when one portion held all of it: the portion, end marker included.
    pub whole: Option<Portion>,
}

/// What a portion request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortionRead {
    Portion(Portion),
    /// The file is gone: removed, or rotated away while being read.
    Gone,
    /// A binary file: RDS serves it only whole, through `DownloadCompleteLogFile`.
    Binary,
}

/// What a whole download found.
#[derive(Debug)]
pub enum WholeRead {
    /// The file's bytes, from its beginning, as they stream in.
    Body(aws_smithy_types::byte_stream::ByteStream),
    /// The file is gone (404 for the file; a missing instance is an error, as for portions).
    Gone,
}

/// Attempts of a whole download that RDS throttles or that fail in transit, as the SDK's
/// client here makes (see [`client`]).
pub const WHOLE_ATTEMPTS: u32 = 8;

/// The wait before attempt `attempt + 1` (from 1): the SDK's standard backoff, `2^(attempt-1)`
/// seconds at most 20, times `jitter` in 0..1 (full jitter).
pub fn backoff(attempt: u32, jitter: f64) -> std::time::Duration {
    let ceiling = 2f64
        .powi(i32::try_from(attempt.saturating_sub(1)).unwrap_or(30))
        .min(20.0);
    std::time::Duration::from_secs_f64(ceiling * jitter.clamp(0.0, 1.0))
}

/// A jitter in 0..1 from the clock's nanoseconds (no randomness needed beyond spreading
/// retries apart).
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

impl Rds {
    /// `requests_per_second` sustained, `burst` at most.
    /// The client gets an interceptor counting throttling answers (see [`Rds::throttled`]).
    pub fn new(client: aws_sdk_rds::Client, requests_per_second: f64, burst: f64) -> Self {
        let throttled = Arc::new(AtomicU64::new(0));
        let conf = client
            .config()
            .to_builder()
            .interceptor(ThrottleCounter(Arc::clone(&throttled)))
            .build();
        Self {
            client: aws_sdk_rds::Client::from_conf(conf),
            limiter: tokio::sync::Mutex::new(TokenBucket::new(requests_per_second, burst, 0.0)),
            epoch: Instant::now(),
            throttled,
            complete: None,
        }
    }

    /// Downloads files whole through `complete` from now on (see `catchup`).
    pub fn set_complete_downloads(&mut self, complete: CompleteDownloads) {
        self.complete = Some(complete);
    }

    /// Whether whole downloads are configured.
    pub fn downloads_whole(&self) -> bool {
        self.complete.is_some()
    }

    /// From now on, `requests_per_second` sustained and `burst` at most (a batch's share of the
    /// budget); the bucket starts full at the new burst.
    pub async fn set_rate(&self, requests_per_second: f64, burst: f64) {
        *self.limiter.lock().await =
            TokenBucket::new(requests_per_second, burst, self.epoch.elapsed().as_secs_f64());
    }

    /// The client-side limit in force: (requests per second, burst).
    pub async fn limit(&self) -> (f64, f64) {
        self.limiter.lock().await.limit()
    }

    /// Throttling answers received so far (every attempt), by this client.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Waits for a request token (client-side rate limit within RDS's shared budget).
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

    /// The instances of `selection`, every page read, each once, sorted.
    pub async fn select(&self, selection: &Selection) -> Result<Selected, ShipError> {
        let (ids, unknown_engine) = match selection {
            Selection::Ids(list) => (list.clone(), 0),
            Selection::Clusters(clusters) => (self.cluster_members(clusters).await?, 0),
            Selection::All | Selection::Tag(..) => self.listed_instances(selection).await?,
        };
        Ok(Selected {
            ids: selection::selected(ids),
            unknown_engine,
        })
    }

    /// The member instances of Aurora clusters; a cluster that no longer exists is skipped.
    async fn cluster_members(&self, clusters: &[String]) -> Result<Vec<String>, ShipError> {
        let mut ids = Vec::new();
        for c in clusters {
            self.throttle().await;
            let out = match self
                .client
                .describe_db_clusters()
                .db_cluster_identifier(c)
                .send()
                .await
            {
                Ok(out) => out,
                // A deleted cluster must not stop the others from being shipped.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_db_cluster_not_found_fault()) =>
                {
                    warn!(cluster = %c, "cluster not found; skipped");
                    continue;
                }
                Err(e) => return Err(ShipError::aws("RDS DescribeDBClusters", e)),
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
        Ok(ids)
    }

    /// Every listed instance that `selection` takes, and how many it took but left out for
    /// their unknown engine (each named in the log).
    async fn listed_instances(&self, selection: &Selection) -> Result<(Vec<String>, usize), ShipError> {
        let mut ids = Vec::new();
        let mut unknown_engine = 0;
        let mut marker: Option<String> = None;
        loop {
            self.throttle().await;
            let out = self
                .client
                .describe_db_instances()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| ShipError::aws("RDS DescribeDBInstances", e))?;
            for db in out.db_instances() {
                let Some(id) = db.db_instance_identifier() else {
                    continue;
                };
                let listed = ListedInstance {
                    id,
                    engine: db.engine(),
                    status: db.db_instance_status(),
                    tags: db
                        .tag_list()
                        .iter()
                        .filter_map(|t| t.key().zip(t.value()))
                        .collect(),
                };
                if !selection.takes(&listed) {
                    continue;
                }
                if selection::engine_known(listed.engine) {
                    ids.push(id.to_owned());
                } else {
                    warn!(instance = %id, engine = ?listed.engine, "unknown engine: the instance is not shipped (its log file names are not known)");
                    unknown_engine += 1;
                }
            }
            marker = out.marker().map(str::to_owned).filter(|m| !m.is_empty());
            if marker.is_none() {
                return Ok((ids, unknown_engine));
            }
        }
    }

    /// The instance's log files, every page read; with `since`, only those written since then
    /// (epoch ms).
    pub async fn list_files(&self, instance: &str, since: Option<i64>) -> Result<Vec<ListedFile>, ShipError> {
        let mut files = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            self.throttle().await;
            let out = self
                .client
                .describe_db_log_files()
                .db_instance_identifier(instance)
                .set_file_last_written(since)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| ShipError::aws("RDS DescribeDBLogFiles", e))?;
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
                return Ok(files);
            }
        }
    }

    async fn download(
        &self,
        instance: &str,
        file: &str,
        marker: &str,
        lines: u32,
    ) -> Result<DownloadDbLogFilePortionOutput, aws_sdk_rds::error::SdkError<DownloadError>> {
        self.throttle().await;
        self.client
            .download_db_log_file_portion()
            .db_instance_identifier(instance)
            .log_file_name(file)
            .marker(marker)
            .number_of_lines(i32::try_from(lines).unwrap_or(i32::MAX))
            .send()
            .await
    }

    /// Up to `lines` lines of `file` from `marker`.
    pub async fn read_portion(
        &self,
        instance: &str,
        file: &str,
        marker: &str,
        lines: u32,
    ) -> Result<PortionRead, ShipError> {
        match self.download(instance, file, marker, lines).await {
            Ok(out) => Ok(PortionRead::Portion(Portion {
                data: out.log_file_data.unwrap_or_default(),
                marker: out.marker.filter(|m| !m.is_empty()),
                pending: out.additional_data_pending.unwrap_or(false),
            })),
            Err(e) if is_log_file_not_found(&e) => Ok(PortionRead::Gone),
            Err(e)
                if e.code() == Some("InvalidParameterValue")
                    && e.message().is_some_and(|m| m.contains("binary")) =>
            {
                Ok(PortionRead::Binary)
            }
            Err(e) => Err(ShipError::aws("RDS DownloadDBLogFilePortion", e)),
        }
    }

    /// The first bytes of a file (from marker "0", up to `HEAD_BYTES` or its listed size), to
    /// check which file it is. RDS may answer with a short portion: a few more requests follow
    /// the marker. `None` if it is gone or unreadable this way (the read that follows says so).
    ///
    /// With `whole_if_small`, a file listed at most [`WHOLE_BEGINNING_BYTES`] is asked for whole
    /// (`MAX_LINES` lines): when RDS answers it in one portion with nothing pending and at least
    /// the listed size, that portion is kept ([`Beginning::whole`]) and holds every byte a
    /// resumed read would ask for, so a small file that grew costs one portion request a
    /// period, not two. Any other answer is read on as a beginning.
    pub async fn read_beginning(
        &self,
        instance: &str,
        file: &str,
        size: u64,
        whole_if_small: bool,
    ) -> Result<Option<Beginning>, ShipError> {
        let want = usize::try_from(size)
            .unwrap_or(usize::MAX)
            .min(checkpoint::HEAD_BYTES);
        let mut beginning = String::new();
        let mut marker = "0".to_owned();
        let mut lines = if whole_if_small && size <= WHOLE_BEGINNING_BYTES {
            crate::portion::MAX_LINES
        } else {
            64
        };
        for attempt in 0..4 {
            let out = match self.download(instance, file, &marker, lines).await {
                Ok(out) => out,
                Err(e) if is_log_file_not_found(&e) => return Ok(None),
                Err(e) if e.code() == Some("InvalidParameterValue") => return Ok(None),
                Err(e) => return Err(ShipError::aws("RDS DownloadDBLogFilePortion", e)),
            };
            let data = out.log_file_data().unwrap_or_default();
            let next = out.marker().filter(|m| !m.is_empty());
            let pending = out.additional_data_pending().unwrap_or(false);
            let all_listed = u64::try_from(data.len()).unwrap_or(u64::MAX) >= size;
            if attempt == 0 && lines == crate::portion::MAX_LINES && !pending && all_listed {
                return Ok(Some(Beginning {
                    text: data.to_owned(),
                    whole: next.map(|m| Portion {
                        data: data.to_owned(),
                        marker: Some(m.to_owned()),
                        pending: false,
                    }),
                }));
            }
            lines = 64;
            beginning.push_str(data);
            match next {
                Some(m) if !data.is_empty() && beginning.len() < want => marker = m.to_owned(),
                _ => break,
            }
        }
        Ok(Some(Beginning {
            text: beginning,
            whole: None,
        }))
    }
}

impl Rds {
    /// `file` whole (`DownloadCompleteLogFile`), within the rate limit: every attempt takes a
    /// token; throttling (429, or a throttling code) is counted ([`Rds::throttled`]) and, like
    /// a 5xx or a failure in transit, retried with backoff up to [`WHOLE_ATTEMPTS`] attempts.
    /// 404: [`WholeRead::Gone`] for the file, an error (`NotFound`) for a missing instance.
    pub async fn download_whole(&self, instance: &str, file: &str) -> Result<WholeRead, ShipError> {
        let Some(complete) = &self.complete else {
            return Err(WholeError::Request("whole downloads are not configured".into()).into());
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.throttle().await;
            let failed = match complete.get(instance, file).await {
                Ok(Answer::Body(body)) => return Ok(WholeRead::Body(body)),
                Ok(Answer::Refused(refused)) => refused,
                Err(e) => e,
            };
            let (status, code) = match &failed {
                WholeError::Refused { status, code, .. } => (Some(*status), code.as_deref()),
                _ => (None, None),
            };
            if status == Some(404) && !code.is_some_and(|c| c.starts_with("DBInstanceNotFound")) {
                return Ok(WholeRead::Gone);
            }
            let kind = failed.kind();
            let throttled = kind == ErrorKind::Throttled;
            if throttled {
                self.throttled.fetch_add(1, Ordering::Relaxed);
            }
            let transient = matches!(failed, WholeError::Transport(_) | WholeError::Timeout { .. })
                || (kind == ErrorKind::Other && status.is_some_and(|s| s >= 500));
            if !(throttled || transient) || attempt >= WHOLE_ATTEMPTS {
                return Err(failed.into());
            }
            let wait = backoff(attempt, jitter());
            warn!(instance, file, attempt, error = %failed, wait_ms = wait.as_millis(), "whole download retried");
            tokio::time::sleep(wait).await;
        }
    }
}

type DownloadError = aws_sdk_rds::operation::download_db_log_file_portion::DownloadDBLogFilePortionError;

fn is_log_file_not_found(e: &aws_sdk_rds::error::SdkError<DownloadError>) -> bool {
    e.as_service_error()
        .is_some_and(DownloadError::is_db_log_file_not_found_fault)
}
