//! Ships Amazon RDS log files to S3: every byte once, resumable at any point.
//!
//! This crate holds the decisions, as pure functions: the per-instance checkpoint and what to
//! ship next ([`checkpoint`]), how to read a portion despite RDS's quirks ([`portion`]), the S3
//! key layout ([`keys`]) and the client-side rate limit ([`rate`]).

pub mod checkpoint;
pub mod keys;
pub mod portion;
pub mod rate;
pub mod ship;
