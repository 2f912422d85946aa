//! Handler tests: the real handler and real SDK clients, with every AWS call answered by
//! aws-smithy-mocks. Each fault case checks that the job got exactly one result.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a panic

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_codepipeline::operation::put_job_failure_result::{
    PutJobFailureResultError, PutJobFailureResultOutput,
};
use aws_sdk_codepipeline::operation::put_job_success_result::{
    PutJobSuccessResultError, PutJobSuccessResultOutput,
};
use aws_sdk_codepipeline::types::FailureType;
use aws_sdk_codepipeline::types::error::{InvalidJobStateException, ValidationException};
use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::error::NoSuchKey;
use aws_sdk_sfn::operation::describe_execution::{DescribeExecutionError, DescribeExecutionOutput};
use aws_sdk_sfn::operation::describe_state_machine::{DescribeStateMachineError, DescribeStateMachineOutput};
use aws_sdk_sfn::operation::get_execution_history::{GetExecutionHistoryError, GetExecutionHistoryOutput};
use aws_sdk_sfn::operation::start_execution::{StartExecutionError, StartExecutionOutput};
use aws_sdk_sfn::operation::start_sync_execution::{StartSyncExecutionError, StartSyncExecutionOutput};
use aws_sdk_sfn::types::error::{ExecutionAlreadyExists, ExecutionDoesNotExist, StateMachineDoesNotExist};
use aws_sdk_sfn::types::{
    ExecutionStatus, HistoryEvent, HistoryEventType, StateEnteredEventDetails, StateMachineType,
    SyncExecutionStatus, TaskSubmittedEventDetails,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use lambda_common::metrics::Metrics;
use lambda_runtime::{Context, LambdaEvent};
use pipeline_trigger::{Config, Event, HandlerError, Trigger, metrics};
use serde_json::{Value, json};

const JOB: &str = "11111111-abcd-1111-abcd-111111abcdef";
const SM: &str = "arn:aws:states:us-east-1:111111111111:stateMachine:deploy";
const EXEC: &str = "arn:aws:states:us-east-1:111111111111:execution:deploy:codepipeline-11111111-abcd-1111-abcd-111111abcdef";
const INPUT_FILE: &str =
    r#"{"environmentName": "prod", "stackName": "sample-lambda-app", "templatePath": "infra/t.yaml"}"#;

fn first_event() -> Value {
    serde_json::from_str(include_str!("fixtures/job-first.json")).unwrap()
}

fn continuation_event(token: &str) -> Value {
    let mut e: Value = serde_json::from_str(include_str!("fixtures/job-continuation.json")).unwrap();
    e["CodePipeline.job"]["data"]["continuationToken"] = json!(token);
    e
}

fn with_user_parameters(mut event: Value, params: Option<&str>) -> Value {
    let conf = &mut event["CodePipeline.job"]["data"]["actionConfiguration"]["configuration"];
    match params {
        Some(p) => conf["UserParameters"] = json!(p),
        None => {
            conf.as_object_mut().unwrap().remove("UserParameters");
        }
    }
    event
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn lambda_event(payload: Value, deadline_in: Duration) -> LambdaEvent<Value> {
    let mut context = Context::default();
    context.request_id = "req-1".into();
    context.deadline = now_ms() + deadline_in.as_millis() as u64;
    LambdaEvent::new(payload, context)
}

struct Mocks {
    s3: Vec<Rule>,
    sfn: Vec<Rule>,
    codepipeline: Vec<Rule>,
}

fn trigger(m: &Mocks) -> Trigger {
    let fast_retries = aws_sdk_sfn::config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1));
    let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, m.s3.iter());
    let sfn = mock_client!(aws_sdk_sfn, RuleMode::Sequential, m.sfn.iter(), |b| b
        .retry_config(fast_retries.clone()));
    let codepipeline = mock_client!(
        aws_sdk_codepipeline,
        RuleMode::Sequential,
        m.codepipeline.iter(),
        |b| b.retry_config(fast_retries.clone())
    );
    Trigger::from_clients(
        s3,
        sfn,
        codepipeline,
        Config {
            default_state_machine_arn: Some(SM.into()),
            region: Some("us-east-1".into()),
        },
    )
}

/// DescribeStateMachine's answer for a state machine of this type (any ARN).
fn machine_of_type(kind: StateMachineType) -> Rule {
    mock!(aws_sdk_sfn::Client::describe_state_machine).then_output(move || {
        DescribeStateMachineOutput::builder()
            .state_machine_arn(SM)
            .name("deploy")
            .definition("{}")
            .role_arn("arn:aws:iam::111111111111:role/r")
            .r#type(kind.clone())
            .creation_date(aws_smithy_types::DateTime::from_secs(0))
            .build()
            .unwrap()
    })
}

fn standard_machine() -> Rule {
    machine_of_type(StateMachineType::Standard)
}

fn input_file_ok() -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.bucket() == Some("pipeline-inputs") && r.key() == Some("deploy/prod.json"))
        .then_output(|| {
            GetObjectOutput::builder()
                .content_length(INPUT_FILE.len() as i64)
                .body(ByteStream::from_static(INPUT_FILE.as_bytes()))
                .build()
        })
}

fn success_recorded(
    check: impl Fn(&aws_sdk_codepipeline::operation::put_job_success_result::PutJobSuccessResultInput) -> bool
    + Send
    + Sync
    + 'static,
) -> Rule {
    mock!(aws_sdk_codepipeline::Client::put_job_success_result)
        .match_requests(move |r| {
            r.job_id() == Some(JOB) || r.job_id() == Some("22222222-abcd-2222-abcd-222222abcdef")
        })
        .match_requests(check)
        .then_output(|| PutJobSuccessResultOutput::builder().build())
}

/// A failure-result rule that captures the request for assertions.
fn failure_recorded(expected: FailureType, message_contains: &'static str) -> Rule {
    mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
        .match_requests(move |r| {
            let d = r.failure_details().unwrap();
            let ok = d.r#type() == &expected && d.message().contains(message_contains);
            if !ok {
                eprintln!("unexpected failure result: {:?} {}", d.r#type(), d.message());
            }
            ok
        })
        .then_output(|| PutJobFailureResultOutput::builder().build())
}

/// One invocation as `main` makes it: the deadline from the context, the typed event, the
/// invocation's metrics.
async fn invoke_counted(t: &Trigger, event: LambdaEvent<Value>) -> (Result<(), HandlerError>, Metrics) {
    let deadline = lambda_common::clock::deadline(&event.context);
    let mut metrics = Metrics::new("test", metrics::SERVICE);
    let result = match Event::try_from(event) {
        Ok(event) => t.invoke(event, deadline, &mut metrics).await,
        Err(e) => Err(e),
    };
    (result, metrics)
}

async fn invoke(t: &Trigger, event: LambdaEvent<Value>) -> Result<(), HandlerError> {
    invoke_counted(t, event).await.0
}

async fn run(m: &Mocks, payload: Value) -> Result<(), lambda_runtime::Diagnostic> {
    run_counted(m, payload).await.0
}

/// [`run`], with the metrics the invocation recorded ([`counts`]).
async fn run_counted(m: &Mocks, payload: Value) -> (Result<(), lambda_runtime::Diagnostic>, Counts) {
    let (result, metrics) = invoke_counted(&trigger(m), lambda_event(payload, Duration::from_secs(30))).await;
    (result.map_err(Into::into), counts(&metrics))
}

type Counts = std::collections::BTreeMap<String, Value>;

/// Every metric recorded, as `Name` or `Name{Dim=value}` (its finest dimension set beyond
/// `Service`) -> its value (a number, or the list of samples).
fn counts(m: &Metrics) -> Counts {
    let mut out = Counts::new();
    for doc in m.documents(0) {
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["Service"], "PipelineTrigger");
        let finest = directive["Dimensions"].as_array().unwrap().last().unwrap();
        let dims: Vec<String> = finest
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .filter(|k| *k != "Service")
            .map(|k| format!("{k}={}", doc[k].as_str().unwrap()))
            .collect();
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert_eq!(metric["Unit"], "Count", "{name}");
            let key = if dims.is_empty() {
                name.to_owned()
            } else {
                format!("{name}{{{}}}", dims.join(","))
            };
            out.insert(key, doc[name].clone());
        }
    }
    out
}

