//! The Lambda steps of the CloudFormation deploy state machine (`statemachines/deploy.asl.json`).
//!
//! One crate, one binary per step: each step runs as its own function with only the
//! permissions it needs (only the execute step may execute change sets, only the delete step
//! may delete them). Each binary's `main` is one line calling [`serve`].
//!
//! Layout:
//! - this file: [`serve`], the whole `main` of a step binary;
//! - [`config`]: the environment, read once at cold start ([`Config`], [`ConfigError`]);
//! - [`error`]: [`StepError`] and its stable `errorType` names (the ASL's Retry and Catch);
//! - [`state`]: the workflow's state document, each step's output at its `ResultPath`;
//! - [`steps`]: [`Step`] (binary, ASL substitution, result path), [`Request`], [`Response`],
//!   [`Steps::handle`], and one file per step;
//! - `cfn`: the CloudFormation SDK adapters (request inputs, DescribeChangeSet pages);
//! - decisions, pure and without SDK types: [`plan`] (the input and the plan), [`changeset`]
//!   (the change-set gate), [`stack`] (stack statuses), [`poll`] (bounded waits), [`template`]
//!   (the template out of the source artifact's zip).

mod cfn;
pub mod changeset;
pub mod config;
pub mod error;
pub mod plan;
pub mod poll;
pub mod stack;
pub mod state;
pub mod steps;
pub mod template;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

pub use config::{Config, ConfigError};
pub use error::StepError;
pub use steps::{Request, Response, Step, Steps};

/// The whole `main` of a step binary: tracing, configuration and clients once, then the loop.
pub async fn serve(step: Step) -> Result<(), lambda_runtime::Error> {
    lambda_common::init_tracing();
    let config = Config::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let steps = Steps::new(&lambda_common::sdk::load_config().await, config);
    let steps = &steps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = lambda_common::clock::deadline(&event.context);
        steps.handle(Request::parse(step, event.payload)?, deadline).await
    }))
    .await
}
