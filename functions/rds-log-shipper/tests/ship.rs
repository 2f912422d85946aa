//! Handler tests: the real shipping run and SDK clients, every call answered by aws-smithy-mocks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a panic

use std::sync::{Arc, Mutex};

use aws_sdk_rds::operation::describe_db_log_files::DescribeDbLogFilesOutput;
use aws_sdk_rds::operation::download_db_log_file_portion::{
    DownloadDBLogFilePortionError, DownloadDbLogFilePortionOutput,
};
use aws_sdk_rds::types::DescribeDbLogFilesDetails;
use aws_sdk_rds::types::error::DbLogFileNotFoundFault;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::put_object::{PutObjectError, PutObjectOutput};
use aws_sdk_s3::types::error::NoSuchKey;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use lambda_common::metrics::Metrics;
use rds_log_shipper::portion::TRUNCATION_SUFFIX;
use rds_log_shipper::{Config, Request, ShipError, Shipper, report};
use serde_json::Value;

fn config() -> Config {
    Config::from_lookup(|k| match k {
        "LOG_BUCKET" => Some("archive".into()),
        "INSTANCES" => Some("db1".into()),
        "RDS_REQUESTS_PER_SECOND" => Some("12".into()),
        "RDS_BURST" => Some("300".into()),
        _ => None,
    })
    .unwrap()
}

fn shipper(rds: &[&Rule], s3: &[&Rule]) -> Shipper {
    Shipper::new(
        mock_client!(aws_sdk_rds, RuleMode::MatchAny, rds.iter().copied()),
        mock_client!(aws_sdk_s3, RuleMode::MatchAny, s3.iter().copied()),
        config(),
    )
}

fn listing(size: i64) -> Rule {
    mock!(aws_sdk_rds::Client::describe_db_log_files).then_output(move || {
        DescribeDbLogFilesOutput::builder()
            .describe_db_log_files(
                DescribeDbLogFilesDetails::builder()
                    .log_file_name("error/postgresql.log")
                    .size(size)
                    .last_written(1_000)
                    .build(),
            )
            .build()
    })
}

fn no_checkpoint() -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build()))
}

fn puts() -> Rule {
    mock!(aws_sdk_s3::Client::put_object).then_output(|| PutObjectOutput::builder().e_tag("\"e1\"").build())
}

fn portion(data: &'static str, marker: &'static str, pending: bool) -> DownloadDbLogFilePortionOutput {
    DownloadDbLogFilePortionOutput::builder()
        .log_file_data(data)
        .marker(marker)
        .additional_data_pending(pending)
        .build()
}

async fn run(s: &Shipper) -> Value {
    ship(s).await.0.unwrap()
}

/// One instance shipped, as the state machine asks: the answer and the invocation's metrics.
async fn ship(s: &Shipper) -> (Result<Value, ShipError>, Vec<Datum>) {
    invoke(
        s,
        Request::Ship {
            instance: "db1".into(),
        },
    )
    .await
}

async fn invoke(s: &Shipper, request: Request) -> (Result<Value, ShipError>, Vec<Datum>) {
    let mut metrics = Metrics::new("Ns", report::SERVICE);
    let out = s.handle(request, None, &mut metrics).await;
    (out, data(&metrics))
}

/// A metric as the documents carry it: name, its dimensions beyond `Service`, its values, and
/// the document's `DBInstanceIdentifier` property.
#[derive(Debug, Clone, PartialEq)]
struct Datum {
    name: String,
    dims: Vec<(String, String)>,
    values: Vec<f64>,
    instance: Option<String>,
}

fn data(m: &Metrics) -> Vec<Datum> {
    let mut out = Vec::new();
    for doc in m.documents(0) {
        assert_eq!(doc["Service"], report::SERVICE);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        let sets = directive["Dimensions"].as_array().unwrap();
        let finest: Vec<String> = sets
            .last()
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .filter(|k| k != "Service")
            .collect();
        for m in directive["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            let values = match &doc[name] {
                Value::Array(a) => a.iter().map(|v| v.as_f64().unwrap()).collect(),
                v => vec![v.as_f64().unwrap()],
            };
            out.push(Datum {
                name: name.to_owned(),
                dims: finest
                    .iter()
                    .map(|k| (k.clone(), doc[k].as_str().unwrap().to_owned()))
                    .collect(),
                values,
                instance: doc["DBInstanceIdentifier"].as_str().map(str::to_owned),
            });
        }
    }
    out
}

/// The sum of metric `name` under exactly the dimensions `dims` (beyond `Service`).
fn sum(data: &[Datum], name: &str, dims: &[(&str, &str)]) -> f64 {
    data.iter()
        .filter(|d| d.name == name)
        .filter(|d| {
            d.dims.len() == dims.len()
                && dims
                    .iter()
                    .all(|(k, v)| d.dims.iter().any(|(dk, dv)| dk == k && dv == v))
        })
        .flat_map(|d| d.values.iter())
        .sum()
}

/// Every metric of the catalogue the test names, with its sum (`LagSeconds`: per instance).
fn lags(data: &[Datum]) -> Vec<(Option<String>, f64)> {
    data.iter()
        .filter(|d| d.name == "LagSeconds")
        .map(|d| (d.instance.clone(), d.values[0]))
        .collect()
}

