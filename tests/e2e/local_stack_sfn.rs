//! The local stack's Step Functions gaps, filled: state machine types, `StartSyncExecution`
//! (reached through the gateway as HTTP proxy, as the functions reach it), its time limit,
//! throttling injection, and the proxy refusing anything but loopback names.

use std::time::{Duration, Instant};

use aws_sdk_sfn::Client;
use aws_sdk_sfn::error::ProvideErrorMetadata;
use aws_sdk_sfn::types::{ExecutionStatus, StateMachineType, SyncExecutionStatus};
use e2e::LocalStack;
use e2e::seed::fixture_definition;
use e2e::stack::{ACCOUNT, REGION};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn create(stack: &LocalStack, name: &str, file: &str, kind: StateMachineType) -> String {
    stack
        .sfn_sync()
        .unwrap()
        .create_state_machine()
        .name(name)
        .definition(fixture_definition(file).unwrap())
        .role_arn(stack.role_arn())
        .r#type(kind)
        .send()
        .await
        .unwrap()
        .state_machine_arn
}

async fn described_type(stack: &LocalStack, arn: &str) -> StateMachineType {
    let out = stack
        .sfn()
        .describe_state_machine()
        .state_machine_arn(arn)
        .send()
        .await
        .unwrap();
    out.r#type
}

struct Machines {
    pass: String,
    fail: String,
    wait: String,
    standard: String,
}

async fn machines(stack: &LocalStack) -> Machines {
    Machines {
        pass: create(
            stack,
            "express-pass",
            "express-pass.asl.json",
            StateMachineType::Express,
        )
        .await,
        fail: create(
            stack,
            "express-fail",
            "express-fail.asl.json",
            StateMachineType::Express,
        )
        .await,
        wait: create(
            stack,
            "express-wait",
            "express-wait.asl.json",
            StateMachineType::Express,
        )
        .await,
        standard: create(
            stack,
            "standard-pass",
            "express-pass.asl.json",
            StateMachineType::Standard,
        )
        .await,
    }
}

