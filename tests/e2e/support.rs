//! Shared set-up for the end-to-end tests.

#![allow(dead_code)]

use std::time::Duration;

use e2e::pipeline::{ActionSpec, FakeCredentials, InputArtifact};
use e2e::seed::{self, fixture_definition, seed_pipeline_inputs};
use e2e::stack::{ACCOUNT, REGION};
use e2e::{FunctionOptions, LocalStack};

pub use e2e::seed::put_object;

/// A test state machine definition, with `${PipelineTriggerArn}` substituted.
pub fn definition(file: &str) -> String {
    fixture_definition(file).expect("state machine fixture").replace(
        "${PipelineTriggerArn}",
        &format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:pipeline-trigger"),
    )
}

/// Creates an Express state machine from a fixture.
pub async fn create_express_state_machine(stack: &LocalStack, name: &str, file: &str) -> String {
    seed::create_state_machine_of_type(
        stack,
        name,
        definition(file),
        aws_sdk_sfn::types::StateMachineType::Express,
    )
    .await
    .expect("CreateStateMachine (EXPRESS)")
}

/// The output artifact's one JSON file, read back from S3 with the job's own credentials (as a
/// later action would) and unzipped, with its server-side encryption; `None` when there is no
/// such object (any other error fails the test).
pub async fn read_output_artifact(
    stack: &LocalStack,
    creds: &FakeCredentials,
    bucket: &str,
    key: &str,
) -> Option<(String, Option<String>)> {
    use std::io::Read;
    let conf = aws_sdk_s3::config::Builder::from(&stack.sdk)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            &creds.access_key_id,
            &creds.secret_access_key,
            Some(creds.session_token.clone()),
            None,
            "job-artifact-credentials",
        ))
        .force_path_style(true)
        .build();
    let got = match aws_sdk_s3::Client::from_conf(conf)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(got) => got,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return None,
        Err(e) => panic!("reading the output artifact: {}", lambda_common::error_chain(&e)),
    };
    let sse = got.server_side_encryption().map(|s| s.as_str().to_owned());
    let bytes = got.body.collect().await.expect("artifact body").into_bytes();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a zip");
    assert_eq!(archive.len(), 1, "one file in the artifact");
    let mut text = String::new();
    archive
        .by_name("output.json")
        .expect("output.json in the artifact")
        .read_to_string(&mut text)
        .expect("UTF-8 JSON");
    Some((text, sse))
}

pub async fn create_state_machine(stack: &LocalStack, name: &str, file: &str) -> String {
    seed::create_state_machine(stack, name, definition(file))
        .await
        .expect("CreateStateMachine")
}

/// A stack with the trigger served (its default state machine: `wait-then-succeed`), the input
/// bucket with the sample's input file, and an artifact bucket.
pub struct World {
    pub stack: LocalStack,
    pub artifact: InputArtifact,
    pub succeed_arn: String,
    pub fail_arn: String,
}

impl World {
    pub async fn start() -> World {
        let stack = LocalStack::start().await.expect("local stack");
        let artifact = seed_pipeline_inputs(&stack).await.expect("seed");
        let succeed_arn =
            create_state_machine(&stack, "wait-then-succeed", "wait-then-succeed.asl.json").await;
        let fail_arn = create_state_machine(&stack, "wait-then-fail", "wait-then-fail.asl.json").await;
        seed::serve_trigger(
            &stack,
            &succeed_arn,
            FunctionOptions {
                // The most verbose level an operator could set: credentials must still not appear.
                rust_log: "trace".into(),
                timeout: Duration::from_secs(20),
                ..FunctionOptions::default()
            },
        )
        .await
        .expect("serve pipeline-trigger");
        World {
            stack,
            artifact,
            succeed_arn,
            fail_arn,
        }
    }

    /// The executions of a state machine.
    pub async fn execution_arns(&self, state_machine_arn: &str) -> Vec<String> {
        let out = self
            .stack
            .sfn()
            .list_executions()
            .state_machine_arn(state_machine_arn)
            .send()
            .await
            .expect("ListExecutions");
        out.executions().iter().map(|e| e.execution_arn.clone()).collect()
    }

    pub fn action(&self, user_parameters: Option<&str>) -> ActionSpec {
        ActionSpec::new(
            "pipeline-trigger",
            user_parameters.map(str::to_owned),
            Some(self.artifact.clone()),
        )
    }

    /// The function's log so far must hold none of the credential values.
    pub fn assert_no_credentials(&self, creds: &FakeCredentials) {
        let log = self.stack.function_log("pipeline-trigger");
        assert!(!log.is_empty(), "the function logged nothing");
        for value in creds.values() {
            assert!(
                !log.contains(value),
                "the function's log contains an artifact credential value"
            );
        }
        assert!(
            !log.contains(self.stack.function_secret()),
            "the function's log contains its own secret access key"
        );
        assert!(
            !log.contains(self.stack.function_session_token()),
            "the function's log contains its own session token"
        );
    }

    pub async fn stop(self) {
        self.stack.stop().await;
    }
}

pub const SAMPLE_PARAMETERS: &str =
    r#"{"s3Bucket": "pipeline-inputs", "stateMachineFile": "deploy/prod.json"}"#;