/// The expected [`counts`].
fn expect(pairs: &[(&str, Value)]) -> Counts {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

// ---- first invocation ----

#[tokio::test]
async fn first_invocation_starts_the_execution_and_continues() {
    let start = mock!(aws_sdk_sfn::Client::start_execution)
        .match_requests(|r| {
            let input: Value = serde_json::from_str(r.input().unwrap()).unwrap();
            r.state_machine_arn() == Some(SM)
                && r.name() == Some("codepipeline-11111111-abcd-1111-abcd-111111abcdef")
                && input["stackName"] == "sample-lambda-app"
                && input["revisionS3Bucket"] == "codepipeline-artifacts"
                && input["revisionS3Key"] == "MyPipeline/SourceArti/abcdEFG"
                && input["revisionId"] == "3b9a7c1e"
                && input["codePipelineJobId"] == JOB
                && !r.input().unwrap().contains("secretExampleValue")
        })
        .then_output(|| {
            StartExecutionOutput::builder()
                .execution_arn(EXEC)
                .start_date(aws_smithy_types::DateTime::from_secs(0))
                .build()
                .unwrap()
        });
    let put = success_recorded(|r| {
        let token: Value = serde_json::from_str(r.continuation_token().unwrap()).unwrap();
        let d = r.execution_details().unwrap();
        token["executionArn"] == EXEC
            && d.external_execution_id() == Some(EXEC)
            && d.summary()
                .unwrap()
                .starts_with("Started Step Functions execution codepipeline-")
            && r.output_variables().is_none()
    });
    let m = Mocks {
        s3: vec![input_file_ok()],
        sfn: vec![standard_machine(), start],
        codepipeline: vec![put],
    };
    let (result, counted) = run_counted(&m, first_event()).await;
    result.unwrap();
    assert_eq!(m.sfn[1].num_calls(), 1);
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    // Started, not ended: no poll count yet.
    assert_eq!(counted, expect(&[("JobsStarted", json!(1.0))]));
}

#[tokio::test]
async fn a_retried_start_adopts_the_jobs_own_execution() {
    let start = mock!(aws_sdk_sfn::Client::start_execution).then_error(|| {
        StartExecutionError::ExecutionAlreadyExists(
            ExecutionAlreadyExists::builder().message("exists").build(),
        )
    });
    let put = success_recorded(|r| r.continuation_token().unwrap().contains(EXEC));
    let m = Mocks {
        s3: vec![input_file_ok()],
        sfn: vec![standard_machine(), start],
        codepipeline: vec![put],
    };
    let (result, counted) = run_counted(&m, first_event()).await;
    result.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    assert_eq!(counted, expect(&[("JobsStarted", json!(1.0))]));
}

#[tokio::test]
async fn inline_input_needs_no_file_and_the_action_may_name_its_state_machine() {
    let other = "arn:aws:states:us-east-1:111111111111:stateMachine:other";
    let start = mock!(aws_sdk_sfn::Client::start_execution)
        .match_requests(move |r| {
            let input: Value = serde_json::from_str(r.input().unwrap()).unwrap();
            r.state_machine_arn() == Some(other) && input["stackName"] == "inline"
        })
        .then_output(|| {
            StartExecutionOutput::builder()
                .execution_arn("arn:aws:states:us-east-1:111111111111:execution:other:x")
                .start_date(aws_smithy_types::DateTime::from_secs(0))
                .build()
                .unwrap()
        });
    let m = Mocks {
        s3: vec![],
        sfn: vec![standard_machine(), start],
        codepipeline: vec![success_recorded(|r| r.continuation_token().is_some())],
    };
    let params = format!(r#"{{"input": {{"stackName": "inline"}}, "stateMachineArn": "{other}"}}"#);
    run(&m, with_user_parameters(first_event(), Some(&params)))
        .await
        .unwrap();
    assert_eq!(m.sfn[1].num_calls(), 1);
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

async fn assert_first_call_fails(
    s3: Vec<Rule>,
    sfn: Vec<Rule>,
    params: Option<&str>,
    kind: FailureType,
    message: &'static str,
) {
    let failed = format!("JobsFailed{{FailureType={}}}", kind.as_str());
    let mut sfn = sfn;
    sfn.insert(0, standard_machine());
    let m = Mocks {
        s3,
        sfn,
        codepipeline: vec![failure_recorded(kind, message)],
    };
    let (result, counted) = run_counted(&m, with_user_parameters(first_event(), params)).await;
    assert!(
        result.is_ok(),
        "a recorded failure is not a Lambda error: {result:?}"
    );
    assert_eq!(
        m.codepipeline[0].num_calls(),
        1,
        "the job got no failure result ({message})"
    );
    // Failed by its type in its first invocation; nothing was started.
    assert_eq!(
        counted,
        expect(&[(&failed, json!(1.0)), ("PollsPerJob", json!(1.0))]),
        "{message}"
    );
}

const SAMPLE: Option<&str> =
    Some(r#"{"s3Bucket": "pipeline-inputs", "stateMachineFile": "deploy/prod.json"}"#);

#[tokio::test]
async fn missing_user_parameters_is_a_configuration_error() {
    assert_first_call_fails(
        vec![],
        vec![],
        None,
        FailureType::ConfigurationError,
        "no UserParameters",
    )
    .await;
}

#[tokio::test]
async fn malformed_user_parameters_is_a_configuration_error() {
    assert_first_call_fails(
        vec![],
        vec![],
        Some("{\"s3Bucket\": "),
        FailureType::ConfigurationError,
        "UserParameters is not valid",
    )
    .await;
}

#[tokio::test]
async fn a_missing_input_file_is_a_configuration_error() {
    let missing = mock!(aws_sdk_s3::Client::get_object)
        .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build()));
    assert_first_call_fails(
        vec![missing],
        vec![],
        SAMPLE,
        FailureType::ConfigurationError,
        "input file s3://pipeline-inputs/deploy/prod.json does not exist",
    )
    .await;
}

#[tokio::test]
async fn access_denied_on_the_input_file_is_a_permission_error() {
    let denied = mock!(aws_sdk_s3::Client::get_object).then_error(|| {
        GetObjectError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("Access Denied")
                .build(),
        )
    });
    assert_first_call_fails(
        vec![denied],
        vec![],
        SAMPLE,
        FailureType::PermissionError,
        "access denied reading input file s3://pipeline-inputs/deploy/prod.json",
    )
    .await;
}

#[tokio::test]
async fn access_denied_starting_the_execution_is_a_permission_error() {
    let denied = mock!(aws_sdk_sfn::Client::start_execution).then_error(|| {
        StartExecutionError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not authorized to perform: states:StartExecution")
                .build(),
        )
    });
    assert_first_call_fails(
        vec![input_file_ok()],
        vec![denied],
        SAMPLE,
        FailureType::PermissionError,
        "AccessDeniedException: not authorized to perform: states:StartExecution",
    )
    .await;
}

#[tokio::test]
async fn a_missing_state_machine_is_a_configuration_error() {
    let missing = mock!(aws_sdk_sfn::Client::start_execution).then_error(|| {
        StartExecutionError::StateMachineDoesNotExist(
            StateMachineDoesNotExist::builder()
                .message("State Machine Does Not Exist")
                .meta(
                    ErrorMetadata::builder()
                        .code("StateMachineDoesNotExist")
                        .message("State Machine Does Not Exist")
                        .build(),
                )
                .build(),
        )
    });
    assert_first_call_fails(
        vec![input_file_ok()],
        vec![missing],
        SAMPLE,
        FailureType::ConfigurationError,
        "cannot be started: StateMachineDoesNotExist",
    )
    .await;
}

