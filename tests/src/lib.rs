//! The local AWS stack and the end-to-end test support.
//!
//! One loopback gateway fronts: moto (S3, CloudFormation, Step Functions executing real ASL),
//! a Lambda Runtime API host running the workspace's real function binaries, and emulators for
//! the APIs moto lacks (CodePipeline job results, Step Functions' `StartSyncExecution` and state
//! machine types). See README.md, "Local AWS stack".

pub mod approvals;
pub mod codepipeline;
pub mod emf;
pub mod gateway;
pub mod lambda_async;
pub mod moto;
pub mod pipeline;
pub mod rds;
pub mod recorder;
pub mod runtime_host;
pub mod seed;
pub mod sfn;
pub mod sigv4;
pub mod stack;

pub use stack::{FunctionOptions, LocalStack, env};
