//! CloudFront index rewriting for S3 origins behind origin access control: `/about/` fetches
//! `/about/index.html`, `/about` redirects to `/about/` (keeping the query string), and unsafe
//! or malformed paths are refused before they reach the origin.
//!
//! The rules ([`rules`]) are pure. [`abi`] is the small interface the Lambda@Edge Node.js handler
//! calls once the crate is compiled to `wasm32-unknown-unknown`.

pub mod abi;
pub mod rules;

pub use rules::{Decision, Extensionless, Options, decide};