#[tokio::test]
async fn throttling_after_sdk_retries_fails_the_job() {
    let throttled = mock!(aws_sdk_sfn::Client::start_execution)
        .sequence()
        .error(|| {
            StartExecutionError::generic(
                ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .message("Rate exceeded")
                    .build(),
            )
        })
        .times(3)
        .build();
    let m = Mocks {
        s3: vec![input_file_ok()],
        sfn: vec![standard_machine(), throttled],
        codepipeline: vec![failure_recorded(
            FailureType::JobFailed,
            "ThrottlingException: Rate exceeded",
        )],
    };
    run(&m, with_user_parameters(first_event(), SAMPLE))
        .await
        .unwrap();
    assert_eq!(m.sfn[1].num_calls(), 3, "the SDK retried");
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

// ---- continuations ----

fn describe(
    status: ExecutionStatus,
    output: Option<&'static str>,
    error: Option<&'static str>,
    cause: Option<&'static str>,
) -> Rule {
    mock!(aws_sdk_sfn::Client::describe_execution)
        .match_requests(|r| r.execution_arn() == Some(EXEC))
        .then_output(move || {
            DescribeExecutionOutput::builder()
                .execution_arn(EXEC)
                .state_machine_arn(SM)
                .name("codepipeline-11111111-abcd-1111-abcd-111111abcdef")
                .status(status.clone())
                .start_date(aws_smithy_types::DateTime::from_secs(1_700_000_000))
                .set_output(output.map(str::to_owned))
                .set_error(error.map(str::to_owned))
                .set_cause(cause.map(str::to_owned))
                .build()
                .unwrap()
        })
}

fn token(polls: u32) -> String {
    json!({"executionArn": EXEC, "polls": polls}).to_string()
}

const RUNNING_SUMMARY: &str = "Execution codepipeline-11111111-abcd-1111-abcd-111111abcdef is RUNNING, started 2023-11-14T22:13:20Z (check 3)";

fn event(id: i64, kind: HistoryEventType) -> aws_sdk_sfn::types::builders::HistoryEventBuilder {
    HistoryEvent::builder()
        .id(id)
        .previous_event_id(id - 1)
        .timestamp(aws_smithy_types::DateTime::from_secs(1_700_000_000 + id))
        .r#type(kind)
}

fn task_entered(id: i64, state: &str) -> HistoryEvent {
    event(id, HistoryEventType::TaskStateEntered)
        .state_entered_event_details(
            StateEnteredEventDetails::builder()
                .name(state)
                .input("{}")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// A task started: `TaskStateEntered`, `TaskScheduled`, `TaskStarted`, oldest first.
fn task_started(state: &str) -> Vec<HistoryEvent> {
    vec![
        event(1, HistoryEventType::ExecutionStarted).build().unwrap(),
        task_entered(2, state),
        event(3, HistoryEventType::TaskScheduled).build().unwrap(),
        event(4, HistoryEventType::TaskStarted).build().unwrap(),
    ]
}

/// A `lambda:invoke.waitForTaskToken` task waiting for its callback, the function's answer being
/// `payload`, oldest first.
fn waiting_for_callback(state: &str, payload: Value) -> Vec<HistoryEvent> {
    let answer = json!({"ExecutedVersion": "$LATEST", "Payload": payload, "StatusCode": 200});
    let mut events = task_started(state);
    events.push(
        event(5, HistoryEventType::TaskSubmitted)
            .task_submitted_event_details(
                TaskSubmittedEventDetails::builder()
                    .resource_type("lambda")
                    .resource("invoke.waitForTaskToken")
                    .output(answer.to_string())
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap(),
    );
    events
}

/// `GetExecutionHistory` as Step Functions answers the trigger's request: the latest events,
/// newest first.
fn history(oldest_first: Vec<HistoryEvent>) -> Rule {
    mock!(aws_sdk_sfn::Client::get_execution_history)
        .match_requests(|r| {
            r.execution_arn() == Some(EXEC)
                && r.reverse_order() == Some(true)
                && r.include_execution_data() == Some(true)
                && r.max_results().is_some_and(|n| (1..=100).contains(&n))
        })
        .then_output(move || {
            let newest_first = oldest_first.iter().rev().cloned();
            GetExecutionHistoryOutput::builder()
                .set_events(Some(newest_first.collect()))
                .build()
                .unwrap()
        })
}

fn continued_with(summary: impl Fn(&str) -> bool + Send + Sync + 'static) -> Rule {
    success_recorded(move |r| {
        let t: Value = serde_json::from_str(r.continuation_token().unwrap()).unwrap();
        let d = r.execution_details().unwrap();
        t["executionArn"] == EXEC
            && t["polls"] == 3
            && d.external_execution_id() == Some(EXEC)
            && summary(d.summary().unwrap())
    })
}

#[tokio::test]
async fn running_continues_with_the_next_token() {
    let m = Mocks {
        s3: vec![],
        sfn: vec![
            describe(ExecutionStatus::Running, None, None, None),
            history(task_started("Deploy")),
        ],
        codepipeline: vec![continued_with(|s| s == RUNNING_SUMMARY)],
    };
    let (result, counted) = run_counted(&m, continuation_event(&token(2))).await;
    result.unwrap();
    assert_eq!(m.sfn[1].num_calls(), 1);
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    assert_eq!(counted, expect(&[]), "a continuing job records nothing");
}

const APPROVAL: &str = "waiting for approval of 2 unsafe change(s): Uploads (AWS::S3::Bucket) removed, \
                        Queue (AWS::SQS::Queue) replaced; review: s3://reviews/codepipeline-1/review.md";

#[tokio::test]
async fn waiting_for_a_callback_shows_the_functions_summary() {
    let payload = json!({
        "summary": APPROVAL,
        "reviewId": "codepipeline-1",
        "markdownUri": "s3://reviews/codepipeline-1/review.md"
    });
    let m = Mocks {
        s3: vec![],
        sfn: vec![
            describe(ExecutionStatus::Running, None, None, None),
            history(waiting_for_callback("RequestApproval", payload)),
        ],
        codepipeline: vec![continued_with(|s| s == APPROVAL)],
    };
    run(&m, continuation_event(&token(2))).await.unwrap();
    assert_eq!(m.sfn[1].num_calls(), 1);
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

#[tokio::test]
async fn waiting_for_a_callback_without_a_summary_names_the_state() {
    let m = Mocks {
        s3: vec![],
        sfn: vec![
            describe(ExecutionStatus::Running, None, None, None),
            history(waiting_for_callback("RequestApproval", json!({"reviewId": "r1"}))),
        ],
        codepipeline: vec![continued_with(|s| {
            s == "waiting for a callback to RequestApproval"
        })],
    };
    run(&m, continuation_event(&token(2))).await.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

#[tokio::test]
async fn a_callback_that_came_leaves_the_running_summary() {
    let mut events = waiting_for_callback("RequestApproval", json!({"summary": APPROVAL}));
    events.push(event(6, HistoryEventType::TaskSucceeded).build().unwrap());
    events.push(event(7, HistoryEventType::TaskStateExited).build().unwrap());
    let m = Mocks {
        s3: vec![],
        sfn: vec![
            describe(ExecutionStatus::Running, None, None, None),
            history(events),
        ],
        codepipeline: vec![continued_with(|s| s == RUNNING_SUMMARY)],
    };
    run(&m, continuation_event(&token(2))).await.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

#[tokio::test]
async fn a_long_callback_summary_is_cut_to_codepipelines_limit() {
    let long = format!("{APPROVAL} {}", "ä".repeat(5_000));
    let m = Mocks {
        s3: vec![],
        sfn: vec![
            describe(ExecutionStatus::Running, None, None, None),
            history(waiting_for_callback("RequestApproval", json!({"summary": long}))),
        ],
        codepipeline: vec![continued_with(|s| {
            s.chars().count() <= 2_048 && s.starts_with(APPROVAL) && s.ends_with('…')
        })],
    };
    run(&m, continuation_event(&token(2))).await.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

#[tokio::test]
async fn an_unreadable_history_never_changes_the_outcome() {
    let denied = mock!(aws_sdk_sfn::Client::get_execution_history).then_error(|| {
        GetExecutionHistoryError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not authorized to perform: states:GetExecutionHistory")
                .build(),
        )
    });
    let throttled = mock!(aws_sdk_sfn::Client::get_execution_history)
        .sequence()
        .error(|| {
            GetExecutionHistoryError::generic(
                ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .message("Rate exceeded")
                    .build(),
            )
        })
        .times(3)
        .build();
    let unavailable = mock!(aws_sdk_sfn::Client::get_execution_history)
        .sequence()
        .http_status(500, None)
        .times(3)
        .build();
    for (case, failing) in [("denied", denied), ("throttled", throttled), ("5xx", unavailable)] {
        let m = Mocks {
            s3: vec![],
            sfn: vec![describe(ExecutionStatus::Running, None, None, None), failing],
            codepipeline: vec![continued_with(|s| s == RUNNING_SUMMARY)],
        };
        run(&m, continuation_event(&token(2))).await.unwrap();
        assert!(m.sfn[1].num_calls() >= 1, "{case}");
        assert_eq!(m.codepipeline[0].num_calls(), 1, "{case}: the job continues");
    }
}

#[tokio::test]
async fn succeeded_completes_with_output_variables() {
    let put = success_recorded(|r| {
        let vars = r.output_variables().unwrap();
        r.continuation_token().is_none()
            && vars.get("stackName").map(String::as_str) == Some("prod-app")
            && vars.get("changed").map(String::as_str) == Some("2")
            && vars.len() == 2
    });
    let m = Mocks {
        s3: vec![],
        sfn: vec![
            describe(
                ExecutionStatus::Succeeded,
                Some(r#"{"stackName": "prod-app", "changed": 2, "list": [1]}"#),
                None,
                None,
            ),
            history(waiting_for_callback("Ask", json!({"summary": "stale"}))),
        ],
        codepipeline: vec![put],
    };
    let (result, counted) = run_counted(&m, continuation_event(&token(1))).await;
    result.unwrap();
    assert_eq!(
        m.sfn[1].num_calls(),
        0,
        "an ended execution's history is not read"
    );
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    // One poll before this one, and the first invocation: three invocations.
    assert_eq!(
        counted,
        expect(&[("JobsSucceeded", json!(1.0)), ("PollsPerJob", json!(3.0))])
    );
}

#[tokio::test]
async fn the_samples_token_is_still_understood() {
    let m = Mocks {
        s3: vec![],
        sfn: vec![describe(ExecutionStatus::Succeeded, Some("{}"), None, None)],
        codepipeline: vec![success_recorded(|r| r.continuation_token().is_none())],
    };
    let (result, counted) = run_counted(
        &m,
        continuation_event(&json!({"stateMachineExecutionArn": EXEC}).to_string()),
    )
    .await;
    result.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    // A token without a poll count: the first invocation and this one.
    assert_eq!(
        counted,
        expect(&[("JobsSucceeded", json!(1.0)), ("PollsPerJob", json!(2.0))])
    );
}

#[tokio::test]
async fn every_unsuccessful_end_fails_the_job_with_status_error_and_cause() {
    for status in [
        ExecutionStatus::Failed,
        ExecutionStatus::TimedOut,
        ExecutionStatus::Aborted,
        ExecutionStatus::PendingRedrive,
    ] {
        let expected: &'static str = match status {
            ExecutionStatus::Failed => "ended with status FAILED. Error: States.TaskFailed. Cause: rollback",
            ExecutionStatus::TimedOut => {
                "ended with status TIMED_OUT. Error: States.TaskFailed. Cause: rollback"
            }
            ExecutionStatus::Aborted => {
                "ended with status ABORTED. Error: States.TaskFailed. Cause: rollback"
            }
            _ => "ended with status PENDING_REDRIVE. Error: States.TaskFailed. Cause: rollback",
        };
        let put = mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
            .match_requests(move |r| {
                let d = r.failure_details().unwrap();
                d.r#type() == &FailureType::JobFailed
                    && d.message().starts_with(&format!("Execution {EXEC} "))
                    && d.message().contains(expected)
                    && d.external_execution_id() == Some(EXEC)
            })
            .then_output(|| PutJobFailureResultOutput::builder().build());
        let m = Mocks {
            s3: vec![],
            sfn: vec![
                describe(status.clone(), None, Some("States.TaskFailed"), Some("rollback")),
                history(waiting_for_callback("Ask", json!({"summary": "stale"}))),
            ],
            codepipeline: vec![put],
        };
        run(&m, continuation_event(&token(1))).await.unwrap();
        assert_eq!(m.sfn[1].num_calls(), 0, "{status:?}: no history read");
        assert_eq!(m.codepipeline[0].num_calls(), 1, "{status:?}");
    }
}

#[tokio::test]
async fn a_vanished_execution_fails_the_job() {
    let gone = mock!(aws_sdk_sfn::Client::describe_execution).then_error(|| {
        DescribeExecutionError::ExecutionDoesNotExist(
            ExecutionDoesNotExist::builder()
                .message("Execution Does Not Exist")
                .build(),
        )
    });
    let m = Mocks {
        s3: vec![],
        sfn: vec![gone],
        codepipeline: vec![failure_recorded(
            FailureType::JobFailed,
            "does not exist: it was never started",
        )],
    };
    run(&m, continuation_event(&token(1))).await.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

#[tokio::test]
async fn a_foreign_token_fails_the_job() {
    let m = Mocks {
        s3: vec![],
        sfn: vec![],
        codepipeline: vec![failure_recorded(
            FailureType::JobFailed,
            "not one this function issued",
        )],
    };
    run(&m, continuation_event("deployment-1234")).await.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

// ---- faults inside the function ----

#[tokio::test]
async fn a_panic_in_the_job_logic_still_fails_the_job() {
    let boom = mock!(aws_sdk_sfn::Client::describe_execution)
        .then_compute_output(|_| panic!("index out of bounds: the len is 0 but the index is 0"));
    let m = Mocks {
        s3: vec![],
        sfn: vec![boom],
        codepipeline: vec![failure_recorded(
            FailureType::JobFailed,
            "internal error in the pipeline trigger (panic: index out of bounds",
        )],
    };
    run(&m, continuation_event(&token(1))).await.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

fn s3_at(endpoint: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::for_tests())
            .endpoint_url(endpoint)
            .http_client(lambda_common::sdk::http_client())
            .force_path_style(true)
            .build(),
    )
}

fn sfn_at(
    endpoint: &str,
    http: aws_smithy_runtime_api::client::http::SharedHttpClient,
) -> aws_sdk_sfn::Client {
    aws_sdk_sfn::Client::from_conf(
        aws_sdk_sfn::Config::builder()
            .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
            .region(aws_sdk_sfn::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sfn::config::Credentials::for_tests())
            .endpoint_url(endpoint)
            .http_client(http)
            .build(),
    )
}

/// An endpoint that accepts connections and never answers.
async fn silent_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    (format!("http://{addr}"), hold)
}

#[tokio::test]
async fn a_first_invocation_out_of_time_keeps_polling_the_jobs_own_execution() {
    let (endpoint, hold) = silent_endpoint().await;
    let put = success_recorded(|r| {
        r.continuation_token().unwrap().contains(EXEC)
            && r.execution_details()
                .unwrap()
                .summary()
                .unwrap()
                .contains("was not confirmed before the Lambda deadline")
    });
    let m = Mocks {
        s3: vec![],
        sfn: vec![standard_machine()],
        codepipeline: vec![put],
    };
    let mut t = trigger(&m);
    t.s3 = s3_at(&endpoint);
    let started = std::time::Instant::now();
    invoke(
        &t,
        lambda_event(
            with_user_parameters(first_event(), SAMPLE),
            Duration::from_secs(2),
        ),
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the result was recorded after the deadline"
    );
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    hold.abort();
}

#[tokio::test]
async fn a_poll_out_of_time_still_fails_the_job_in_time() {
    let (endpoint, hold) = silent_endpoint().await;
    let m = Mocks {
        s3: vec![],
        sfn: vec![],
        codepipeline: vec![failure_recorded(
            FailureType::JobFailed,
            "did not finish before its Lambda deadline",
        )],
    };
    let mut t = trigger(&m);
    t.sfn = sfn_at(&endpoint, lambda_common::sdk::http_client());
    let started = std::time::Instant::now();
    invoke(
        &t,
        lambda_event(continuation_event(&token(1)), Duration::from_secs(2)),
    )
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    hold.abort();
}

#[tokio::test]
async fn an_input_file_over_the_execution_input_limit_is_a_configuration_error() {
    let huge = mock!(aws_sdk_s3::Client::get_object).then_output(|| {
        GetObjectOutput::builder()
            .content_length(300_000)
            .body(ByteStream::from_static(b"{}"))
            .build()
    });
    assert_first_call_fails(
        vec![huge],
        vec![],
        SAMPLE,
        FailureType::ConfigurationError,
        "is larger than 262144 bytes",
    )
    .await;
    // Without a Content-Length, the size is checked after reading.
    let unsized_body = mock!(aws_sdk_s3::Client::get_object).then_output(|| {
        let big = format!("{{\"blob\": \"{}\"}}", "x".repeat(270_000));
        GetObjectOutput::builder()
            .body(ByteStream::from(big.into_bytes()))
            .build()
    });
    assert_first_call_fails(
        vec![unsized_body],
        vec![],
        SAMPLE,
        FailureType::ConfigurationError,
        "is larger than 262144 bytes",
    )
    .await;
}

#[tokio::test]
async fn an_overlong_rejection_is_truncated_so_the_failure_is_recorded() {
    let rejected = mock!(aws_sdk_codepipeline::Client::put_job_success_result).then_error(|| {
        PutJobSuccessResultError::ValidationException(
            ValidationException::builder().message("v".repeat(20_000)).build(),
        )
    });
    let recorded = mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
        .match_requests(|r| {
            let m = r.failure_details().unwrap().message();
            m.starts_with("CodePipeline rejected") && m.chars().count() <= 5_000
        })
        .then_output(|| PutJobFailureResultOutput::builder().build());
    let m = Mocks {
        s3: vec![],
        sfn: vec![describe(ExecutionStatus::Succeeded, Some("{}"), None, None)],
        codepipeline: vec![rejected, recorded],
    };
    run(&m, continuation_event(&token(1))).await.unwrap();
    assert_eq!(m.codepipeline[1].num_calls(), 1);
}

// ---- recording the result ----

#[tokio::test]
async fn a_job_that_already_has_a_result_is_left_alone() {
    let refused = mock!(aws_sdk_codepipeline::Client::put_job_success_result).then_error(|| {
        PutJobSuccessResultError::InvalidJobStateException(
            InvalidJobStateException::builder()
                .message("not in progress")
                .build(),
        )
    });
    let m = Mocks {
        s3: vec![],
        sfn: vec![
            describe(ExecutionStatus::Running, None, None, None),
            history(task_started("Deploy")),
        ],
        codepipeline: vec![refused],
    };
    let (result, counted) = run_counted(&m, continuation_event(&token(1))).await;
    result.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    assert_eq!(counted, expect(&[]), "an answered job is not counted again");
}

#[tokio::test]
async fn a_rejected_success_result_becomes_a_failure_result() {
    let rejected = mock!(aws_sdk_codepipeline::Client::put_job_success_result).then_error(|| {
        PutJobSuccessResultError::ValidationException(
            ValidationException::builder().message("summary too long").build(),
        )
    });
    let m = Mocks {
        s3: vec![],
        sfn: vec![describe(ExecutionStatus::Succeeded, Some("{}"), None, None)],
        codepipeline: vec![
            rejected,
            failure_recorded(
                FailureType::JobFailed,
                "CodePipeline rejected the trigger's success result",
            ),
        ],
    };
    let (result, counted) = run_counted(&m, continuation_event(&token(1))).await;
    result.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    assert_eq!(m.codepipeline[1].num_calls(), 1);
    // The failure recorded is counted, the refused success is not.
    assert_eq!(
        counted,
        expect(&[
            ("JobsFailed{FailureType=JobFailed}", json!(1.0)),
            ("PollsPerJob", json!(3.0))
        ])
    );
}

#[tokio::test]
async fn when_no_result_can_be_recorded_the_invocation_errors() {
    let down = mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
        .sequence()
        .http_status(
            503,
            Some(r#"{"__type": "ServiceUnavailableException", "message": "down"}"#.into()),
        )
        .times(3)
        .build();
    let m = Mocks {
        s3: vec![],
        sfn: vec![],
        codepipeline: vec![down],
    };
    let (result, counted) = run_counted(&m, continuation_event("garbage")).await;
    let err = result.unwrap_err();
    assert_eq!(err.error_type, "JobResultNotRecorded");
    assert_eq!(counted, expect(&[("ResultsNotRecorded", json!(1.0))]));
    assert!(
        err.error_message.contains(JOB) || err.error_message.contains("22222222"),
        "{}",
        err.error_message
    );
    assert_eq!(m.codepipeline[0].num_calls(), 3);
}

#[tokio::test]
async fn an_event_without_a_job_id_is_a_typed_error_and_records_nothing() {
    let m = Mocks {
        s3: vec![],
        sfn: vec![],
        codepipeline: vec![],
    };
    let (result, counted) = run_counted(&m, json!({"Records": []})).await;
    assert_eq!(result.unwrap_err().error_type, "NotACodePipelineJob");
    assert_eq!(counted, expect(&[]));
}

// ---- Express state machines ----

const EXPRESS_EXEC: &str = "arn:aws:states:us-east-1:111111111111:express:deploy:codepipeline-11111111-abcd-1111-abcd-111111abcdef:4e1b8f0c";

fn express_machine() -> Rule {
    machine_of_type(StateMachineType::Express)
}

fn sync_ended(
    status: SyncExecutionStatus,
    output: Option<&'static str>,
    error: Option<&'static str>,
    cause: Option<&'static str>,
) -> Rule {
    mock!(aws_sdk_sfn::Client::start_sync_execution)
        .match_requests(|r| {
            let input: Value = serde_json::from_str(r.input().unwrap()).unwrap();
            r.state_machine_arn() == Some(SM)
                && r.name() == Some("codepipeline-11111111-abcd-1111-abcd-111111abcdef")
                && input["codePipelineJobId"] == JOB
        })
        .then_output(move || {
            StartSyncExecutionOutput::builder()
                .execution_arn(EXPRESS_EXEC)
                .state_machine_arn(SM)
                .name("codepipeline-11111111-abcd-1111-abcd-111111abcdef")
                .start_date(aws_smithy_types::DateTime::from_secs(1_700_000_000))
                .stop_date(aws_smithy_types::DateTime::from_secs(1_700_000_002))
                .status(status.clone())
                .set_output(output.map(str::to_owned))
                .set_error(error.map(str::to_owned))
                .set_cause(cause.map(str::to_owned))
                .build()
                .unwrap()
        })
}

#[tokio::test]
async fn an_express_success_completes_the_job_in_one_invocation() {
    let put = success_recorded(|r| {
        let vars = r.output_variables().unwrap();
        let d = r.execution_details().unwrap();
        r.continuation_token().is_none()
            && d.external_execution_id() == Some(EXPRESS_EXEC)
            && d.summary()
                == Some(
                    "Execution codepipeline-11111111-abcd-1111-abcd-111111abcdef SUCCEEDED; 2 output variable(s) exported",
                )
            && vars.get("stackName").map(String::as_str) == Some("prod-app")
            && vars.get("changed").map(String::as_str) == Some("2")
    });
    let m = Mocks {
        s3: vec![input_file_ok()],
        sfn: vec![
            express_machine(),
            sync_ended(
                SyncExecutionStatus::Succeeded,
                Some(r#"{"stackName": "prod-app", "changed": 2}"#),
                None,
                None,
            ),
        ],
        codepipeline: vec![put],
    };
    let (result, counted) = run_counted(&m, first_event()).await;
    result.unwrap();
    assert_eq!(m.sfn[1].num_calls(), 1);
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    assert_eq!(
        counted,
        expect(&[
            ("JobsStarted", json!(1.0)),
            ("JobsSucceeded", json!(1.0)),
            ("PollsPerJob", json!(1.0))
        ])
    );
}

#[tokio::test]
async fn an_express_failure_or_timeout_fails_the_job_with_error_and_cause() {
    for (status, name) in [
        (SyncExecutionStatus::Failed, "FAILED"),
        (SyncExecutionStatus::TimedOut, "TIMED_OUT"),
    ] {
        let expected: &'static str = Box::leak(
            format!("Execution {EXPRESS_EXEC} ended with status {name}. Error: DeployFailed. Cause: stack rolled back")
                .into_boxed_str(),
        );
        let m = Mocks {
            s3: vec![input_file_ok()],
            sfn: vec![
                express_machine(),
                sync_ended(status, None, Some("DeployFailed"), Some("stack rolled back")),
            ],
            codepipeline: vec![failure_recorded(FailureType::JobFailed, expected)],
        };
        run(&m, first_event()).await.unwrap();
        assert_eq!(m.codepipeline[0].num_calls(), 1, "{name}");
    }
}

#[tokio::test]
async fn the_state_machine_type_is_described_once_per_container() {
    let m = Mocks {
        s3: vec![input_file_ok()],
        sfn: vec![
            express_machine(),
            mock!(aws_sdk_sfn::Client::start_sync_execution)
                .sequence()
                .output(|| {
                    StartSyncExecutionOutput::builder()
                        .execution_arn(EXPRESS_EXEC)
                        .start_date(aws_smithy_types::DateTime::from_secs(0))
                        .stop_date(aws_smithy_types::DateTime::from_secs(0))
                        .status(SyncExecutionStatus::Succeeded)
                        .output("{}")
                        .build()
                        .unwrap()
                })
                .times(2)
                .build(),
        ],
        codepipeline: vec![
            success_recorded(|r| r.continuation_token().is_none()),
            success_recorded(|r| r.continuation_token().is_none()),
        ],
    };
    let t = trigger(&m);
    for _ in 0..2 {
        invoke(&t, lambda_event(first_event(), Duration::from_secs(30)))
            .await
            .unwrap();
    }
    assert_eq!(m.sfn[0].num_calls(), 1, "DescribeStateMachine once");
    assert_eq!(m.sfn[1].num_calls(), 2);
}

#[tokio::test]
async fn a_state_machine_whose_type_cannot_be_read_is_a_named_failure() {
    let denied = mock!(aws_sdk_sfn::Client::describe_state_machine).then_error(|| {
        DescribeStateMachineError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not authorized to perform: states:DescribeStateMachine")
                .build(),
        )
    });
    let m = Mocks {
        s3: vec![input_file_ok()],
        sfn: vec![denied],
        codepipeline: vec![failure_recorded(
            FailureType::PermissionError,
            "access denied describing state machine arn:aws:states:us-east-1:111111111111:stateMachine:deploy \
             (the trigger reads its type): AccessDeniedException",
        )],
    };
    run(&m, first_event()).await.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

#[tokio::test]
async fn an_express_run_that_outlives_the_deadline_fails_in_time_naming_the_limit() {
    let (endpoint, hold) = silent_endpoint().await;
    let m = Mocks {
        s3: vec![input_file_ok()],
        sfn: vec![],
        codepipeline: vec![failure_recorded(
            FailureType::JobFailed,
            "before the pipeline trigger's Lambda deadline, so its result is unknown",
        )],
    };
    // StartSyncExecution goes to `sync-<host>`: a name reached through a proxy that never answers.
    let proxy = aws_smithy_http_client::proxy::ProxyConfig::http(endpoint.as_str()).unwrap();
    let http = aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = aws_smithy_http_client::ConnectorBuilder::default();
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(proxy.clone()));
        connector.build_http()
    });
    let mut t = trigger(&m);
    t.sfn = sfn_at("http://states.localhost:1", http);
    t.machine_types
        .remember(SM, pipeline_trigger::express::MachineType::Express);
    let started = std::time::Instant::now();
    invoke(&t, lambda_event(first_event(), Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "recorded after the deadline"
    );
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    hold.abort();
}

// ---- output artifacts ----

const ARTIFACT_KEY: &str = "MyPipeline/DeployOutp/Xyz12ab";
const KMS_KEY: &str = "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn with_output_artifact(mut event: Value) -> Value {
    event["CodePipeline.job"]["data"]["outputArtifacts"] = json!([{
        "name": "DeployOutput",
        "location": {"type": "S3", "s3Location": {"bucketName": "codepipeline-artifacts", "objectKey": ARTIFACT_KEY}},
    }]);
    event["CodePipeline.job"]["data"]["encryptionKey"] = json!({"id": KMS_KEY, "type": "KMS"});
    event
}

/// An S3 client that captures the one request it gets and answers `status`.
fn capturing_s3(
    status: u16,
    body: &'static str,
) -> (
    aws_sdk_s3::Client,
    aws_smithy_http_client::test_util::CaptureRequestReceiver,
) {
    let response = aws_smithy_runtime_api::http::Response::new(
        status.try_into().unwrap(),
        aws_smithy_types::body::SdkBody::from(body),
    );
    let (http, captured) =
        aws_smithy_http_client::test_util::capture_request(Some(response.try_into_http1x().unwrap()));
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::for_tests())
            .http_client(http)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .build(),
    );
    (s3, captured)
}

fn unzip_output(zip: &[u8]) -> String {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    assert_eq!(archive.len(), 1);
    let mut text = String::new();
    archive
        .by_name(pipeline_trigger::artifact::ENTRY_NAME)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text
}

#[tokio::test]
async fn a_succeeded_execution_writes_its_output_artifact_with_the_jobs_credentials() {
    const OUTPUT: &str = r#"{"stackName": "prod-app", "changes": [{"id": "Queue"}]}"#;
    let m = Mocks {
        s3: vec![],
        sfn: vec![describe(ExecutionStatus::Succeeded, Some(OUTPUT), None, None)],
        codepipeline: vec![success_recorded(|r| {
            r.continuation_token().is_none()
                && r.execution_details()
                    .unwrap()
                    .summary()
                    .unwrap()
                    .ends_with("; output artifact DeployOutput written")
        })],
    };
    let (s3, captured) = capturing_s3(200, "");
    let mut t = trigger(&m);
    t.s3 = s3;
    let event = with_output_artifact(continuation_event(&token(3)));
    invoke(&t, lambda_event(event, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);

    let request = captured.expect_request();
    assert_eq!(request.method(), "PUT");
    assert!(
        request.uri().contains("codepipeline-artifacts")
            && request.uri().contains(&format!("/{ARTIFACT_KEY}?")),
        "{}",
        request.uri()
    );
    let header = |name: &str| request.headers().get(name).unwrap_or_default().to_owned();
    assert!(
        header("authorization").contains("Credential=AKIAEXAMPLECREDENTIAL/"),
        "signed with the job's artifact credentials, not the function's"
    );
    assert_eq!(
        header("x-amz-security-token"),
        "sessionTokenExampleValue+FwoGZXIvYXdzEXAMPLE"
    );
    assert_eq!(header("x-amz-server-side-encryption"), "aws:kms");
    assert_eq!(header("x-amz-server-side-encryption-aws-kms-key-id"), KMS_KEY);
    assert_eq!(header("content-type"), "application/zip");
    let body = request.body().bytes().unwrap();
    assert_eq!(unzip_output(body), OUTPUT);
}

#[tokio::test]
async fn an_express_success_writes_its_output_artifact_too() {
    let m = Mocks {
        s3: vec![],
        sfn: vec![
            express_machine(),
            sync_ended(
                SyncExecutionStatus::Succeeded,
                Some(r#"{"ok": true}"#),
                None,
                None,
            ),
        ],
        codepipeline: vec![success_recorded(|r| r.continuation_token().is_none())],
    };
    let (s3, captured) = capturing_s3(200, "");
    let mut t = trigger(&m);
    t.s3 = s3;
    let params = r#"{"input": {"stackName": "inline"}}"#;
    let event = with_output_artifact(with_user_parameters(first_event(), Some(params)));
    invoke(&t, lambda_event(event, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    let request = captured.expect_request();
    assert_eq!(unzip_output(request.body().bytes().unwrap()), r#"{"ok": true}"#);
}

#[tokio::test]
async fn a_refused_artifact_write_fails_the_job_saying_so() {
    let m = Mocks {
        s3: vec![],
        sfn: vec![describe(ExecutionStatus::Succeeded, Some("{}"), None, None)],
        codepipeline: vec![failure_recorded(
            FailureType::PermissionError,
            "S3 refused to write output artifact DeployOutput to s3://codepipeline-artifacts/MyPipeline/DeployOutp/Xyz12ab \
             with the job's artifact credentials: AccessDenied",
        )],
    };
    let denied = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"#;
    let (s3, _captured) = capturing_s3(403, denied);
    let mut t = trigger(&m);
    t.s3 = s3;
    let event = with_output_artifact(continuation_event(&token(3)));
    invoke(&t, lambda_event(event, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

#[tokio::test]
async fn an_output_too_large_for_the_artifact_fails_the_job_saying_so() {
    let huge: &'static str = Box::leak(format!("\"{}\"", "x".repeat(300_000)).into_boxed_str());
    let m = Mocks {
        s3: vec![],
        sfn: vec![describe(ExecutionStatus::Succeeded, Some(huge), None, None)],
        codepipeline: vec![failure_recorded(
            FailureType::JobFailed,
            "the execution's output is 300002 bytes, over the 262144-byte limit of output artifact DeployOutput",
        )],
    };
    let (s3, captured) = capturing_s3(200, "");
    let mut t = trigger(&m);
    t.s3 = s3;
    let event = with_output_artifact(continuation_event(&token(3)));
    invoke(&t, lambda_event(event, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    captured.expect_no_request();
}

#[tokio::test]
async fn an_unwritable_artifact_declaration_fails_before_anything_starts() {
    let mut event = with_output_artifact(first_event());
    event["CodePipeline.job"]["data"]
        .as_object_mut()
        .unwrap()
        .remove("artifactCredentials");
    let m = Mocks {
        s3: vec![],
        sfn: vec![],
        codepipeline: vec![failure_recorded(
            FailureType::ConfigurationError,
            "no usable artifactCredentials to write output artifact DeployOutput",
        )],
    };
    run(&m, event).await.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

// ---- transient poll failures and foreign tokens ----

fn describe_throttled(times: usize) -> Rule {
    mock!(aws_sdk_sfn::Client::describe_execution)
        .sequence()
        .error(|| {
            DescribeExecutionError::generic(
                ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .message("Rate exceeded")
                    .build(),
            )
        })
        .times(times)
        .build()
}

#[tokio::test]
async fn a_throttled_poll_continues_with_the_same_execution() {
    let put = success_recorded(|r| {
        let t: Value = serde_json::from_str(r.continuation_token().unwrap()).unwrap();
        let d = r.execution_details().unwrap();
        t["executionArn"] == EXEC
            && t["transientFailures"] == 1
            && t["failingSince"].is_u64()
            && t["polls"] == 3
            && d.external_execution_id() == Some(EXEC)
            && d.summary().unwrap().starts_with(&format!(
                "Could not check execution {EXEC} (transient failure 1 of at most 4: ThrottlingException: Rate exceeded)"
            ))
    });
    let m = Mocks {
        s3: vec![],
        sfn: vec![describe_throttled(3)],
        codepipeline: vec![put],
    };
    run(&m, continuation_event(&token(2))).await.unwrap();
    assert_eq!(m.sfn[0].num_calls(), 3, "after the SDK's own retries");
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

#[tokio::test]
async fn a_poll_that_answers_again_forgets_the_transient_failures() {
    let failing =
        json!({"executionArn": EXEC, "polls": 2, "transientFailures": 3, "failingSince": 1}).to_string();
    let m = Mocks {
        s3: vec![],
        sfn: vec![
            describe(ExecutionStatus::Running, None, None, None),
            history(task_started("Deploy")),
        ],
        codepipeline: vec![success_recorded(|r| {
            let t: Value = serde_json::from_str(r.continuation_token().unwrap()).unwrap();
            t["polls"] == 3 && t.get("transientFailures").is_none() && t.get("failingSince").is_none()
        })],
    };
    run(&m, continuation_event(&failing)).await.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

#[tokio::test]
async fn transient_failures_end_the_job_at_the_bound_with_the_last_error() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let by_count =
        json!({"executionArn": EXEC, "polls": 6, "transientFailures": 4, "failingSince": now - 60});
    let by_time =
        json!({"executionArn": EXEC, "polls": 6, "transientFailures": 1, "failingSince": now - 901});
    for (token, expected) in [
        (
            by_count,
            "could not check execution arn:aws:states:us-east-1:111111111111:execution:deploy:codepipeline-11111111-abcd-1111-abcd-111111abcdef: 5 consecutive transient failures over",
        ),
        (by_time, "2 consecutive transient failures over 90"),
    ] {
        let m = Mocks {
            s3: vec![],
            sfn: vec![describe_throttled(3)],
            codepipeline: vec![failure_recorded(FailureType::JobFailed, expected)],
        };
        run(&m, continuation_event(&token.to_string())).await.unwrap();
        assert_eq!(m.codepipeline[0].num_calls(), 1, "{token}");
    }
    let last_error = Mocks {
        s3: vec![],
        sfn: vec![describe_throttled(3)],
        codepipeline: vec![failure_recorded(
            FailureType::JobFailed,
            "(the trigger gives up at 5 in a row or after 900 s); the last one: ThrottlingException: Rate exceeded",
        )],
    };
    let token = json!({"executionArn": EXEC, "polls": 6, "transientFailures": 4, "failingSince": now});
    run(&last_error, continuation_event(&token.to_string()))
        .await
        .unwrap();
    assert_eq!(last_error.codepipeline[0].num_calls(), 1);
}

#[tokio::test]
async fn a_token_naming_another_accounts_or_regions_execution_is_refused_unpolled() {
    for (arn, expected) in [
        (
            "arn:aws:states:us-east-1:999999999999:execution:deploy:codepipeline-x",
            "in account 999999999999, not the job's account 111111111111; it was not polled",
        ),
        (
            "arn:aws:states:eu-west-1:111111111111:execution:deploy:codepipeline-x",
            "in region eu-west-1, not the function's region us-east-1; it was not polled",
        ),
    ] {
        let m = Mocks {
            s3: vec![],
            sfn: vec![describe(
                ExecutionStatus::Succeeded,
                Some(r#"{"secret": "theirs"}"#),
                None,
                None,
            )],
            codepipeline: vec![failure_recorded(FailureType::JobFailed, expected)],
        };
        let token = json!({"executionArn": arn, "polls": 1}).to_string();
        run(&m, continuation_event(&token)).await.unwrap();
        assert_eq!(m.sfn[0].num_calls(), 0, "{arn} was polled");
        assert_eq!(m.codepipeline[0].num_calls(), 1);
    }
}

#[tokio::test]
async fn a_failed_start_sync_call_is_tried_once_and_the_type_looked_up_again() {
    let throttled = mock!(aws_sdk_sfn::Client::start_sync_execution)
        .sequence()
        .error(|| {
            StartSyncExecutionError::generic(
                ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .message("Rate exceeded")
                    .build(),
            )
        })
        .times(2)
        .build();
    let m = Mocks {
        s3: vec![input_file_ok()],
        sfn: vec![express_machine(), throttled],
        codepipeline: vec![failure_recorded(
            FailureType::JobFailed,
            "its result is unknown: ThrottlingException: Rate exceeded",
        )],
    };
    let t = trigger(&m);
    invoke(&t, lambda_event(first_event(), Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(
        m.sfn[1].num_calls(),
        1,
        "no SDK retry: a retry could run the workflow twice"
    );
    assert_eq!(t.machine_types.get(SM), None, "the type is looked up again");
}

#[tokio::test]
async fn an_artifact_write_that_outlives_the_deadline_fails_the_job_in_time() {
    let (endpoint, hold) = silent_endpoint().await;
    let m = Mocks {
        s3: vec![],
        sfn: vec![describe(ExecutionStatus::Succeeded, Some("{}"), None, None)],
        codepipeline: vec![failure_recorded(
            FailureType::JobFailed,
            "the execution SUCCEEDED, but output artifact DeployOutput could not be written before the \
             pipeline trigger's Lambda deadline, so the job is not reported as a success",
        )],
    };
    let mut t = trigger(&m);
    t.s3 = s3_at(&endpoint);
    let started = std::time::Instant::now();
    let event = with_output_artifact(continuation_event(&token(3)));
    invoke(&t, lambda_event(event, Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    hold.abort();
}

#[tokio::test]
async fn a_state_machine_of_another_account_or_region_is_not_started() {
    for arn in [
        "arn:aws:states:us-east-1:999999999999:stateMachine:theirs",
        "arn:aws:states:eu-west-1:111111111111:stateMachine:deploy",
    ] {
        let m = Mocks {
            s3: vec![],
            sfn: vec![standard_machine()],
            codepipeline: vec![failure_recorded(
                FailureType::ConfigurationError,
                "the trigger starts only state machines of the job's account and region",
            )],
        };
        let params = format!(r#"{{"input": {{"a": 1}}, "stateMachineArn": "{arn}"}}"#);
        run(&m, with_user_parameters(first_event(), Some(&params)))
            .await
            .unwrap();
        assert_eq!(m.sfn[0].num_calls(), 0, "{arn}");
        assert_eq!(m.codepipeline[0].num_calls(), 1);
    }
}

#[tokio::test]
async fn a_standard_type_that_went_stale_fails_the_job_and_is_forgotten() {
    let start = mock!(aws_sdk_sfn::Client::start_execution).then_output(|| {
        StartExecutionOutput::builder()
            .execution_arn(EXPRESS_EXEC)
            .start_date(aws_smithy_types::DateTime::from_secs(0))
            .build()
            .unwrap()
    });
    let m = Mocks {
        s3: vec![input_file_ok()],
        sfn: vec![standard_machine(), start],
        codepipeline: vec![failure_recorded(
            FailureType::JobFailed,
            "which is not a Standard execution (was it created again as Express?)",
        )],
    };
    let t = trigger(&m);
    invoke(&t, lambda_event(first_event(), Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    assert_eq!(t.machine_types.get(SM), None);
}

#[tokio::test]
async fn a_malformed_encryption_key_fails_before_anything_starts() {
    let mut event = with_output_artifact(first_event());
    event["CodePipeline.job"]["data"]["encryptionKey"] = json!({"type": "KMS"});
    let m = Mocks {
        s3: vec![],
        sfn: vec![],
        codepipeline: vec![failure_recorded(
            FailureType::ConfigurationError,
            "the job's encryptionKey is malformed: missing field `id`",
        )],
    };
    run(&m, event).await.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
}

// ---- the on-failure destination ----

fn destination_record(name: &str) -> Value {
    let text = match name {
        "retries" => include_str!("fixtures/destination-retries-exhausted.json"),
        "age" => include_str!("fixtures/destination-event-age-exceeded.json"),
        "success" => include_str!("fixtures/destination-success.json"),
        "poll" => include_str!("fixtures/destination-poll-retries-exhausted.json"),
        _ => unreachable!(),
    };
    serde_json::from_str(text).unwrap()
}

fn no_mocks(codepipeline: Vec<Rule>) -> Mocks {
    Mocks {
        s3: vec![],
        sfn: vec![],
        codepipeline,
    }
}

#[tokio::test]
async fn a_failure_record_ends_the_original_job_with_job_failed() {
    let put = mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
        .match_requests(|r| {
            let d = r.failure_details().unwrap();
            r.job_id() == Some(JOB)
                && d.r#type() == &FailureType::JobFailed
                && d.message().starts_with(
                    "The pipeline trigger function failed on every attempt to handle this job \
                     (RetriesExhausted: Lambda's retries are exhausted; 3 attempts)",
                )
                && d.message().contains("Last error: Runtime.ExitError: RequestId: ")
                && d.external_execution_id().is_none()
                && !d.message().contains("secretExampleValue")
        })
        .then_output(|| PutJobFailureResultOutput::builder().build());
    let m = no_mocks(vec![put]);
    let (result, counted) = run_counted(&m, destination_record("retries")).await;
    result.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    assert_eq!(
        counted,
        expect(&[
            ("JobsEndedByDestination", json!(1.0)),
            ("JobsFailed{FailureType=JobFailed}", json!(1.0))
        ])
    );
}

#[tokio::test]
async fn a_polls_failure_links_the_execution_that_may_still_be_running() {
    let put = mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
        .match_requests(|r| {
            let d = r.failure_details().unwrap();
            let ok = r.job_id() == Some(JOB)
                && d.r#type() == &FailureType::JobFailed
                && d.external_execution_id() == Some(EXEC)
                && d.message().starts_with(&format!(
                    "The pipeline trigger function failed on every attempt to handle this job \
                     (RetriesExhausted: Lambda's retries are exhausted; 3 attempts), so its on-failure \
                     destination ended the job. The Step Functions execution {EXEC} may still be \
                     running: the job was ended while the trigger was polling it, so check or stop \
                     that execution before retrying the stage, or the retry starts a second one. \
                     Last error: Runtime.ExitError: RequestId: "
                ))
                && d.message().chars().count() <= 5000
                && !d.message().contains("secretExampleValue");
            if !ok {
                eprintln!("unexpected failure result: {d:?}");
            }
            ok
        })
        .then_output(|| PutJobFailureResultOutput::builder().build());
    let m = no_mocks(vec![put]);
    let (result, counted) = run_counted(&m, destination_record("poll")).await;
    result.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    assert_eq!(
        counted,
        expect(&[
            ("JobsEndedByDestination", json!(1.0)),
            ("JobsFailed{FailureType=JobFailed}", json!(1.0))
        ])
    );
}

#[tokio::test]
async fn an_aged_out_event_ends_the_job_too() {
    let m = no_mocks(vec![failure_recorded(
        FailureType::JobFailed,
        "(EventAgeExceeded: the event's maximum age ran out before an attempt succeeded; 1 attempt)",
    )]);
    let (result, counted) = run_counted(&m, destination_record("age")).await;
    result.unwrap();
    assert_eq!(m.codepipeline[0].num_calls(), 1);
    assert_eq!(counted["JobsEndedByDestination"], json!(1.0));
}

#[tokio::test]
async fn a_job_that_already_has_a_result_or_expired_is_left_alone_by_the_destination() {
    let answered = mock!(aws_sdk_codepipeline::Client::put_job_failure_result).then_error(|| {
        PutJobFailureResultError::InvalidJobStateException(
            InvalidJobStateException::builder()
                .message("not in progress")
                .build(),
        )
    });
    let expired = mock!(aws_sdk_codepipeline::Client::put_job_failure_result).then_error(|| {
        PutJobFailureResultError::JobNotFoundException(
            aws_sdk_codepipeline::types::error::JobNotFoundException::builder()
                .message("no such job")
                .build(),
        )
    });
    for rule in [answered, expired] {
        let m = no_mocks(vec![rule]);
        let (result, counted) = run_counted(&m, destination_record("retries")).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(m.codepipeline[0].num_calls(), 1, "tried once, no second result");
        assert_eq!(counted, expect(&[]));
    }
}

#[tokio::test]
async fn a_destination_that_cannot_record_errors_and_counts_it() {
    let down = mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
        .sequence()
        .http_status(
            503,
            Some(r#"{"__type": "ServiceUnavailableException", "message": "down"}"#.into()),
        )
        .times(3)
        .build();
    let m = no_mocks(vec![down]);
    let (result, counted) = run_counted(&m, destination_record("retries")).await;
    let err = result.unwrap_err();
    assert_eq!(err.error_type, "JobResultNotRecorded");
    assert!(err.error_message.contains(JOB), "{}", err.error_message);
    assert!(!err.error_message.contains("secretExampleValue"));
    assert_eq!(counted, expect(&[("ResultsNotRecorded", json!(1.0))]));
}

#[tokio::test]
async fn records_that_end_no_job_are_refused_by_name_and_record_nothing() {
    let mut not_a_job = destination_record("retries");
    not_a_job["requestPayload"] = json!({"Records": [{"eventSource": "aws:s3"}]});
    let mut unknown = destination_record("retries");
    unknown["requestContext"]["condition"] = json!("Throttled");
    for (record, error_type, says) in [
        (
            destination_record("success"),
            "DestinationRecordNotAFailure",
            "condition is Success",
        ),
        (
            not_a_job,
            "DestinationRecordNotACodePipelineJob",
            "requestPayload is not a CodePipeline job event",
        ),
        (
            unknown,
            "DestinationRecordUnknownCondition",
            "condition is Throttled",
        ),
    ] {
        let m = no_mocks(vec![]);
        let (result, counted) = run_counted(&m, record).await;
        let err = result.unwrap_err();
        assert_eq!(err.error_type, error_type);
        assert!(err.error_message.contains(says), "{}", err.error_message);
        assert_eq!(counted, expect(&[]));
    }
}
