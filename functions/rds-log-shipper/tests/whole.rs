//! Handler tests of whole downloads (`DownloadCompleteLogFile`, see `catchup` and `complete`):
//! the real run with the SDK clients answered by aws-smithy-mocks, and the REST endpoint, which
//! no SDK models, answered by a fake HTTP connector that records every request it is sent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a panic

use std::collections::VecDeque;
use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_rds::operation::describe_db_log_files::DescribeDbLogFilesOutput;
use aws_sdk_rds::operation::download_db_log_file_portion::DownloadDbLogFilePortionOutput;
use aws_sdk_rds::types::DescribeDbLogFilesDetails;
use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_sdk_s3::operation::put_object::{PutObjectInput, PutObjectOutput};
use aws_sdk_s3::types::error::NoSuchKey;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use lambda_common::ErrorType;
use lambda_common::metrics::Metrics;
use rds_log_shipper::complete::CompleteDownloads;
use rds_log_shipper::{Config, Request, ShipError, Shipper, report};
use serde_json::Value;

const ROTATED: &str = "error/postgresql.log.2026-11-22-00";
const ACTIVE: &str = "error/postgresql.log.2026-11-22-01";
const SESSION_TOKEN: &str = "session-token-of-the-role";

/// What the fake endpoint answers, one reply a request (then: the file, in 64 KiB frames).
#[derive(Debug, Clone)]
enum Reply {
    Serve,
    Status(u16, &'static str),
    /// Sends this many bytes of the file, then nothing more (never ends).
    StallAfter(usize),
    /// Sends this many bytes of the file, then breaks off with an error.
    BreakAfter(usize),
}

#[derive(Debug)]
struct Fake {
    file: Bytes,
    replies: Mutex<VecDeque<Reply>>,
    /// Each request: its path and query, and its `Authorization`, `X-Amz-Date` and
    /// `X-Amz-Security-Token` headers.
    seen: Mutex<Vec<[Option<String>; 4]>>,
}

#[derive(Debug, Clone)]
struct FakeRds(Arc<Fake>);

impl FakeRds {
    fn new(file: &[u8], replies: &[Reply]) -> Self {
        Self(Arc::new(Fake {
            file: Bytes::copy_from_slice(file),
            replies: Mutex::new(replies.iter().cloned().collect()),
            seen: Mutex::new(Vec::new()),
        }))
    }

    fn requests(&self) -> Vec<[Option<String>; 4]> {
        self.0.seen.lock().unwrap().clone()
    }
}

/// A body sent in frames, that may stall or break off after `stop` bytes.
struct Frames {
    data: Bytes,
    sent: usize,
    stop: Option<(usize, bool)>,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let mut frame = 64 * 1024;
        if let Some((at, breaks)) = self.stop {
            if self.sent >= at {
                return if breaks {
                    Poll::Ready(Some(Err(std::io::Error::other("connection reset by peer"))))
                } else {
                    Poll::Pending // never woken: the stream stalls
                };
            }
            frame = frame.min(at - self.sent);
        }
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = frame.min(self.data.len());
        let chunk = self.data.split_to(n);
        self.sent += n;
        Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }
}

impl HttpConnector for FakeRds {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let header = |n: &str| request.headers().get(n).map(str::to_owned);
        let path = request
            .uri()
            .split_once("amazonaws.com")
            .map(|(_, p)| p.to_owned());
        self.0.seen.lock().unwrap().push([
            path,
            header("authorization"),
            header("x-amz-date"),
            header("x-amz-security-token"),
        ]);
        let reply = self.0.replies.lock().unwrap().pop_front().unwrap_or(Reply::Serve);
        let body = |stop| {
            SdkBody::from_body_1_x(Frames {
                data: self.0.file.clone(),
                sent: 0,
                stop,
            })
        };
        let (status, body) = match reply {
            Reply::Serve => (200, body(None)),
            Reply::StallAfter(n) => (200, body(Some((n, false)))),
            Reply::BreakAfter(n) => (200, body(Some((n, true)))),
            Reply::Status(status, text) => (status, SdkBody::from(text)),
        };
        let response = HttpResponse::new(StatusCode::try_from(status).unwrap(), body);
        HttpConnectorFuture::ready(Ok(response))
    }
}

