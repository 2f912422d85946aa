//! Start-up plumbing shared by every function in this workspace.
//!
//! Everything here runs once, at cold start: tracing set-up, the SDK configuration read from
//! the standard environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, ...),
//! and the mapping of typed handler errors to Lambda diagnostics with stable `errorType` names.

use std::fmt::Display;

use lambda_runtime::Diagnostic;
use tracing_subscriber::EnvFilter;

/// Directives appended after the user's filter. `lambda_runtime` logs the raw invocation payload
/// at TRACE, and a CodePipeline payload carries `artifactCredentials`: whatever `RUST_LOG` says,
/// those crates never log below INFO.
const CREDENTIAL_SAFE_DIRECTIVES: [&str; 2] = ["lambda_runtime=info", "lambda_runtime_api_client=info"];

/// Builds the log filter: `RUST_LOG` if set, else `AWS_LAMBDA_LOG_LEVEL`, else `info`, and always
/// the credential-safe caps above.
pub fn log_filter(rust_log: Option<&str>, lambda_level: Option<&str>) -> EnvFilter {
    let base = rust_log
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .or_else(|| lambda_level.map(|l| l.to_ascii_lowercase()))
        .unwrap_or_else(|| "info".to_owned());
    let mut filter = EnvFilter::try_new(&base).unwrap_or_else(|_| EnvFilter::new("info"));
    for directive in CREDENTIAL_SAFE_DIRECTIVES {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
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
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .with_writer(std::io::stderr);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init()
    } else {
        builder.try_init()
    };
    // A second initialisation (tests) is harmless.
    let _ = result;
}

/// Loads the SDK configuration from the standard environment once, at cold start.
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
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

    #[test]
    fn filter_caps_runtime_payload_logging() {
        let f = log_filter(Some("trace"), None).to_string();
        assert!(f.contains("lambda_runtime=info"), "{f}");
        let f = log_filter(None, Some("DEBUG")).to_string();
        assert!(f.contains("debug"), "{f}");
        let f = log_filter(Some("not a [valid filter"), None).to_string();
        assert!(f.contains("info"), "{f}");
    }
}
