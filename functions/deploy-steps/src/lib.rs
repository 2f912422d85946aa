//! The Lambda steps of the CloudFormation deploy state machine (`statemachines/deploy.asl.json`).
//!
//! One crate, one binary, nine functions: each step runs as its own function with only the
//! permissions it needs (only the execute step may execute change sets, only the delete step
//! may delete them); the function's `DEPLOY_STEP` says which step the binary runs.
//!
//! Layout:
//! - `main.rs`: tracing, configuration (`DEPLOY_STEP` and the rest) and clients once, then the loop;
//! - [`config`]: the environment, read once at cold start ([`Config`], [`ConfigError`]);
//! - [`error`]: [`StepError`] and its stable `errorType` names (the ASL's Retry and Catch);
//! - [`state`]: the workflow's state document, each step's output at its `ResultPath`;
//! - [`steps`]: [`Step`] (function, `DEPLOY_STEP` name, ASL substitution, result path), [`Request`], [`Response`],
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

pub use config::{Config, ConfigError};
pub use error::StepError;
pub use steps::{Request, Response, Step, Steps};
