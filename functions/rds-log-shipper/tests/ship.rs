//! Handler tests: the real shipping run and SDK clients, every call answered by aws-smithy-mocks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a panic

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
use rds_log_shipper::portion::TRUNCATION_SUFFIX;
use rds_log_shipper::{Config, Request, Shipper};
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
    s.handle(
        Request::Ship {
            instance: "db1".into(),
        },
        None,
    )
    .await
    .unwrap()
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
    let out = run(&s).await;
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
}

#[tokio::test]
async fn a_truncated_portion_is_read_again_with_fewer_lines() {
    let truncated = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.number_of_lines() == Some(10_000))
        .then_output(|| {
            DownloadDbLogFilePortionOutput::builder()
                .log_file_data(format!("aaaa{TRUNCATION_SUFFIX}"))
                .marker("1:999")
                .additional_data_pending(false)
                .build()
        });
    let fewer = mock!(aws_sdk_rds::Client::download_db_log_file_portion)
        .match_requests(|r| r.number_of_lines() == Some(5_000) && r.marker() == Some("0"))
        .then_output(|| portion("short\n", "1:6", false));
    let (list, cp, p) = (listing(6), no_checkpoint(), puts());
    let s = shipper(&[&list, &truncated, &fewer], &[&cp, &p]);
    let out = run(&s).await;
    assert_eq!(out["bytes"], 6, "{out}");
    assert_eq!((truncated.num_calls(), fewer.num_calls()), (1, 1));
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
    let err = s
        .handle(
            Request::Ship {
                instance: "db1".into(),
            },
            None,
        )
        .await
        .unwrap_err();
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
    let out = s.handle(Request::Run, None).await.unwrap();
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
        let err = s
            .handle(
                Request::Ship {
                    instance: "db1".into(),
                },
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(
            lambda_common::ErrorType::error_type(&err),
            error_type,
            "{code}: {err}"
        );
        assert!(err.to_string().contains(code), "{err}");
    }
}
