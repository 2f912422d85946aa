//! End to end: Lambda's asynchronous invocation and its on-failure destinations
//! ([`e2e::lambda_async`]). A trigger that crashes on every attempt has its job ended by the
//! destination record reaching `PipelineTriggerFailureFunction` (the real `pipeline-trigger`
//! binary); a job that already has a result is left alone; the scheduled shipper's failed event
//! lands in its failure queue.

// Not every shared helper is used here.
#[allow(unused_imports)]
mod support;

use std::time::{Duration, Instant};

use aws_sdk_lambda::types::InvocationType;
use e2e::codepipeline::RecordedCall;
use e2e::emf;
use e2e::lambda_async::{self, Destination, EventInvokeConfig};
use e2e::pipeline::{ActionSpec, FakeCredentials, invoke_job, job_event};
use e2e::recorder;
use e2e::stack::{ACCOUNT, REGION, binary_dir};
use e2e::{FunctionOptions, LocalStack};
use serde_json::{Value, json};
use support::SAMPLE_PARAMETERS;

const TRIGGER: &str = "pipeline-trigger";
const FAILURE_FUNCTION: &str = "pipeline-trigger-failure";

/// The stack with the input bucket, a state machine, and the failure destination function
/// (`PipelineTriggerFailureFunction`: the trigger binary, configured as the template does).
async fn stack_with_failure_function() -> (LocalStack, e2e::pipeline::InputArtifact, String) {
    let stack = LocalStack::start().await.expect("local stack");
    let artifact = e2e::seed::seed_pipeline_inputs(&stack).await.expect("seed");
    let sm = support::create_state_machine(&stack, "wait-then-succeed", "wait-then-succeed.asl.json").await;
    stack
        .add_function_binary(
            FAILURE_FUNCTION,
            binary_dir().join("pipeline-trigger"),
            FunctionOptions {
                env: vec![
                    ("PIPELINE_TRIGGER_MODE".into(), "failure-destination".into()),
                    ("STATE_MACHINE_ARN".into(), sm.clone()),
                ],
                rust_log: "trace".into(),
                ..FunctionOptions::default()
            },
        )
        .await
        .expect("serve the failure function");
    stack.bind_resource("PipelineTriggerFailureFunction", FAILURE_FUNCTION);
    (stack, artifact, sm)
}

/// The trigger's event-invoke configuration as the template has it: 2 retries, its failure
/// destination function.
fn trigger_config() -> EventInvokeConfig {
    EventInvokeConfig::new(
        2,
        Duration::from_secs(3600),
        Some(Destination::Function(FAILURE_FUNCTION.into())),
    )
}

/// Invokes `function` asynchronously with `event`, as CodePipeline does.
async fn invoke_async(stack: &LocalStack, function: &str, event: &Value) {
    let out = stack
        .lambda()
        .invoke()
        .function_name(function)
        .invocation_type(InvocationType::Event)
        .payload(aws_smithy_types::Blob::new(event.to_string()))
        .send()
        .await
        .expect("asynchronous Invoke");
    assert_eq!(out.status_code(), 202);
}

/// The job's recorded calls once it has one, and after a while more (so that a second result
/// would be seen too).
async fn job_calls(stack: &LocalStack, job_id: &str, within: Duration) -> Vec<RecordedCall> {
    let calls = || -> Vec<RecordedCall> {
        stack
            .codepipeline_calls()
            .into_iter()
            .filter(|c| c.job_id.as_deref() == Some(job_id))
            .collect()
    };
    let until = Instant::now() + within;
    while calls().is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    calls()
}

/// No function log holds one of the credential values, and no record file of the stack the
/// secret key or session token (the records name callers by access key id, so the artifact
/// credentials' key id is registered there by design).
fn assert_no_leak(stack: &LocalStack, credentials: &FakeCredentials, functions: &[&str]) {
    let secrets = [
        credentials.secret_access_key.as_str(),
        credentials.session_token.as_str(),
        stack.function_secret(),
        stack.function_session_token(),
    ];
    for f in functions {
        let log = stack.function_log(f);
        assert!(!log.is_empty(), "{f} logged nothing");
        for value in credentials.values().into_iter().chain(secrets) {
            assert!(!log.contains(value), "the log of {f} contains a credential value");
        }
    }
    for file in [recorder::CALLS_FILE, recorder::CALLERS_FILE] {
        let text = std::fs::read_to_string(stack.log_dir().join(file)).unwrap_or_default();
        assert!(!text.is_empty(), "{file} is empty");
        for value in secrets {
            assert!(!text.contains(value), "{file} contains a secret credential value");
        }
    }
}

