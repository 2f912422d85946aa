//! Handler tests of the drift step: the real handler and SDK client, every call answered by
//! aws-smithy-mocks, the step's JSON output fed back as `$.driftCheck` as the state machine does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a panic

use aws_sdk_cloudformation::operation::describe_stack_drift_detection_status::{
    DescribeStackDriftDetectionStatusError, DescribeStackDriftDetectionStatusOutput,
};
use aws_sdk_cloudformation::operation::describe_stack_resource_drifts::{
    DescribeStackResourceDriftsError, DescribeStackResourceDriftsOutput,
};
use aws_sdk_cloudformation::operation::detect_stack_drift::{DetectStackDriftError, DetectStackDriftOutput};
use aws_sdk_cloudformation::types::{
    DifferenceType, PropertyDifference, StackDriftDetectionStatus, StackDriftStatus, StackResourceDrift,
    StackResourceDriftStatus,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use deploy_steps::poll::PollConfig;
use deploy_steps::{Config, Request, Step, StepError, Steps};
use lambda_common::ErrorType;
use serde_json::{Value, json};

mod support;

const DETECTION: &str = "b78ac9b0-dec1-11e7-a451-503a3example";

fn steps(cfn: &[&Rule]) -> Steps {
    let none: &[&Rule] = &[];
    Steps {
        cfn: mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, cfn.iter().copied()),
        s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, none.iter().copied()),
        sns: mock_client!(aws_sdk_sns, RuleMode::MatchAny, none.iter().copied()),
        sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, none.iter().copied()),
        config: Config {
            poll: PollConfig {
                initial_seconds: 5,
                max_seconds: 20,
                max_attempts: 3,
            },
            region: "us-east-1".into(),
            ..Config::default()
        },
    }
}

/// The state before the drift step: `drift` mode, what check-stack decided, the previous output.
fn state(mode: &str, next: &str, status: &str, previous: Option<Value>) -> Value {
    let mut s = json!({
        "plan": {
            "stackName": "prod-app", "blueGreenStackName": "prod-app-bg-12345678",
            "changeSetName": "deploy-codepipeline-1", "templatePath": "infra/app.yaml",
            "template": {"body": "Resources: {}"}, "parameters": [], "capabilities": [], "tags": [],
            "policy": {"conditionalReplacement": "block", "dynamic": "block", "allowReplacement": [], "allowRemoval": []},
            "onUnsafe": "fail", "drift": mode
        },
        "target": {"stackName": "prod-app", "mode": "in-place"},
        "stack": {"next": next, "status": status, "reason": "", "poll": {"attempt": 0, "waitSeconds": 0, "exhausted": false}}
    });
    if let Some(p) = previous {
        s["driftCheck"] = p;
    }
    s
}

fn update(mode: &str) -> Value {
    state(mode, "UPDATE_CHANGE_SET", "UPDATE_COMPLETE", None)
}

/// The state after DetectStackDrift answered, at `attempt` polls.
fn polling(mode: &str, attempt: u32) -> Value {
    let pending = json!({
        "state": "PENDING", "checked": false, "detectionId": DETECTION, "driftedCount": 0, "drifted": [],
        "summary": "drift detection started on stack prod-app",
        "poll": {"attempt": attempt, "waitSeconds": 5, "exhausted": false}
    });
    state(mode, "UPDATE_CHANGE_SET", "UPDATE_COMPLETE", Some(pending))
}

/// One invocation of the drift step; it records exactly one outcome, and nothing else.
async fn run(steps: &Steps, payload: Value) -> Result<Value, StepError> {
    let mut m = lambda_common::metrics::Metrics::new("Test", deploy_steps::metrics::SERVICE);
    let result = steps
        .handle(Request::parse(Step::Drift, payload)?, None, &mut m)
        .await;
    let outcome = result.as_ref().map_or_else(|e| e.error_type(), |_| "Success");
    assert_eq!(
        support::outcomes(&m),
        [(outcome.to_owned(), "drift".to_owned(), 1.0)]
    );
    assert_eq!(m.documents(0).len(), 1, "only the outcome");
    Ok(serde_json::to_value(result?).unwrap())
}

