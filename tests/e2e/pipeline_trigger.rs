//! End to end: the real `pipeline-trigger` binary, invoked through the Lambda Invoke API with
//! CodePipeline job events, drives real state machines executed by moto; the job results are
//! read back from the local CodePipeline emulator, and the trigger's EMF metrics are checked
//! against them.

mod support;

use std::collections::BTreeMap;

use e2e::emf;
use e2e::pipeline::{ActionOutcome, ActionStatus, invoke_job, job_event, run_action};
use serde_json::Value;
use support::{SAMPLE_PARAMETERS, World};

use e2e::codepipeline::FAILURE_TYPES;

/// The trigger's metrics against the ground truth, the results the CodePipeline emulator took:
/// `JobsSucceeded` = final successes, `JobsFailed` by `FailureType` = failures by type, one
/// `PollsPerJob` sample per ended job, `ResultsNotRecorded` = refused result calls other than
/// "the job already has a result". Returns the trigger's metrics.
fn assert_metrics_match_results(world: &World) -> Vec<emf::Datum> {
    let data = world
        .stack
        .metrics("pipeline-trigger")
        .expect("the trigger's EMF lines");
    let calls = world.stack.codepipeline_calls();
    let accepted: Vec<_> = calls.iter().filter(|c| c.error.is_none()).collect();
    let finals = accepted
        .iter()
        .filter(|c| c.operation == "PutJobSuccessResult" && c.request.get("continuationToken").is_none())
        .count();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for c in accepted.iter().filter(|c| c.operation == "PutJobFailureResult") {
        let kind = c.request["failureDetails"]["type"].as_str().unwrap_or_default();
        *failures.entry(kind.to_owned()).or_default() += 1;
    }
    assert_eq!(
        emf::sum(&data, "JobsSucceeded", &[]),
        finals as f64,
        "JobsSucceeded"
    );
    for kind in FAILURE_TYPES {
        let recorded = failures.get(kind).copied().unwrap_or_default();
        assert_eq!(
            emf::sum(&data, "JobsFailed", &[("FailureType", kind)]),
            recorded as f64,
            "JobsFailed {kind}"
        );
    }
    let failed: usize = failures.values().sum();
    assert_eq!(
        emf::sum(&data, "JobsFailed", &[]),
        failed as f64,
        "JobsFailed, all types"
    );
    assert_eq!(
        emf::values(&data, "PollsPerJob", &[]).len(),
        finals + failed,
        "one PollsPerJob sample per ended job"
    );
    let not_recorded = calls
        .iter()
        .filter(|c| {
            c.error
                .as_deref()
                .is_some_and(|e| e != "InvalidJobStateException")
        })
        .count();
    assert_eq!(emf::sum(&data, "ResultsNotRecorded", &[]), not_recorded as f64);
    data
}

