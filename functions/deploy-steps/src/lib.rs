//! The Lambda steps of the CloudFormation deploy state machine (`statemachines/deploy.asl.json`).
//!
//! One crate, one binary, thirteen functions: each step runs as its own function with only the
//! permissions it needs (only the execute step may execute change sets, only the delete step
//! may delete them), and so does the approver; the function's `DEPLOY_STEP` says which one the
//! binary runs.
//!
//! Layout:
//! - `main.rs`: tracing, configuration (`DEPLOY_STEP` and the rest) and clients once, then the
//!   step's loop or the approve function's (a [`lambda_common::metrics::Metrics`] per invocation,
//!   flushed after it);
//! - [`config`]: the environment, read once at cold start ([`Config`], [`ConfigError`]);
//! - [`error`]: [`StepError`] and its stable `errorType` names (the ASL's Retry and Catch);
//! - [`state`]: the workflow's state document, each step's output at its `ResultPath`;
//! - [`steps`]: [`Step`] (function, `DEPLOY_STEP` name, ASL substitution, result path), [`Request`], [`Response`],
//!   [`Steps::handle`], and one file per step;
//! - [`approve`]: the approve function (a function URL request in, the decision sent with the
//!   task token);
//! - [`metrics`]: what each invocation records (`StepOutcomes`, `ChangeSetVerdicts`,
//!   `CloudFormationWaitSeconds`), decided from the step's answer;
//! - `cfn`: the CloudFormation SDK adapters (request inputs, DescribeChangeSet pages);
//! - decisions, pure and without SDK types: [`plan`] (the input and the plan), [`changeset`]
//!   (the change-set gate), [`stack`] (stack statuses), [`poll`] (bounded waits), [`template`]
//!   (the template out of the source artifact's zip), [`drift`] (the drift gate), [`review`]
//!   (the review of an unsafe change set: masking, fingerprint, Markdown), [`approval`] (the
//!   approver's request, identity and decision).

pub mod approval;
pub mod approve;
mod cfn;
pub mod changeset;
pub mod config;
pub mod drift;
pub mod error;
pub mod metrics;
pub mod plan;
pub mod poll;
pub mod review;
pub mod stack;
pub mod state;
pub mod steps;
pub mod template;

pub use config::{Config, ConfigError};
pub use error::StepError;
pub use steps::{Request, Response, Step, Steps};