fn summary(out: &Value) -> &str {
    out["summary"].as_str().unwrap()
}

fn detect() -> Rule {
    mock!(aws_sdk_cloudformation::Client::detect_stack_drift)
        .match_requests(|r| r.stack_name() == Some("prod-app"))
        .then_output(|| {
            DetectStackDriftOutput::builder()
                .stack_drift_detection_id(DETECTION)
                .build()
        })
}

fn status(
    detection: StackDriftDetectionStatus,
    stack: Option<StackDriftStatus>,
    reason: Option<&'static str>,
) -> Rule {
    mock!(aws_sdk_cloudformation::Client::describe_stack_drift_detection_status)
        .match_requests(|r| r.stack_drift_detection_id() == Some(DETECTION))
        .then_output(move || {
            DescribeStackDriftDetectionStatusOutput::builder()
                .stack_id("arn:aws:cloudformation:us-east-1:111111111111:stack/prod-app/1")
                .stack_drift_detection_id(DETECTION)
                .detection_status(detection.clone())
                .set_stack_drift_status(stack.clone())
                .set_detection_status_reason(reason.map(str::to_owned))
                .timestamp(aws_smithy_types::DateTime::from_secs(0))
                .build()
        })
}

fn in_sync() -> Rule {
    status(
        StackDriftDetectionStatus::DetectionComplete,
        Some(StackDriftStatus::InSync),
        None,
    )
}

fn drifted_status() -> Rule {
    status(
        StackDriftDetectionStatus::DetectionComplete,
        Some(StackDriftStatus::Drifted),
        None,
    )
}

