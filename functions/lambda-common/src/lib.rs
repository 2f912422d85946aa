//! Plumbing shared by every function in this workspace.
//!
//! Layout:
//! - this file: tracing set-up (JSON under Lambda's JSON log format, payload logging capped) and
//!   typed errors to Lambda diagnostics with stable `errorType` names ([`ErrorType`],
//!   [`diagnostic`], [`impl_diagnostic!`]), and [`json_kind`] for messages refusing input;
//! - [`sdk`]: the SDK configuration and clients from the standard environment (`AWS_REGION`,
//!   `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, ...), one classification of SDK errors;
//! - [`clock`]: epoch milliseconds and the invocation's deadline;
//! - [`metrics`]: one invocation's metrics in CloudWatch Embedded Metric Format (stdout lines).

pub mod clock;
pub mod metrics;
pub mod sdk;

use std::fmt::Display;

use lambda_runtime::Diagnostic;
use tracing_subscriber::filter::{LevelFilter, Targets};

/// Targets that log what must never reach a log, and the most they may log. `lambda_runtime`
/// logs the raw invocation payload at TRACE (a CodePipeline payload carries
/// `artifactCredentials`); the SDK's runtime and the HTTP stack log whole requests and responses
/// at TRACE (a task token sent to Step Functions, unmasked property values from CloudFormation,
/// session tokens in headers); the SDK's endpoint and auth orchestration log their parameters at
/// DEBUG, the resolved identity among them (an access key id: the function's own, or a job's
/// artifact credentials). Whatever the log level says, these are capped.
const CAPPED_TARGETS: [(&str, LevelFilter); 13] = [
    ("lambda_runtime", LevelFilter::INFO),
    ("lambda_runtime_api_client", LevelFilter::INFO),
    (
        "aws_smithy_runtime::client::orchestrator::endpoints",
        LevelFilter::INFO,
    ),
    (
        "aws_smithy_runtime::client::orchestrator::auth",
        LevelFilter::INFO,
    ),
    ("aws_smithy", LevelFilter::DEBUG),
    ("aws_sigv4", LevelFilter::DEBUG),
    ("aws_runtime", LevelFilter::DEBUG),
    ("aws_config", LevelFilter::DEBUG),
    ("aws_sdk", LevelFilter::DEBUG),
    ("hyper", LevelFilter::DEBUG),
    ("h2", LevelFilter::DEBUG),
    ("rustls", LevelFilter::DEBUG),
    ("reqwest", LevelFilter::DEBUG),
];

/// The cap for `target`, if it is one of [`CAPPED_TARGETS`] or below one.
fn cap(target: &str) -> Option<LevelFilter> {
    CAPPED_TARGETS
        .iter()
        .filter(|(prefix, _)| target.starts_with(prefix))
        .map(|(_, level)| *level)
        .min()
}

/// Builds the log filter from `RUST_LOG` if set, else `AWS_LAMBDA_LOG_LEVEL`, else `info`.
/// Directives are `level` or `target=level`, comma-separated; a directive that is neither is
/// ignored (an invalid `RUST_LOG` never silences the function). The [`CAPPED_TARGETS`] are
/// capped (the runtime's payload logging at INFO, the SDK's and HTTP stack's at DEBUG).
pub fn log_filter(rust_log: Option<&str>, lambda_level: Option<&str>) -> Targets {
    let spec = rust_log
        .filter(|s| !s.trim().is_empty())
        .or(lambda_level)
        .unwrap_or("info");
    let mut default = None;
    let mut targets: Vec<(String, LevelFilter)> = Vec::new();
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match directive.split_once('=') {
            None => {
                if let Ok(level) = directive.parse::<LevelFilter>() {
                    default = Some(level);
                }
            }
            Some((target, level)) => {
                let valid_target = !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
                if let (true, Ok(level)) = (valid_target, level.trim().parse::<LevelFilter>()) {
                    targets.push((target.to_owned(), level));
                }
            }
        }
    }
    let default = default.unwrap_or(LevelFilter::INFO);
    let mut filter = Targets::new().with_default(default);
    for (target, level) in &targets {
        let level = cap(target).map_or(*level, |c| (*level).min(c));
        filter = filter.with_target(target.as_str(), level);
    }
    for (target, level) in CAPPED_TARGETS {
        if !targets.iter().any(|(t, _)| t == target) {
            filter = filter.with_target(target, default.min(level));
        }
    }
    filter
}

/// Initialises `tracing`: JSON lines when `AWS_LAMBDA_LOG_FORMAT=JSON` (Lambda's advanced logging
/// controls), plain text otherwise. Lambda adds timestamps itself, so none are printed.
pub fn init_tracing() {
    let filter = log_filter(
        std::env::var("RUST_LOG").ok().as_deref(),
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
    );
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // The builder's own maximum level defaults to INFO, and the filter layered on it can only
    // narrow that: lift it, so that the filter alone decides (DEBUG and TRACE when asked for).
    let builder = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .with_writer(std::io::stderr);
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .finish()
            .with(filter)
            .try_init()
    } else {
        builder.finish().with(filter).try_init()
    };
    // A second initialisation (tests) is harmless.
    let _ = result;
}

