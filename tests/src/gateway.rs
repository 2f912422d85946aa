//! The loopback gateway every client (and moto's Step Functions engine) talks to:
//! - `POST /2015-03-31/functions/<name or ARN>/invocations`: Lambda Invoke, served by the runtime
//!   host. A handler error is answered as Lambda does: `200` with `X-Amz-Function-Error: Unhandled`
//!   and the error document as payload. An asynchronous invoke (`X-Amz-Invocation-Type: Event`)
//!   is answered `202`; for a function with an event-invoke configuration it is retried and its
//!   failure record delivered to the on-failure destination as Lambda does
//!   ([`crate::lambda_async`]).
//! - `X-Amz-Target: CodePipeline_20150709.*`: the CodePipeline job API emulator.
//! - `X-Amz-Target: AWSStepFunctions.*`: moto's Step Functions, with the gaps filled by
//!   [`crate::sfn`] (state machine types, `StartSyncExecution`, throttling injection).
//! - requests signed for `rds`, and `GET /v19/downloadCompleteLogFile/...` signed or not: the
//!   RDS log API emulator ([`crate::rds`], [`crate::rds::complete`]), once a test enables it.
//! - `/_local/...`: the stack's own read-back endpoints (recorded CodePipeline calls, health).
//! - everything else is proxied to moto.
//!
//! Every request but `/_local/...` is recorded before it is routed, with the status it was
//! answered, as one line of `calls.jsonl` in the stack's log directory ([`crate::recorder`]):
//! an IAM least-privilege check reads which caller (told apart by the access key id it signs
//! with) made which calls. The gateway's own calls to moto (the Step Functions emulator's, see
//! [`crate::sfn`]) go to moto directly, never through `route`, so they are not recorded as the
//! caller's.
//!
//! It also serves as the HTTP forward proxy of the SDK clients (`HTTP_PROXY`, see
//! [`crate::stack`]): a request in absolute form (`POST http://sync-states.localhost:PORT/`) is
//! served by the gateway itself, exactly as if it had been sent to it directly, and only when the
//! authority is a loopback name ([`is_loopback_host`]); any other authority gets `403`, so the
//! gateway never forwards anything beyond this machine. `CONNECT` is not implemented (`405`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::codepipeline::{self, CodePipelineEmulator};
use crate::lambda_async::{self, EventInvokeConfig};
use crate::recorder::{Call, Recorder};
use crate::runtime_host::{HostedFunction, Outcome};
use crate::sfn::{self, SfnEmulator};

pub struct Gateway {
    pub functions: RwLock<HashMap<String, Arc<HostedFunction>>>,
    pub codepipeline: CodePipelineEmulator,
    /// What moto's Step Functions lacks: state machine types, `StartSyncExecution`, throttling.
    pub sfn: SfnEmulator,
    /// The RDS log API emulator, once a test enables it (RDS requests are recognised by their
    /// SigV4 credential scope).
    pub rds: RwLock<Option<Arc<crate::rds::RdsEmulator>>>,
    pub moto_url: RwLock<String>,
    pub http: reqwest::Client,
    pub region: String,
    pub account: String,
    /// `calls.jsonl` and `callers.jsonl`: every request and who sent it.
    pub recorder: Recorder,
    /// The gateway's own address, `http://127.0.0.1:<port>` (the destination records of
    /// asynchronous invocations are sent to it, as their source function).
    pub endpoint: String,
    /// Function name -> its asynchronous invocation's retries and on-failure destination.
    pub event_invoke: RwLock<HashMap<String, EventInvokeConfig>>,
}

