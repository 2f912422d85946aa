//! The RDS side: select instances, list an instance's log files, read a portion of a file, read
//! a file's beginning. Every request first takes a token of the client-side rate limit; SDK
//! answers are mapped into the pure types here, and SDK errors into [`ShipError`].

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
use tracing::warn;

use crate::checkpoint::{self, ListedFile};
use crate::error::ShipError;
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

/// A portion of a log file, as RDS returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portion {
    pub data: String,
    /// The marker after it (`None` when RDS sent none or an empty one).
    pub marker: Option<String>,
    /// `AdditionalDataPending`.
    pub pending: bool,
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
        }
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
    pub async fn select(&self, selection: &Selection) -> Result<Vec<String>, ShipError> {
        let ids = match selection {
            Selection::Ids(list) => list.clone(),
            Selection::Clusters(clusters) => self.cluster_members(clusters).await?,
            Selection::All | Selection::Tag(..) => self.listed_instances(selection).await?,
        };
        Ok(selection::selected(ids))
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

    /// Every listed instance that `selection` takes.
    async fn listed_instances(&self, selection: &Selection) -> Result<Vec<String>, ShipError> {
        let mut ids = Vec::new();
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
                if selection.takes(&listed) {
                    ids.push(id.to_owned());
                }
            }
            marker = out.marker().map(str::to_owned).filter(|m| !m.is_empty());
            if marker.is_none() {
                return Ok(ids);
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
    pub async fn read_beginning(
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
            let out = match self.download(instance, file, &marker, 64).await {
                Ok(out) => out,
                Err(e) if is_log_file_not_found(&e) => return Ok(None),
                Err(e) if e.code() == Some("InvalidParameterValue") => return Ok(None),
                Err(e) => return Err(ShipError::aws("RDS DownloadDBLogFilePortion", e)),
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
}

type DownloadError = aws_sdk_rds::operation::download_db_log_file_portion::DownloadDBLogFilePortionError;

fn is_log_file_not_found(e: &aws_sdk_rds::error::SdkError<DownloadError>) -> bool {
    e.as_service_error()
        .is_some_and(DownloadError::is_db_log_file_not_found_fault)
}