/// The metrics of one action that ended: its polls per job is the number of invocations it
/// took; one execution started.
fn assert_action_metrics(world: &World, outcome: &ActionOutcome, started: usize) {
    let data = assert_metrics_match_results(world);
    assert_eq!(
        emf::values(&data, "PollsPerJob", &[]),
        vec![outcome.invocations.len() as f64],
        "PollsPerJob"
    );
    assert_eq!(emf::sum(&data, "JobsStarted", &[]), started as f64, "JobsStarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_execution_completes_the_job_with_output_variables() {
    let world = World::start().await;
    let spec = world.action(Some(SAMPLE_PARAMETERS));
    let outcome = run_action(&world.stack, &spec).await.expect("action");

    assert_eq!(outcome.status, ActionStatus::Succeeded, "{outcome:#?}");
    // First invocation started the execution; at least one continuation saw it RUNNING.
    assert!(outcome.invocations.len() >= 3, "{outcome:#?}");
    assert!(outcome.summaries[0].starts_with("Started Step Functions execution codepipeline-"));
    assert!(
        outcome.summaries.iter().any(|s| s.contains("is RUNNING")),
        "{:?}",
        outcome.summaries
    );
    assert!(
        outcome
            .summaries
            .last()
            .unwrap()
            .contains("SUCCEEDED; 4 output variable(s) exported")
    );
    let vars: Vec<(&str, &str)> = outcome
        .output_variables
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        vars,
        [
            ("changedResources", "3"),
            ("revisionId", "0f1e2d3c4b5a"),
            ("safe", "true"),
            ("stackName", "prod-sample-lambda-app")
        ]
    );
    // Every job got exactly one result, and no invocation errored.
    for inv in &outcome.invocations {
        assert_eq!(inv.function_error, None, "{inv:?}");
        assert_eq!(inv.calls.len(), 1, "{inv:?}");
    }

    // The execution is real, unique, and got the sample's input plus the revision.
    let sfn = world.stack.sfn();
    let executions = world.execution_arns(&world.succeed_arn).await;
    assert_eq!(executions.len(), 1);
    let exec_arn = &executions[0];
    assert_eq!(outcome.external_execution_id.as_deref(), Some(exec_arn.as_str()));
    let described = sfn
        .describe_execution()
        .execution_arn(exec_arn)
        .send()
        .await
        .unwrap();
    let input: Value = serde_json::from_str(described.input().unwrap()).unwrap();
    assert_eq!(input["environmentName"], "prod");
    assert_eq!(input["revisionS3Bucket"], "codepipeline-artifacts");
    assert_eq!(input["revisionS3Key"], "MyPipeline/SourceArti/abc123");
    assert_eq!(input["codePipelineJobId"], outcome.invocations[0].job_id.as_str());
    assert_action_metrics(&world, &outcome, executions.len());

    world.assert_no_credentials(&spec.credentials);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_execution_fails_the_job_with_status_error_and_cause() {
    let world = World::start().await;
    let params = format!(
        r#"{{"s3Bucket": "pipeline-inputs", "stateMachineFile": "deploy/prod.json", "stateMachineArn": "{}"}}"#,
        world.fail_arn
    );
    let spec = world.action(Some(&params));
    let outcome = run_action(&world.stack, &spec).await.expect("action");

    let Some((failure_type, message)) = outcome.status.failure() else {
        panic!("{outcome:#?}")
    };
    assert_eq!(failure_type, "JobFailed");
    let exec_arn = outcome
        .external_execution_id
        .clone()
        .expect("external execution id");
    assert!(
        exec_arn.contains(":execution:wait-then-fail:codepipeline-"),
        "{exec_arn}"
    );
    assert_eq!(
        message,
        &format!(
            "Execution {exec_arn} ended with status FAILED. Error: StackRolledBack. Cause: Stack \
             prod-sample-lambda-app is UPDATE_ROLLBACK_COMPLETE: resource MyQueue failed to update \
             (Resource handler returned message: queue name already exists)"
        )
    );
    // The default state machine was not touched.
    let default_runs = world.execution_arns(&world.succeed_arn).await;
    assert!(default_runs.is_empty());
    assert_action_metrics(
        &world,
        &outcome,
        world.execution_arns(&world.fail_arn).await.len(),
    );

    world.assert_no_credentials(&spec.credentials);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_first_invocation_starts_only_one_execution() {
    let world = World::start().await;
    let spec = world.action(Some(SAMPLE_PARAMETERS));
    let job_id = uuid::Uuid::new_v4().to_string();
    let event = job_event(&job_id, &spec, None);

    // Lambda retries an invocation with the same event (same job id).
    let first = invoke_job(&world.stack, "pipeline-trigger", &job_id, &event)
        .await
        .unwrap();
    let second = invoke_job(&world.stack, "pipeline-trigger", &job_id, &event)
        .await
        .unwrap();

    assert_eq!(first.function_error, None);
    assert_eq!(
        second.function_error, None,
        "an answered job is not an error: {second:?}"
    );
    let executions = world.execution_arns(&world.succeed_arn).await;
    assert_eq!(
        executions.len(),
        1,
        "a retried invocation started another execution"
    );

    // The job was answered once; the retry's answer was refused as the job was no longer in progress.
    let calls = &second.calls;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(calls[0].operation, "PutJobSuccessResult");
    assert_eq!(calls[0].error, None);
    assert_eq!(calls[1].error.as_deref(), Some("InvalidJobStateException"));
    // Both answers pointed at the same execution.
    assert_eq!(
        calls[0].request["continuationToken"], calls[1].request["continuationToken"],
        "{calls:#?}"
    );

    // Wait for the execution after a retry that came when it had already finished: the name is
    // taken, so the trigger adopts the job's own execution instead of starting another.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let late_job = uuid::Uuid::new_v4().to_string();
    let late_event = job_event(&late_job, &spec, None);
    let late_event = serde_json::to_string(&late_event)
        .unwrap()
        .replace(&late_job, &job_id);
    let late_event: Value = serde_json::from_str(&late_event).unwrap();
    let third = invoke_job(&world.stack, "pipeline-trigger", &job_id, &late_event)
        .await
        .unwrap();
    assert_eq!(third.function_error, None);
    let executions = world.execution_arns(&world.succeed_arn).await;
    assert_eq!(executions.len(), 1);
    // Three first invocations of one job, one execution: started once (the retries' answers
    // were refused, so they count nothing); the job has not ended.
    let data = assert_metrics_match_results(&world);
    assert_eq!(emf::sum(&data, "JobsStarted", &[]), executions.len() as f64);
    assert!(emf::values(&data, "PollsPerJob", &[]).is_empty());

    world.assert_no_credentials(&spec.credentials);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_faults_end_the_job_with_a_configuration_error() {
    let world = World::start().await;
    support::put_object(&world.stack, "pipeline-inputs", "deploy/array.json", b"[1, 2]")
        .await
        .unwrap();
    // The trigger's role may not read any bucket but the input bucket; S3 answers NoSuchBucket
    // for a bucket that does not exist whatever IAM allows, so the job's message stays the same.
    world.stack.expect_denied(
        "pipeline-trigger",
        "s3:*",
        "arn:aws:s3:::no-such-bucket",
        "a bucket other than the input bucket is outside the trigger's grant (S3 still answers NoSuchBucket)",
    );
    let missing_machine = "arn:aws:states:us-east-1:123456789012:stateMachine:does-not-exist";
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "the action has no UserParameters"),
        (Some("stackName=prod".into()), "UserParameters is not valid"),
        (
            Some(r#"{"s3Bucket": "pipeline-inputs"}"#.into()),
            "needs \"stateMachineFile\"",
        ),
        (
            Some(r#"{"s3Bucket": "pipeline-inputs", "stateMachineFile": "deploy/missing.json"}"#.into()),
            "input file s3://pipeline-inputs/deploy/missing.json does not exist",
        ),
        (
            Some(r#"{"s3Bucket": "no-such-bucket", "stateMachineFile": "deploy/prod.json"}"#.into()),
            "input bucket no-such-bucket does not exist: NoSuchBucket: The specified bucket does not exist",
        ),
        (
            Some(r#"{"s3Bucket": "pipeline-inputs", "stateMachineFile": "deploy/array.json"}"#.into()),
            "must hold a JSON object, found an array",
        ),
        (
            Some(format!(
                r#"{{"input": {{"a": 1}}, "stateMachineArn": "{missing_machine}"}}"#
            )),
            "state machine arn:aws:states:us-east-1:123456789012:stateMachine:does-not-exist cannot be \
             started: StateMachineDoesNotExist: State Machine Does Not Exist",
        ),
        (
            Some(r#"{"input": {"a": 1}, "stateMachineArn": "deploy"}"#.into()),
            "\"deploy\" is not a Step Functions state machine ARN",
        ),
    ];
    let mut all_credentials = Vec::new();
    for (params, expected) in cases {
        let spec = world.action(params.as_deref());
        let outcome = run_action(&world.stack, &spec).await.expect("action");
        let Some((failure_type, message)) = outcome.status.failure() else {
            panic!("{params:?}: {outcome:#?}")
        };
        assert_eq!(failure_type, "ConfigurationError", "{params:?}: {message}");
        assert!(message.contains(expected), "{params:?}: {message}");
        assert_eq!(outcome.invocations.len(), 1);
        assert_eq!(outcome.invocations[0].function_error, None);
        all_credentials.push(spec.credentials);
    }
    // Every case failed in its first invocation, and nothing was started.
    let data = assert_metrics_match_results(&world);
    assert_eq!(
        emf::sum(&data, "JobsFailed", &[("FailureType", "ConfigurationError")]),
        all_credentials.len() as f64
    );
    assert_eq!(
        emf::values(&data, "PollsPerJob", &[]),
        vec![1.0; all_credentials.len()]
    );
    assert_eq!(emf::sum(&data, "JobsStarted", &[]), 0.0);
    for creds in &all_credentials {
        world.assert_no_credentials(creds);
    }
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_without_a_job_id_is_a_typed_lambda_error() {
    let world = World::start().await;
    let inv = invoke_job(
        &world.stack,
        "pipeline-trigger",
        "none",
        &serde_json::json!({"hello": "world"}),
    )
    .await
    .unwrap();
    assert_eq!(inv.function_error.as_deref(), Some("Unhandled"));
    let payload: Value = serde_json::from_str(&inv.payload).unwrap();
    assert_eq!(payload["errorType"], "NotACodePipelineJob");
    assert!(world.stack.codepipeline_calls().is_empty());
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_state_invokes_the_rust_handler_and_catches_its_error_type() {
    let world = World::start().await;
    let arn =
        support::create_state_machine(&world.stack, "invoke-rust-task", "invoke-rust-task.asl.json").await;
    let sfn = world.stack.sfn();
    let exec = sfn
        .start_execution()
        .state_machine_arn(&arn)
        .name("task-reaches-rust")
        .input(r#"{"hello": "from step functions"}"#)
        .send()
        .await
        .unwrap();
    let (status, output) = e2e::seed::wait_for_execution(&world.stack, &exec.execution_arn)
        .await
        .unwrap();
    assert_eq!(status, "SUCCEEDED", "output: {output:?}");
    let output: Value = serde_json::from_str(&output.unwrap()).unwrap();
    assert_eq!(output["caught"]["Error"], "NotACodePipelineJob", "{output}");
    // The handler really ran: it logged the refusal.
    assert!(
        world
            .stack
            .function_log("pipeline-trigger")
            .contains("event has no CodePipeline job id")
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_when_lambda_asks_for_json() {
    let stack = e2e::LocalStack::start().await.expect("local stack");
    let artifact = e2e::seed::seed_pipeline_inputs(&stack).await.unwrap();
    let sm = support::create_state_machine(&stack, "wait-then-succeed", "wait-then-succeed.asl.json").await;
    e2e::seed::serve_trigger(
        &stack,
        &sm,
        e2e::FunctionOptions {
            // As Lambda sets them for LoggingConfig {LogFormat: JSON, ApplicationLogLevel:
            // WARN}: Lambda would drop every line below WARN, the metrics among them unless
            // they say WARN. (RUST_LOG, set too, is what the function's own filter reads.)
            env: vec![
                ("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()),
                ("AWS_LAMBDA_LOG_LEVEL".into(), "WARN".into()),
            ],
            rust_log: "debug".into(),
            ..e2e::FunctionOptions::default()
        },
    )
    .await
    .unwrap();
    let spec =
        e2e::pipeline::ActionSpec::new("pipeline-trigger", Some(SAMPLE_PARAMETERS.into()), Some(artifact));
    let outcome = run_action(&stack, &spec).await.unwrap();
    assert_eq!(outcome.status, ActionStatus::Succeeded);

    let log = stack.function_log("pipeline-trigger");
    let mut recorded = 0;
    let mut debug = 0;
    let mut emf_lines = 0;
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v.get("_aws").is_some() {
            // An EMF document: a JSON line of its own, beside the log lines, at the level
            // Lambda's filter keeps.
            assert_eq!(v["level"], "WARN", "{line}");
            emf_lines += 1;
            continue;
        }
        assert!(v["level"].is_string(), "{line}");
        if v["level"] == "DEBUG" {
            debug += 1;
        }
        if v["message"] == "job result recorded" {
            recorded += 1;
            let spans = v["spans"].as_array().expect("span list");
            assert!(spans.iter().any(|s| s["job_id"].is_string()), "{line}");
        }
    }
    assert_eq!(recorded, outcome.invocations.len());
    assert!(emf_lines > 0, "the metrics coexist with the JSON logs");
    // RUST_LOG=debug really raises the level above INFO (the SDK's own debug events appear).
    assert!(debug > 0, "no DEBUG line at RUST_LOG=debug");
    for value in spec.credentials.values() {
        assert!(!log.contains(value));
    }
    stack.stop().await;
}

// ---- Express workflows, output artifacts, transient polls, foreign tokens ----

const ARTIFACT_BUCKET: &str = "codepipeline-artifacts";
const KMS_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn with_output_artifact(mut spec: e2e::pipeline::ActionSpec, key: &str) -> e2e::pipeline::ActionSpec {
    spec.output_artifact = Some(e2e::pipeline::OutputArtifact {
        name: "DeployOutput".into(),
        bucket: ARTIFACT_BUCKET.into(),
        key: key.into(),
        kms_key_id: Some(KMS_KEY.into()),
    });
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_express_workflow_ends_the_job_in_one_invocation_with_variables_and_artifact() {
    let world = World::start().await;
    let express = support::create_express_state_machine(
        &world.stack,
        "express-deploy",
        "trigger-express-succeed.asl.json",
    )
    .await;
    let params = e2e::seed::user_parameters(Some(&express));
    let key = "MyPipeline/DeployOutp/Ex1press";
    let spec = with_output_artifact(world.action(Some(&params)), key);
    let outcome = run_action(&world.stack, &spec).await.expect("action");

    assert_eq!(outcome.status, ActionStatus::Succeeded, "{outcome:#?}");
    assert_eq!(
        outcome.invocations.len(),
        1,
        "no continuation for Express: {outcome:#?}"
    );
    let summary = &outcome.summaries[0];
    assert!(
        summary.contains("SUCCEEDED; 5 output variable(s) exported"),
        "{summary}"
    );
    assert!(
        summary.ends_with("; output artifact DeployOutput written"),
        "{summary}"
    );
    let job_id = outcome.invocations[0].job_id.as_str();
    let vars: Vec<(&str, &str)> = outcome
        .output_variables
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        vars,
        [
            ("changed", "2"),
            ("environment", "prod"),
            ("jobId", job_id),
            ("safe", "true"),
            ("stackName", "prod-express-app")
        ]
    );
    let execution = outcome
        .external_execution_id
        .clone()
        .expect("external execution id");
    assert!(
        execution.starts_with(&format!(
            "arn:aws:states:us-east-1:123456789012:express:express-deploy:codepipeline-{job_id}:"
        )),
        "{execution}"
    );
    // The Express execution really ran in moto, once, to its end; the default one never started.
    let runs = world.execution_arns(&express).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        world
            .stack
            .sfn_emulator()
            .moto_execution_arn(&execution)
            .as_deref(),
        Some(runs[0].as_str())
    );
    let (status, _) = e2e::seed::wait_for_execution(&world.stack, &runs[0])
        .await
        .unwrap();
    assert_eq!(status, "SUCCEEDED");
    assert!(world.execution_arns(&world.succeed_arn).await.is_empty());

    // A later action reads the artifact with its own job's credentials: the execution's output.
    let (text, sse) = support::read_output_artifact(&world.stack, &spec.credentials, ARTIFACT_BUCKET, key)
        .await
        .expect("the output artifact");
    let output: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(output["stackName"], "prod-express-app");
    assert_eq!(output["details"]["resources"][1], "Topic");
    assert_eq!(output["jobId"], job_id);
    assert_eq!(sse.as_deref(), Some("aws:kms"), "written with the job's KMS key");
    // StartSyncExecution started it; the job ended in its one invocation.
    assert_action_metrics(&world, &outcome, runs.len());

    world.assert_no_credentials(&spec.credentials);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_express_execution_fails_the_job_and_writes_no_artifact() {
    let world = World::start().await;
    let express =
        support::create_express_state_machine(&world.stack, "express-refuse", "express-fail.asl.json").await;
    let params = e2e::seed::user_parameters(Some(&express));
    let key = "MyPipeline/DeployOutp/Fa1led";
    let spec = with_output_artifact(world.action(Some(&params)), key);
    let outcome = run_action(&world.stack, &spec).await.expect("action");

    let Some((failure_type, message)) = outcome.status.failure() else {
        panic!("an Express failure was not a failure: {outcome:#?}")
    };
    assert_eq!(failure_type, "JobFailed");
    assert_eq!(outcome.invocations.len(), 1);
    let execution = outcome
        .external_execution_id
        .clone()
        .expect("external execution id");
    assert!(execution.contains(":express:express-refuse:"), "{execution}");
    assert_eq!(
        message,
        format!(
            "Execution {execution} ended with status FAILED. Error: ChangeSetRejected. Cause: The change \
             set replaces the database"
        )
    );
    assert!(
        support::read_output_artifact(&world.stack, &spec.credentials, ARTIFACT_BUCKET, key)
            .await
            .is_none(),
        "a failed execution wrote an output artifact"
    );
    world.assert_no_credentials(&spec.credentials);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_express_run_that_outlives_the_deadline_fails_naming_the_limit() {
    let world = World::start().await;
    let slow =
        support::create_express_state_machine(&world.stack, "express-slow", "trigger-express-slow.asl.json")
            .await;
    let short = "pipeline-trigger-short-timeout";
    world
        .stack
        .add_function_binary(
            short,
            e2e::stack::binary_dir().join("pipeline-trigger"),
            e2e::FunctionOptions {
                timeout: std::time::Duration::from_secs(4),
                rust_log: "trace".into(),
                ..e2e::FunctionOptions::default()
            },
        )
        .await
        .unwrap();
    let mut spec = world.action(Some(&e2e::seed::user_parameters(Some(&slow))));
    spec.function = short.into();
    let started = std::time::Instant::now();
    let outcome = run_action(&world.stack, &spec).await.expect("action");

    let Some((failure_type, message)) = outcome.status.failure() else {
        panic!("an unfinished Express run was not a failure: {outcome:#?}")
    };
    assert_eq!(failure_type, "JobFailed");
    assert_eq!(outcome.invocations.len(), 1);
    assert_eq!(
        outcome.invocations[0].function_error, None,
        "answered before the deadline"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert!(
        message.contains("did not finish within the")
            && message.contains("before the pipeline trigger's Lambda deadline, so its result is unknown")
            && message.contains("it was not reported as a success")
            && message.contains("Express runs at most 300 s"),
        "{message}"
    );
    let log = world.stack.function_log(short);
    for value in spec.credentials.values() {
        assert!(!log.contains(value));
    }
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_execution_writes_its_output_artifact_at_the_end() {
    let world = World::start().await;
    let key = "MyPipeline/DeployOutp/St4ndard";
    let spec = with_output_artifact(world.action(Some(SAMPLE_PARAMETERS)), key);
    let outcome = run_action(&world.stack, &spec).await.expect("action");
    assert_eq!(outcome.status, ActionStatus::Succeeded, "{outcome:#?}");
    assert!(outcome.invocations.len() >= 2);
    assert!(
        outcome
            .summaries
            .last()
            .unwrap()
            .ends_with("; output artifact DeployOutput written")
    );
    let (text, _) = support::read_output_artifact(&world.stack, &spec.credentials, ARTIFACT_BUCKET, key)
        .await
        .expect("the output artifact");
    let executions = world.execution_arns(&world.succeed_arn).await;
    let described = world
        .stack
        .sfn()
        .describe_execution()
        .execution_arn(&executions[0])
        .send()
        .await
        .unwrap();
    assert_eq!(
        Some(text.as_str()),
        described.output(),
        "the artifact is the execution's output"
    );
    world.assert_no_credentials(&spec.credentials);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_poll_continues_and_the_job_still_ends_right() {
    let world = World::start().await;
    // Three throttles: one poll's DescribeExecution fails after the SDK's three attempts.
    world.stack.throttle_sfn("DescribeExecution", 3);
    let spec = world.action(Some(SAMPLE_PARAMETERS));
    let outcome = run_action(&world.stack, &spec).await.expect("action");
    assert_eq!(outcome.status, ActionStatus::Succeeded, "{outcome:#?}");
    assert_eq!(world.stack.sfn_throttled("DescribeExecution"), 3);
    assert!(
        outcome
            .summaries
            .iter()
            .any(|s| s.starts_with("Could not check execution")
                && s.contains("transient failure 1 of at most 4: ThrottlingException: Rate exceeded")),
        "{:?}",
        outcome.summaries
    );
    assert_eq!(outcome.output_variables.len(), 4);
    assert_eq!(world.execution_arns(&world.succeed_arn).await.len(), 1);
    world.assert_no_credentials(&spec.credentials);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_throttled_past_the_bound_fail_the_job_with_the_last_error() {
    let world = World::start().await;
    world.stack.throttle_sfn("DescribeExecution", 1_000);
    let spec = world.action(Some(SAMPLE_PARAMETERS));
    let outcome = run_action(&world.stack, &spec).await.expect("action");
    let Some((failure_type, message)) = outcome.status.failure() else {
        panic!("{outcome:#?}")
    };
    assert_eq!(failure_type, "JobFailed");
    // The start, four tolerated failures, then the fifth fails the job.
    assert_eq!(outcome.invocations.len(), 6, "{:?}", outcome.summaries);
    assert!(
        message.contains("5 consecutive transient failures")
            && message.ends_with("the last one: ThrottlingException: Rate exceeded"),
        "{message}"
    );
    assert_eq!(
        world.stack.sfn_throttled("DescribeExecution"),
        15,
        "3 attempts per poll"
    );
    assert_action_metrics(&world, &outcome, 1);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_naming_another_accounts_execution_is_refused_unpolled() {
    let world = World::start().await;
    let spec = world.action(Some(SAMPLE_PARAMETERS));
    let job_id = uuid::Uuid::new_v4().to_string();
    let foreign = "arn:aws:states:us-east-1:999999999999:execution:wait-then-succeed:codepipeline-theirs";
    let token = serde_json::json!({"executionArn": foreign, "polls": 1}).to_string();
    let event = job_event(&job_id, &spec, Some(&token));
    let inv = invoke_job(&world.stack, "pipeline-trigger", &job_id, &event)
        .await
        .unwrap();
    let result = inv.result.expect("a result");
    assert_eq!(result.operation, "PutJobFailureResult");
    assert_eq!(result.request["failureDetails"]["type"], "JobFailed");
    assert_eq!(
        result.request["failureDetails"]["message"],
        format!(
            "the continuation token names execution {foreign} in account 999999999999, not the job's \
             account 123456789012; it was not polled"
        )
    );
    assert!(
        !world
            .stack
            .function_log("pipeline-trigger")
            .contains("execution status"),
        "the foreign execution was polled"
    );
    // Refused at its second invocation (the token counts one earlier poll): 1 + 1 + 1.
    let data = assert_metrics_match_results(&world);
    assert_eq!(emf::values(&data, "PollsPerJob", &[]), vec![3.0]);
    world.stop().await;
}