#[tokio::test]
async fn a_file_is_shipped_then_checkpointed_ahead_and_after() {
    let download = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.marker() == Some("0"))
        .then_output(|| portion("line 1\nline 2\n", "1:14", false));
    let checkpoint_writes = mock!(aws_sdk_s3::Client::put_object)
        .match_requests(|r| r.key().is_some_and(|k| k.ends_with("checkpoint.json")))
        .then_output(|| PutObjectOutput::builder().e_tag("\"c\"").build());
    let chunk = mock!(aws_sdk_s3::Client::put_object)
        .match_requests(|r| {
            r.key()
                .is_some_and(|k| k.ends_with("/postgresql.log/g0000-00000000000000000000.log.gz"))
                && r.if_none_match() == Some("*")
        })
        .then_output(|| PutObjectOutput::builder().e_tag("\"o\"").build());
    let (list, cp) = (listing(14), no_checkpoint());
    let s = shipper(&[&list, &download], &[&cp, &checkpoint_writes, &chunk]);
    let (out, metrics) = ship(&s).await;
    let out = out.unwrap();
    let i = &out;
    assert_eq!(
        (
            i["bytes"].as_u64(),
            i["objects"].as_u64(),
            i["complete"].as_bool()
        ),
        (Some(14), Some(1), Some(true)),
        "{out}"
    );
    assert_eq!(chunk.num_calls(), 1, "the chunk is created once, only if absent");
    // Pending (write-ahead), commit, and the final listing state.
    assert_eq!(checkpoint_writes.num_calls(), 3);
    // The metrics say as much: 14 bytes in one object of one file, nothing lost, caught up.
    let totals: Vec<f64> = [
        "BytesShipped",
        "FilesShipped",
        "ObjectsWritten",
        "BytesLost",
        "Anomalies",
        "ThrottledRequests",
    ]
    .iter()
    .map(|name| sum(&metrics, name, &[]))
    .collect();
    assert_eq!(totals, [14.0, 1.0, 1.0, 0.0, 0.0, 0.0], "{metrics:?}");
    assert_eq!(lags(&metrics), [(Some("db1".to_owned()), 0.0)]);
    assert_eq!(i["lagSeconds"], 0.0);
    // The fleet is the summarize step's (a ship step is one iteration of the Map).
    assert!(
        metrics
            .iter()
            .all(|d| d.name != "FleetMaxLagSeconds" && d.name != "InstancesFailed"),
        "{metrics:?}"
    );
}

#[tokio::test]
async fn a_truncated_portion_is_read_again_for_the_lines_before_its_cut() {
    let truncated = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.number_of_lines() == Some(10_000))
        .then_output(|| {
            DownloadDbLogFilePortionOutput::builder()
                .log_file_data(format!("short\naaaa{TRUNCATION_SUFFIX}"))
                .marker("1:999")
                .additional_data_pending(false)
                .build()
        });
    // One complete line before the cut: one line, from the same marker.
    let fewer = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.number_of_lines() == Some(1) && r.marker() == Some("0"))
        .then_output(|| portion("short\n", "1:6", false));
    let (list, cp, p) = (listing(6), no_checkpoint(), puts());
    let s = shipper(&[&list, &truncated, &fewer], &[&cp, &p]);
    let out = run(&s).await;
    assert_eq!(out["bytes"], 6, "{out}");
    assert_eq!((truncated.num_calls(), fewer.num_calls()), (1, 1));
}

/// RDS answering from `file` as it is seen to: `NumberOfLines` lines from the marker ("0", or
/// "1:<offset>" as this model writes them); over 1 MB, cut at 1 MB with its notice and the marker
/// past every line asked for. Every request is recorded: (marker, lines).
fn rds_serving(file: Vec<u8>, asked: Arc<Mutex<Vec<(String, i32)>>>) -> Rule {
    mock!(aws_sdk_rds::Client::download_db_log_file_portion).then_compute_output(move |r| {
        let marker = r.marker().unwrap_or("0").to_owned();
        let lines = r.number_of_lines().unwrap_or(10_000);
        asked.lock().unwrap().push((marker.clone(), lines));
        let at: usize = marker.rsplit_once(':').map_or(0, |(_, o)| o.parse().unwrap());
        let mut end = at;
        for _ in 0..lines {
            match file[end..].iter().position(|b| *b == b'\n') {
                Some(i) => end += i + 1,
                None => end = file.len(),
            }
        }
        let data = if end - at > 1_048_576 {
            let kept = &file[at..at + 1_048_576 - TRUNCATION_SUFFIX.len()];
            format!("{}{TRUNCATION_SUFFIX}", String::from_utf8_lossy(kept))
        } else {
            String::from_utf8_lossy(&file[at..end]).into_owned()
        };
        DownloadDbLogFilePortionOutput::builder()
            .log_file_data(data)
            .marker(format!("1:{end}"))
            .additional_data_pending(end < file.len())
            .build()
    })
}