pub fn router(state: Arc<Gateway>) -> Router {
    Router::new()
        .fallback(recorded)
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Percent-decodes a path segment (function names may be URL-encoded ARNs).
fn percent_decode(s: &str) -> String {
    crate::recorder::percent_decode(s, false)
}

/// The function name from a Lambda `FunctionName`: a name, `name:qualifier`, a partial ARN
/// (`account:function:name`) or a full ARN, any of them URL-encoded.
pub fn function_name(raw: &str) -> String {
    let decoded = percent_decode(raw);
    let after = decoded
        .split_once(":function:")
        .map_or(decoded.as_str(), |(_, rest)| rest);
    after.split(':').next().unwrap_or(after).to_owned()
}

/// `route`, with the request recorded (but the stack's own `/_local/...` endpoints).
async fn recorded(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Recorded even if this future is dropped before the answer (status 0): the request may
    // already have reached moto.
    let pending = (!uri.path().starts_with("/_local/"))
        .then(|| gw.recorder.start(Call::capture(&method, &uri, &headers, &body)));
    let response = route(State(gw.clone()), method, uri, headers, body).await;
    if let Some(pending) = pending {
        pending.answered(response.status());
    }
    response
}

async fn route(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = refuse_foreign_target(&method, &uri) {
        return refused;
    }
    let path = uri.path();
    if method == Method::POST
        && let Some(name) = path
            .strip_prefix("/2015-03-31/functions/")
            .and_then(|rest| rest.strip_suffix("/invocations"))
    {
        return invoke(&gw, &function_name(name), &headers, body).await;
    }
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok())
        && target.starts_with(codepipeline::TARGET_PREFIX)
    {
        return match gw.codepipeline.handle(target, &body) {
            Ok(v) => json_response(StatusCode::OK, v.to_string(), "application/x-amz-json-1.1"),
            Err(e) => {
                let mut r = json_response(
                    StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                    e.body(),
                    "application/x-amz-json-1.1",
                );
                if let Ok(v) = HeaderValue::from_str(e.code) {
                    r.headers_mut().insert("x-amzn-errortype", v);
                }
                r
            }
        };
    }
    if let Some(op) = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(sfn::TARGET_PREFIX))
    {
        return gw.sfn.handle(&gw, op, &uri, &headers, body).await;
    }
    // RDS's REST endpoint is told by its path, signed or not: it refuses an unsigned request.
    if crate::rds::complete::target(path).is_some()
        && let Some(rds) = gw.rds.read().ok().and_then(|r| r.clone())
    {
        return rds.download_complete(&method, &uri, &headers, &body);
    }
    let signed_for_rds = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("/rds/aws4_request"));
    if signed_for_rds && let Some(rds) = gw.rds.read().ok().and_then(|r| r.clone()) {
        let (status, xml) = rds.handle(&body);
        return (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            [("content-type", "text/xml")],
            xml,
        )
            .into_response();
    }
    match path {
        "/_local/health" => return (StatusCode::OK, "ok").into_response(),
        "/_local/codepipeline/calls" => {
            let calls = serde_json::to_string(&gw.codepipeline.calls()).unwrap_or_else(|_| "[]".into());
            return json_response(StatusCode::OK, calls, "application/json");
        }
        _ => {}
    }
    proxy(&gw, method, &uri, &headers, body).await
}

