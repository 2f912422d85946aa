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
//! - `fleet_run`: the state machine's steps: select (the manifest and the Map's plan), ship a
//!   batch (one Distributed Map child), summarize (the Map's result files, the lag index).
//! - `whole`: a file downloaded whole, its stream cut into chunks committed as `file` does.
//! - [`summary`]: what a run answers, per instance (shipped, lost, lag, anomalies by kind).
//! - [`report`]: the invocation's metrics (EMF, service `RdsLogShipper`) from its summaries,
//!   and the lag measure.
//!
//! Decisions, as pure functions and types (no SDK types, no I/O):
//! - [`selection`]: which instances a run ships;
//! - [`fleet`]: the Distributed Map's plan (batches, the budget split), the manifest, a batch
//!   checked against it, the fleet from the Map's results;
//! - [`fairness`]: the most lag first (the lag index);
//! - [`checkpoint`]: the per-instance checkpoint, what to ship next, the write-ahead chunk
//!   lifecycle;
//! - [`catchup`]: which files are downloaded whole (stopped growing, nothing shipped) and how a
//!   whole download's stream becomes chunks;
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
//! - `fleet_store`: the manifest, the Map's result files and the lag index in S3;
//! - `upload`: the gzip multipart chunk writer with its one reused part buffer;
//! - [`complete`]: `DownloadCompleteLogFile`, the REST endpoint no SDK models, signed with
//!   `aws-sigv4`.

pub mod catchup;
pub mod checkpoint;
pub mod complete;
pub mod config;
pub mod cursor;
pub mod error;
pub mod fairness;
mod file;
pub mod fleet;
mod fleet_run;
mod fleet_store;
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
mod whole;

pub use config::{Config, ConfigError};
pub use error::ShipError;
pub use request::{InvalidRequest, Request};
pub use run::Shipper;
