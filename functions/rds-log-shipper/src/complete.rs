//! RDS's `DownloadCompleteLogFile`: the REST endpoint that streams a whole log file in one
//! request, `GET /v19/downloadCompleteLogFile/{instance}/{file}` on `rds.{region}.amazonaws.com`
//! (the file name keeps its `/`), SigV4-signed for service `rds`, IAM action
//! `rds:DownloadCompleteDBLogFile` on the instance. No SDK models it: the request is signed here
//! with `aws-sigv4` and sent through the SDK's own HTTP connector (`lambda_common::sdk`), so it
//! takes the same route as every SDK request (the standard proxy environment included).
//!
//! One attempt per call; the caller ([`crate::rds::Rds::download_whole`]) takes a token of the
//! client-side rate limit before each and retries throttling and transient failures.
//! `/v19/` is the user guide's current path: `/v13/` stops working after 2027-03-01.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::byte_stream::ByteStream;

use crate::error::DownloadError;

/// The endpoint's path version.
pub const VERSION: &str = "v19";
/// The signing name.
const SERVICE: &str = "rds";
/// How long to wait for the answer's status and headers (the body is bounded by the caller).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this much of an error answer's body is read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Signs and sends `DownloadCompleteLogFile` requests.
#[derive(Debug, Clone)]
pub struct CompleteDownloads {
    http: SharedHttpConnector,
    credentials: SharedCredentialsProvider,
    region: String,
    endpoint: String,
}

/// An answer: the file's bytes as they stream in, or RDS's refusal.
#[derive(Debug)]
pub enum Answer {
    Body(ByteStream),
    /// Any status but 2xx (a [`DownloadError::Refused`] with its code and message).
    Refused(DownloadError),
}

/// The endpoint, as the SDK finds one in the standard environment: `AWS_ENDPOINT_URL_RDS`, then
/// `AWS_ENDPOINT_URL` (neither when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is `true`), else the
/// regional endpoint (`amazonaws.com.cn` in the China regions).
pub fn endpoint(env: impl Fn(&str) -> Option<String>, region: &str) -> String {
    let set = |k: &str| env(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let ignore = set("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let configured = (!ignore)
        .then(|| set("AWS_ENDPOINT_URL_RDS").or_else(|| set("AWS_ENDPOINT_URL")))
        .flatten();
    configured.unwrap_or_else(|| {
        let domain = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("https://rds.{region}.{domain}")
    })
}

/// Percent-encodes a path segment (RFC 3986 unreserved characters kept, as SigV4 encodes).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL of a file's whole download: `<endpoint>/v19/downloadCompleteLogFile/<instance>/<file>`,
/// each segment percent-encoded, the file name's `/` kept.
pub fn url(endpoint: &str, instance: &str, file: &str) -> String {
    let file: Vec<String> = file.split('/').map(encode_segment).collect();
    format!(
        "{}/{VERSION}/downloadCompleteLogFile/{}/{}",
        endpoint.trim_end_matches('/'),
        encode_segment(instance),
        file.join("/")
    )
}

/// The code and message of an error answer's body: RDS's XML error (`<Code>`, `<Message>`), or
/// a JSON one (`code`/`__type`, `message`); the body's start as the message otherwise.
pub fn refusal(status: u16, body: &[u8]) -> DownloadError {
    let text = String::from_utf8_lossy(body);
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].trim().to_owned())
    };
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |names: &[&str]| {
        json.as_ref().and_then(|j| {
            names
                .iter()
                .find_map(|n| j.get(*n).and_then(|v| v.as_str()).map(str::to_owned))
        })
    };
    let code = tag("Code")
        .or_else(|| field(&["code", "Code", "__type"]))
        .map(|c| c.rsplit('#').next().unwrap_or(&c).to_owned());
    let message = tag("Message")
        .or_else(|| field(&["message", "Message"]))
        .unwrap_or_else(|| text.chars().take(300).collect());
    DownloadError::Refused {
        status,
        code,
        message,
    }
}

impl CompleteDownloads {
    pub fn new(
        http: SharedHttpConnector,
        credentials: SharedCredentialsProvider,
        region: &str,
        endpoint: &str,
    ) -> Self {
        Self {
            http,
            credentials,
            region: region.to_owned(),
            endpoint: endpoint.to_owned(),
        }
    }