/// True for the names of this machine a request may be addressed to: `localhost`, any
/// `*.localhost` (RFC 6761), `127.0.0.0/8` and `[::1]` (as `Uri::host` spells them).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if host == "localhost" || (host.ends_with(".localhost") && host.len() > ".localhost".len()) {
        return true;
    }
    let ip = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&host);
    ip.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The answer to a request the gateway must not serve as a forward proxy: `CONNECT` (not
/// implemented) and absolute-form targets whose authority is not this machine.
fn refuse_foreign_target(method: &Method, uri: &Uri) -> Option<Response> {
    if method == Method::CONNECT {
        return Some((StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported\n").into_response());
    }
    let authority = uri.authority()?;
    let http = uri.scheme_str().is_none_or(|s| s.eq_ignore_ascii_case("http"));
    if http && is_loopback_host(authority.host()) {
        return None;
    }
    let message =
        format!("this gateway only serves http://localhost, *.localhost and loopback addresses, not {uri}\n");
    Some((StatusCode::FORBIDDEN, message).into_response())
}

fn json_response(status: StatusCode, body: String, content_type: &'static str) -> Response {
    (status, [("content-type", content_type)], body).into_response()
}

async fn invoke(gw: &Arc<Gateway>, name: &str, headers: &HeaderMap, payload: Bytes) -> Response {
    let function = gw.functions.read().ok().and_then(|f| f.get(name).cloned());
    let Some(function) = function else {
        let message = format!(
            "Function not found: arn:aws:lambda:{}:{}:function:{name}",
            gw.region, gw.account
        );
        let mut r = json_response(
            StatusCode::NOT_FOUND,
            serde_json::json!({"Type": "User", "Message": message}).to_string(),
            "application/json",
        );
        r.headers_mut().insert(
            "x-amzn-errortype",
            HeaderValue::from_static("ResourceNotFoundException"),
        );
        return r;
    };
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    match invocation_type {
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        "Event" => {
            let config = gw.event_invoke.read().ok().and_then(|c| c.get(name).cloned());
            match config {
                Some(config) => {
                    tokio::spawn(lambda_async::run(gw.clone(), function, config, payload));
                }
                None => {
                    tokio::spawn(async move {
                        let _ = function.invoke(payload).await;
                    });
                }
            }
            StatusCode::ACCEPTED.into_response()
        }
        _ => match function.invoke(payload).await {
            Ok(Outcome::Response(body)) => (
                StatusCode::OK,
                [
                    ("x-amz-executed-version", "$LATEST"),
                    ("content-type", "application/json"),
                ],
                body,
            )
                .into_response(),
            Ok(Outcome::Error(body)) => (
                StatusCode::OK,
                [
                    ("x-amz-executed-version", "$LATEST"),
                    ("x-amz-function-error", "Unhandled"),
                    ("content-type", "application/json"),
                ],
                body,
            )
                .into_response(),
            Err(e) => {
                let mut r = json_response(
                    StatusCode::BAD_GATEWAY,
                    serde_json::json!({"Type": "Service", "Message": e.to_string()}).to_string(),
                    "application/json",
                );
                r.headers_mut()
                    .insert("x-amzn-errortype", HeaderValue::from_static("ServiceException"));
                r
            }
        },
    }
}

/// Not forwarded either way (`host` is moto's own; `proxy-*` were for the gateway as proxy).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "proxy-connection",
    "proxy-authorization",
];

/// moto's answer to a forwarded request, hop-by-hop headers removed.
pub struct Forwarded {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl IntoResponse for Forwarded {
    fn into_response(self) -> Response {
        (self.status, self.headers, Body::from(self.body)).into_response()
    }
}

/// Forwards a request to moto: its path and query (also of an absolute-form target), its
/// headers but `Host` and the hop-by-hop ones. `Err` is the `502` to answer.
pub async fn forward(
    gw: &Gateway,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Forwarded, Response> {
    let base = gw.moto_url.read().map(|u| u.clone()).unwrap_or_default();
    let url = format!("{base}{}", uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut request = gw.http.request(method, url).body(body);
    for (name, value) in headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            request = request.header(name, value);
        }
    }
    let bad_gateway = |m: String| (StatusCode::BAD_GATEWAY, m).into_response();
    let resp = request
        .send()
        .await
        .map_err(|e| bad_gateway(format!("moto is not reachable: {e}")))?;
    let status = resp.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            out_headers.append(name, value.clone());
        }
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| bad_gateway(format!("moto response failed: {e}")))?;
    Ok(Forwarded {
        status,
        headers: out_headers,
        body,
    })
}

async fn proxy(gw: &Gateway, method: Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Response {
    match forward(gw, method, uri, headers, body).await {
        Ok(f) => f.into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names() {
        assert_eq!(function_name("pipeline-trigger"), "pipeline-trigger");
        assert_eq!(function_name("pipeline-trigger:live"), "pipeline-trigger");
        assert_eq!(
            function_name("arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Apipeline-trigger"),
            "pipeline-trigger"
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST"),
            "f"
        );
        assert_eq!(function_name("123456789012:function:f"), "f");
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LocalHost",
            "localhost.",
            "states.localhost",
            "sync-states.localhost",
            "a.b.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "[0:0:0:0:0:0:0:1]",
            "::1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "example.com",
            "localhost.example.com",
            "notlocalhost",
            ".localhost",
            "evil-localhost",
            "128.0.0.1",
            "10.0.0.1",
            "0.0.0.0",
            "[::2]",
            "[::ffff:8.8.8.8]",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    fn refused(method: Method, target: &str) -> Option<StatusCode> {
        let uri: Uri = target.parse().unwrap();
        refuse_foreign_target(&method, &uri).map(|r| r.status())
    }

    #[test]
    fn forward_proxy_targets() {
        assert_eq!(refused(Method::POST, "/"), None);
        assert_eq!(refused(Method::POST, "http://sync-states.localhost:4566/"), None);
        assert_eq!(refused(Method::GET, "http://127.0.0.1:1/_local/health"), None);
        assert_eq!(refused(Method::GET, "http://[::1]:8080/x?y=1"), None);
        assert_eq!(
            refused(Method::GET, "http://example.com/"),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            refused(Method::GET, "http://169.254.169.254/latest/meta-data/"),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            refused(Method::GET, "https://localhost/"),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            refused(Method::CONNECT, "localhost:443"),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(
            refused(Method::CONNECT, "example.com:443"),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
    }

    #[test]
    fn absolute_form_targets_route_like_origin_form() {
        let uri: Uri = "http://sync-states.localhost:4566/".parse().unwrap();
        assert_eq!(uri.path(), "/");
        assert_eq!(uri.path_and_query().map(|p| p.as_str()), Some("/"));
        let uri: Uri = "http://localhost:1/2015-03-31/functions/f/invocations?x=1"
            .parse()
            .unwrap();
        assert_eq!(uri.path(), "/2015-03-31/functions/f/invocations");
        assert_eq!(
            uri.path_and_query().map(|p| p.as_str()),
            Some("/2015-03-31/functions/f/invocations?x=1")
        );
    }
}