#[tokio::test]
async fn lines_over_1_mb_cost_at_most_three_requests_each_in_this_order() {
    // Three 100-byte lines, a 2,000,000-byte line, a 1,500,000-byte line, two 100-byte lines.
    let line = |len: usize, c: char| format!("{}\n", c.to_string().repeat(len - 1));
    let file = [
        line(100, 'a').repeat(3),
        line(2_000_000, 'L'),
        line(1_500_000, 'M'),
        line(100, 'b').repeat(2),
    ]
    .concat()
    .into_bytes();
    let size = file.len();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let download = rds_serving(file, asked.clone());
    let (list, cp, p) = (listing(size as i64), no_checkpoint(), puts());
    let s = shipper(&[&list, &download], &[&cp, &p]);
    let (out, metrics) = ship(&s).await;
    let out = out.unwrap();
    let asked: Vec<(String, i32)> = asked.lock().unwrap().clone();
    let expected = [
        // Cut in the long line after three lines: those three, then the cut line alone.
        ("0", 10_000),
        ("0", 3),
        ("1:300", 1),
        // As many as 100-byte lines call for: cut in its first line, which is asked for alone.
        ("1:2000300", 9_000),
        ("1:2000300", 1),
        // Right after another cut line: the next line alone (a third line over 1 MB would cost
        // one request); a short one, so back to 9,000, not 1 nor 10,000; the end is RDS's empty
        // answer with nothing pending.
        ("1:3500300", 1),
        ("1:3500400", 9_000),
        ("1:3500500", 9_000),
    ];
    let expected: Vec<(String, i32)> = expected.iter().map(|(m, n)| ((*m).to_owned(), *n)).collect();
    assert_eq!(asked, expected);
    // Every byte received shipped once; each cut line flagged, and what RDS dropped counted.
    let kept = 1_048_576 - TRUNCATION_SUFFIX.len();
    assert_eq!(out["bytes"], 300 + 2 * 1_048_576 + 200, "{out}");
    assert_eq!(sum(&metrics, "Anomalies", &[("Kind", "line_truncated")]), 2.0);
    assert_eq!(out["bytesLost"], (3_500_000 - 2 * kept) as u64, "{out}");
}

#[tokio::test]
async fn a_file_rotated_away_mid_read_keeps_what_was_read() {
    let first = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.marker() == Some("0"))
        .then_output(|| portion("kept\n", "1:5", true));
    let gone = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.marker() == Some("1:5"))
        .then_error(|| {
            DownloadDBLogFilePortionError::DbLogFileNotFoundFault(
                DbLogFileNotFoundFault::builder()
                    .meta(ErrorMetadata::builder().code("DBLogFileNotFoundFault").build())
                    .build(),
            )
        });
    let (list, cp, p) = (listing(100), no_checkpoint(), puts());
    let s = shipper(&[&list, &first, &gone], &[&cp, &p]);
    let out = run(&s).await;
    let i = &out;
    assert_eq!(i["bytes"], 5, "{out}");
    assert!(
        i["anomalies"][0]
            .as_str()
            .unwrap()
            .contains("removed or rotated away")
    );
}

#[tokio::test]
async fn binary_files_are_skipped_with_a_warning() {
    let binary = mock!(aws_sdk_rds::Client::download_db_log_file_portion).then_error(|| {
        DownloadDBLogFilePortionError::generic(
            ErrorMetadata::builder()
                .code("InvalidParameterValue")
                .message("This file contains binary data and should be downloaded instead of viewed.")
                .build(),
        )
    });
    let (list, cp, p) = (listing(100), no_checkpoint(), puts());
    let s = shipper(&[&list, &binary], &[&cp, &p]);
    let out = run(&s).await;
    let i = &out;
    assert_eq!(i["objects"], 0);
    assert!(
        i["anomalies"][0]
            .as_str()
            .unwrap()
            .contains("binary file skipped"),
        "{out}"
    );
}

fn conflicting_shipper() -> (Shipper, Rule) {
    let download =
        mock!(aws_sdk_rds::Client::download_db_log_file_portion).then_output(|| portion("x\n", "1:2", false));
    let conflict = mock!(aws_sdk_s3::Client::put_object)
        .match_requests(|r| r.key().is_some_and(|k| k.ends_with("checkpoint.json")))
        .then_error(|| PutObjectError::generic(ErrorMetadata::builder().code("PreconditionFailed").build()));
    let chunk = puts();
    let (list, cp) = (listing(2), no_checkpoint());
    (shipper(&[&list, &download], &[&cp, &conflict, &chunk]), chunk)
}

