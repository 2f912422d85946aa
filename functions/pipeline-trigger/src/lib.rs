//! CodePipeline Lambda invoke action that starts a Step Functions execution and polls it with
//! continuation tokens until it ends.
//!
//! Layout:
//! - [`config`]: the environment, read once at cold start (the default state machine, the
//!   region);
//! - [`event`]: the typed [`Event`]: a [`Request`] (the job id and the parts of the job event
//!   this function reads, `artifactCredentials` only into a type that never prints them) or a
//!   destination record;
//! - [`handler`]: the invocation, orchestration only: the job's result within the work budget,
//!   then exactly one result recorded for the job; or the job a destination record ends;
//! - [`destination`]: decisions: Lambda's on-failure destination record, and the `JobFailed`
//!   result (its message) for the job whose trigger invocation failed on every attempt;
//! - [`metrics`]: decisions: the invocation's EMF metrics (`Service` `PipelineTrigger`);
//! - [`params`]: decisions: `UserParameters`, the state machine, the execution name and input;
//! - [`express`]: decisions: the state machine's type and Express runs (StartSyncExecution
//!   within the deadline, the result from its answer);
//! - [`token`]: decisions: the continuation token between invocations (transient failures
//!   counted, foreign executions refused);
//! - [`outcome`]: decisions: the job's result from the execution's state, within CodePipeline's
//!   limits;
//! - [`artifact`]: decisions: the output artifact's location and its zip;
//! - [`waiting`]: decisions: what a running execution waits for (a task's callback), from its
//!   latest history events;
//! - [`sdk`]: the SDK adapters: the S3, Step Functions and CodePipeline requests, their outputs
//!   as the pure types, their errors classified;
//! - [`error`]: typed errors: [`error::JobError`] (a failure result for the job) and
//!   [`HandlerError`] (returned to Lambda, with stable `errorType` names).

pub mod artifact;
pub mod config;
pub mod destination;
pub mod error;
pub mod event;
pub mod express;
pub mod handler;
pub mod metrics;
pub mod outcome;
pub mod params;
pub mod sdk;
pub mod token;
pub mod waiting;

pub use config::Config;
pub use error::HandlerError;
pub use event::{Event, Request};
pub use handler::Trigger;
