//! CodePipeline Lambda invoke action that starts a Step Functions execution and polls it with
//! continuation tokens until it ends.
//!
//! The decisions (parameters, execution input, tokens, results and their limits) are pure
//! functions in [`params`], [`token`] and [`outcome`]; [`handler`] only orchestrates the calls.

pub mod error;
pub mod event;
pub mod handler;
pub mod outcome;
pub mod params;
pub mod token;

pub use handler::{Config, Trigger};