#[tokio::test]
async fn a_concurrent_run_that_moved_the_checkpoint_first_stops_this_one() {
    // One instance (a state machine step): the invocation fails with a stable error type, for
    // the state machine's Retry and Catch.
    let (s, chunk) = conflicting_shipper();
    let (out, metrics) = ship(&s).await;
    let err = out.unwrap_err();
    assert_eq!(
        sum(&metrics, "InstancesFailed", &[]),
        0.0,
        "a failed ship step is counted by the summarize step, once"
    );
    // Listed, then failed before its 2 bytes (last written at epoch 1 s) were shipped: the lag
    // is still measured, as the age of that file.
    let lag = lags(&metrics);
    assert_eq!(lag.len(), 1, "{lag:?}");
    assert!(lag[0].1 > 1.7e9, "{lag:?}");
    assert_eq!(lambda_common::ErrorType::error_type(&err), "CheckpointConflict");
    assert!(
        err.to_string().contains("another run advanced the checkpoint"),
        "{err}"
    );
    assert_eq!(
        chunk.num_calls(),
        0,
        "nothing is uploaded once the write-ahead record fails"
    );
    // A scheduled run over the selection: the instance's error is in the summary, the run goes on.
    let (s, _) = conflicting_shipper();
    let (out, metrics) = invoke(&s, Request::Run).await;
    let out = out.unwrap();
    assert_eq!(sum(&metrics, "InstancesFailed", &[]), 1.0, "{metrics:?}");
    assert_eq!(out["instancesFailed"], 1, "{out}");
    let i = &out["instances"][0];
    assert!(
        i["error"]
            .as_str()
            .unwrap()
            .contains("another run advanced the checkpoint"),
        "{out}"
    );
}

fn checkpoint_with(json: &'static str) -> Rule {
    mock!(aws_sdk_s3::Client::get_object).then_output(move || {
        aws_sdk_s3::operation::get_object::GetObjectOutput::builder()
            .e_tag("\"cp1\"")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(json.as_bytes()))
            .build()
    })
}

#[tokio::test]
async fn a_recent_pending_chunk_without_its_object_is_left_to_the_run_that_recorded_it() {
    // Another run recorded this chunk and may still be uploading it (its deadline is far off):
    // this run must neither forget it nor read the file again under the same key.
    let cp = checkpoint_with(
        r#"{"version":1,"instance":"db1","fullListingAt":0,"files":{"error/postgresql.log":
            {"marker":"1:2","shipped":2,"size":2,"lastWritten":500,"generation":0,"date":"2026-11-22",
             "pending":{"key":"k","start":2,"end":4,"endMarker":"1:4","until":99999999999999}}}}"#,
    );
    let head = mock!(aws_sdk_s3::Client::head_object).then_error(|| {
        aws_sdk_s3::operation::head_object::HeadObjectError::NotFound(
            aws_sdk_s3::types::error::NotFound::builder().build(),
        )
    });
    let download = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .then_output(|| portion("zz\n", "1:7", false));
    let put = puts();
    let list = listing(7);
    let s = shipper(&[&list, &download], &[&cp, &head, &put]);
    let out = run(&s).await;
    assert_eq!(out["complete"], false, "{out}");
    assert_eq!(out["bytes"], 0, "{out}");
    assert_eq!(download.num_calls(), 0);
    // Only the hourly full-listing save (no file entry changed).
    let saved = put.num_calls();
    assert!(saved <= 1, "{saved}");
}

#[tokio::test]
async fn a_file_replaced_under_its_name_is_shipped_again_from_its_beginning() {
    // The checkpoint knows how the file began; the file listed under that name now begins
    // differently (and is larger): a new generation from marker "0", not a resume.
    let cp = checkpoint_with(
        r#"{"version":1,"instance":"db1","fullListingAt":0,"files":{"error/postgresql.log":
            {"marker":"1:6","shipped":6,"size":6,"lastWritten":500,"generation":0,"date":"2026-11-22",
             "head":"day 1\n"}}}"#,
    );
    let beginning = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.marker() == Some("0"))
        .then_output(|| portion("day 2, longer\n", "1:14", false));
    let resumed = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.marker() == Some("1:6"))
        .then_output(|| portion("longer\n", "1:14", false));
    let put = puts();
    let list = listing(14);
    let s = shipper(&[&list, &beginning, &resumed], &[&cp, &put]);
    let out = run(&s).await;
    assert_eq!(out["bytes"], 14, "{out}");
    assert_eq!(resumed.num_calls(), 0, "the old marker is not used");
    assert!(
        out["anomalies"][0]
            .as_str()
            .unwrap()
            .contains("replaced under the same name"),
        "{out}"
    );
}

/// A file resumed at byte 6 whose recorded beginning is "day 1\n", now `file`: the requests RDS
/// served (marker, lines) and the run's answer.
async fn resumed(file: Vec<u8>) -> (Vec<(String, i32)>, Value) {
    let cp = checkpoint_with(
        r#"{"version":1,"instance":"db1","fullListingAt":0,"files":{"error/postgresql.log":
            {"marker":"1:6","shipped":6,"size":6,"lastWritten":500,"generation":0,"date":"2026-11-22",
             "head":"day 1\n"}}}"#,
    );
    let asked = Arc::new(Mutex::new(Vec::new()));
    let rds = rds_serving(file.clone(), asked.clone());
    let (list, put) = (listing(file.len() as i64), puts());
    let s = shipper(&[&list, &rds], &[&cp, &put]);
    let out = run(&s).await;
    let asked = asked.lock().unwrap().clone();
    (asked, out)
}

