//! CloudFront index rewriting for S3 origins behind origin access control: `/about/` fetches
//! `/about/index.html`, `/about` redirects to `/about/` (keeping the query string), and unsafe
//! or malformed paths are refused before they reach the origin.
//!
//! Layout (Lambda@Edge runs only Node.js or Python, so `handler/index.js` is this function's
//! `main`: it loads the wasm build of this crate, configures it once and calls it per request):
//! - [`config`]: the options from `config.json`, checked once, with a typed [`ConfigError`];
//! - [`rules`]: the decisions, pure functions: which URI, which redirect, which refusal;
//! - [`abi`]: the entry point the Node.js handler calls (`configure`, then `decide` per request)
//!   and the wasm exports behind it.

pub mod abi;
pub mod config;
pub mod rules;

pub use config::{ConfigError, Extensionless, Options};
pub use rules::{Decision, decide};
