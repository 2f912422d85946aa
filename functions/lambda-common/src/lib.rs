//! Start-up plumbing shared by every function in this workspace.
//!
//! Everything here runs once, at cold start: tracing set-up, the SDK configuration read from
//! the standard environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, ...),
//! and the mapping of typed handler errors to Lambda diagnostics with stable `errorType` names.

use std::fmt::Display;

use lambda_runtime::Diagnostic;
use tracing_subscriber::filter::{LevelFilter, Targets};

/// `lambda_runtime` logs the raw invocation payload at TRACE, and a CodePipeline payload carries
/// `artifactCredentials`: whatever the log level says, targets under these never log below INFO.
const PAYLOAD_LOGGING_TARGETS: [&str; 2] = ["lambda_runtime", "lambda_runtime_api_client"];

fn is_payload_logging(target: &str) -> bool {
    PAYLOAD_LOGGING_TARGETS.iter().any(|p| target.starts_with(p))
}

/// Builds the log filter from `RUST_LOG` if set, else `AWS_LAMBDA_LOG_LEVEL`, else `info`.
/// Directives are `level` or `target=level`, comma-separated; a directive that is neither is
/// ignored (an invalid `RUST_LOG` never silences the function). The payload-logging targets are
/// capped at INFO.
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
        let level = if is_payload_logging(target) {
            (*level).min(LevelFilter::INFO)
        } else {
            *level
        };
        filter = filter.with_target(target.as_str(), level);
    }
    for target in PAYLOAD_LOGGING_TARGETS {
        if !targets.iter().any(|(t, _)| t == target) {
            filter = filter.with_target(target, default.min(LevelFilter::INFO));
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
    let builder = tracing_subscriber::fmt()
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

/// The HTTPS client every SDK client uses: hyper 1 and rustls with the ring provider, trusting
/// the system's root certificates.
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https()
}

/// Loads the SDK configuration from the standard environment once, at cold start.
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client())
        .load()
        .await
}

/// True when `url` points at this machine (`localhost`, `127.0.0.0/8`, `[::1]`).
pub fn is_loopback_endpoint(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(stripped) = host.strip_prefix('[') {
        stripped.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Decides S3 addressing from the environment: path-style when `S3_FORCE_PATH_STYLE` is true, or
/// when the S3 endpoint (`AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`) is a loopback address,
/// where virtual-hosted bucket names cannot resolve.
pub fn s3_path_style(force: Option<&str>, s3_endpoint: Option<&str>, endpoint: Option<&str>) -> bool {
    if let Some(f) = force.filter(|f| !f.is_empty()) {
        return matches!(f.to_ascii_lowercase().as_str(), "1" | "true" | "yes");
    }
    s3_endpoint
        .filter(|e| !e.is_empty())
        .or(endpoint.filter(|e| !e.is_empty()))
        .is_some_and(is_loopback_endpoint)
}

/// Builds the S3 client from the shared configuration, path-style against a loopback endpoint.
pub fn s3_client(conf: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = s3_path_style(
        std::env::var("S3_FORCE_PATH_STYLE").ok().as_deref(),
        std::env::var("AWS_ENDPOINT_URL_S3").ok().as_deref(),
        std::env::var("AWS_ENDPOINT_URL").ok().as_deref(),
    );
    let s3_conf = aws_sdk_s3::config::Builder::from(conf)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3_conf)
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

/// `Code: message` of an SDK error, the part an operator can act on; the whole chain when the
/// service sent no code (timeouts, connection failures). Every SDK crate shares this error type.
pub fn sdk_error_summary<E>(err: &aws_sdk_s3::error::SdkError<E>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => error_chain(err),
    }
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

    #[test]
    fn loopback_detection() {
        for url in [
            "http://127.0.0.1:4566",
            "http://localhost:5000/",
            "http://[::1]:9000",
            "127.0.0.5:80",
            "http://user@LOCALHOST",
        ] {
            assert!(is_loopback_endpoint(url), "{url}");
        }
        for url in [
            "https://s3.eu-west-1.amazonaws.com",
            "http://10.0.0.1:4566",
            "http://localhost.example.com",
            "",
        ] {
            assert!(!is_loopback_endpoint(url), "{url}");
        }
    }

    #[test]
    fn path_style_rules() {
        assert!(s3_path_style(None, None, Some("http://127.0.0.1:1")));
        assert!(s3_path_style(
            None,
            Some("http://localhost:1"),
            Some("https://x.amazonaws.com")
        ));
        assert!(!s3_path_style(
            None,
            Some("https://s3.amazonaws.com"),
            Some("http://127.0.0.1:1")
        ));
        assert!(!s3_path_style(None, None, None));
        assert!(s3_path_style(Some("true"), None, None));
        assert!(!s3_path_style(Some("false"), None, Some("http://127.0.0.1:1")));
    }

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