#[tokio::test]
async fn a_small_file_that_grew_costs_one_portion_request_its_beginning_read_whole() {
    // At most 1 MB: its beginning, asked whole, holds the new bytes too; no resumed read.
    let (asked, out) = resumed(b"day 1\nday 1, later\n".to_vec()).await;
    assert_eq!(asked, [("0".to_owned(), 10_000)], "{out}");
    assert_eq!(
        (out["bytes"].as_u64(), out["complete"].as_bool()),
        (Some(13), Some(true)),
        "{out}"
    );
    // Over 1 MB: the beginning is a few lines, then the file is resumed from its marker.
    let mut big = b"day 1\n".to_vec();
    for i in 0..11_000 {
        big.extend_from_slice(format!("{i:>99}\n").as_bytes());
    }
    let (asked, out) = resumed(big.clone()).await;
    assert_eq!(asked[0], ("0".to_owned(), 64), "{out}");
    assert_eq!(asked[1].0, "1:6", "resumed where it was shipped to: {asked:?}");
    assert_eq!(out["bytes"].as_u64(), Some(big.len() as u64 - 6), "{out}");
}

#[tokio::test]
async fn a_throttled_call_fails_the_step_as_throttled_and_others_as_aws_errors() {
    use aws_sdk_rds::operation::describe_db_log_files::DescribeDBLogFilesError;
    // The state machine retries `Throttled`: whatever code the service used for it.
    for (code, error_type) in [
        ("Throttling", "Throttled"),
        ("ThrottlingException", "Throttled"),
        ("RequestLimitExceeded", "Throttled"),
        ("AccessDenied", "AwsError"),
        ("InvalidParameterCombination", "AwsError"),
    ] {
        let list = mock!(aws_sdk_rds::Client::describe_db_log_files).then_error(move || {
            DescribeDBLogFilesError::generic(ErrorMetadata::builder().code(code).build())
        });
        let cp = no_checkpoint();
        let s = shipper(&[&list], &[&cp]);
        let (out, metrics) = ship(&s).await;
        let err = out.unwrap_err();
        // The client's standard retries (3 attempts): each throttled answer counts.
        let throttled = if error_type == "Throttled" { 3.0 } else { 0.0 };
        assert_eq!(sum(&metrics, "ThrottledRequests", &[]), throttled, "{code}");
        assert_eq!(lags(&metrics), [], "{code}: nothing listed, no lag measured");
        assert_eq!(
            lambda_common::ErrorType::error_type(&err),
            error_type,
            "{code}: {err}"
        );
        assert!(err.to_string().contains(code), "{err}");
    }
}

/// The checkpoint of a file shipped to 14 bytes and of `error/old.log`, shipped to 300 bytes of
/// the 800 its last listing showed; a complete listing is due (`fullListingAt` 0).
const WITH_OLD_FILE: &str = r#"{"version":1,"instance":"db1","fullListingAt":0,"files":{
    "error/postgresql.log":{"marker":"1:14","shipped":14,"size":14,"lastWritten":1000,
        "generation":0,"date":"2026-11-22","listed":{"size":14,"lastWritten":1000}},
    "error/old.log":{"marker":"1:300","shipped":300,"size":300,"lastWritten":900,
        "generation":0,"date":"2026-11-22","listed":{"size":800,"lastWritten":950}}}}"#;

fn is_checkpoint(r: &aws_sdk_s3::operation::put_object::PutObjectInput) -> bool {
    r.key().is_some_and(|k| k.ends_with("checkpoint.json"))
}

fn body_has(r: &aws_sdk_s3::operation::put_object::PutObjectInput, text: &str) -> bool {
    r.body()
        .bytes()
        .is_some_and(|b| String::from_utf8_lossy(b).contains(text))
}

#[tokio::test]
async fn a_file_no_longer_listed_before_it_was_shipped_is_lost_once_in_the_write_that_forgets_it() {
    // RDS lists only postgresql.log (shipped): old.log is gone with 500 bytes never shipped.
    let forgetting = mock!(aws_sdk_s3::Client::put_object)
        .match_requests(|r| is_checkpoint(r) && !body_has(r, "old.log"))
        .then_output(|| PutObjectOutput::builder().e_tag("\"c2\"").build());
    let remembering = mock!(aws_sdk_s3::Client::put_object)
        .match_requests(|r| is_checkpoint(r) && body_has(r, "old.log"))
        .then_output(|| PutObjectOutput::builder().e_tag("\"c2\"").build());
    let (list, cp) = (listing(14), checkpoint_with(WITH_OLD_FILE));
    let s = shipper(&[&list], &[&cp, &forgetting, &remembering]);
    let (out, metrics) = ship(&s).await;
    let out = out.unwrap();
    assert_eq!((forgetting.num_calls(), remembering.num_calls()), (1, 0));
    assert_eq!(out["bytesLost"], 500, "{out}");
    assert_eq!(
        out["lost"],
        serde_json::json!([{"kind": "file_lost", "file": "error/old.log", "bytes": 500, "lowerBound": false}])
    );
    assert_eq!(out["anomalyKinds"], serde_json::json!({"file_lost": 1}), "{out}");
    assert!(
        out["anomalies"][0]
            .as_str()
            .unwrap()
            .contains("error/old.log: no longer listed by RDS with 500 bytes not shipped"),
        "{out}"
    );
    assert_eq!(sum(&metrics, "BytesLost", &[]), 500.0);
    assert_eq!(sum(&metrics, "Anomalies", &[("Kind", "file_lost")]), 1.0);
    assert_eq!(
        sum(&metrics, "Anomalies", &[]),
        0.0,
        "the roll-up carries the zero only"
    );
    assert_eq!(sum(&metrics, "BytesShipped", &[]), 0.0);
    assert_eq!(lags(&metrics), [(Some("db1".to_owned()), 0.0)]);
}

