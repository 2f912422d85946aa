//! The loopback gateway every client (and moto's Step Functions engine) talks to:
//! - `POST /2015-03-31/functions/<name or ARN>/invocations`: Lambda Invoke, served by the runtime
//!   host. A handler error is answered as Lambda does: `200` with `X-Amz-Function-Error: Unhandled`
//!   and the error document as payload.
//! - `X-Amz-Target: CodePipeline_20150709.*`: the CodePipeline job API emulator.
//! - `/_local/...`: the stack's own read-back endpoints (recorded CodePipeline calls, health).
//! - everything else is proxied to moto.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::codepipeline::{self, CodePipelineEmulator};
use crate::runtime_host::{HostedFunction, Outcome};

pub struct Gateway {
    pub functions: RwLock<HashMap<String, Arc<HostedFunction>>>,
    pub codepipeline: CodePipelineEmulator,
    /// The RDS log API emulator, once a test enables it (RDS requests are recognised by their
    /// SigV4 credential scope).
    pub rds: RwLock<Option<Arc<crate::rds::RdsEmulator>>>,
    pub moto_url: RwLock<String>,
    pub http: reqwest::Client,
    pub region: String,
    pub account: String,
}

pub fn router(state: Arc<Gateway>) -> Router {
    Router::new()
        .fallback(route)
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Percent-decodes a path segment (function names may be URL-encoded ARNs).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

async fn route(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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

fn json_response(status: StatusCode, body: String, content_type: &'static str) -> Response {
    (status, [("content-type", content_type)], body).into_response()
}

async fn invoke(gw: &Gateway, name: &str, headers: &HeaderMap, payload: Bytes) -> Response {
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
            tokio::spawn(async move {
                let _ = function.invoke(payload).await;
            });
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

const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

async fn proxy(gw: &Gateway, method: Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Response {
    let base = gw.moto_url.read().map(|u| u.clone()).unwrap_or_default();
    let url = format!("{base}{}", uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut request = gw.http.request(method, url).body(body);
    for (name, value) in headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(resp) => {
            let status = resp.status();
            let mut out_headers = HeaderMap::new();
            for (name, value) in resp.headers() {
                if !HOP_BY_HOP.contains(&name.as_str()) {
                    out_headers.append(name, value.clone());
                }
            }
            match resp.bytes().await {
                Ok(bytes) => (status, out_headers, Body::from(bytes)).into_response(),
                Err(e) => (StatusCode::BAD_GATEWAY, format!("moto response failed: {e}")).into_response(),
            }
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("moto is not reachable: {e}")).into_response(),
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
}