fn config(extra: &[(&str, &str)]) -> Config {
    let vars: Vec<(String, String)> = [
        ("LOG_BUCKET", "archive"),
        ("INSTANCES", "db1"),
        ("RDS_REQUESTS_PER_SECOND", "12"),
        ("RDS_BURST", "300"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    Config::from_lookup(|k| vars.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone())).unwrap()
}

fn shipper(fake: &FakeRds, rds: &[&Rule], s3: &[&Rule], config: Config) -> Shipper {
    let credentials = Credentials::new("AKIDEXAMPLE", "secret", Some(SESSION_TOKEN.into()), None, "test");
    let complete = CompleteDownloads::new(
        SharedHttpConnector::new(fake.clone()),
        SharedCredentialsProvider::new(credentials),
        "us-east-1",
        "https://rds.us-east-1.amazonaws.com",
    );
    Shipper::new(
        mock_client!(aws_sdk_rds, RuleMode::MatchAny, rds.iter().copied()),
        mock_client!(aws_sdk_s3, RuleMode::MatchAny, s3.iter().copied()),
        config,
    )
    .with_complete_downloads(complete)
}

fn now_ms() -> i64 {
    i64::try_from(lambda_common::clock::now_ms()).unwrap()
}

/// The rotated file (quiet since 1970) and, when `active` holds bytes, the one being written.
fn listing(size: usize, active: usize) -> Rule {
    mock!(aws_sdk_rds::Client::describe_db_log_files).then_output(move || {
        let file = |name: &str, size: usize, written: i64| {
            DescribeDbLogFilesDetails::builder()
                .log_file_name(name)
                .size(i64::try_from(size).unwrap())
                .last_written(written)
                .build()
        };
        let mut out = DescribeDbLogFilesOutput::builder().describe_db_log_files(file(ROTATED, size, 1_000));
        if active > 0 {
            out = out.describe_db_log_files(file(ACTIVE, active, now_ms()));
        }
        out.build()
    })
}

fn no_checkpoint() -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build()))
}

fn checkpoint_with(json: String) -> Rule {
    mock!(aws_sdk_s3::Client::get_object).then_output(move || {
        GetObjectOutput::builder()
            .e_tag("\"cp1\"")
            .body(aws_sdk_s3::primitives::ByteStream::from(
                json.clone().into_bytes(),
            ))
            .build()
    })
}

/// Every PutObject (checkpoints and chunks), captured: (key, body).
type Puts = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

fn puts(captured: &Puts) -> Rule {
    let captured = captured.clone();
    mock!(aws_sdk_s3::Client::put_object).then_compute_output(move |r: &PutObjectInput| {
        let body = r.body().bytes().unwrap_or_default().to_vec();
        captured
            .lock()
            .unwrap()
            .push((r.key().unwrap_or_default().to_owned(), body));
        PutObjectOutput::builder().e_tag("\"e\"").build()
    })
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The chunk objects written (key, decompressed bytes) and the checkpoints written (JSON).
fn written(captured: &Puts) -> (Vec<(String, Vec<u8>)>, Vec<Value>) {
    let all = captured.lock().unwrap().clone();
    let (checkpoints, chunks): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|(k, _)| k.ends_with("checkpoint.json"));
    (
        chunks.into_iter().map(|(k, b)| (k, gunzip(&b))).collect(),
        checkpoints
            .iter()
            .map(|(_, b)| serde_json::from_slice(b).unwrap())
            .collect(),
    )
}

