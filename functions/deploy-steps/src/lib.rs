//! The Lambda steps of the CloudFormation deploy state machine (`statemachines/deploy.asl.json`).
//!
//! One crate, one binary per step: each step runs as its own function with only the
//! permissions it needs (only the execute step may execute change sets, only the delete step
//! may delete them). The decisions are pure functions in [`changeset`], [`stack`], [`plan`] and
//! [`poll`]; [`steps`] orchestrates the calls.

pub mod changeset;
pub mod error;
pub mod plan;
pub mod poll;
pub mod stack;
pub mod steps;
pub mod template;

use lambda_runtime::{LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use error::StepError;
pub use steps::{StepConfig, Steps};

/// Each step's binary (and function) name, its `DefinitionSubstitutions` key in
/// `statemachines/deploy.asl.json`, and the `ResultPath` where the state machine keeps its output
/// (the field of [`steps::State`] later steps read).
pub const FUNCTIONS: [(&str, &str, Step, &str); 9] = [
    ("deploy-prepare", "PrepareFunctionArn", Step::Prepare, "$.plan"),
    (
        "deploy-check-stack",
        "CheckStackFunctionArn",
        Step::CheckStack,
        "$.stack",
    ),
    (
        "deploy-create-stack",
        "CreateStackFunctionArn",
        Step::CreateStack,
        "$.created",
    ),
    (
        "deploy-create-change-set",
        "CreateChangeSetFunctionArn",
        Step::CreateChangeSet,
        "$.changeSet",
    ),
    (
        "deploy-change-set-status",
        "ChangeSetStatusFunctionArn",
        Step::ChangeSetStatus,
        "$.changeSetStatus",
    ),
    (
        "deploy-inspect-change-set",
        "InspectChangeSetFunctionArn",
        Step::InspectChangeSet,
        "$.verdict",
    ),
    (
        "deploy-execute-change-set",
        "ExecuteChangeSetFunctionArn",
        Step::ExecuteChangeSet,
        "$.executed",
    ),
    (
        "deploy-delete-change-set",
        "DeleteChangeSetFunctionArn",
        Step::DeleteChangeSet,
        "$.deleted",
    ),
    (
        "deploy-stack-status",
        "StackStatusFunctionArn",
        Step::StackStatus,
        "$.progress",
    ),
];

/// The steps, one per binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Prepare,
    CheckStack,
    CreateStack,
    CreateChangeSet,
    ChangeSetStatus,
    InspectChangeSet,
    ExecuteChangeSet,
    DeleteChangeSet,
    StackStatus,
}

fn parse<T: DeserializeOwned>(payload: Value) -> Result<T, StepError> {
    serde_json::from_value(payload).map_err(|e| StepError::State(e.to_string()))
}

fn reply<T: Serialize>(value: T) -> Result<Value, StepError> {
    serde_json::to_value(value).map_err(|e| StepError::State(e.to_string()))
}

impl Steps {
    /// Runs one step on its payload.
    pub async fn run(&self, step: Step, payload: Value) -> Result<Value, StepError> {
        match step {
            Step::Prepare => reply(self.prepare(parse(payload)?).await?),
            Step::CheckStack => reply(self.check_stack(parse(payload)?).await?),
            Step::CreateStack => reply(self.create_stack(parse(payload)?).await?),
            Step::CreateChangeSet => reply(self.create_change_set(parse(payload)?).await?),
            Step::ChangeSetStatus => reply(self.change_set_status(parse(payload)?).await?),
            Step::InspectChangeSet => reply(self.inspect_change_set(parse(payload)?).await?),
            Step::ExecuteChangeSet => reply(self.execute_change_set(parse(payload)?).await?),
            Step::DeleteChangeSet => reply(self.delete_change_set(parse(payload)?).await?),
            Step::StackStatus => reply(self.stack_status(parse(payload)?).await?),
        }
    }
}

/// The whole `main` of a step binary: tracing, configuration and clients once, then the loop.
pub async fn serve(step: Step) -> Result<(), lambda_runtime::Error> {
    lambda_common::init_tracing();
    let sdk = lambda_common::sdk::load_config().await;
    let steps = Steps {
        cfn: aws_sdk_cloudformation::Client::new(&sdk),
        s3: lambda_common::sdk::s3_client(&sdk),
        config: StepConfig::from_lookup(|k| std::env::var(k).ok()),
    };
    let steps = &steps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        steps.run(step, event.payload).await.map_err(|e| {
            tracing::error!(step = ?step, error = %lambda_common::error_chain(&e), "step failed");
            lambda_common::diagnostic(&e)
        })
    }))
    .await
}
