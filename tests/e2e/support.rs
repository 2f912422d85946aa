//! Shared set-up for the end-to-end tests.

#![allow(dead_code)]

use std::time::Duration;

use e2e::pipeline::{ActionSpec, FakeCredentials, InputArtifact};
use e2e::stack::{ACCOUNT, REGION, repo_root};
use e2e::{FunctionOptions, LocalStack};

pub const INPUT_BUCKET: &str = "pipeline-inputs";
pub const ARTIFACT_BUCKET: &str = "codepipeline-artifacts";
pub const INPUT_KEY: &str = "deploy/prod.json";

/// Reads a test state machine definition, with `${PipelineTriggerArn}` substituted.
pub fn definition(name: &str) -> String {
    let path = repo_root().join("tests/fixtures/statemachines").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace(
            "${PipelineTriggerArn}",
            &format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:pipeline-trigger"),
        )
}

pub async fn create_state_machine(stack: &LocalStack, name: &str, file: &str) -> String {
    stack
        .sfn()
        .create_state_machine()
        .name(name)
        .definition(definition(file))
        .role_arn(stack.role_arn())
        .send()
        .await
        .expect("CreateStateMachine")
        .state_machine_arn
}

pub async fn put_object(stack: &LocalStack, bucket: &str, key: &str, body: &str) {
    stack
        .s3()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .expect("PutObject");
}

/// A stack with the trigger served (its default state machine: `wait-then-succeed`), the input
/// bucket with the sample's input file, and an artifact bucket.
pub struct World {
    pub stack: LocalStack,
    pub succeed_arn: String,
    pub fail_arn: String,
}

impl World {
    pub async fn start() -> World {
        let stack = LocalStack::start().await.expect("local stack");
        for bucket in [INPUT_BUCKET, ARTIFACT_BUCKET] {
            stack
                .s3()
                .create_bucket()
                .bucket(bucket)
                .send()
                .await
                .expect("CreateBucket");
        }
        put_object(
            &stack,
            INPUT_BUCKET,
            INPUT_KEY,
            r#"{"environmentName": "prod", "stackName": "sample-lambda-app", "templatePath": "infra/lambda-template.yaml"}"#,
        )
        .await;
        put_object(
            &stack,
            ARTIFACT_BUCKET,
            "MyPipeline/SourceArti/abc123",
            "zip bytes",
        )
        .await;
        let succeed_arn =
            create_state_machine(&stack, "wait-then-succeed", "wait-then-succeed.asl.json").await;
        let fail_arn = create_state_machine(&stack, "wait-then-fail", "wait-then-fail.asl.json").await;
        stack
            .add_function(
                "pipeline-trigger",
                FunctionOptions {
                    env: vec![("STATE_MACHINE_ARN".into(), succeed_arn.clone())],
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
            succeed_arn,
            fail_arn,
        }
    }

    pub fn action(&self, user_parameters: Option<&str>) -> ActionSpec {
        ActionSpec::new(
            "pipeline-trigger",
            user_parameters.map(str::to_owned),
            Some(InputArtifact {
                bucket: ARTIFACT_BUCKET.into(),
                key: "MyPipeline/SourceArti/abc123".into(),
                revision: "0f1e2d3c4b5a".into(),
            }),
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
    }

    pub async fn stop(self) {
        self.stack.stop().await;
    }
}

pub const SAMPLE_PARAMETERS: &str =
    r#"{"s3Bucket": "pipeline-inputs", "stateMachineFile": "deploy/prod.json"}"#;
