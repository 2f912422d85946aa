//! The SDK side shared by every function: the HTTPS client and configuration built once at cold
//! start, and one classification of SDK errors (every SDK crate shares smithy's `SdkError`).

use std::error::Error as StdError;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What an SDK error means for the caller, decided from its code and HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Throttled (after the SDK's own retries): back off and try again later.
    Throttled,
    /// 403, or a code that says the credentials or the policy refused the call.
    AccessDenied,
    /// 404, or a code that names a missing resource.
    NotFound,
    /// 412: a conditional request's condition did not hold.
    PreconditionFailed,
    /// Any other 4xx with a code: the service refused the request as made.
    Rejected,
    /// 5xx, timeouts, connection failures, unreadable responses.
    Other,
}

/// The AWS SDK's own list of throttling codes (aws-runtime's `THROTTLING_ERRORS`), without
/// `LimitExceededException` and `TransactionInProgressException`: CloudFormation and others use
/// the first for a reached quota, which no retry cures.
pub const THROTTLING_CODES: [&str; 12] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

const ACCESS_DENIED_CODES: [&str; 10] = [
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "AuthFailure",
];

/// Codes of the services used here that name a missing resource (some services answer 400).
const NOT_FOUND_CODES: [&str; 12] = [
    "NotFound",
    "NoSuchKey",
    "NoSuchBucket",
    "NoSuchUpload",
    "ResourceNotFoundException",
    "StateMachineDoesNotExist",
    "ExecutionDoesNotExist",
    "ChangeSetNotFound",
    "ChangeSetNotFoundException",
    "DBInstanceNotFound",
    "DBClusterNotFoundFault",
    "DBLogFileNotFoundFault",
];

/// Classifies from the error code and HTTP status (the code wins where both speak).
pub fn classify_parts(code: Option<&str>, status: Option<u16>) -> ErrorKind {
    match code {
        Some(c) if THROTTLING_CODES.contains(&c) => ErrorKind::Throttled,
        Some(c) if ACCESS_DENIED_CODES.contains(&c) => ErrorKind::AccessDenied,
        Some(c) if NOT_FOUND_CODES.contains(&c) => ErrorKind::NotFound,
        Some("PreconditionFailed") => ErrorKind::PreconditionFailed,
        _ => match status {
            Some(429) => ErrorKind::Throttled,
            Some(403) => ErrorKind::AccessDenied,
            Some(404) => ErrorKind::NotFound,
            Some(412) => ErrorKind::PreconditionFailed,
            Some(s) if code.is_some() && (400..500).contains(&s) => ErrorKind::Rejected,
            _ => ErrorKind::Other,
        },
    }
}

/// Classifies an SDK error of any service.
pub fn classify<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> ErrorKind {
    classify_parts(err.code(), err.raw_response().map(|r| r.status().as_u16()))
}

/// `Code: message` of an SDK error, the part an operator can act on; the whole chain when the
/// service sent no code (timeouts, connection failures).
pub fn summary<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => crate::error_chain(err),
    }
}

/// The HTTPS client every SDK client uses: hyper 1 and rustls with the ring provider, trusting
/// the system's root certificates, and honouring the standard proxy environment (`HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, upper or lower case) as the SDK's own default client
/// does since behaviour version 2025-08-07. With none of them set, every request goes direct.
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_with_connector_fn(connector)
}

/// The connector [`http_client`] gives every SDK client (hyper 1, rustls with ring, the standard
/// proxy environment), for a request no SDK models (the RDS shipper's `DownloadCompleteLogFile`):
/// it reaches its endpoint exactly as the SDK's own requests do. No timeouts are set on it (the
/// caller bounds its waits).
pub fn http_connector() -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
    aws_smithy_runtime_api::client::http::SharedHttpConnector::new(connector(None, None))
}

fn connector(
    settings: Option<&aws_smithy_runtime_api::client::http::HttpConnectorSettings>,
    components: Option<&aws_smithy_runtime_api::client::runtime_components::RuntimeComponents>,
) -> aws_smithy_http_client::Connector {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::{ConnectorBuilder, tls};
    let mut connector = ConnectorBuilder::default()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring));
    connector.set_connector_settings(settings.cloned());
    if let Some(components) = components {
        connector.set_sleep_impl(components.sleep_impl());
    }
    connector.set_proxy_config(Some(ProxyConfig::from_env()));
    connector.build()
}

/// Loads the SDK configuration from the standard environment once, at cold start.
pub async fn load_config() -> aws_config::SdkConfig {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_by_code_then_status() {
        let cases = [
            (Some("Throttling"), Some(400), ErrorKind::Throttled),
            (Some("SlowDown"), Some(503), ErrorKind::Throttled),
            (Some("TooManyRequestsException"), Some(429), ErrorKind::Throttled),
            (None, Some(429), ErrorKind::Throttled),
            (Some("AccessDenied"), Some(403), ErrorKind::AccessDenied),
            (Some("AccessDeniedException"), Some(400), ErrorKind::AccessDenied),
            (None, Some(403), ErrorKind::AccessDenied),
            (Some("NoSuchKey"), Some(404), ErrorKind::NotFound),
            (Some("ExecutionDoesNotExist"), Some(400), ErrorKind::NotFound),
            (None, Some(404), ErrorKind::NotFound),
            (
                Some("PreconditionFailed"),
                Some(412),
                ErrorKind::PreconditionFailed,
            ),
            (None, Some(412), ErrorKind::PreconditionFailed),
            (Some("ValidationError"), Some(400), ErrorKind::Rejected),
            (Some("LimitExceededException"), Some(400), ErrorKind::Rejected),
            (Some("InternalFailure"), Some(500), ErrorKind::Other),
            (None, Some(400), ErrorKind::Other),
            (None, None, ErrorKind::Other),
        ];
        for (code, status, kind) in cases {
            assert_eq!(classify_parts(code, status), kind, "{code:?} {status:?}");
        }
    }

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
}
