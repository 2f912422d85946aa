//! Ships Amazon RDS log files to S3: every byte once, resumable at any point, with memory
//! bounded whatever the file size.
//!
//! Layout:
//! - `main.rs`: the Lambda binary; wiring only.
//! - [`config`]: the environment, read once at cold start, and [`ConfigError`].
//! - [`error`]: [`ShipError`] and its stable `errorType` names.
//! - [`request`]: the invocation's [`Request`], parsed strictly from its payload.
//! - [`run`]: the [`Shipper`], its entry point [`Shipper::handle`] and the run: request →
//!   instances → an instance's files → a file chunk after chunk.
//! - `file`: one chunk of a file: read through the cursor, written ahead, uploaded, committed.
//! - [`summary`]: what a run answers, per instance (shipped, lost, lag, anomalies by kind).
//! - [`report`]: the invocation's metrics (EMF, service `RdsLogShipper`) from its summaries,
//!   and the lag measure.
//!
//! Decisions, as pure functions and types (no SDK types, no I/O):
//! - [`selection`]: which instances a run ships;
//! - [`checkpoint`]: the per-instance checkpoint, what to ship next, the write-ahead chunk
//!   lifecycle;
//! - [`rotation`]: which earlier generation a file renamed by rotation continues;
//! - [`loss`]: the bytes lost: files no longer listed before they were shipped, lines cut;
//! - [`cursor`]: where a chunk's reading stands (marker, offset, first bytes, lossiness) and the
//!   end-of-file decision;
//! - [`portion`]: how to read a portion despite RDS's quirks;
//! - [`keys`]: the S3 key layout;
//! - [`rate`]: the client-side rate limit.
//!
//! SDK adapters:
//! - [`rds`]: select instances, list files, read a portion, read a file's beginning; counts
//!   throttling answers;
//! - `store`: read and compare-and-swap the checkpoints in S3, find a pending chunk;
//! - `upload`: the gzip multipart chunk writer with its one reused part buffer.

pub mod checkpoint;
pub mod config;
pub mod cursor;
pub mod error;
mod file;
pub mod keys;
pub mod loss;
pub mod portion;
pub mod rate;
pub mod rds;
pub mod report;
pub mod request;
pub mod rotation;
pub mod run;
pub mod selection;
mod store;
pub mod summary;
mod upload;

pub use config::{Config, ConfigError};
pub use error::ShipError;
pub use request::{InvalidRequest, Request};
pub use run::Shipper;