fn log_text(bytes: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut n = 0u64;
    while s.len() < bytes {
        s.push_str(&format!(
            "2026-11-22 00:00:00 UTC [{}] LOG:  statement: SELECT {n}\n",
            1000 + n % 97
        ));
        n += 1;
    }
    s.into_bytes()
}

async fn ship(s: &Shipper, deadline: Option<Instant>) -> (Result<Value, ShipError>, Metrics) {
    let mut metrics = Metrics::new("Ns", report::SERVICE);
    let request = Request::Ship {
        instance: "db1".into(),
    };
    let out = s.handle(request, deadline, &mut metrics).await;
    (out, metrics)
}

/// The sum of metric `name` across the invocation's documents (under `[Service]` only).
fn total(m: &Metrics, name: &str) -> f64 {
    m.documents(0)
        .iter()
        .filter(|d| {
            d["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
                .as_array()
                .unwrap()
                .len()
                == 1
        })
        .filter_map(|d| d[name].as_f64())
        .sum()
}

fn chunk_key(file: &str, start: u64) -> String {
    let name = file.rsplit('/').next().unwrap();
    format!("/{name}/g0000-{start:020}.log.gz")
}

#[tokio::test]
async fn a_rotated_file_is_downloaded_whole_in_one_signed_request_and_the_active_one_in_portions() {
    let file = log_text(300_000);
    let fake = FakeRds::new(&file, &[]);
    let active = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.log_file_name() == Some(ACTIVE) && r.marker() == Some("0"))
        .then_output(|| {
            DownloadDbLogFilePortionOutput::builder()
                .log_file_data("active\n")
                .marker("1:7")
                .additional_data_pending(false)
                .build()
        });
    let captured = Puts::default();
    let (list, cp, put) = (listing(file.len(), 7), no_checkpoint(), puts(&captured));
    let s = shipper(&fake, &[&list, &active], &[&cp, &put], config(&[]));
    let (out, metrics) = ship(&s, None).await;
    let out = out.unwrap();
    assert_eq!(out["bytes"].as_u64(), Some(file.len() as u64 + 7), "{out}");
    assert_eq!(
        (out["objects"].as_u64(), out["complete"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(active.num_calls(), 1, "the active file is read in portions");
    // One request, to the documented path, signed for rds in the region with the role's token.
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let [path, authorization, date, token] = requests[0].clone();
    assert_eq!(
        path.as_deref(),
        Some("/v19/downloadCompleteLogFile/db1/error/postgresql.log.2026-11-22-00")
    );
    let authorization = authorization.unwrap();
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && authorization.contains(
                "/us-east-1/rds/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature="
            ),
        "{authorization}"
    );
    assert!(date.is_some_and(|d| d.len() == 16 && d.ends_with('Z')));
    assert_eq!(token.as_deref(), Some(SESSION_TOKEN));
    // The whole file in one object, written ahead with no RDS marker, then committed.
    let (chunks, checkpoints) = written(&captured);
    let whole = chunks
        .iter()
        .find(|(k, _)| k.ends_with(&chunk_key(ROTATED, 0)))
        .unwrap();
    assert!(whole.1 == file, "the object holds the file's bytes");
    let entry = |cp: &Value| cp["files"][ROTATED].clone();
    assert_eq!(
        entry(&checkpoints[0])["pending"]["endMarker"],
        "",
        "{}",
        checkpoints[0]
    );
    assert_eq!(entry(&checkpoints[0])["shipped"], 0);
    let last = entry(checkpoints.last().unwrap());
    assert_eq!(
        (last["marker"].as_str(), last["shipped"].as_u64()),
        (Some(""), Some(file.len() as u64))
    );
    assert!(
        last["pending"].is_null()
            && last["head"]
                .as_str()
                .unwrap()
                .starts_with("2026-11-22 00:00:00 UTC")
    );
    assert_eq!(total(&metrics, "BytesShipped"), (file.len() + 7) as f64);
    assert_eq!(total(&metrics, "ThrottledRequests"), 0.0);
}

#[tokio::test]
async fn a_file_larger_than_a_chunk_is_cut_at_line_ends_from_one_stream() {
    let file = log_text(2_600_000);
    let fake = FakeRds::new(&file, &[]);
    let captured = Puts::default();
    let (list, cp, put) = (listing(file.len(), 0), no_checkpoint(), puts(&captured));
    let s = shipper(&fake, &[&list], &[&cp, &put], config(&[("MAX_CHUNK_MB", "1")]));
    let out = ship(&s, None).await.0.unwrap();
    assert_eq!(
        (out["bytes"].as_u64(), out["objects"].as_u64()),
        (Some(file.len() as u64), Some(3)),
        "{out}"
    );
    assert_eq!(fake.requests().len(), 1, "one request for the three chunks");
    let (chunks, _) = written(&captured);
    let mut joined = Vec::new();
    for (key, data) in &chunks {
        assert!(key.ends_with(&chunk_key(ROTATED, joined.len() as u64)), "{key}");
        assert!(data.len() >= 1 << 20 || joined.len() + data.len() == file.len());
        assert_eq!(data.last(), Some(&b'\n'), "a chunk ends a line");
        joined.extend_from_slice(data);
    }
    assert!(joined == file);
}

#[tokio::test]
async fn throttled_whole_downloads_back_off_within_the_limit_and_are_counted() {
    let throttling = "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>";
    let file = log_text(1_000);
    let fake = FakeRds::new(&file, &[Reply::Status(429, ""), Reply::Status(400, throttling)]);
    let captured = Puts::default();
    let (list, cp, put) = (listing(file.len(), 0), no_checkpoint(), puts(&captured));
    let s = shipper(&fake, &[&list], &[&cp, &put], config(&[]));
    let (out, metrics) = ship(&s, None).await;
    assert_eq!(out.unwrap()["bytes"].as_u64(), Some(file.len() as u64));
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(total(&metrics, "ThrottledRequests"), 2.0);
}

#[tokio::test]
async fn a_file_gone_is_an_anomaly_and_a_missing_instance_an_error() {
    let gone = "<ErrorResponse><Error><Code>DBLogFileNotFoundFault</Code><Message>not found</Message></Error></ErrorResponse>";
    let fake = FakeRds::new(b"x\n", &[Reply::Status(404, gone)]);
    let captured = Puts::default();
    let (list, cp, put) = (listing(2, 0), no_checkpoint(), puts(&captured));
    let s = shipper(&fake, &[&list], &[&cp, &put], config(&[]));
    let out = ship(&s, None).await.0.unwrap();
    assert_eq!(out["objects"], 0);
    assert!(
        out["anomalies"][0]
            .as_str()
            .unwrap()
            .contains("before its whole download"),
        "{out}"
    );
    let missing = "<ErrorResponse><Error><Code>DBInstanceNotFound</Code><Message>DBInstance db1 not found.</Message></Error></ErrorResponse>";
    let fake = FakeRds::new(b"x\n", &[Reply::Status(404, missing)]);
    let (list, cp, put) = (listing(2, 0), no_checkpoint(), puts(&captured));
    let s = shipper(&fake, &[&list], &[&cp, &put], config(&[]));
    let err = ship(&s, None).await.0.unwrap_err();
    assert_eq!(err.error_type(), "AwsError");
    assert!(err.to_string().contains("HTTP 404: DBInstanceNotFound"), "{err}");
    assert_eq!(fake.requests().len(), 1, "a missing instance is not retried");
}

/// The checkpoint of `ROTATED` (`file`) shipped to byte 2,000 by a whole download (no RDS
/// marker), with its first bytes recorded; and those bytes.
fn shipped_whole_to_2000(file: &[u8]) -> (Rule, String) {
    let head = String::from_utf8_lossy(&file[..1024]).into_owned();
    let cp = checkpoint_with(format!(
        r#"{{"version":1,"instance":"db1","fullListingAt":0,"files":{{"{ROTATED}":
            {{"marker":"","shipped":2000,"size":{},"lastWritten":1000,"generation":0,"date":"2026-11-22","head":{}}}}}}}"#,
        file.len(),
        serde_json::to_string(&head).unwrap()
    ));
    (cp, head)
}

