//! Handler tests of the request: the payloads the schedule, the state machine and an operator
//! send are served; anything else is refused with `InvalidRequest` before any AWS call (every
//! operation the shipper uses is mocked, and every mock counts its calls).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a panic

use aws_sdk_rds::operation::describe_db_clusters::DescribeDbClustersOutput;
use aws_sdk_rds::operation::describe_db_instances::DescribeDbInstancesOutput;
use aws_sdk_rds::operation::describe_db_log_files::DescribeDbLogFilesOutput;
use aws_sdk_rds::operation::download_db_log_file_portion::DownloadDbLogFilePortionOutput;
use aws_sdk_rds::types::{DbInstance, Tag};
use aws_sdk_s3::operation::abort_multipart_upload::AbortMultipartUploadOutput;
use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput;
use aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadOutput;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::operation::put_object::PutObjectOutput;
use aws_sdk_s3::operation::upload_part::UploadPartOutput;
use aws_sdk_s3::types::error::NoSuchKey;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use lambda_common::ErrorType;
use lambda_common::metrics::Metrics;
use rds_log_shipper::error::ERROR_TYPES;
use rds_log_shipper::summary::InstanceSummary;
use rds_log_shipper::{Config, Request, ShipError, Shipper};
use serde_json::{Value, json};

/// Every RDS and S3 operation the shipper calls, each answered and counted.
struct Mocks {
    rds: Vec<(&'static str, Rule)>,
    s3: Vec<(&'static str, Rule)>,
}

impl Mocks {
    fn new() -> Self {
        let instances = mock!(aws_sdk_rds::Client::describe_db_instances).then_output(|| {
            DescribeDbInstancesOutput::builder()
                .db_instances(
                    DbInstance::builder()
                        .db_instance_identifier("db1")
                        .engine("postgres")
                        .db_instance_status("available")
                        .tag_list(Tag::builder().key("logs").value("ship").build())
                        .build(),
                )
                .build()
        });
        let rds = vec![
            ("DescribeDBInstances", instances),
            (
                "DescribeDBClusters",
                mock!(aws_sdk_rds::Client::describe_db_clusters)
                    .then_output(|| DescribeDbClustersOutput::builder().build()),
            ),
            (
                "DescribeDBLogFiles",
                mock!(aws_sdk_rds::Client::describe_db_log_files)
                    .then_output(|| DescribeDbLogFilesOutput::builder().build()),
            ),
            (
                "DownloadDBLogFilePortion",
                mock!(aws_sdk_rds::Client::download_db_log_file_portion)
                    .then_output(|| DownloadDbLogFilePortionOutput::builder().build()),
            ),
        ];
        let s3 = vec![
            (
                "GetObject",
                mock!(aws_sdk_s3::Client::get_object)
                    .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build())),
            ),
            (
                "PutObject",
                mock!(aws_sdk_s3::Client::put_object)
                    .then_output(|| PutObjectOutput::builder().e_tag("\"e\"").build()),
            ),
            (
                "HeadObject",
                mock!(aws_sdk_s3::Client::head_object).then_output(|| HeadObjectOutput::builder().build()),
            ),
            (
                "CreateMultipartUpload",
                mock!(aws_sdk_s3::Client::create_multipart_upload)
                    .then_output(|| CreateMultipartUploadOutput::builder().upload_id("u").build()),
            ),
            (
                "UploadPart",
                mock!(aws_sdk_s3::Client::upload_part).then_output(|| UploadPartOutput::builder().build()),
            ),
            (
                "CompleteMultipartUpload",
                mock!(aws_sdk_s3::Client::complete_multipart_upload)
                    .then_output(|| CompleteMultipartUploadOutput::builder().build()),
            ),
            (
                "AbortMultipartUpload",
                mock!(aws_sdk_s3::Client::abort_multipart_upload)
                    .then_output(|| AbortMultipartUploadOutput::builder().build()),
            ),
        ];
        Self { rds, s3 }
    }