/// A handler error with a stable name for Lambda's `errorType` (matched by ASL `Retry`/`Catch`).
pub trait ErrorType: Display {
    fn error_type(&self) -> &'static str;
}

/// The full chain of an error, for messages and logs: SDK errors print "service error" at the
/// top and the useful part (code and message) in their sources.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The kind of a JSON value, for messages that refuse input: "must be a string, not a number".
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Implements `From<$error> for lambda_runtime::Diagnostic` through [`diagnostic`], so that a
/// handler returns its own error type and `main` needs no `map_err`. The error type must
/// implement [`ErrorType`] and `std::error::Error`.
#[macro_export]
macro_rules! impl_diagnostic {
    ($error:ty) => {
        impl From<$error> for ::lambda_runtime::Diagnostic {
            fn from(err: $error) -> Self {
                $crate::diagnostic(&err)
            }
        }
    };
}

/// Converts a typed error into the diagnostic Lambda reports, with its whole source chain.
pub fn diagnostic<E: ErrorType + std::error::Error + 'static>(err: &E) -> Diagnostic {
    Diagnostic {
        error_type: err.error_type().to_owned(),
        error_message: error_chain(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level_for(f: &Targets, target: &str) -> Option<LevelFilter> {
        [
            LevelFilter::TRACE,
            LevelFilter::DEBUG,
            LevelFilter::INFO,
            LevelFilter::WARN,
            LevelFilter::ERROR,
        ]
        .into_iter()
        .find(|l| l.into_level().is_some_and(|level| f.would_enable(target, &level)))
    }

    #[test]
    fn filter_caps_runtime_payload_logging() {
        let f = log_filter(Some("trace"), None);
        assert_eq!(
            level_for(&f, "pipeline_trigger::handler"),
            Some(LevelFilter::TRACE)
        );
        assert_eq!(
            level_for(&f, "lambda_runtime::layers::api_response"),
            Some(LevelFilter::INFO)
        );
        assert_eq!(
            level_for(&f, "lambda_runtime_api_client"),
            Some(LevelFilter::INFO)
        );
        // The SDK and the HTTP stack log whole requests and responses at TRACE.
        for target in [
            "aws_smithy_runtime::client::orchestrator",
            "aws_smithy_runtime::client::orchestrator::http",
            "aws_sigv4::http_request",
            "hyper::proto::h1",
            "aws_sdk_sfn",
        ] {
            assert_eq!(level_for(&f, target), Some(LevelFilter::DEBUG), "{target}");
        }
        // The endpoint and auth orchestration log the resolved identity at DEBUG.
        for target in [
            "aws_smithy_runtime::client::orchestrator::endpoints",
            "aws_smithy_runtime::client::orchestrator::auth",
        ] {
            assert_eq!(level_for(&f, target), Some(LevelFilter::INFO), "{target}");
        }
        let f = log_filter(Some("trace,aws_smithy_runtime=trace"), None);
        assert_eq!(
            level_for(&f, "aws_smithy_runtime::client"),
            Some(LevelFilter::DEBUG)
        );
        assert_eq!(
            level_for(&f, "aws_smithy_runtime::client::orchestrator::endpoints"),
            Some(LevelFilter::INFO)
        );
        let f = log_filter(
            Some("warn,lambda_runtime::layers=trace,aws_smithy_runtime=debug"),
            None,
        );
        assert_eq!(
            level_for(&f, "lambda_runtime::layers::api_response"),
            Some(LevelFilter::INFO)
        );
        assert_eq!(level_for(&f, "lambda_runtime::runtime"), Some(LevelFilter::WARN));
        assert_eq!(
            level_for(&f, "aws_smithy_runtime::client"),
            Some(LevelFilter::DEBUG)
        );
        assert_eq!(level_for(&f, "pipeline_trigger"), Some(LevelFilter::WARN));
        let f = log_filter(None, Some("DEBUG"));
        assert_eq!(level_for(&f, "pipeline_trigger"), Some(LevelFilter::DEBUG));
        assert_eq!(level_for(&f, "lambda_runtime"), Some(LevelFilter::INFO));
        let f = log_filter(Some("not a [valid filter"), None);
        assert_eq!(level_for(&f, "pipeline_trigger"), Some(LevelFilter::INFO));
        let f = log_filter(Some("debug,[span{x}]=trace,bad=loud"), None);
        assert_eq!(level_for(&f, "pipeline_trigger"), Some(LevelFilter::DEBUG));
        let f = log_filter(None, None);
        assert_eq!(level_for(&f, "anything"), Some(LevelFilter::INFO));
    }
}