#[tokio::test]
async fn a_loss_is_not_reported_by_a_run_whose_checkpoint_write_failed() {
    // The write that would forget old.log fails: the next run finds it again and reports it
    // then; this one reports nothing.
    let conflict = mock!(aws_sdk_s3::Client::put_object)
        .match_requests(is_checkpoint)
        .then_error(|| PutObjectError::generic(ErrorMetadata::builder().code("PreconditionFailed").build()));
    let (list, cp) = (listing(14), checkpoint_with(WITH_OLD_FILE));
    let s = shipper(&[&list], &[&cp, &conflict]);
    let (out, metrics) = ship(&s).await;
    assert_eq!(
        lambda_common::ErrorType::error_type(&out.unwrap_err()),
        "CheckpointConflict"
    );
    assert_eq!(conflict.num_calls(), 1);
    assert_eq!(sum(&metrics, "BytesLost", &[]), 0.0);
    assert_eq!(sum(&metrics, "Anomalies", &[("Kind", "file_lost")]), 0.0);
}

#[tokio::test]
async fn a_checkpoint_without_recorded_listings_reports_a_lower_bound() {
    let old = WITH_OLD_FILE.replace(r#","listed":{"size":800,"lastWritten":950}"#, "");
    let old: &'static str = Box::leak(old.into_boxed_str());
    let (list, cp, p) = (listing(14), checkpoint_with(old), puts());
    let s = shipper(&[&list], &[&cp, &p]);
    let out = run(&s).await;
    // Shipped to its size at the last commit: nothing known to be lost, so nothing reported.
    assert_eq!(out["bytesLost"], 0, "{out}");
    let partial = old.replace(r#""shipped":300,"size":300"#, r#""shipped":300,"size":450"#);
    let partial: &'static str = Box::leak(partial.into_boxed_str());
    let (list, cp, p) = (listing(14), checkpoint_with(partial), puts());
    let out = run(&shipper(&[&list], &[&cp, &p])).await;
    assert_eq!(
        out["lost"],
        serde_json::json!([{"kind": "file_lost", "file": "error/old.log", "bytes": 150, "lowerBound": true}])
    );
}

#[tokio::test]
async fn the_bytes_rds_dropped_from_a_cut_line_are_lost_once_the_chunk_is_committed() {
    // "a\n", then a 2,000,000-byte line that RDS cuts to 1 MB with its notice, then "b\n".
    const SIZE: i64 = 2 + 2_000_001 + 2;
    let kept = 1_048_576 - TRUNCATION_SUFFIX.len();
    let first = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.marker() == Some("0"))
        .then_output(|| portion("a\n", "1:2", true));
    let cut = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.marker() == Some("1:2"))
        .then_output(move || {
            DownloadDbLogFilePortionOutput::builder()
                .log_file_data(format!("{}{TRUNCATION_SUFFIX}", "x".repeat(kept)))
                .marker("1:2000003")
                .additional_data_pending(true)
                .build()
        });
    let last = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.marker() == Some("1:2000003"))
        .then_output(|| portion("b\n", "1:2000005", false));
    let end = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.marker() == Some("1:2000005"))
        .then_output(|| portion("", "1:2000005", false));
    let (list, cp, p) = (listing(SIZE), no_checkpoint(), puts());
    let s = shipper(&[&list, &first, &cut, &last, &end], &[&cp, &p]);
    let (out, metrics) = ship(&s).await;
    let out = out.unwrap();
    let dropped = 2_000_001 - kept as u64;
    assert_eq!(out["bytesLost"], dropped, "{out}");
    assert_eq!(out["lost"][0]["kind"], "line_truncated", "{out}");
    assert_eq!(out["lost"][0]["lowerBound"], false, "{out}");
    assert_eq!(sum(&metrics, "BytesLost", &[]), dropped as f64);
    assert_eq!(sum(&metrics, "Anomalies", &[("Kind", "line_truncated")]), 1.0);
    // What was shipped: the bytes received, the notice included.
    assert_eq!(sum(&metrics, "BytesShipped", &[]), (2 + 1_048_576 + 2) as f64);
}