/// The one result of a job ended by the destination: `PutJobFailureResult` `JobFailed`, and its
/// message.
fn ended_by_destination(calls: &[RecordedCall]) -> String {
    assert_eq!(calls.len(), 1, "exactly one result call for the job: {calls:#?}");
    let call = &calls[0];
    assert_eq!(call.operation, "PutJobFailureResult");
    assert_eq!(call.error, None, "{call:?}");
    assert_eq!(call.request["failureDetails"]["type"], "JobFailed");
    let message = call.request["failureDetails"]["message"]
        .as_str()
        .expect("message");
    assert!(
        message.starts_with(
            "The pipeline trigger function failed on every attempt to handle this job (RetriesExhausted: \
             Lambda's retries are exhausted; 3 attempts), so its on-failure destination ended the job. \
             Last error: Runtime.ExitError: RequestId: "
        ),
        "{message}"
    );
    message.to_owned()
}

/// The failure function's metrics: one job ended (and counted as failed) per destination end.
fn assert_destination_metrics(stack: &LocalStack, ended: usize) {
    let data = stack.metrics(FAILURE_FUNCTION).expect("EMF");
    let ended = ended as f64;
    assert_eq!(emf::sum(&data, "JobsEndedByDestination", &[]), ended);
    assert_eq!(
        emf::sum(&data, "JobsFailed", &[("FailureType", "JobFailed")]),
        ended
    );
    assert_eq!(emf::sum(&data, "ResultsNotRecorded", &[]), 0.0);
}