    fn shipper(&self, env: &[(&str, &str)]) -> Shipper {
        let env: Vec<(String, String)> = [("LOG_BUCKET", "archive"), ("RDS_BURST", "300")]
            .iter()
            .chain(env)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let config = Config::from_lookup(|k| env.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone()));
        Shipper::new(
            mock_client!(aws_sdk_rds, RuleMode::MatchAny, self.rds.iter().map(|(_, r)| r)),
            mock_client!(aws_sdk_s3, RuleMode::MatchAny, self.s3.iter().map(|(_, r)| r)),
            config.unwrap(),
        )
    }

    /// The calls made so far, by operation (only those made).
    fn calls(&self) -> Vec<(&'static str, usize)> {
        self.rds
            .iter()
            .chain(&self.s3)
            .map(|(name, rule)| (*name, rule.num_calls()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// What `main` does with an invocation's payload.
async fn invoke(shipper: &Shipper, payload: Value) -> Result<Value, ShipError> {
    let mut metrics = Metrics::new("Ns", rds_log_shipper::report::SERVICE);
    shipper
        .handle(Request::try_from(payload)?, None, &mut metrics)
        .await
}

fn scheduled_event() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/scheduled-event.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn malformed_requests_are_refused_before_any_aws_call() {
    // GIVEN a shipper that selects by tag (a valid request would call RDS at once)
    let mocks = Mocks::new();
    let shipper = mocks.shipper(&[("INSTANCE_TAG", "logs=ship")]);
    let mut event_of_another_source = scheduled_event();
    event_of_another_source["source"] = json!("aws.rds");
    let malformed = [
        (json!({"action": "shipp"}), "action"),
        (json!({"action": 7}), "action"),
        (json!({"instance": 42}), "instance"),
        (json!({"action": "ship", "instance": 42}), "instance"),
        (json!({"action": "ship", "instance": ["db1"]}), "instance"),
        (json!({"action": "ship"}), "instance"),
        (json!({"action": "ship", "instance": null}), "instance"),
        (json!({"action": "ship", "instance": " db1"}), "instance"),
        (json!({"action": "ship", "instance": "logs/db1"}), "instance"),
        (json!({"action": "ship", "instance": "1db"}), "instance"),
        (json!({"action": "ship", "instance": "db--1"}), "instance"),
        (json!({"action": "ship", "instance": "db1-"}), "instance"),
        (json!({"action": "ship", "instance": "d".repeat(64)}), "instance"),
        (json!({"action": "select", "dryRun": true}), "dryRun"),
        (json!({"instances": "db1"}), "instances"),
        (event_of_another_source, "source"),
        (json!(["select"]), "$"),
    ];
    for (payload, field) in malformed {
        // WHEN it is invoked with a malformed payload
        let err = invoke(&shipper, payload.clone()).await.unwrap_err();
        // THEN it fails with InvalidRequest naming the field, having called nothing
        assert_eq!(err.error_type(), "InvalidRequest", "{payload}: {err}");
        match &err {
            ShipError::InvalidRequest(e) => assert_eq!(e.field, field, "{payload}: {err}"),
            other => panic!("{payload}: {other}"),
        }
        assert!(err.to_string().contains(&format!("`{field}`")), "{err}");
        assert_eq!(mocks.calls(), [], "{payload}");
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "InvalidRequest");
    }
    // The mocks do count: a valid request makes its call.
    let out = invoke(&shipper, json!({"action": "select"})).await.unwrap();
    assert_eq!(out, json!({"instances": ["db1"]}));
    assert_eq!(mocks.calls(), [("DescribeDBInstances", 1)]);
}

#[tokio::test]
async fn the_scheduled_event_runs_the_configured_selection() {
    let mocks = Mocks::new();
    let shipper = mocks.shipper(&[("INSTANCE_TAG", "logs=ship")]);
    let out = invoke(&shipper, scheduled_event()).await.unwrap();
    // A summary of every selected instance (not one instance's flat summary).
    assert_eq!(out["stoppedAtDeadline"], false, "{out}");
    let instances = out["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{out}");
    assert_eq!(instances[0]["instance"], "db1");
    assert_eq!(instances[0]["complete"], true, "{out}");
    let calls = mocks.calls();
    assert!(calls.contains(&("DescribeDBInstances", 1)), "{calls:?}");
    assert!(calls.contains(&("DescribeDBLogFiles", 1)), "{calls:?}");
}

#[tokio::test]
async fn today_s_payloads_keep_working() {
    for payload in [
        json!({}),
        Value::Null,
        json!({"action": "run"}),
        json!({"source": "aws.events"}),
        json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
    ] {
        let mocks = Mocks::new();
        let out = invoke(&mocks.shipper(&[("INSTANCES", "db2,db1")]), payload.clone())
            .await
            .unwrap();
        let shipped: Vec<&str> = out["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["instance"].as_str().unwrap())
            .collect();
        assert_eq!(shipped, ["db1", "db2"], "{payload}: {out}");
        assert!(mocks.calls().contains(&("DescribeDBLogFiles", 2)), "{payload}");
    }
    for payload in [
        json!({"action": "ship", "instance": "db1"}),
        json!({"instance": "db1"}),
    ] {
        let mocks = Mocks::new();
        let out = invoke(&mocks.shipper(&[("INSTANCES", "db2")]), payload.clone())
            .await
            .unwrap();
        assert_eq!(
            (out["instance"].as_str(), out["complete"].as_bool()),
            (Some("db1"), Some(true)),
            "{out}"
        );
    }
    let mocks = Mocks::new();
    let out = invoke(
        &mocks.shipper(&[("INSTANCES", "db2,db1")]),
        json!({"action": "select"}),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"instances": ["db1", "db2"]}));
    assert_eq!(mocks.calls(), [], "a selection by identifier asks RDS nothing");
}

fn asl() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../statemachines/rds-log-shipping.asl.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_state_machine_sends_requests_and_reads_fields_the_shipper_knows() {
    let asl = asl();
    let select = &asl["States"]["Select instances"];
    assert_eq!(
        Request::try_from(select["Parameters"].clone()),
        Ok(Request::Select)
    );
    let map = &asl["States"]["Ship each instance"];
    assert_eq!(map["ItemsPath"], "$.selected.instances");
    assert_eq!(select["ResultPath"], "$.selected");
    // The Map's item, with the selected instance in place of its path.
    let mut item = serde_json::Map::new();
    let selector = map["ItemSelector"].as_object().unwrap();
    for (k, v) in selector {
        match k.strip_suffix(".$") {
            Some(k) => item.insert(k.to_owned(), json!("db1")),
            None => item.insert(k.clone(), v.clone()),
        };
    }
    assert_eq!(
        Request::try_from(Value::Object(item.clone())),
        Ok(Request::Ship {
            instance: "db1".into()
        })
    );
    let ship = &map["ItemProcessor"]["States"]["Ship one instance"];
    let summary = serde_json::to_value(InstanceSummary::new("db1")).unwrap();
    let mut result = serde_json::Map::new();
    for (k, path) in ship["ResultSelector"].as_object().unwrap() {
        let field = path.as_str().unwrap().strip_prefix("$.").unwrap();
        assert!(
            summary.get(field).is_some(),
            "{field} is not in an instance's summary"
        );
        result.insert(k.strip_suffix(".$").unwrap().to_owned(), summary[field].clone());
    }
    // The last step gets the Map's results: a selected summary, and an iteration's input with
    // the error its Catch put at `$.error`.
    assert_eq!(map["Next"], "Summarize the fleet");
    let catch = &ship["Catch"][0];
    assert_eq!(catch["ResultPath"], "$.error");
    let summarize = &asl["States"]["Summarize the fleet"];
    let mut caught = item.clone();
    caught.insert("error".into(), json!({"Error": "AwsError", "Cause": "{}"}));
    let mut parameters = summarize["Parameters"].as_object().unwrap().clone();
    assert_eq!(parameters.remove("results.$"), Some(json!("$.results")));
    assert_eq!(map["ResultPath"], "$.results");
    parameters.insert("results".into(), json!([result, caught]));
    match Request::try_from(Value::Object(parameters)) {
        Ok(Request::Summarize { results }) => {
            assert_eq!(results.len(), 2);
            assert!(!results[0].failed && results[1].failed, "{results:?}");
        }
        other => panic!("{other:?}"),
    }
    let mut retried = Vec::new();
    for task in [select, ship, summarize] {
        for retry in task["Retry"].as_array().unwrap() {
            retried.extend(
                retry["ErrorEquals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str),
            );
        }
    }
    let own: Vec<&str> = retried
        .into_iter()
        .filter(|e| !e.starts_with("Lambda.") && !e.starts_with("States."))
        .collect();
    assert_eq!(own, ["Throttled", "Throttled"]);
    assert!(own.iter().all(|e| ERROR_TYPES.contains(e)));
}
