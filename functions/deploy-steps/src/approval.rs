//! Approvals, pure: the pending approval kept beside its task token, the approver's request as
//! a Lambda function URL delivers it, the checks a decision passes, what it sends back to the
//! state machine, and the texts that tell people how to decide.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::valid_stack_name;
use crate::state::Decision;

/// Where the task token of a pending approval is kept (the bucket policy lets only the
/// request-approval step write it and only the approve function read it).
pub fn token_key(review_id: &str) -> String {
    format!("approvals/{review_id}.json")
}

/// Where the approve function records an approval before it sends it (only it may write
/// there): the execute step executes only a decision recorded there, so the task token alone
/// (which Step Functions shows in the execution's history) approves nothing.
pub fn decision_key(review_id: &str) -> String {
    format!("decisions/{review_id}.json")
}

/// CodePipeline's limit for a job's summary.
pub const MAX_SUMMARY_CHARS: usize = 2_048;
/// The longest reason an approver may give (the failure cause may hold 32,768 characters).
pub const MAX_REASON_CHARS: usize = 1_000;

/// What the request-approval step keeps for the approve function, beside nothing else: the
/// token never leaves this object (not in the message, not in the review), so only the approve
/// function, and the principals its permission is given to, can decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingApproval {
    pub task_token: String,
    pub review_id: String,
    pub change_set_id: String,
    pub fingerprint: String,
    pub markdown_uri: String,
    pub headline: String,
}

/// approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Approve,
    Reject,
}

/// The approver's request body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecisionRequest {
    /// `<stack>/<change set name>`, as the message and the review name it.
    pub review_id: String,
    pub decision: Verb,
    /// Why; required to reject.
    #[serde(default)]
    pub reason: Option<String>,
    /// The review's fingerprint as the approver read it: when given, the decision applies only
    /// to that review.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// A Lambda function URL request (payload format 2.0), the fields the approver uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UrlRequest {
    pub body: Option<String>,
    pub is_base64_encoded: bool,
    pub request_context: UrlRequestContext,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UrlRequestContext {
    pub authorizer: Option<UrlAuthorizer>,
    pub http: Option<UrlHttp>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UrlAuthorizer {
    pub iam: Option<IamIdentity>,
}

/// The caller as IAM authenticated it (`AuthType: AWS_IAM`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IamIdentity {
    pub user_arn: Option<String>,
    pub user_id: Option<String>,
    pub account_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UrlHttp {
    pub method: Option<String>,
}

/// A function URL response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlResponse {
    pub status_code: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl UrlResponse {
    pub fn json(status_code: u16, body: &serde_json::Value) -> Self {
        Self {
            status_code,
            headers: BTreeMap::from([("content-type".to_owned(), "application/json".to_owned())]),
            body: body.to_string(),
        }
    }
}

/// Why a decision was not taken, with the HTTP status and the stable `errorType` it answers.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("the request carries no IAM identity: the function URL must use AuthType AWS_IAM")]
    NotAuthenticated,
    /// The approve function lacks a setting (a deployment mistake, not the caller's).
    #[error("{0} is not set on the approve function")]
    NotConfigured(&'static str),
    #[error("the request is invalid: {0}")]
    BadRequest(String),
    #[error("no approval is pending for {0} (decided already, timed out, or never requested)")]
    NotPending(String),
    #[error(
        "the review you read ({given}) is not the one pending for {review_id} ({pending}): read the \
         current review before deciding"
    )]
    StaleReview {
        review_id: String,
        given: String,
        pending: String,
    },
    #[error("the approval of {review_id} is no longer pending: {message}")]
    Ended { review_id: String, message: String },
    #[error("{operation} failed: {message}")]
    Aws {
        operation: &'static str,
        message: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl ApprovalError {
    pub fn status_code(&self) -> u16 {
        match self {
            Self::NotAuthenticated => 403,
            Self::NotConfigured(_) => 500,
            Self::BadRequest(_) => 400,
            Self::NotPending(_) => 404,
            Self::StaleReview { .. } => 409,
            Self::Ended { .. } => 410,
            Self::Aws { .. } => 502,
        }
    }
}

impl lambda_common::ErrorType for ApprovalError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::NotAuthenticated => "NotAuthenticated",
            Self::NotConfigured(_) => "NotConfigured",
            Self::BadRequest(_) => "InvalidDecision",
            Self::NotPending(_) => "ApprovalNotPending",
            Self::StaleReview { .. } => "StaleReview",
            Self::Ended { .. } => "ApprovalEnded",
            Self::Aws { .. } => "AwsError",
        }
    }
}

