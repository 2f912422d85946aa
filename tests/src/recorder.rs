//! The record of every AWS request the gateway was sent, for the IAM least-privilege check: it
//! reads which caller (function, harness, moto's Step Functions engine, CodePipeline artifact
//! credentials) made which calls and compares them with what each role is granted.
//!
//! Two files in the stack's log directory, one JSON object a line, appended under a lock:
//! - `calls.jsonl`: one line per request ([`Call`]), written once the gateway has answered it.
//!   The requests the gateway itself makes to moto (the Step Functions emulator's
//!   `StartExecution`/`DescribeExecution` while serving `StartSyncExecution`) go to moto
//!   directly and are not recorded; nor are the stack's own `/_local/...` endpoints.
//! - `callers.jsonl`: one line per registered access key id ([`Recorder::register`]): the
//!   caller's name, the binary it runs (functions), and its own environment (the variables the
//!   template would set; not the stack's credentials, endpoints and proxy: [`is_stack_env`]).
//!
//! Callers are told apart by the access key id of the request's SigV4 credential scope (the
//! `Authorization` header, or `X-Amz-Credential` of a presigned URL): every function the stack
//! serves gets its own, the harness's SDK config uses `test`, and moto's Step Functions engine
//! (its Task states invoking Lambda through the gateway) signs with the fixed key `ak`
//! ([`STATES_ENGINE_ACCESS_KEY_ID`], hard-coded in moto's `boto_client_for`). A key nobody
//! registered is recorded as caller `unknown`.
//!
//! Nothing secret is recorded: no `Authorization` or security-token header, no signature or
//! security token of a presigned URL, no bodies; of form and JSON bodies only the parameters
//! ([`params`]), without the bulky or secret-ish ones, each value cut to 300 characters.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde::Serialize;
use serde_json::{Map, Value};

pub const CALLS_FILE: &str = "calls.jsonl";
pub const CALLERS_FILE: &str = "callers.jsonl";
/// The template parameters a test deployed with, where no function's environment carries them
/// ([`Recorder::bind_parameter`]).
pub const BINDINGS_FILE: &str = "bindings.jsonl";
/// The caller of a request whose access key id nobody registered (or that is unsigned).
pub const UNKNOWN: &str = "unknown";
/// The test harness's own SDK config ([`crate::LocalStack::sdk`]).
pub const HARNESS: &str = "harness";
pub const HARNESS_ACCESS_KEY_ID: &str = "test";
/// moto's Step Functions engine: Task states invoking Lambda (and any other service).
pub const STATES_ENGINE: &str = "states-engine";
/// The access key id moto's engine signs with (moto's `boto_client_for`: `"ak"`/`"sk"`).
pub const STATES_ENGINE_ACCESS_KEY_ID: &str = "ak";
/// The `artifactCredentials` of a CodePipeline job event ([`crate::pipeline::FakeCredentials`]).
pub const ARTIFACT_CREDENTIALS: &str = "codepipeline-artifact-credentials";
/// Whoever uses [`crate::LocalStack::client_env`] as is (a `make stack` shell, a test's own
/// subprocess): functions get their own key instead.
pub const CLIENT_ENV: &str = "client-env";
/// Whether a function's environment variable is the stack's (credentials, endpoints, proxy,
/// log level), not the function's own configuration: those are not recorded in `callers.jsonl`.
pub fn is_stack_env(name: &str) -> bool {
    name.starts_with("AWS_") || ["RUST_LOG", "HTTP_PROXY", "NO_PROXY"].contains(&name)
}

const MAX_VALUE_CHARS: usize = 300;
/// Parameters never recorded, whatever their case (also as the last segment of a flattened
/// query-protocol name, e.g. `PublishBatchRequestEntries.member.1.Message`): bulky or secret-ish.
const DROPPED_PARAMS: [&str; 14] = [
    "TemplateBody",
    "Message",
    "Subject",
    "MessageStructure",
    "input",
    "output",
    "definition",
    "taskToken",
    "cause",
    "error",
    "Payload",
    "Policy",
    "Body",
    "MessageBody",
];
/// Form fields starting with this (or named `Parameters`, an empty list) are dropped:
/// CloudFormation's `Parameters.member.N.*` may hold `NoEcho` values.
const DROPPED_PREFIX: &str = "parameters.";
/// Query keys never recorded (presigned URLs).
const DROPPED_QUERY: [&str; 2] = ["x-amz-signature", "x-amz-security-token"];
const RECORDED_HEADERS: [&str; 7] = [
    "x-amz-copy-source",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "if-none-match",
    "if-match",
    "x-amz-invocation-type",
    "content-type",
];