#[tokio::test]
async fn throttled_attempts_are_counted_the_retried_ones_too() {
    use aws_smithy_types::retry::RetryConfig;
    let throttling = r#"<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>"#;
    let list = mock!(aws_sdk_rds::Client::describe_db_log_files)
        .sequence()
        .http_status(400, Some(throttling.to_owned()))
        .times(2)
        .output(|| DescribeDbLogFilesOutput::builder().build())
        .build();
    let retrying = |c: aws_sdk_rds::config::Builder| {
        c.retry_config(
            RetryConfig::standard()
                .with_max_attempts(5)
                .with_initial_backoff(std::time::Duration::from_millis(1)),
        )
    };
    let (cp, p) = (no_checkpoint(), puts());
    let s = Shipper::new(
        mock_client!(aws_sdk_rds, RuleMode::MatchAny, [&list], retrying),
        mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&cp, &p]),
        config(),
    );
    let (out, metrics) = ship(&s).await;
    assert_eq!(out.unwrap()["complete"], true);
    assert_eq!(list.num_calls(), 3);
    assert_eq!(sum(&metrics, "ThrottledRequests", &[]), 2.0, "{metrics:?}");
}

fn object(key: &'static str, body: String) -> Rule {
    let body: &'static str = Box::leak(body.into_boxed_str());
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(move |r| r.key() == Some(key))
        .then_output(move || {
            aws_sdk_s3::operation::get_object::GetObjectOutput::builder()
                .body(aws_sdk_s3::primitives::ByteStream::from_static(body.as_bytes()))
                .build()
        })
}

#[tokio::test]
async fn the_summarize_step_reports_the_fleet_from_the_result_files() {
    // Two children: one answered (a, b shipped; c failed in its batch), one failed (d, e).
    let ok = serde_json::json!({"instances": 3, "complete": 2, "notReached": 0, "failedInstances": ["c"],
        "bytes": 10, "filesShipped": 2, "objects": 2, "bytesLost": 7, "anomalies": 0,
        "lag": {"a": 4.5, "b": 30.25}, "measuredAtMs": 1_000});
    let records = serde_json::json!([
        {"Status": "SUCCEEDED", "Input": "{}", "Output": ok.to_string()},
    ]);
    let failed = serde_json::json!([
        {"Status": "FAILED", "Input": r#"{"Items": [{"instance": "d"}, {"instance": "e"}]}"#, "Error": "Lambda.Unknown"},
    ]);
    let manifest = serde_json::json!({"DestinationBucket": "archive", "MapRunArn": "arn",
        "ResultFiles": {"SUCCEEDED": [{"Key": "rds-logs/_fleet/r1/results/m/SUCCEEDED_0.json", "Size": 1}],
                        "FAILED": [{"Key": "rds-logs/_fleet/r1/results/m/FAILED_0.json", "Size": 1}], "PENDING": []}});
    let selection = rds_log_shipper::fleet::manifest_items(&["a", "b", "c", "d", "e", "f"].map(String::from));
    let rules = [
        object("rds-logs/_fleet/r1/results/m/manifest.json", manifest.to_string()),
        object(
            "rds-logs/_fleet/r1/results/m/SUCCEEDED_0.json",
            records.to_string(),
        ),
        object("rds-logs/_fleet/r1/results/m/FAILED_0.json", failed.to_string()),
        object("rds-logs/_fleet/r1/instances.json", selection.to_string()),
        no_checkpoint(),
        puts(),
    ];
    let s = shipper(&[], &rules.iter().collect::<Vec<_>>());
    let request = Request::try_from(serde_json::json!({"action": "summarize",
        "results": {"Bucket": "archive", "Key": "rds-logs/_fleet/r1/results/m/manifest.json"},
        "manifest": {"bucket": "archive", "key": "rds-logs/_fleet/r1/instances.json"}}))
    .unwrap();
    let (out, metrics) = invoke(&s, request).await;
    let out = out.unwrap();
    assert_eq!(
        (
            &out["instances"],
            &out["instancesFailed"],
            &out["batchesFailed"],
            &out["instancesUnreported"]
        ),
        (
            &serde_json::json!(5),
            &serde_json::json!(3),
            &serde_json::json!(1),
            &serde_json::json!(1)
        ),
        "{out}"
    );
    assert_eq!(out["fleetMaxLagSeconds"], 30.25);
    assert_eq!(sum(&metrics, "FleetMaxLagSeconds", &[]), 30.25);
    assert_eq!(sum(&metrics, "InstancesFailed", &[]), 3.0);
    assert!(
        metrics
            .iter()
            .all(|d| d.name != "BytesLost" && d.name != "LagSeconds"),
        "reported by the batches, not again: {metrics:?}"
    );
    // Results outside the shipper's own prefix are never read.
    let request = Request::try_from(serde_json::json!({"action": "summarize",
        "results": {"Bucket": "other", "Key": "x/manifest.json"},
        "manifest": {"bucket": "archive", "key": "rds-logs/_fleet/r1/instances.json"}}))
    .unwrap();
    let (out, _) = invoke(&s, request).await;
    assert_eq!(
        lambda_common::ErrorType::error_type(&out.unwrap_err()),
        "InvalidRequest"
    );
}

/// The checkpoint of `mysql-slowquery.log` shipped to 18 bytes of the 40 its last listing
/// showed, with a recent chunk of bytes 18..40 in flight (key `k`, its bytes already in the
/// recorded head, as the write-ahead record keeps them); a complete listing is due.
const SOURCE_IN_FLIGHT: &str = r##"{"version":1,"instance":"db1","fullListingAt":0,"files":{
    "slowquery/mysql-slowquery.log":{"marker":"1:18","shipped":18,"size":18,"lastWritten":900,
        "generation":0,"date":"2026-11-22","head":"hdr\n# Time: 18:00\nselect 1;\nselect 333;\n",
        "pending":{"key":"k","start":18,"end":40,"endMarker":"1:40","until":99999999999999},
        "listed":{"size":40,"lastWritten":950}}}}"##;