/// The authenticated caller, or [`ApprovalError::NotAuthenticated`]: an unauthenticated request
/// never decides.
pub fn identity(request: &UrlRequest) -> Result<String, ApprovalError> {
    request
        .request_context
        .authorizer
        .as_ref()
        .and_then(|a| a.iam.as_ref())
        .and_then(|iam| iam.user_arn.clone())
        .filter(|arn| arn.starts_with("arn:"))
        .ok_or(ApprovalError::NotAuthenticated)
}

/// The body as a decision request: JSON, base64-decoded when the URL says so.
pub fn parse_request(request: &UrlRequest) -> Result<DecisionRequest, ApprovalError> {
    let body = request.body.as_deref().unwrap_or_default();
    let bytes = if request.is_base64_encoded {
        aws_smithy_types::base64::decode(body)
            .map_err(|e| ApprovalError::BadRequest(format!("the body is not base64: {e}")))?
    } else {
        body.as_bytes().to_vec()
    };
    let parsed: DecisionRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApprovalError::BadRequest(format!(
            "expected {{\"reviewId\": \"<stack>/<change set>\", \"decision\": \"approve\" | \"reject\", \
             \"reason\": \"…\", \"fingerprint\": \"sha256:…\" (optional)}}: {e}"
        ))
    })?;
    validate_review_id(&parsed.review_id)?;
    let reason = parsed.reason.as_deref().map(str::trim).unwrap_or_default();
    if parsed.decision == Verb::Reject && reason.is_empty() {
        return Err(ApprovalError::BadRequest("a rejection needs a \"reason\"".into()));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApprovalError::BadRequest(format!(
            "\"reason\" is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    Ok(parsed)
}

/// `<stack>/<change set name>`, both CloudFormation names (so the id is also a safe S3 key).
pub fn validate_review_id(id: &str) -> Result<(), ApprovalError> {
    match id.split_once('/') {
        Some((stack, change_set)) if valid_stack_name(stack) && valid_stack_name(change_set) => Ok(()),
        _ => Err(ApprovalError::BadRequest(format!(
            "\"reviewId\" {id:?} is not <stack name>/<change set name>"
        ))),
    }
}

/// The decision for `pending`, made by `identity`: the output sent with the task token. A
/// rejection is sent the same way (Step Functions' `SendTaskFailure` cause is not carried by
/// every implementation); the state machine turns `approved: false` into `ChangeSetRejected`
/// with `cause`.
pub fn decide(
    request: &DecisionRequest,
    pending: &PendingApproval,
    identity: &str,
) -> Result<Decision, ApprovalError> {
    if let Some(given) = &request.fingerprint
        && *given != pending.fingerprint
    {
        return Err(ApprovalError::StaleReview {
            review_id: pending.review_id.clone(),
            given: given.clone(),
            pending: pending.fingerprint.clone(),
        });
    }
    let reason = request
        .reason
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    let approved = request.decision == Verb::Approve;
    let cause = (!approved).then(|| {
        format!(
            "change set {} ({}) was rejected by {identity}: {reason}",
            pending.review_id, pending.change_set_id
        )
    });
    Ok(Decision {
        approved,
        decided_by: identity.to_owned(),
        reason,
        review_id: pending.review_id.clone(),
        change_set_id: pending.change_set_id.clone(),
        fingerprint: pending.fingerprint.clone(),
        cause,
    })
}

/// The pipeline's summary while the execution waits, at most 2,048 characters.
pub fn waiting_summary(headline: &str, markdown_uri: &str) -> String {
    let tail = format!("; review: {markdown_uri}");
    let head = format!("waiting for approval of {headline}");
    let room = MAX_SUMMARY_CHARS.saturating_sub(tail.chars().count());
    let head: String = if head.chars().count() > room {
        let mut cut: String = head.chars().take(room.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        head
    };
    format!("{head}{tail}")
}

/// How to decide, for the top of the message.
pub fn instructions(
    review_id: &str,
    fingerprint: &str,
    approve_url: Option<&str>,
    timeout_seconds: u64,
) -> String {
    let url = approve_url.unwrap_or("<the stack's DeployApproveUrl output>");
    let body = |verb: &str, reason: &str| {
        format!(
            "{{\"reviewId\":\"{review_id}\",\"decision\":\"{verb}\",\"reason\":\"{reason}\",\"fingerprint\":\"{fingerprint}\"}}"
        )
    };
    format!(
        "To decide (within {timeout_seconds} s, or the change set is deleted), call the approve URL \
         with IAM credentials that hold the DeployApprover policy:\n\n\
         curl --aws-sigv4 \"aws:amz:$AWS_REGION:lambda\" --user \"$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY\" \\\n  \
         -H \"x-amz-security-token: $AWS_SESSION_TOKEN\" -H 'content-type: application/json' \\\n  \
         -d '{}' \\\n  {url}\n\n\
         To reject, send \"decision\":\"reject\" with your reason:\n  -d '{}'\n",
        body("approve", "…"),
        body("reject", "…"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> PendingApproval {
        PendingApproval {
            task_token: "token".into(),
            review_id: "prod-app/deploy-run-1".into(),
            change_set_id: "arn:aws:cloudformation:us-east-1:111111111111:changeSet/deploy-run-1/x".into(),
            fingerprint: "sha256:aa".into(),
            markdown_uri: "s3://reviews/reviews/prod-app/deploy-run-1/review.md".into(),
            headline: "1 unsafe change(s): Uploads (AWS::S3::Bucket) removed".into(),
        }
    }

    fn url(body: &str, arn: Option<&str>) -> UrlRequest {
        UrlRequest {
            body: Some(body.into()),
            is_base64_encoded: false,
            request_context: UrlRequestContext {
                authorizer: arn.map(|a| UrlAuthorizer {
                    iam: Some(IamIdentity {
                        user_arn: Some(a.into()),
                        ..IamIdentity::default()
                    }),
                }),
                http: None,
            },
        }
    }

    const ALICE: &str = "arn:aws:iam::111111111111:user/alice";

    #[test]
    fn only_an_authenticated_caller_decides() {
        assert!(matches!(
            identity(&url("{}", None)),
            Err(ApprovalError::NotAuthenticated)
        ));
        assert!(matches!(
            identity(&url("{}", Some(""))),
            Err(ApprovalError::NotAuthenticated)
        ));
        assert_eq!(identity(&url("{}", Some(ALICE))).unwrap(), ALICE);
    }

    #[test]
    fn requests() {
        let ok = r#"{"reviewId":"prod-app/deploy-run-1","decision":"approve"}"#;
        let r = parse_request(&url(ok, Some(ALICE))).unwrap();
        assert_eq!((r.decision, r.reason), (Verb::Approve, None));
        let b64 = UrlRequest {
            body: Some(aws_smithy_types::base64::encode(ok)),
            is_base64_encoded: true,
            ..url("", Some(ALICE))
        };
        assert_eq!(parse_request(&b64).unwrap().review_id, "prod-app/deploy-run-1");
        let cases = [
            ("", "expected"),
            (
                r#"{"reviewId":"prod-app/deploy-run-1","decision":"maybe"}"#,
                "expected",
            ),
            (
                r#"{"reviewId":"prod-app/deploy-run-1","decision":"approve","extra":1}"#,
                "expected",
            ),
            (
                r#"{"reviewId":"../tokens/x","decision":"approve"}"#,
                "is not <stack name>",
            ),
            (
                r#"{"reviewId":"prod-app","decision":"approve"}"#,
                "is not <stack name>",
            ),
            (
                r#"{"reviewId":"prod-app/deploy-run-1","decision":"reject"}"#,
                "needs a \"reason\"",
            ),
            (
                r#"{"reviewId":"prod-app/deploy-run-1","decision":"reject","reason":"  "}"#,
                "needs a \"reason\"",
            ),
        ];
        for (body, expected) in cases {
            let e = parse_request(&url(body, Some(ALICE))).unwrap_err();
            assert_eq!(e.status_code(), 400, "{body}");
            assert!(e.to_string().contains(expected), "{body}: {e}");
        }
        let long = format!(
            r#"{{"reviewId":"prod-app/deploy-run-1","decision":"reject","reason":"{}"}}"#,
            "x".repeat(MAX_REASON_CHARS + 1)
        );
        assert!(parse_request(&url(&long, Some(ALICE))).is_err());
    }

    #[test]
    fn decisions_name_who_decided_and_what() {
        let approve = DecisionRequest {
            review_id: "prod-app/deploy-run-1".into(),
            decision: Verb::Approve,
            reason: Some(" planned rename ".into()),
            fingerprint: Some("sha256:aa".into()),
        };
        let d = decide(&approve, &pending(), ALICE).unwrap();
        assert!(d.approved && d.cause.is_none());
        assert_eq!(d.decided_by, ALICE);
        assert_eq!(d.reason, "planned rename");
        assert_eq!(
            (d.change_set_id.as_str(), d.fingerprint.as_str()),
            (pending().change_set_id.as_str(), "sha256:aa")
        );
        let stale = DecisionRequest {
            fingerprint: Some("sha256:bb".into()),
            ..approve.clone()
        };
        assert_eq!(decide(&stale, &pending(), ALICE).unwrap_err().status_code(), 409);
        let reject = DecisionRequest {
            decision: Verb::Reject,
            reason: Some("drops the uploads".into()),
            fingerprint: None,
            ..approve
        };
        let d = decide(&reject, &pending(), ALICE).unwrap();
        assert!(!d.approved);
        let cause = d.cause.unwrap();
        assert!(
            cause.contains(ALICE)
                && cause.contains("drops the uploads")
                && cause.contains("prod-app/deploy-run-1")
        );
    }

    #[test]
    fn the_waiting_summary_fits_codepipeline() {
        let s = waiting_summary(
            "1 unsafe change(s): Uploads (AWS::S3::Bucket) removed",
            "s3://b/r.md",
        );
        assert_eq!(
            s,
            "waiting for approval of 1 unsafe change(s): Uploads (AWS::S3::Bucket) removed; review: s3://b/r.md"
        );
        let long = waiting_summary(&"é".repeat(5_000), "s3://b/r.md");
        assert_eq!(long.chars().count(), MAX_SUMMARY_CHARS);
        assert!(long.ends_with("…; review: s3://b/r.md"));
    }

    #[test]
    fn the_instructions_name_the_review_the_fingerprint_and_the_url() {
        let text = instructions(
            "prod-app/deploy-run-1",
            "sha256:aa",
            Some("https://x.lambda-url.us-east-1.on.aws/"),
            86_400,
        );
        assert!(text.contains("\"reviewId\":\"prod-app/deploy-run-1\""));
        assert!(text.contains("\"fingerprint\":\"sha256:aa\""));
        assert!(text.contains("https://x.lambda-url.us-east-1.on.aws/"));
        assert!(text.contains("within 86400 s"));
        let unset = instructions("prod-app/deploy-run-1", "sha256:aa", None, 60);
        assert!(unset.contains("<the stack's DeployApproveUrl output>"), "{unset}");
    }
}