/// The credential scope of a SigV4 signature: `<access key id>/<date>/<region>/<service>/aws4_request`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credential {
    pub access_key_id: String,
    pub region: Option<String>,
    pub service: Option<String>,
}

/// The credential scope of a credential string (also SigV4a's, which has no region).
pub fn parse_credential(scope: &str) -> Option<Credential> {
    let parts: Vec<&str> = scope.trim().split('/').collect();
    let owned = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let (key, region, service) = match parts.as_slice() {
        [key, _date, region, service, "aws4_request"] => (*key, owned(region), owned(service)),
        [key, _date, service, "aws4_request"] => (*key, None, owned(service)),
        _ => return None,
    };
    (!key.is_empty()).then(|| Credential {
        access_key_id: key.to_owned(),
        region,
        service,
    })
}

/// The credential scope of an `Authorization` header
/// (`AWS4-HMAC-SHA256 Credential=<scope>, SignedHeaders=…, Signature=…`).
pub fn parse_authorization(header: &str) -> Option<Credential> {
    let (_, rest) = header.split_once("Credential=")?;
    let scope = rest.split([',', ' ']).next()?;
    parse_credential(scope)
}

/// The `Authorization` header of a request signed with `access_key_id` for `service` in `region`
/// on `date` (`yyyymmdd`): SigV4's shape and credential scope (what [`parse_authorization`]
/// reads); the signature is not computed.
pub fn authorization(access_key_id: &str, date: &str, region: &str, service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/{date}/{region}/{service}/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date, Signature={}",
        "0".repeat(64)
    )
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Percent-decodes `s` (`+` as space too when `plus_as_space`, as form encoding has it);
/// malformed escapes are kept as they are, invalid UTF-8 replaced.
pub fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex_digit(*hi).zip(hex_digit(*lo)),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some((hi, lo)), _) => {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
            (None, b'+') if plus_as_space => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b&c=x%20y` as `(name, value)` pairs, decoded (a name without `=` has the value `""`).
pub fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// The URL query as a map, without a presigned URL's signature and security token; for a
/// query-protocol request (one with `Action`), without the parameters [`params`] drops.
pub fn parse_query(query: &str) -> BTreeMap<String, String> {
    let pairs = form_pairs(query);
    let query_protocol = pairs.iter().any(|(k, _)| k == "Action");
    pairs
        .into_iter()
        .filter(|(k, _)| !DROPPED_QUERY.iter().any(|d| d.eq_ignore_ascii_case(k)))
        .filter(|(k, _)| !(query_protocol && dropped(k)))
        .map(|(k, v)| (k, truncate(&v)))
        .collect()
}

/// True for a parameter that is never recorded.
pub fn dropped(key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    key.get(..DROPPED_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(DROPPED_PREFIX))
        || key.eq_ignore_ascii_case(DROPPED_PREFIX.trim_end_matches('.'))
        || DROPPED_PARAMS
            .iter()
            .any(|d| d.eq_ignore_ascii_case(key) || d.eq_ignore_ascii_case(leaf))
}

/// At most [`MAX_VALUE_CHARS`] characters of `s`.
pub fn truncate(s: &str) -> String {
    s.chars().take(MAX_VALUE_CHARS).collect()
}

/// Every field of a form-encoded body but the dropped ones, values truncated.
pub fn form_params(body: &[u8]) -> Map<String, Value> {
    form_pairs(&String::from_utf8_lossy(body))
        .into_iter()
        .filter(|(k, _)| !dropped(k))
        .map(|(k, v)| (k, Value::String(truncate(&v))))
        .collect()
}

/// Every top-level string, number and bool of a JSON object body but the dropped ones,
/// strings truncated (empty when the body is no JSON object).
pub fn json_params(body: &[u8]) -> Map<String, Value> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Map::new();
    };
    fields
        .into_iter()
        .filter(|(k, _)| !dropped(k))
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, Value::String(truncate(&s)))),
            Value::Number(_) | Value::Bool(_) => Some((k, v)),
            _ => None,
        })
        .collect()
}

/// True for a Lambda invoke path, whose body is the function's payload, not parameters.
fn is_lambda_invoke(path: &str) -> bool {
    path.contains("/functions/")
        && ["/invocations", "/invoke-async", "/invoke-async/"]
            .iter()
            .any(|s| path.ends_with(s))
}

/// The request's parameters by its protocol: form fields (query protocol) or top-level JSON
/// scalars (awsJson, restJson); `None` for S3, Lambda invocations and other bodies.
pub fn params(
    service: Option<&str>,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<Map<String, Value>> {
    if service == Some("s3") || is_lambda_invoke(path) {
        return None;
    }
    let media = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    match media.as_str() {
        "application/x-www-form-urlencoded" => Some(form_params(body)),
        "application/x-amz-json-1.0" | "application/x-amz-json-1.1" | "application/json" => {
            Some(json_params(body))
        }
        _ => None,
    }
}

/// One recorded request: one line of `calls.jsonl`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Call {
    /// Filled in by [`Recorder::record`].
    pub caller: String,
    pub access_key_id: Option<String>,
    pub service: Option<String>,
    pub region: Option<String>,
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub target: Option<String>,
    pub params: Option<Map<String, Value>>,
    pub headers: BTreeMap<String, String>,
    /// Filled in by [`Recorder::record`].
    pub status: u16,
}

/// A request being served; see [`Recorder::start`].
pub struct Pending<'a> {
    recorder: &'a Recorder,
    call: Option<Call>,
    status: u16,
}

impl Pending<'_> {
    /// The request was answered with `status` (recorded now).
    pub fn answered(mut self, status: StatusCode) {
        self.status = status.as_u16();
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            self.recorder.record_status(call, self.status);
        }
    }
}

impl Call {
    /// What is recorded of a request, taken before it is routed.
    pub fn capture(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Self {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let query = parse_query(uri.query().unwrap_or_default());
        let credential = match header("authorization") {
            Some(a) => parse_authorization(a),
            None => form_pairs(uri.query().unwrap_or_default())
                .into_iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-credential"))
                .and_then(|(_, v)| parse_credential(&v)),
        }
        .unwrap_or_default();
        let access_key_id = (!credential.access_key_id.is_empty()).then_some(credential.access_key_id);
        let path = uri.path().to_owned();
        let params = params(credential.service.as_deref(), &path, header("content-type"), body);
        let recorded_headers = RECORDED_HEADERS
            .iter()
            .filter_map(|name| header(name).map(|v| ((*name).to_owned(), truncate(v))))
            .collect();
        Self {
            caller: String::new(),
            access_key_id,
            service: credential.service,
            region: credential.region,
            method: method.as_str().to_owned(),
            path,
            query,
            target: header("x-amz-target").map(str::to_owned),
            params,
            headers: recorded_headers,
            status: 0,
        }
    }
}

/// One line of `callers.jsonl`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
struct CallerLine<'a> {
    access_key_id: &'a str,
    caller: &'a str,
    binary: Option<&'a str>,
    env: &'a BTreeMap<String, String>,
}

/// The record files of a stack (calls, callers, bindings) and who is who. Never fails: an IO error is reported on
/// stderr and the request goes on unrecorded.
pub struct Recorder {
    dir: PathBuf,
    callers: RwLock<HashMap<String, String>>,
    calls_file: Mutex<Option<File>>,
    callers_file: Mutex<Option<File>>,
    bindings_file: Mutex<Option<File>>,
}

fn open_append(path: &Path) -> Option<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| eprintln!("recorder: cannot open {}: {e}", path.display()))
        .ok()
}

/// Appends `line` and a newline in one write, under the file's lock.
fn append_line(file: &Mutex<Option<File>>, line: &str) {
    let mut guard = file.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(f) = guard.as_mut()
        && let Err(e) = f.write_all(format!("{line}\n").as_bytes())
    {
        eprintln!("recorder: cannot append a line: {e}");
    }
}

impl Recorder {
    /// Records into `dir/calls.jsonl`, `dir/callers.jsonl` and `dir/bindings.jsonl` (appended to
    /// when they exist).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            callers: RwLock::new(HashMap::new()),
            calls_file: Mutex::new(open_append(&dir.join(CALLS_FILE))),
            callers_file: Mutex::new(open_append(&dir.join(CALLERS_FILE))),
            bindings_file: Mutex::new(open_append(&dir.join(BINDINGS_FILE))),
        }
    }

    /// Names the requests signed with `access_key_id` as `caller`'s from now on, and writes a
    /// line to `callers.jsonl` unless that key was registered under that name already.
    pub fn register(
        &self,
        access_key_id: &str,
        caller: &str,
        binary: Option<&str>,
        env: &BTreeMap<String, String>,
    ) {
        {
            let mut callers = self.callers.write().unwrap_or_else(PoisonError::into_inner);
            if callers.get(access_key_id).is_some_and(|c| c == caller) {
                return;
            }
            callers.insert(access_key_id.to_owned(), caller.to_owned());
        }
        let line = CallerLine {
            access_key_id,
            caller,
            binary,
            env,
        };
        match serde_json::to_string(&line) {
            Ok(line) => append_line(&self.callers_file, &line),
            Err(e) => eprintln!("recorder: cannot serialise a caller: {e}"),
        }
    }

    /// Records that the test stands for a deployment of `template.yaml` with this parameter
    /// value (a line of `bindings.jsonl`: `{"parameter": name, "value": value}`).
    pub fn bind_parameter(&self, name: &str, value: &str) {
        self.bind(&serde_json::json!({"parameter": name, "value": value}));
    }

    /// Records that the template resource `logical` is, in this test, the resource named (or
    /// with the ARN) `value`: `{"logical": logical, "value": value}`.
    pub fn bind_resource(&self, logical: &str, value: &str) {
        self.bind(&serde_json::json!({"logical": logical, "value": value}));
    }

    /// Records that `caller`'s authorizations of `action` (IAM wildcards allowed) for resources
    /// whose ARN starts with `resource_prefix` are meant to be refused in AWS (moto enforces no
    /// IAM, so the test sees another answer): a line `{"expect_denied": prefix, "caller": …,
    /// "action": …, "why": …}` of `bindings.jsonl`.
    pub fn expect_denied(&self, caller: &str, action: &str, resource_prefix: &str, why: &str) {
        self.bind(&serde_json::json!({
            "expect_denied": resource_prefix, "caller": caller, "action": action, "why": why,
        }));
    }

    /// Appends one line to `bindings.jsonl`, under the file's lock like every other record.
    fn bind(&self, line: &Value) {
        append_line(&self.bindings_file, &line.to_string());
    }

    /// The caller registered for `access_key_id`, else [`UNKNOWN`].
    pub fn caller(&self, access_key_id: Option<&str>) -> String {
        access_key_id
            .and_then(|k| {
                self.callers
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(k)
                    .cloned()
            })
            .unwrap_or_else(|| UNKNOWN.to_owned())
    }

    /// Appends `call`, answered `status`, to `calls.jsonl`.
    pub fn record(&self, call: Call, status: StatusCode) {
        self.record_status(call, status.as_u16());
    }

    /// A request being served, recorded when the returned guard is dropped: with the status
    /// [`Pending::answered`] gives it, or `0` when it never got one (the client went away or the
    /// stack stopped while it was served: it may still have reached moto).
    pub fn start(&self, call: Call) -> Pending<'_> {
        Pending {
            recorder: self,
            call: Some(call),
            status: 0,
        }
    }

    fn record_status(&self, mut call: Call, status: u16) {
        call.caller = self.caller(call.access_key_id.as_deref());
        call.status = status;
        match serde_json::to_string(&call) {
            Ok(line) => append_line(&self.calls_file, &line),
            Err(e) => eprintln!("recorder: cannot serialise a call: {e}"),
        }
    }

    /// Every line of `calls.jsonl` so far, parsed (unparsable lines skipped).
    pub fn calls(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join(CALLS_FILE)).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIALOCAL00000000001/20250101/us-east-1/states/aws4_request, \
                        SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=abc";

    #[test]
    fn authorization_headers() {
        let c = parse_authorization(AUTH).unwrap();
        assert_eq!(c.access_key_id, "AKIALOCAL00000000001");
        assert_eq!(c.region.as_deref(), Some("us-east-1"));
        assert_eq!(c.service.as_deref(), Some("states"));
        let no_spaces = "AWS4-HMAC-SHA256 Credential=ak/20250101/eu-west-1/lambda/aws4_request,SignedHeaders=host,Signature=0";
        let c = parse_authorization(no_spaces).unwrap();
        assert_eq!(
            (
                c.access_key_id.as_str(),
                c.region.as_deref(),
                c.service.as_deref()
            ),
            ("ak", Some("eu-west-1"), Some("lambda"))
        );
        let sigv4a = "AWS4-ECDSA-P256-SHA256 Credential=AKID/20250101/s3/aws4_request, SignedHeaders=host";
        let c = parse_authorization(sigv4a).unwrap();
        assert_eq!((c.region, c.service.as_deref()), (None, Some("s3")));
        assert_eq!(parse_authorization("Bearer xyz"), None);
        assert_eq!(parse_authorization("AWS4-HMAC-SHA256 Credential=a/b, X=1"), None);
        assert_eq!(
            parse_authorization("AWS4-HMAC-SHA256 Credential=/d/r/s/aws4_request"),
            None
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c", false), "a b+c");
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("arn%3Aaws%3As3", false), "arn:aws:s3");
        assert_eq!(percent_decode("a%2", false), "a%2");
        assert_eq!(percent_decode("%zz%", false), "%zz%");
        assert_eq!(percent_decode("%+1", false), "%+1");
        assert_eq!(percent_decode("%aé%C3%A9", false), "%aéé");
    }

    #[test]
    fn queries() {
        let q = parse_query("list-type=2&prefix=a%2Fb+c&uploads&x-id=PutObject&policy");
        assert_eq!(q["list-type"], "2");
        assert_eq!(q["prefix"], "a/b c");
        assert_eq!(q["uploads"], "");
        assert_eq!(q["policy"], "", "S3 sub-resources are not parameters");
        assert_eq!(parse_query(""), BTreeMap::new());
        let presigned = parse_query(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20250101%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Security-Token=IQoJb3JpZ2luX2Vjsecret&X-Amz-Signature=f00",
        );
        assert!(presigned.contains_key("X-Amz-Credential"));
        assert!(!presigned.contains_key("X-Amz-Security-Token"));
        assert!(!presigned.contains_key("X-Amz-Signature"));
        let query_protocol = parse_query("Action=Publish&TopicArn=t&Message=secret");
        assert_eq!(query_protocol.get("Message"), None);
        assert_eq!(query_protocol["TopicArn"], "t");
    }

    #[test]
    fn form_parameters() {
        let body = "Action=CreateChangeSet&Version=2010-05-15&StackName=app&TemplateBody=%7B%22a%22%3A1%7D\
                    &Parameters.member.1.ParameterKey=DbPassword&Parameters.member.1.ParameterValue=hunter2\
                    &Capabilities.member.1=CAPABILITY_IAM&ChangeSetName=cs-1";
        let p = form_params(body.as_bytes());
        assert_eq!(p["Action"], "CreateChangeSet");
        assert_eq!(p["StackName"], "app");
        assert_eq!(p["Capabilities.member.1"], "CAPABILITY_IAM");
        assert!(!p.contains_key("TemplateBody"));
        assert!(p.keys().all(|k| !k.starts_with("Parameters.")));
        assert!(
            !form_params(b"Action=CreateStack&Parameters=&parameters.member.1.x=y")
                .contains_key("Parameters")
        );
        assert_eq!(
            form_params(b"Action=CreateStack&Parameters=&parameters.member.1.x=y").len(),
            1
        );
        assert!(!serde_json::to_string(&p).unwrap().contains("hunter2"));
        let sns = form_params(b"Action=Publish&TopicArn=arn%3At&Message=m&Subject=s&MessageStructure=json");
        assert_eq!(sns.keys().collect::<Vec<_>>(), ["Action", "TopicArn"]);
        let batch = form_params(b"Action=SendMessageBatch&SendMessageBatchRequestEntry.1.MessageBody=x&SendMessageBatchRequestEntry.1.Id=1");
        assert_eq!(batch.len(), 2);
        let long = format!("Action=X&Name={}", "é".repeat(400));
        assert_eq!(
            form_params(long.as_bytes())["Name"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            300
        );
    }

    #[test]
    fn json_parameters() {
        let body = serde_json::json!({
            "stateMachineArn": "arn:aws:states:us-east-1:1:stateMachine:s",
            "name": "n",
            "input": "{\"secret\": 1}",
            "INPUT": "x",
            "maxResults": 10,
            "includeChildren": true,
            "tags": [{"key": "k"}],
            "executionDetails": {"summary": "s"},
            "nothing": null,
            "TaskToken": "t",
            "Policy": "p",
            "long": "x".repeat(301),
        });
        let p = json_params(body.to_string().as_bytes());
        let mut keys: Vec<_> = p.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["includeChildren", "long", "maxResults", "name", "stateMachineArn"]
        );
        assert_eq!(p["maxResults"], 10);
        assert_eq!(p["includeChildren"], true);
        assert_eq!(p["long"].as_str().unwrap().len(), 300);
        assert!(json_params(b"not json").is_empty());
        assert!(json_params(b"[1]").is_empty());
    }

    #[test]
    fn parameters_by_protocol() {
        let form = Some("application/x-www-form-urlencoded; charset=utf-8");
        assert!(params(Some("cloudformation"), "/", form, b"Action=A").is_some());
        assert_eq!(params(Some("s3"), "/b/k", form, b"Action=A"), None);
        let json = Some("application/x-amz-json-1.0");
        assert_eq!(
            params(Some("states"), "/", json, br#"{"name":"n"}"#).unwrap()["name"],
            "n"
        );
        assert!(params(None, "/", Some("Application/JSON"), b"{}").is_some());
        let invoke = "/2015-03-31/functions/f/invocations";
        assert_eq!(
            params(Some("lambda"), invoke, Some("application/json"), b"{\"a\":1}"),
            None
        );
        assert_eq!(params(Some("sqs"), "/", Some("text/plain"), b"x"), None);
        assert_eq!(params(Some("sqs"), "/", None, b"x"), None);
    }

    fn request(uri: &str, headers: &[(&'static str, &str)], body: &str) -> Call {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, v.parse().unwrap());
        }
        Call::capture(&Method::POST, &uri.parse().unwrap(), &map, body.as_bytes())
    }

    #[test]
    fn captured_requests() {
        let c = request(
            "http://sync-states.localhost:1/",
            &[
                ("authorization", AUTH),
                ("x-amz-target", "AWSStepFunctions.StartSyncExecution"),
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amz-security-token", "IQoJb3JpZ2luX2Vjsecret"),
            ],
            r#"{"stateMachineArn":"arn","input":"{}"}"#,
        );
        assert_eq!(c.access_key_id.as_deref(), Some("AKIALOCAL00000000001"));
        assert_eq!(c.service.as_deref(), Some("states"));
        assert_eq!(c.path, "/");
        assert_eq!(c.target.as_deref(), Some("AWSStepFunctions.StartSyncExecution"));
        assert_eq!(c.params.as_ref().unwrap().len(), 1);
        assert_eq!(c.headers.keys().collect::<Vec<_>>(), ["content-type"]);
        let presigned = request(
            "/bucket/key?X-Amz-Credential=ASIAX%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=1",
            &[("x-amz-copy-source", "/src/k")],
            "",
        );
        assert_eq!(presigned.access_key_id.as_deref(), Some("ASIAX"));
        assert_eq!(presigned.service.as_deref(), Some("s3"));
        assert_eq!(presigned.params, None);
        assert_eq!(presigned.headers["x-amz-copy-source"], "/src/k");
        let unsigned = request("/", &[], "");
        assert_eq!((unsigned.access_key_id, unsigned.service), (None, None));
    }

    #[test]
    fn records_and_callers() {
        let dir = std::env::temp_dir().join(format!("recorder-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let recorder = Recorder::new(&dir);
        let env = BTreeMap::from([("DEPLOY_STEP".to_owned(), "prepare".to_owned())]);
        recorder.register(
            "AKIALOCAL00000000001",
            "deploy-prepare",
            Some("deploy-steps"),
            &env,
        );
        recorder.register(
            "AKIALOCAL00000000001",
            "deploy-prepare",
            Some("deploy-steps"),
            &env,
        );
        let call = request("/", &[("authorization", AUTH)], "");
        recorder.record(call.clone(), StatusCode::OK);
        recorder.record(request("/", &[], ""), StatusCode::FORBIDDEN);
        let calls = recorder.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["caller"], "deploy-prepare");
        assert_eq!(calls[0]["status"], 200);
        assert_eq!(calls[0]["params"], Value::Null);
        assert_eq!(calls[1]["caller"], UNKNOWN);
        assert_eq!(calls[1]["access_key_id"], Value::Null);
        let callers = std::fs::read_to_string(dir.join(CALLERS_FILE)).unwrap();
        assert_eq!(
            callers,
            "{\"access_key_id\":\"AKIALOCAL00000000001\",\"caller\":\"deploy-prepare\",\
             \"binary\":\"deploy-steps\",\"env\":{\"DEPLOY_STEP\":\"prepare\"}}\n"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