#[tokio::test]
async fn the_rest_of_a_whole_download_is_downloaded_whole_past_what_was_shipped() {
    let file = log_text(5_000);
    let (cp, head) = shipped_whole_to_2000(&file);
    // Replaced under its name? Its beginning, read in one portion from "0", says no.
    let beginning = head;
    let first = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.marker() == Some("0"))
        .then_output(move || {
            DownloadDbLogFilePortionOutput::builder()
                .log_file_data(beginning.clone())
                .marker("1:1024")
                .additional_data_pending(true)
                .build()
        });
    let fake = FakeRds::new(&file, &[]);
    let captured = Puts::default();
    let (list, put) = (listing(file.len(), 0), puts(&captured));
    let s = shipper(&fake, &[&list, &first], &[&cp, &put], config(&[]));
    let out = ship(&s, None).await.0.unwrap();
    assert_eq!(out["bytes"].as_u64(), Some(file.len() as u64 - 2000), "{out}");
    assert_eq!((fake.requests().len(), first.num_calls()), (1, 1));
    let (chunks, _) = written(&captured);
    assert_eq!(chunks.len(), 1);
    assert!(
        chunks[0].0.ends_with(&chunk_key(ROTATED, 2000)),
        "{}",
        chunks[0].0
    );
    assert!(chunks[0].1 == file[2000..], "only the bytes not shipped yet");
}