/// The destination record was delivered as the trigger: its asynchronous Invoke of the failure
/// function, signed with the trigger's key.
fn assert_delivered_as_trigger(stack: &LocalStack) {
    let path = format!("/2015-03-31/functions/{FAILURE_FUNCTION}/invocations");
    let delivered: Vec<Value> = stack
        .calls()
        .into_iter()
        .filter(|c| c["path"] == path.as_str())
        .collect();
    assert_eq!(delivered.len(), 1, "{delivered:#?}");
    let call = &delivered[0];
    assert_eq!(call["caller"], TRIGGER);
    assert_eq!(call["service"], "lambda");
    assert_eq!(call["headers"]["x-amz-invocation-type"], "Event");
    assert_eq!(call["status"], 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_that_crashes_at_init_has_its_job_ended_by_the_failure_destination() {
    let (stack, artifact, sm) = stack_with_failure_function().await;
    // The real trigger, deployed broken: the runtime panics at init (before its first poll).
    stack
        .add_function(
            TRIGGER,
            FunctionOptions {
                env: vec![
                    ("STATE_MACHINE_ARN".into(), sm),
                    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "lots".into()),
                ],
                rust_log: "trace".into(),
                max_instances: 1,
                timeout: Duration::from_secs(10),
            },
        )
        .await
        .expect("serve the trigger");
    stack.set_event_invoke_config(TRIGGER, trigger_config());
    let spec = ActionSpec::new(TRIGGER, Some(SAMPLE_PARAMETERS.into()), Some(artifact));
    stack.register_caller(&spec.credentials.access_key_id, recorder::ARTIFACT_CREDENTIALS);
    let job_id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    invoke_async(&stack, TRIGGER, &job_event(&job_id, &spec, None)).await;

    let calls = job_calls(&stack, &job_id, Duration::from_secs(30)).await;
    let message = ended_by_destination(&calls);
    assert!(
        message.contains("Error: Runtime exited with error: exit status 101"),
        "{message}"
    );
    // Reported at once, not as a timeout: three attempts and two (compressed) waits.
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    // Every attempt crashed at init, and the trigger published no metric.
    let log = stack.function_log(TRIGGER);
    assert_eq!(
        log.matches("AWS_LAMBDA_FUNCTION_MEMORY_SIZE env var is not <i32>")
            .count(),
        3,
        "{log}"
    );
    assert!(stack.metrics(TRIGGER).expect("EMF").is_empty());
    assert_destination_metrics(&stack, 1);
    assert_delivered_as_trigger(&stack);
    assert_no_leak(&stack, &spec.credentials, &[TRIGGER, FAILURE_FUNCTION]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_that_dies_mid_invocation_has_its_job_ended_by_the_failure_destination() {
    let (stack, artifact, sm) = stack_with_failure_function().await;
    // A bad build of the trigger: it takes the invocation, then exits without answering.
    stack
        .add_stand_in(
            TRIGGER,
            binary_dir().join("crash-mid-invocation"),
            "pipeline-trigger",
            FunctionOptions {
                env: vec![("STATE_MACHINE_ARN".into(), sm)],
                max_instances: 1,
                timeout: Duration::from_secs(10),
                ..FunctionOptions::default()
            },
        )
        .await
        .expect("serve the stand-in");
    stack.set_event_invoke_config(TRIGGER, trigger_config());
    let spec = ActionSpec::new(TRIGGER, Some(SAMPLE_PARAMETERS.into()), Some(artifact));
    stack.register_caller(&spec.credentials.access_key_id, recorder::ARTIFACT_CREDENTIALS);
    let job_id = uuid::Uuid::new_v4().to_string();
    invoke_async(&stack, TRIGGER, &job_event(&job_id, &spec, None)).await;

    let calls = job_calls(&stack, &job_id, Duration::from_secs(30)).await;
    let message = ended_by_destination(&calls);
    assert!(
        message.contains("Error: Runtime exited with error: exit status 2"),
        "{message}"
    );
    let log = stack.function_log(TRIGGER);
    assert_eq!(log.matches("exiting without answering it").count(), 3, "{log}");
    assert_destination_metrics(&stack, 1);
    assert_delivered_as_trigger(&stack);
    assert_no_leak(&stack, &spec.credentials, &[TRIGGER, FAILURE_FUNCTION]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_for_a_job_that_already_has_a_result_leaves_the_job_alone() {
    let (stack, artifact, sm) = stack_with_failure_function().await;
    e2e::seed::serve_trigger(&stack, &sm, FunctionOptions::default())
        .await
        .expect("serve the trigger");
    let spec = ActionSpec::new(TRIGGER, Some(SAMPLE_PARAMETERS.into()), Some(artifact));
    let job_id = uuid::Uuid::new_v4().to_string();
    let event = job_event(&job_id, &spec, None);
    let first = invoke_job(&stack, TRIGGER, &job_id, &event)
        .await
        .expect("invoke");
    assert_eq!(
        first.result.as_ref().map(|r| r.operation.as_str()),
        Some("PutJobSuccessResult")
    );

    // A late record for the same job (say its last attempt answered after all).
    let trigger_arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{TRIGGER}");
    let failure = lambda_async::Failure {
        condition: lambda_async::Condition::RetriesExhausted,
        attempts: 3,
        response: json!({"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 20.00 seconds"}),
    };
    let record = lambda_async::record(
        &trigger_arn,
        "c0ffee00-0000-4000-8000-000000000001",
        event.to_string().as_bytes(),
        &failure,
        lambda_common::clock::now_ms(),
    );
    let answer = stack
        .lambda()
        .invoke()
        .function_name(FAILURE_FUNCTION)
        .payload(aws_smithy_types::Blob::new(record.to_string()))
        .send()
        .await
        .expect("Invoke");
    assert_eq!(answer.function_error(), None, "a job with a result is no error");

    let calls = job_calls(&stack, &job_id, Duration::from_secs(5)).await;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(
        (calls[0].operation.as_str(), calls[0].error.as_deref()),
        ("PutJobSuccessResult", None)
    );
    assert_eq!(
        (calls[1].operation.as_str(), calls[1].error.as_deref()),
        ("PutJobFailureResult", Some("InvalidJobStateException")),
        "the job keeps its result"
    );
    assert!(
        stack
            .function_log(FAILURE_FUNCTION)
            .contains("job already has a result; leaving it as it is")
    );
    assert_destination_metrics(&stack, 0);
    // The trigger's own metric of the job: started once (the one execution).
    let trigger = stack.metrics(TRIGGER).expect("EMF");
    assert_eq!(emf::sum(&trigger, "JobsStarted", &[]), 1.0);
    assert_no_leak(&stack, &spec.credentials, &[TRIGGER, FAILURE_FUNCTION]);
    stack.stop().await;
}

// ---- the shipper's failure queue ----

/// One SQS JSON-protocol request from the harness, through the gateway.
async fn sqs(stack: &LocalStack, operation: &str, body: Value) -> Value {
    let date = "20240101";
    let response = reqwest::Client::new()
        .post(format!("{}/", stack.endpoint))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("AmazonSQS.{operation}"))
        .header("x-amz-date", format!("{date}T000000Z"))
        .header(
            "authorization",
            recorder::authorization(recorder::HARNESS_ACCESS_KEY_ID, date, REGION, "sqs"),
        )
        .body(body.to_string())
        .send()
        .await
        .expect("SQS request");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "SQS {operation}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The messages of the queue, waiting up to `within` for `count` of them.
async fn receive(stack: &LocalStack, queue_url: &str, count: usize, within: Duration) -> Vec<Value> {
    let until = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < count && Instant::now() < until {
        let answer = sqs(
            stack,
            "ReceiveMessage",
            json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0}),
        )
        .await;
        for m in answer["Messages"].as_array().into_iter().flatten() {
            out.push(serde_json::from_str(m["Body"].as_str().unwrap_or_default()).expect("a JSON record"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out
}

fn scheduled_event(id: &str) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": "2024-05-14T20:15:00Z",
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/rds-log-shipper-schedule")],
        "detail": {}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_shipper_event_that_fails_every_attempt_lands_in_its_failure_queue() {
    let stack = LocalStack::start().await.expect("local stack");
    let queue = "rds-log-shipper-failures";
    let created = sqs(&stack, "CreateQueue", json!({"QueueName": queue})).await;
    let queue_url = created["QueueUrl"].as_str().expect("QueueUrl").to_owned();
    let queue_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}");
    stack.bind_resource("RdsLogShipperFailureQueue", &queue_arn);
    // The shipper deployed with a configuration it refuses at cold start (RDS_BURST is no number).
    let broken = |name: &str| {
        (
            name.to_owned(),
            FunctionOptions {
                env: vec![
                    ("LOG_BUCKET".into(), "rds-log-archive".into()),
                    ("LOG_PREFIX".into(), "rds-logs".into()),
                    ("RDS_BURST".into(), "lots".into()),
                ],
                max_instances: 1,
                ..FunctionOptions::default()
            },
        )
    };
    for (name, options) in [broken("rds-log-shipper"), broken("rds-log-shipper-aged")] {
        stack
            .add_function_binary(&name, binary_dir().join("rds-log-shipper"), options)
            .await
            .expect("serve the shipper");
    }
    stack.set_event_invoke_config(
        "rds-log-shipper",
        EventInvokeConfig::new(
            2,
            Duration::from_secs(300),
            Some(Destination::Queue(queue_arn.clone())),
        ),
    );
    // One whose event ages out before its retries are done: the second wait (400 ms) would
    // outlast the maximum age.
    stack.set_event_invoke_config(
        "rds-log-shipper-aged",
        EventInvokeConfig::new(
            2,
            Duration::from_millis(500),
            Some(Destination::Queue(queue_arn.clone())),
        ),
    );
    let event = scheduled_event("53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa");
    let aged_event = scheduled_event("6a7e8feb-b491-4cf7-a9f1-bf3703467718");
    invoke_async(&stack, "rds-log-shipper", &event).await;
    invoke_async(&stack, "rds-log-shipper-aged", &aged_event).await;

    let records = receive(&stack, &queue_url, 2, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let of = |function: &str| {
        records
            .iter()
            .find(|r| {
                r["requestContext"]["functionArn"]
                    == format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}:$LATEST").as_str()
            })
            .unwrap_or_else(|| panic!("no record of {function}: {records:#?}"))
            .clone()
    };
    let record = of("rds-log-shipper");
    assert_eq!(record["version"], "1.0");
    assert!(
        record["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{record}"
    );
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(
        record["requestContext"]["approximateInvokeCount"], 3,
        "retries + 1"
    );
    assert!(record["requestContext"]["requestId"].is_string());
    assert_eq!(record["requestPayload"], event, "the event as sent");
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    assert_eq!(record["responseContext"]["statusCode"], 200);
    assert_eq!(record["responsePayload"]["errorType"], "Runtime.ExitError");
    assert!(
        record["responsePayload"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.ends_with("Error: Runtime exited with error: exit status 1")),
        "{record}"
    );
    let aged = of("rds-log-shipper-aged");
    assert_eq!(aged["requestContext"]["condition"], "EventAgeExceeded");
    let attempts = aged["requestContext"]["approximateInvokeCount"]
        .as_u64()
        .expect("count");
    assert!((1..=2).contains(&attempts), "{aged}");
    assert_eq!(aged["requestPayload"], aged_event);
    assert_eq!(
        stack
            .function_log("rds-log-shipper")
            .matches(r#"NotANumber { var: "RDS_BURST""#)
            .count(),
        3,
        "every attempt refused the configuration"
    );

    // Delivered as the shipper's role would: SendMessage to the queue, signed with its key.
    let sent: Vec<Value> = stack
        .calls()
        .into_iter()
        .filter(|c| c["target"] == "AmazonSQS.SendMessage")
        .collect();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let callers: Vec<&str> = sent.iter().filter_map(|c| c["caller"].as_str()).collect();
    assert!(
        callers.contains(&"rds-log-shipper") && callers.contains(&"rds-log-shipper-aged"),
        "{callers:?}"
    );
    for call in &sent {
        assert_eq!(call["service"], "sqs");
        assert!(
            call["params"]["QueueUrl"]
                .as_str()
                .is_some_and(|u| u.ends_with(queue)),
            "{call}"
        );
        assert_eq!(call["status"], 200);
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_failure_function_refuses_on_every_attempt_lands_in_its_own_failure_queue() {
    let (stack, artifact, _) = stack_with_failure_function().await;
    let queue = "pipeline-trigger-failures";
    let created = sqs(&stack, "CreateQueue", json!({"QueueName": queue})).await;
    let queue_url = created["QueueUrl"].as_str().expect("QueueUrl").to_owned();
    let queue_arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}");
    stack.bind_resource("PipelineTriggerFailureQueue", &queue_arn);
    // The template's configuration of the failure function: 2 retries, then its queue.
    stack.set_event_invoke_config(
        FAILURE_FUNCTION,
        EventInvokeConfig::new(2, Duration::from_secs(3600), Some(Destination::Queue(queue_arn))),
    );
    // A `Success` record (the function configured as an on-success destination by mistake).
    let spec = ActionSpec::new(TRIGGER, Some(SAMPLE_PARAMETERS.into()), Some(artifact));
    let job_id = uuid::Uuid::new_v4().to_string();
    let mut record = lambda_async::record(
        &format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{TRIGGER}"),
        "c0ffee00-0000-4000-8000-000000000002",
        job_event(&job_id, &spec, None).to_string().as_bytes(),
        &lambda_async::Failure {
            condition: lambda_async::Condition::RetriesExhausted,
            attempts: 1,
            response: Value::Null,
        },
        lambda_common::clock::now_ms(),
    );
    record["requestContext"]["condition"] = json!("Success");
    invoke_async(&stack, FAILURE_FUNCTION, &record).await;

    let records = receive(&stack, &queue_url, 1, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let landed = &records[0];
    assert_eq!(landed["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(landed["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(landed["requestPayload"], record, "the record as sent");
    assert_eq!(
        landed["responsePayload"]["errorType"],
        "DestinationRecordNotAFailure"
    );
    // The job was never touched, and nothing counted as ended.
    assert!(stack.codepipeline_calls().is_empty());
    assert_destination_metrics(&stack, 0);
    let sent: Vec<Value> = stack
        .calls()
        .into_iter()
        .filter(|c| c["target"] == "AmazonSQS.SendMessage")
        .collect();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["caller"], FAILURE_FUNCTION);
    assert_no_leak(&stack, &spec.credentials, &[FAILURE_FUNCTION]);
    stack.stop().await;
}