    /// From the SDK configuration (region, credentials) and the environment (endpoint), with
    /// the SDK's HTTP connector; `None` without a region or credentials.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, env: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let region = sdk.region()?.as_ref().to_owned();
        let credentials = sdk.credentials_provider()?;
        let endpoint = endpoint(env, &region);
        Some(Self::new(
            lambda_common::sdk::http_connector(),
            credentials,
            &region,
            &endpoint,
        ))
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The request for `file` of `instance`, signed now.
    async fn signed(&self, instance: &str, file: &str) -> Result<HttpRequest, DownloadError> {
        let url = url(&self.endpoint, instance, file);
        let identity: Identity = self
            .credentials
            .provide_credentials()
            .await
            .map_err(DownloadError::Credentials)?
            .into();
        let request_error = |e: &dyn std::fmt::Display| DownloadError::Request(e.to_string());
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| request_error(&e))?
            .into();
        let signable =
            SignableRequest::new("GET", url.as_str(), std::iter::empty(), SignableBody::Bytes(&[]))
                .map_err(|e| request_error(&e))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| request_error(&e))?
            .into_parts();
        let mut request = HttpRequest::get(&url).map_err(|e| request_error(&e))?;
        for (name, value) in instructions.headers() {
            request
                .headers_mut()
                .try_insert(name.to_owned(), value.to_owned())
                .map_err(|e| request_error(&e))?;
        }
        Ok(request)
    }

    /// One request: the file's stream, or RDS's refusal (its error body read, at most 64 KiB).
    pub async fn get(&self, instance: &str, file: &str) -> Result<Answer, DownloadError> {
        let request = self.signed(instance, file).await?;
        let timeout = || DownloadError::Timeout {
            what: "answer",
            seconds: ANSWER_TIMEOUT.as_secs(),
        };
        let response = tokio::time::timeout(ANSWER_TIMEOUT, self.http.call(request))
            .await
            .map_err(|_| timeout())?
            .map_err(DownloadError::Transport)?;
        let status = response.status().as_u16();
        let mut body = ByteStream::new(response.into_body());
        if (200..300).contains(&status) {
            return Ok(Answer::Body(body));
        }
        let mut text = Vec::new();
        let read = async {
            while let Some(Ok(bytes)) = body.next().await {
                text.extend_from_slice(&bytes);
                if text.len() >= MAX_ERROR_BODY {
                    break;
                }
            }
        };
        tokio::time::timeout(ANSWER_TIMEOUT, read)
            .await
            .map_err(|_| timeout())?;
        Ok(Answer::Refused(refusal(status, &text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_common::sdk::ErrorKind;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn the_endpoint_comes_from_the_standard_environment_else_the_region() {
        assert_eq!(
            endpoint(env(&[]), "eu-west-1"),
            "https://rds.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            endpoint(env(&[]), "cn-north-1"),
            "https://rds.cn-north-1.amazonaws.com.cn"
        );
        let both = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("AWS_ENDPOINT_URL_RDS", "http://rds.local:1"),
        ];
        assert_eq!(endpoint(env(&both), "us-east-1"), "http://rds.local:1");
        assert_eq!(endpoint(env(&both[..1]), "us-east-1"), "http://127.0.0.1:4566");
        let ignored = [both[0], ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")];
        assert_eq!(
            endpoint(env(&ignored), "us-east-1"),
            "https://rds.us-east-1.amazonaws.com"
        );
        assert_eq!(
            endpoint(env(&[("AWS_ENDPOINT_URL_RDS", " ")]), "us-east-1"),
            "https://rds.us-east-1.amazonaws.com",
            "an empty value is no value"
        );
    }

    #[test]
    fn the_url_keeps_the_file_names_slashes_and_encodes_the_rest() {
        assert_eq!(
            url("https://rds.us-west-2.amazonaws.com", "sample-sql", "log/ERROR.6"),
            "https://rds.us-west-2.amazonaws.com/v19/downloadCompleteLogFile/sample-sql/log/ERROR.6"
        );
        assert_eq!(
            url("http://127.0.0.1:9/", "db1", "error/postgresql.log.2026-11-22-00"),
            "http://127.0.0.1:9/v19/downloadCompleteLogFile/db1/error/postgresql.log.2026-11-22-00"
        );
        assert_eq!(
            url("http://h", "db1", "trace/a b+c%.trc"),
            "http://h/v19/downloadCompleteLogFile/db1/trace/a%20b%2Bc%25.trc"
        );
    }

    fn parts(e: DownloadError) -> (u16, Option<String>, String, ErrorKind) {
        let kind = e.kind();
        match e {
            DownloadError::Refused {
                status,
                code,
                message,
            } => (status, code, message, kind),
            other => panic!("not a refusal: {other}"),
        }
    }

    #[test]
    fn refusals_are_read_from_rds_error_bodies() {
        let xml = b"<ErrorResponse xmlns=\"http://rds.amazonaws.com/doc/2014-10-31/\"><Error><Type>Sender</Type><Code>DBInstanceNotFound</Code><Message>DBInstance db9 not found.</Message></Error></ErrorResponse>";
        assert_eq!(
            parts(refusal(404, xml)),
            (
                404,
                Some("DBInstanceNotFound".into()),
                "DBInstance db9 not found.".into(),
                ErrorKind::NotFound
            )
        );
        let throttled = b"<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>";
        assert_eq!(parts(refusal(400, throttled)).3, ErrorKind::Throttled);
        let json = br#"{"__type": "com.amazon#TooManyRequestsException", "message": "slow down"}"#;
        assert_eq!(
            parts(refusal(429, json)),
            (
                429,
                Some("TooManyRequestsException".into()),
                "slow down".into(),
                ErrorKind::Throttled
            )
        );
        assert_eq!(
            parts(refusal(429, b"")),
            (429, None, String::new(), ErrorKind::Throttled)
        );
        assert_eq!(parts(refusal(403, b"Forbidden")).3, ErrorKind::AccessDenied);
        assert_eq!(parts(refusal(503, b"<html>")).3, ErrorKind::Other);
    }
}