#[tokio::test]
async fn with_whole_downloads_off_the_rest_is_read_past_from_the_beginning_not_from_its_head_read() {
    // Begun by a whole download (no RDS marker), then COMPLETE_DOWNLOADS=false: the portions
    // read from "0" past the 2,000 bytes shipped. The file is small: the head read from "0"
    // returns all of it, which must not stand in for that read (it starts at byte 0, the
    // resumed work at the beginning with 2,000 bytes to read past).
    let file = log_text(5_000);
    let (cp, head) = shipped_whole_to_2000(&file);
    let whole = String::from_utf8_lossy(&file).into_owned();
    let end = format!("1:{}", file.len());
    let from_start = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.marker() == Some("0"))
        .then_output(move || {
            DownloadDbLogFilePortionOutput::builder()
                .log_file_data(whole.clone())
                .marker(end.clone())
                .additional_data_pending(false)
                .build()
        });
    let fake = FakeRds::new(&file, &[]);
    let captured = Puts::default();
    let (list, put) = (listing(file.len(), 0), puts(&captured));
    let off = config(&[("COMPLETE_DOWNLOADS", "false")]);
    let s = shipper(&fake, &[&list, &from_start], &[&cp, &put], off);
    let out = ship(&s, None).await.0.unwrap();
    assert_eq!(out["bytes"].as_u64(), Some(file.len() as u64 - 2000), "{out}");
    assert!(fake.requests().is_empty(), "no whole download");
    let (chunks, checkpoints) = written(&captured);
    assert_eq!(chunks.len(), 1);
    assert!(chunks[0].1 == file[2000..], "exactly the bytes not shipped yet");
    let last = checkpoints.last().unwrap();
    assert_eq!(last["files"][ROTATED]["shipped"], file.len() as u64, "{last}");
    assert_eq!(
        last["files"][ROTATED]["head"],
        serde_json::json!(head),
        "its first bytes stay its own"
    );
}