async fn check_types(stack: &LocalStack, m: &Machines) {
    assert_eq!(described_type(stack, &m.pass).await, StateMachineType::Express);
    assert_eq!(
        described_type(stack, &m.standard).await,
        StateMachineType::Standard
    );
    let listed = stack.sfn().list_state_machines().send().await.unwrap();
    let listed_type = |arn: &str| {
        let item = listed
            .state_machines()
            .iter()
            .find(|m| m.state_machine_arn == arn);
        item.map(|m| m.r#type.clone())
    };
    assert_eq!(listed_type(&m.pass), Some(StateMachineType::Express));
    assert_eq!(listed_type(&m.standard), Some(StateMachineType::Standard));
}

async fn check_succeeded(sfn: &Client, pass: &str) {
    for _ in 0..2 {
        // Express execution names need not be unique.
        let out = sfn
            .start_sync_execution()
            .state_machine_arn(pass)
            .name("job-1")
            .input(r#"{"jobId": "j-1"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(out.status, SyncExecutionStatus::Succeeded);
        let output: Value = serde_json::from_str(out.output().unwrap()).unwrap();
        assert_eq!(output, json!({"greeting": "hello", "jobId": "j-1"}));
        let prefix = format!("arn:aws:states:{REGION}:{ACCOUNT}:express:express-pass:job-1:");
        assert!(out.execution_arn.starts_with(&prefix), "{}", out.execution_arn);
        assert_eq!(out.state_machine_arn(), Some(pass));
        assert_eq!(
            (out.name(), out.input()),
            (Some("job-1"), Some(r#"{"jobId": "j-1"}"#))
        );
        assert!(out.start_date.secs() > 1_600_000_000 && out.start_date <= out.stop_date);
        let billing = out.billing_details().unwrap();
        assert_eq!(billing.billed_memory_used_in_mb, 64);
        assert!(billing.billed_duration_in_milliseconds >= 100);
        assert!(out.error().is_none() && out.cause().is_none());
    }
}

async fn check_failed_and_waiting(sfn: &Client, m: &Machines) {
    let out = sfn
        .start_sync_execution()
        .state_machine_arn(&m.fail)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status, SyncExecutionStatus::Failed);
    assert_eq!(out.error(), Some("ChangeSetRejected"));
    assert_eq!(out.cause(), Some("The change set replaces the database"));
    assert!(out.output().is_none());
    assert!(uuid::Uuid::parse_str(out.name().unwrap()).is_ok());

    let started = Instant::now();
    let out = sfn
        .start_sync_execution()
        .state_machine_arn(&m.wait)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status, SyncExecutionStatus::Succeeded);
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(out.output(), Some(r#"{"waited": true}"#));
}

/// Past the time limit the answer is `TIMED_OUT` and the execution is stopped in moto.
async fn check_time_limit(stack: &LocalStack, sfn: &Client, wait: &str) {
    stack
        .sfn_emulator()
        .set_express_max_duration(Duration::from_millis(500));
    let started = Instant::now();
    let out = sfn
        .start_sync_execution()
        .state_machine_arn(wait)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status, SyncExecutionStatus::TimedOut);
    assert_eq!(out.error(), Some("States.Timeout"));
    assert!(started.elapsed() < Duration::from_millis(1900));
    let in_moto = stack
        .sfn_emulator()
        .moto_execution_arn(&out.execution_arn)
        .unwrap();
    let stopped = stack
        .sfn()
        .describe_execution()
        .execution_arn(in_moto)
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status, ExecutionStatus::Aborted);
}

async fn check_errors(sfn: &Client, m: &Machines) {
    let code = async |arn: &str, input: &str| {
        let call = sfn.start_sync_execution().state_machine_arn(arn).input(input);
        let err = call.send().await.unwrap_err();
        (err.code().map(str::to_owned), err.message().map(str::to_owned))
    };
    let (c, message) = code(&m.standard, "{}").await;
    assert_eq!(c.as_deref(), Some("StateMachineTypeNotSupported"), "{message:?}");
    let unknown = format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:nope");
    assert_eq!(
        code(&unknown, "{}").await.0.as_deref(),
        Some("StateMachineDoesNotExist")
    );
    assert_eq!(
        code(&m.pass, "{not json").await.0.as_deref(),
        Some("InvalidExecutionInput")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_executions_of_express_state_machines() {
    let stack = LocalStack::start().await.expect("local stack");
    let sfn = stack.sfn_sync().unwrap();
    let m = machines(&stack).await;
    check_types(&stack, &m).await;
    check_succeeded(&sfn, &m.pass).await;
    check_failed_and_waiting(&sfn, &m).await;
    check_errors(&sfn, &m).await;
    check_time_limit(&stack, &sfn, &m.wait).await;
    stack.stop().await;
}

/// The gateway as forward proxy: loopback names only, never the internet, no `CONNECT`.
async fn check_proxy(stack: &LocalStack) {
    let env = stack.client_env();
    let var = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(var("AWS_ENDPOINT_URL_SFN"), Some(stack.sfn_endpoint()));
    assert_eq!(var("HTTP_PROXY"), Some(stack.endpoint.clone()));
    assert_eq!(var("NO_PROXY").as_deref(), Some("127.0.0.1,::1"));
    let via_proxy = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(stack.proxy_url()).unwrap())
        .build()
        .unwrap();
    let health = format!(
        "{}/_local/health",
        stack.sfn_endpoint().replace("states.", "sync-states.")
    );
    let r = via_proxy.get(health).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = via_proxy.get("http://example.com/").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let gateway = stack.endpoint.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(gateway).await.unwrap();
    conn.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 405");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_injection_and_the_proxy() {
    let stack = LocalStack::start().await.expect("local stack");
    let standard = create(
        &stack,
        "standard-pass",
        "express-pass.asl.json",
        StateMachineType::Standard,
    )
    .await;
    let execution = stack
        .sfn()
        .start_execution()
        .state_machine_arn(&standard)
        .name("n")
        .input(r#"{"jobId": "j"}"#)
        .send()
        .await
        .unwrap()
        .execution_arn;

    // The SDK's standard retry makes 3 attempts: 3 injected throttles fail one call.
    stack.throttle_sfn("DescribeExecution", 3);
    let err = stack
        .sfn()
        .describe_execution()
        .execution_arn(&execution)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Some("ThrottlingException"), Some("Rate exceeded"))
    );
    assert_eq!(stack.sfn_throttled("DescribeExecution"), 3);
    stack
        .sfn()
        .describe_execution()
        .execution_arn(&execution)
        .send()
        .await
        .unwrap();
    assert_eq!(stack.sfn_throttled("DescribeExecution"), 3);

    // Fewer than 3: the SDK's retries get through (here through the proxy).
    let express = create(
        &stack,
        "express-pass",
        "express-pass.asl.json",
        StateMachineType::Express,
    )
    .await;
    stack.throttle_sfn("StartSyncExecution", 2);
    let out = stack
        .sfn_sync()
        .unwrap()
        .start_sync_execution()
        .state_machine_arn(&express)
        .input(r#"{"jobId": "j"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status, SyncExecutionStatus::Succeeded);
    assert_eq!(stack.sfn_throttled("StartSyncExecution"), 2);

    check_proxy(&stack).await;
    stack.stop().await;
}