type Difference = (&'static str, &'static str, &'static str);

fn resource(
    logical: &str,
    rtype: &str,
    status: StackResourceDriftStatus,
    diffs: &[Difference],
) -> StackResourceDrift {
    StackResourceDrift::builder()
        .stack_id("arn:aws:cloudformation:us-east-1:111111111111:stack/prod-app/1")
        .logical_resource_id(logical)
        .physical_resource_id(format!("prod-app-{}", logical.to_lowercase()))
        .resource_type(rtype)
        .stack_resource_drift_status(status)
        .set_property_differences(Some(
            diffs
                .iter()
                .map(|(path, expected, actual)| {
                    PropertyDifference::builder()
                        .property_path(*path)
                        .expected_value(*expected)
                        .actual_value(*actual)
                        .difference_type(DifferenceType::NotEqual)
                        .build()
                })
                .collect(),
        ))
        .timestamp(aws_smithy_types::DateTime::from_secs(0))
        .build()
}

/// One DescribeStackResourceDrifts page, answered only to a request for the drifted resources
/// (MODIFIED and DELETED) of prod-app with that `token`.
fn page(token: Option<&'static str>, next: Option<&'static str>, resources: Vec<StackResourceDrift>) -> Rule {
    mock!(aws_sdk_cloudformation::Client::describe_stack_resource_drifts)
        .match_requests(move |r| {
            let filters = r.stack_resource_drift_status_filters();
            r.stack_name() == Some("prod-app")
                && r.next_token() == token
                && filters.len() == 2
                && filters.contains(&StackResourceDriftStatus::Modified)
                && filters.contains(&StackResourceDriftStatus::Deleted)
        })
        .then_output(move || {
            DescribeStackResourceDriftsOutput::builder()
                .set_stack_resource_drifts(Some(resources.clone()))
                .set_next_token(next.map(str::to_owned))
                .build()
        })
}

fn two_pages() -> (Rule, Rule) {
    let first = page(
        None,
        Some("page-2"),
        vec![resource(
            "Uploads",
            "AWS::S3::Bucket",
            StackResourceDriftStatus::Modified,
            &[(
                "/Properties/VersioningConfiguration",
                "{\"Status\":\"Enabled\"}",
                "{\"Status\":\"Suspended\"}",
            )],
        )],
    );
    let second = page(
        Some("page-2"),
        None,
        vec![resource(
            "Queue",
            "AWS::SQS::Queue",
            StackResourceDriftStatus::Deleted,
            &[],
        )],
    );
    (first, second)
}

const LISTED: &str = "stack prod-app has drifted: 2 resource(s): Uploads (AWS::S3::Bucket) MODIFIED \
                      (/Properties/VersioningConfiguration); Queue (AWS::SQS::Queue) DELETED";

fn access_denied() -> ErrorMetadata {
    ErrorMetadata::builder()
        .code("AccessDenied")
        .message("User is not authorized to perform: cloudformation:DetectStackDrift")
        .build()
}

fn throttling() -> ErrorMetadata {
    ErrorMetadata::builder()
        .code("Throttling")
        .message("Rate exceeded")
        .build()
}

/// Every drift API, answered: a test that expects no call checks that none was made.
fn every_api() -> [Rule; 3] {
    [detect(), in_sync(), page(None, None, vec![])]
}

fn calls(rules: &[Rule]) -> usize {
    rules.iter().map(Rule::num_calls).sum()
}

// ---- nothing to check ----

#[tokio::test]
async fn ignore_makes_no_call() {
    let rules = every_api();
    let s = steps(&rules.iter().collect::<Vec<_>>());
    let out = run(&s, update("ignore")).await.unwrap();
    assert_eq!(out["state"], "DONE");
    assert_eq!(out["checked"], false);
    assert_eq!(summary(&out), "drift not checked (drift: ignore)");
    assert_eq!(calls(&rules), 0);
}

#[tokio::test]
async fn a_stack_not_being_updated_has_nothing_to_drift() {
    let rules = every_api();
    let s = steps(&rules.iter().collect::<Vec<_>>());
    for (next, status) in [
        ("CREATE_CHANGE_SET", "REVIEW_IN_PROGRESS"),
        ("CREATE_STACK", "DELETE_COMPLETE"),
    ] {
        let out = run(&s, state("block", next, status, None)).await.unwrap();
        assert_eq!(out["state"], "DONE", "{next}");
        assert_eq!(out["checked"], false, "{next}");
        assert_eq!(
            summary(&out),
            format!("drift not checked: stack prod-app ({status}) has no deployed resources to drift yet")
        );
    }
    assert_eq!(calls(&rules), 0);
}

// ---- detection, polled ----

#[tokio::test]
async fn the_first_run_starts_detection() {
    let rules = every_api();
    let s = steps(&rules.iter().collect::<Vec<_>>());
    let out = run(&s, update("block")).await.unwrap();
    assert_eq!(out["state"], "PENDING");
    assert_eq!(out["detectionId"], DETECTION);
    assert_eq!(
        out["poll"],
        json!({"attempt": 1, "waitSeconds": 5, "exhausted": false})
    );
    assert_eq!(summary(&out), "drift detection started on stack prod-app");
    assert_eq!(
        (rules[0].num_calls(), rules[1].num_calls(), rules[2].num_calls()),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn detection_in_progress_is_waited_for() {
    let detect = detect();
    let running = status(StackDriftDetectionStatus::DetectionInProgress, None, None);
    let s = steps(&[&detect, &running]);
    let out = run(&s, polling("block", 1)).await.unwrap();
    assert_eq!(out["state"], "PENDING");
    assert_eq!(out["detectionId"], DETECTION);
    assert_eq!(
        out["poll"],
        json!({"attempt": 2, "waitSeconds": 10, "exhausted": false})
    );
    assert_eq!(
        summary(&out),
        "drift detection on stack prod-app is in progress (check 2)"
    );
    assert_eq!((detect.num_calls(), running.num_calls()), (0, 1));
}

#[tokio::test]
async fn detection_that_does_not_finish_blocks_or_goes_on_unchecked() {
    for (mode, expected) in [("block", "BLOCKED"), ("warn", "DONE")] {
        let running = status(StackDriftDetectionStatus::DetectionInProgress, None, None);
        let s = steps(&[&detect(), &running]);
        // The whole loop, each output fed back as the state machine does.
        let mut st = update(mode);
        let mut states = Vec::new();
        for _ in 0..3 {
            let out = run(&s, st.clone()).await.unwrap();
            states.push(out["state"].as_str().unwrap().to_owned());
            st["driftCheck"] = out;
        }
        assert_eq!(states, ["PENDING", "PENDING", expected], "{mode}");
        let last = &st["driftCheck"];
        assert_eq!(last["checked"], false);
        assert_eq!(last["poll"]["exhausted"], true);
        let reason = "drift detection did not finish after 3 checks on stack prod-app";
        if mode == "block" {
            assert_eq!(summary(last), reason);
        } else {
            assert_eq!(
                summary(last),
                format!("{reason}; going on without a drift check (drift: warn)")
            );
        }
    }
}

// ---- detection complete ----

#[tokio::test]
async fn an_in_sync_stack_goes_on() {
    let listing = page(None, None, vec![]);
    let s = steps(&[&in_sync(), &listing]);
    let out = run(&s, polling("block", 1)).await.unwrap();
    assert_eq!(out["state"], "DONE");
    assert_eq!(out["checked"], true);
    assert_eq!(out["stackDriftStatus"], "IN_SYNC");
    assert_eq!(out["driftedCount"], 0);
    assert_eq!(summary(&out), "stack prod-app is in sync with its template");
    assert_eq!(listing.num_calls(), 1);
}

#[tokio::test]
async fn a_drifted_stack_is_blocked_under_block() {
    let (first, second) = two_pages();
    let s = steps(&[&drifted_status(), &first, &second]);
    let out = run(&s, polling("block", 1)).await.unwrap();
    assert_eq!(out["state"], "BLOCKED");
    assert_eq!(out["checked"], true);
    assert_eq!(out["stackDriftStatus"], "DRIFTED");
    assert_eq!(out["driftedCount"], 2);
    assert_eq!(summary(&out), LISTED);
    assert_eq!(
        out["drifted"][0],
        json!({
            "logicalResourceId": "Uploads", "resourceType": "AWS::S3::Bucket",
            "physicalResourceId": "prod-app-uploads", "status": "MODIFIED",
            "differences": [{
                "propertyPath": "/Properties/VersioningConfiguration", "differenceType": "NOT_EQUAL"
            }]
        })
    );
    assert_eq!(out["drifted"][1]["status"], "DELETED");
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_drifted_stack_goes_on_under_warn_with_the_list() {
    let (first, second) = two_pages();
    let s = steps(&[&drifted_status(), &first, &second]);
    let out = run(&s, polling("warn", 1)).await.unwrap();
    assert_eq!(out["state"], "DONE");
    assert_eq!(out["checked"], true);
    assert_eq!(out["driftedCount"], 2);
    assert_eq!(out["drifted"][1]["logicalResourceId"], "Queue");
    assert_eq!(summary(&out), format!("{LISTED}; going on (drift: warn)"));
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
}

#[tokio::test]
async fn failed_detection_lists_what_it_found() {
    let reason = "Failed to detect drift on resources [Fn]: internal failure";
    for (mode, expected) in [("block", "BLOCKED"), ("warn", "DONE")] {
        let failed = status(
            StackDriftDetectionStatus::DetectionFailed,
            Some(StackDriftStatus::Drifted),
            Some(reason),
        );
        let found = page(
            None,
            None,
            vec![resource(
                "Queue",
                "AWS::SQS::Queue",
                StackResourceDriftStatus::Deleted,
                &[],
            )],
        );
        let s = steps(&[&failed, &found]);
        let out = run(&s, polling(mode, 1)).await.unwrap();
        assert_eq!(out["state"], expected, "{mode}");
        assert_eq!(out["checked"], false);
        assert_eq!(out["driftedCount"], 1);
        let head = format!(
            "drift detection failed on stack prod-app: {reason}; drifted so far: 1 resource(s): Queue \
             (AWS::SQS::Queue) DELETED"
        );
        if mode == "block" {
            assert_eq!(summary(&out), head);
        } else {
            assert_eq!(
                summary(&out),
                format!("{head}; going on without a drift check (drift: warn)")
            );
        }
    }
}

#[tokio::test]
async fn no_drifted_value_reaches_the_state() {
    let listing = page(
        None,
        None,
        vec![resource(
            "Database",
            "AWS::RDS::DBInstance",
            StackResourceDriftStatus::Modified,
            &[
                ("/Properties/MasterUserPassword", "hunter2", "correct-horse"),
                ("/Properties/AllocatedStorage", "20", "50"),
            ],
        )],
    );
    let s = steps(&[&drifted_status(), &listing]);
    let out = run(&s, polling("warn", 1)).await.unwrap();
    // Values can hold secrets under any name: the state keeps paths and kinds only.
    let differences = &out["drifted"][0]["differences"];
    assert_eq!(
        differences[0],
        json!({"propertyPath": "/Properties/MasterUserPassword", "differenceType": "NOT_EQUAL"})
    );
    assert_eq!(
        differences[1],
        json!({"propertyPath": "/Properties/AllocatedStorage", "differenceType": "NOT_EQUAL"})
    );
    let text = out.to_string();
    for value in ["hunter2", "correct-horse", "\"20\"", "\"50\""] {
        assert!(!text.contains(value), "{value} in {text}");
    }
    assert!(summary(&out).contains("/Properties/MasterUserPassword"));
}

// ---- errors ----

#[tokio::test]
async fn drift_that_cannot_be_detected_blocks_or_goes_on_unchecked() {
    let message = "drift could not be detected: CloudFormation DetectStackDrift failed: AccessDenied: User is \
                   not authorized to perform: cloudformation:DetectStackDrift";
    for (mode, expected) in [("block", "BLOCKED"), ("warn", "DONE")] {
        let denied = mock!(aws_sdk_cloudformation::Client::detect_stack_drift)
            .then_error(|| DetectStackDriftError::generic(access_denied()));
        let s = steps(&[&denied]);
        let out = run(&s, update(mode)).await.unwrap();
        assert_eq!(out["state"], expected, "{mode}");
        assert_eq!(out["checked"], false);
        assert!(out.get("detectionId").is_none());
        if mode == "block" {
            assert_eq!(summary(&out), message);
        } else {
            assert_eq!(
                summary(&out),
                format!("{message}; going on without a drift check (drift: warn)")
            );
        }
        assert!(denied.num_calls() >= 1);
    }
}

#[tokio::test]
async fn a_listing_that_fails_after_detection_blocks_under_block() {
    let refused = mock!(aws_sdk_cloudformation::Client::describe_stack_resource_drifts).then_error(|| {
        DescribeStackResourceDriftsError::generic(
            ErrorMetadata::builder()
                .code("ValidationError")
                .message("Stack with id prod-app does not exist")
                .build(),
        )
    });
    let s = steps(&[&drifted_status(), &refused]);
    let out = run(&s, polling("block", 1)).await.unwrap();
    assert_eq!(out["state"], "BLOCKED");
    assert_eq!(out["checked"], false);
    assert_eq!(
        summary(&out),
        "drift could not be detected: CloudFormation DescribeStackResourceDrifts failed: ValidationError: \
         Stack with id prod-app does not exist"
    );
}

#[tokio::test]
async fn throttling_is_retried_under_block_and_goes_on_unchecked_under_warn() {
    let throttled = mock!(aws_sdk_cloudformation::Client::detect_stack_drift)
        .then_error(|| DetectStackDriftError::generic(throttling()));
    let s = steps(&[&throttled]);
    let err = run(&s, update("block")).await.unwrap_err();
    assert_eq!(err.error_type(), "Throttled");
    assert!(err.to_string().contains("Rate exceeded"), "{err}");
    // warn never stops a deployment, throttled or not.
    let out = run(&s, update("warn")).await.unwrap();
    assert_eq!(
        (out["state"].as_str(), out["checked"].as_bool()),
        (Some("DONE"), Some(false))
    );
    assert!(summary(&out).contains("Rate exceeded"), "{out}");

    let throttled = mock!(aws_sdk_cloudformation::Client::describe_stack_drift_detection_status)
        .then_error(|| DescribeStackDriftDetectionStatusError::generic(throttling()));
    let s = steps(&[&throttled]);
    let err = run(&s, polling("block", 1)).await.unwrap_err();
    assert_eq!(err.error_type(), "Throttled");
    assert_eq!(run(&s, polling("warn", 1)).await.unwrap()["state"], "DONE");
}
