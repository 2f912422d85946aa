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
    let out = invoke(&shipper, json!({"action": "select", "run": "r1"}))
        .await
        .unwrap();
    assert_eq!(out["instances"], 1, "{out}");
    assert!(
        mocks.calls().contains(&("DescribeDBInstances", 1)),
        "{:?}",
        mocks.calls()
    );
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
        json!({"action": "select", "run": "r1"}),
    )
    .await
    .unwrap();
    assert_eq!(out["instances"], 2, "{out}");
    assert_eq!(
        out["manifest"]["key"], "rds-logs/_fleet/r1/instances.json",
        "{out}"
    );
    assert!(
        mocks.calls().iter().all(|(op, _)| !op.starts_with("Describe")),
        "a selection by identifier asks RDS nothing: {:?}",
        mocks.calls()
    );
}

fn asl() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../statemachines/rds-log-shipping.asl.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A payload template's fields with each `.$` path resolved (a dot path) against `input`.
fn resolve(template: &Value, input: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (k, v) in template.as_object().unwrap() {
        match k.strip_suffix(".$") {
            Some(k) => {
                let path = v.as_str().unwrap();
                let value = if path.starts_with("$$.") {
                    json!("scheduled-1")
                } else {
                    path.trim_start_matches("$.")
                        .split('.')
                        .fold(input, |v, f| &v[f])
                        .clone()
                };
                assert!(!value.is_null(), "{path} is not in {input}");
                out.insert(k.to_owned(), value)
            }
            None => out.insert(k.clone(), v.clone()),
        };
    }
    Value::Object(out)
}

#[test]
fn the_state_machine_sends_requests_and_reads_fields_the_shipper_knows() {
    let asl = asl();
    let select = &asl["States"]["Select instances"];
    assert_eq!(
        Request::try_from(resolve(&select["Parameters"], &json!({}))),
        Ok(Request::Select {
            run: "scheduled-1".into()
        })
    );
    assert_eq!(select["ResultPath"], "$.selected");
    // What the select step answers (the fields of `fleet_run::SelectAnswer`), at `$.selected`.
    let plan = rds_log_shipper::fleet::plan(10, (8.0, 20.0), 4, 300_000, 0);
    let mut selected = serde_json::to_value(&plan).unwrap();
    selected["manifest"] = json!({"bucket": "b", "key": "logs/_fleet/scheduled-1/instances.json"});
    selected["resultsPrefix"] = json!("logs/_fleet/scheduled-1/results");
    let state = json!({ "selected": selected });
    let map = &asl["States"]["Ship the fleet"];
    assert_eq!(map["MaxConcurrencyPath"], "$.selected.concurrency");
    assert_eq!(map["ItemBatcher"]["MaxItemsPerBatchPath"], "$.selected.batchSize");
    assert_eq!(map["ItemProcessor"]["ProcessorConfig"]["Mode"], "DISTRIBUTED");
    let reader = resolve(&map["ItemReader"]["Parameters"], &state);
    assert_eq!(
        reader,
        json!({"Bucket": "b", "Key": "logs/_fleet/scheduled-1/instances.json"})
    );
    let items = rds_log_shipper::fleet::manifest_items(&["db1".into(), "db2".into()]);
    let batch = json!({"Items": items, "BatchInput": resolve(&map["ItemBatcher"]["BatchInput"], &state)});
    match Request::try_from(batch) {
        Ok(Request::ShipBatch { instances, input }) => {
            assert_eq!(instances, ["db1", "db2"]);
            assert_eq!(
                (input.requests_per_second, input.deadline_ms),
                (2.0, plan.deadline_ms)
            );
        }
        other => panic!("{other:?}"),
    }
    let writer = resolve(&map["ResultWriter"]["Parameters"], &state);
    assert_eq!(
        writer,
        json!({"Bucket": "b", "Prefix": "logs/_fleet/scheduled-1/results"})
    );
    assert_eq!(map["ResultPath"], "$.results");
    assert_eq!(map["Next"], "Summarize the fleet");
    let summarize = &asl["States"]["Summarize the fleet"];
    let mut state = state;
    state["results"] = json!({"MapRunArn": "arn", "ResultWriterDetails": {"Bucket": "b", "Key": "logs/_fleet/scheduled-1/results/m/manifest.json"}});
    assert!(matches!(
        Request::try_from(resolve(&summarize["Parameters"], &state)),
        Ok(Request::Summarize { .. })
    ));
    let ship = &map["ItemProcessor"]["States"]["Ship a batch"];
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