#[tokio::test]
async fn a_vanished_file_a_renamed_copy_waits_for_is_kept_not_lost() {
    // Rotation renamed the file to `.log.18` (and no new `.log` is listed yet) while its chunk
    // was in flight: the copy waits for the chunk, so the source stays in the checkpoint for the
    // copy to take over, and is not reported lost. Its chunk is resolved meanwhile (no work item
    // for the unlisted file will): committed once it is in S3, left while it may be uploading.
    for (landed, kept) in [(false, r#""pending":{"key":"k""#), (true, r#""shipped":40"#)] {
        let list = mock!(aws_sdk_rds::Client::describe_db_log_files).then_output(|| {
            DescribeDbLogFilesOutput::builder()
                .describe_db_log_files(
                    DescribeDbLogFilesDetails::builder()
                        .log_file_name("slowquery/mysql-slowquery.log.18")
                        .size(40)
                        .last_written(1_000)
                        .build(),
                )
                .build()
        });
        let beginning = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
            .match_requests(|r| r.marker() == Some("0"))
            .then_output(|| portion("hdr\n# Time: 18:00\nselect 1;\nselect 333;\n", "1:40", false));
        let head = if landed {
            mock!(aws_sdk_s3::Client::head_object)
                .then_output(|| aws_sdk_s3::operation::head_object::HeadObjectOutput::builder().build())
        } else {
            mock!(aws_sdk_s3::Client::head_object).then_error(|| {
                aws_sdk_s3::operation::head_object::HeadObjectError::NotFound(
                    aws_sdk_s3::types::error::NotFound::builder().build(),
                )
            })
        };
        let keeping = mock!(aws_sdk_s3::Client::put_object)
            .match_requests(move |r| {
                is_checkpoint(r) && body_has(r, r#""slowquery/mysql-slowquery.log":"#) && body_has(r, kept)
            })
            .then_output(|| PutObjectOutput::builder().e_tag("\"c2\"").build());
        let forgetting = mock!(aws_sdk_s3::Client::put_object)
            .match_requests(is_checkpoint)
            .then_output(|| PutObjectOutput::builder().e_tag("\"c2\"").build());
        let cp = checkpoint_with(SOURCE_IN_FLIGHT);
        let s = shipper(&[&list, &beginning], &[&cp, &head, &keeping, &forgetting]);
        let (out, metrics) = ship(&s).await;
        let out = out.unwrap();
        assert_eq!(out["bytesLost"], 0, "landed {landed}: {out}");
        assert_eq!(out["complete"], false, "the copy is left for now: {out}");
        assert_eq!(sum(&metrics, "BytesLost", &[]), 0.0);
        assert_eq!(sum(&metrics, "Anomalies", &[("Kind", "file_lost")]), 0.0);
        assert_eq!(
            (keeping.num_calls(), forgetting.num_calls()),
            (1, 0),
            "landed {landed}: the source kept, as {kept}"
        );
        assert_eq!(sum(&metrics, "BytesShipped", &[]), 0.0);
    } // The next run: the copy continues the source (read past, not shipped twice), which is
    // then claimed, and dropped without a loss.
    let committed = SOURCE_IN_FLIGHT
        .replace(
            r#""marker":"1:18","shipped":18,"size":18"#,
            r#""marker":"1:40","shipped":40,"size":40"#,
        )
        .replace(
            r#""pending":{"key":"k","start":18,"end":40,"endMarker":"1:40","until":99999999999999},"#,
            "",
        );
    let committed: &'static str = Box::leak(committed.into_boxed_str());
    let list = mock!(aws_sdk_rds::Client::describe_db_log_files).then_output(|| {
        DescribeDbLogFilesOutput::builder()
            .describe_db_log_files(
                DescribeDbLogFilesDetails::builder()
                    .log_file_name("slowquery/mysql-slowquery.log.18")
                    .size(40)
                    .last_written(1_000)
                    .build(),
            )
            .build()
    });
    let read = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .then_output(|| portion("hdr\n# Time: 18:00\nselect 1;\nselect 333;\n", "1:40", false));
    let (cp, p) = (checkpoint_with(committed), puts());
    let s = shipper(&[&list, &read], &[&cp, &p]);
    let (out, metrics) = ship(&s).await;
    let out = out.unwrap();
    assert_eq!(
        (out["bytesLost"].as_u64(), out["complete"].as_bool()),
        (Some(0), Some(true)),
        "{out}"
    );
    assert_eq!(sum(&metrics, "BytesShipped", &[]), 0.0, "{metrics:?}");
    assert_eq!(sum(&metrics, "Anomalies", &[("Kind", "file_lost")]), 0.0);
}