#[tokio::test]
async fn a_deadline_mid_stream_commits_what_was_streamed() {
    let file = log_text(1_000_000);
    let fake = FakeRds::new(&file, &[Reply::StallAfter(300_000)]);
    let captured = Puts::default();
    let (list, cp, put) = (listing(file.len(), 0), no_checkpoint(), puts(&captured));
    let s = shipper(
        &fake,
        &[&list],
        &[&cp, &put],
        config(&[("DEADLINE_RESERVE_SECONDS", "1")]),
    );
    let started = Instant::now();
    let out = ship(&s, Some(started + Duration::from_millis(2_500)))
        .await
        .0
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "stopped before the deadline"
    );
    assert_eq!(
        (out["bytes"].as_u64(), out["complete"].as_bool()),
        (Some(300_000), Some(false)),
        "{out}"
    );
    let (chunks, checkpoints) = written(&captured);
    assert!(chunks.len() == 1 && chunks[0].1 == file[..300_000]);
    let last = &checkpoints.last().unwrap()["files"][ROTATED];
    assert_eq!(
        (last["marker"].as_str(), last["shipped"].as_u64()),
        (Some(""), Some(300_000))
    );
}

#[tokio::test]
async fn a_stream_broken_mid_file_aborts_its_upload_and_records_nothing() {
    // Incompressible bytes: more than a 5 MiB part, so a multipart upload is under way.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let file: Vec<u8> = (0..7_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let fake = FakeRds::new(&file, &[Reply::BreakAfter(6_500_000)]);
    let create = mock!(aws_sdk_s3::Client::create_multipart_upload).then_output(|| {
        aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadOutput::builder()
            .upload_id("u1")
            .build()
    });
    let part = mock!(aws_sdk_s3::Client::upload_part).then_output(|| {
        aws_sdk_s3::operation::upload_part::UploadPartOutput::builder()
            .e_tag("\"p\"")
            .build()
    });
    let abort = mock!(aws_sdk_s3::Client::abort_multipart_upload).then_output(|| {
        aws_sdk_s3::operation::abort_multipart_upload::AbortMultipartUploadOutput::builder().build()
    });
    let captured = Puts::default();
    let (list, cp, put) = (listing(file.len(), 0), no_checkpoint(), puts(&captured));
    let config = config(&[("PART_SIZE_MB", "5")]);
    let s = shipper(&fake, &[&list], &[&cp, &put, &create, &part, &abort], config);
    let err = ship(&s, None).await.0.unwrap_err();
    assert_eq!(err.error_type(), "AwsError");
    assert!(err.to_string().contains("stream broke off"), "{err}");
    assert_eq!(
        (create.num_calls(), part.num_calls(), abort.num_calls()),
        (1, 1, 1)
    );
    let (chunks, checkpoints) = written(&captured);
    assert!(chunks.is_empty());
    assert!(
        checkpoints
            .iter()
            .all(|c| c["files"][ROTATED]["pending"].is_null()),
        "nothing written ahead: {checkpoints:?}"
    );
}

#[tokio::test]
async fn a_binary_file_skipped_before_is_downloaded_whole_once_it_stopped() {
    let file = b"SQLTRACE\x00\x01\x02\xff binary trace".to_vec();
    let cp = checkpoint_with(format!(
        r#"{{"version":1,"instance":"db1","fullListingAt":0,"files":{{"{ROTATED}":
            {{"marker":"0","shipped":{0},"size":{0},"lastWritten":1000,"generation":0,"date":"2026-11-22","binary":true}}}}}}"#,
        file.len()
    ));
    let fake = FakeRds::new(&file, &[]);
    let captured = Puts::default();
    let (list, put) = (listing(file.len(), 0), puts(&captured));
    let s = shipper(&fake, &[&list], &[&cp, &put], config(&[]));
    let out = ship(&s, None).await.0.unwrap();
    assert_eq!(out["bytes"].as_u64(), Some(file.len() as u64), "{out}");
    let (chunks, checkpoints) = written(&captured);
    assert!(chunks[0].0.ends_with(&chunk_key(ROTATED, 0)) && chunks[0].1 == file);
    let last = &checkpoints.last().unwrap()["files"][ROTATED];
    assert!(last["binary"].is_null(), "no longer waiting: {last}");
}
