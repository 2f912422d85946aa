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
