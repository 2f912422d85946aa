//! `deploy-approve`, behind a function URL with `AuthType: AWS_IAM`: the one way to decide.
//! Reads the pending approval (its task token) kept by the request-approval step, checks the
//! decision (`approval`), sends it to the waiting execution with the caller's IAM identity, and
//! removes the token so that a decision is taken once.

use std::time::Instant;

use aws_sdk_s3::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use lambda_common::ErrorType;
use lambda_common::metrics::Metrics;
use lambda_common::sdk::ErrorKind;
use serde_json::json;
use tracing::{info, warn};

use crate::Steps;
use crate::approval::{self, ApprovalError, PendingApproval, UrlRequest, UrlResponse};

/// Step Functions' answers for a token whose task is no longer waiting.
const ENDED_CODES: [&str; 3] = ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"];

fn aws_error<E>(operation: &'static str, err: SdkError<E>) -> ApprovalError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    ApprovalError::Aws {
        operation,
        message: lambda_common::sdk::summary(&err),
        source: Box::new(err),
    }
}

impl Steps {
    /// The approver's entry point: a function URL request in, a function URL response out
    /// (JSON: the decision taken, or `errorType` and `message`); its outcome is recorded in
    /// `metrics` (`StepOutcomes`, step `approve`).
    pub async fn approve(
        &self,
        request: UrlRequest,
        _deadline: Option<Instant>,
        metrics: &mut Metrics,
    ) -> UrlResponse {
        let decided = self.decide(&request).await;
        crate::metrics::record_outcome(crate::config::APPROVE, crate::metrics::outcome(&decided), metrics);
        match decided {
            Ok(body) => UrlResponse::json(200, &body),
            Err(e) => {
                warn!(error_type = e.error_type(), error = %lambda_common::error_chain(&e), "decision not taken");
                UrlResponse::json(
                    e.status_code(),
                    &json!({"errorType": e.error_type(), "message": e.to_string()}),
                )
            }
        }
    }

    async fn decide(&self, request: &UrlRequest) -> Result<serde_json::Value, ApprovalError> {
        let who = approval::identity(request)?;
        let decision = approval::parse_request(request)?;
        let bucket = self
            .config
            .review_bucket
            .as_deref()
            .ok_or(ApprovalError::NotConfigured("REVIEW_BUCKET"))?;
        let key = approval::token_key(&decision.review_id);
        let pending = self.pending(bucket, &key, &decision.review_id).await?;
        let outcome = approval::decide(&decision, &pending, &who)?;
        let output = serde_json::to_string(&outcome).map_err(|e| ApprovalError::BadRequest(e.to_string()))?;
        let record = approval::decision_key(&decision.review_id);
        if outcome.approved {
            // Recorded first: the execute step executes only an approval recorded here.
            self.s3
                .put_object()
                .bucket(bucket)
                .key(&record)
                .content_type("application/json")
                .body(output.clone().into_bytes().into())
                .send()
                .await
                .map_err(|e| aws_error("S3 PutObject (decision record)", e))?;
        } else {
            // A rejection withdraws any approval recorded by an earlier attempt whose send failed.
            self.s3
                .delete_object()
                .bucket(bucket)
                .key(&record)
                .send()
                .await
                .map_err(|e| aws_error("S3 DeleteObject (decision record)", e))?;
        }
        let sent = self
            .sfn
            .send_task_success()
            .task_token(&pending.task_token)
            .output(output)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                // Step Functions may quote the token back (a validation message): it is removed
                // from what is answered and logged, and the SDK error is not kept as the source.
                let message = lambda_common::sdk::summary(&e).replace(&pending.task_token, "<task token>");
                let err = ApprovalError::Aws {
                    operation: "Step Functions SendTaskSuccess",
                    message: message.clone(),
                    source: message.into(),
                };
                (e.code().map(str::to_owned), err)
            });
        match sent {
            Ok(()) => {}
            Err((Some(code), e)) if ENDED_CODES.contains(&code.as_str()) => {
                self.forget(bucket, &key, &pending.task_token).await;
                return Err(ApprovalError::Ended {
                    review_id: decision.review_id.clone(),
                    message: format!("Step Functions answered {code} ({e})"),
                });
            }
            Err((_, e)) => return Err(e),
        }
        self.forget(bucket, &key, &pending.task_token).await;
        let verb = if outcome.approved { "approved" } else { "rejected" };
        info!(review = %decision.review_id, decided_by = %who, decision = verb, "decision sent");
        Ok(json!({
            "reviewId": decision.review_id,
            "decision": verb,
            "decidedBy": who,
            "changeSetId": pending.change_set_id,
            "fingerprint": pending.fingerprint,
        }))
    }

    async fn pending(
        &self,
        bucket: &str,
        key: &str,
        review_id: &str,
    ) -> Result<PendingApproval, ApprovalError> {
        let out = match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) if lambda_common::sdk::classify(&e) == ErrorKind::NotFound => {
                return Err(ApprovalError::NotPending(review_id.to_owned()));
            }
            Err(e) => return Err(aws_error("S3 GetObject (pending approval)", e)),
        };
        let bytes = out.body.collect().await.map_err(|e| ApprovalError::Aws {
            operation: "S3 GetObject (pending approval)",
            message: e.to_string(),
            source: Box::new(e),
        })?;
        let pending: PendingApproval = serde_json::from_slice(&bytes.into_bytes())
            .map_err(|_| ApprovalError::NotPending(review_id.to_owned()))?;
        // The object under a review's key names that review (anything else is not its approval).
        if !review_id.is_empty() && pending.review_id != review_id {
            return Err(ApprovalError::NotPending(review_id.to_owned()));
        }
        Ok(pending)
    }

    /// Removes the token once used (or dead), unless the request-approval step has meanwhile
    /// kept another one (a retried wait): that one is still pending. A failure leaves a token
    /// Step Functions refuses.
    async fn forget(&self, bucket: &str, key: &str, used: &str) {
        // An empty review id: whatever the object holds.
        let current = self.pending(bucket, key, "").await;
        if let Ok(p) = &current
            && p.task_token != used
        {
            return;
        }
        if let Err(e) = self.s3.delete_object().bucket(bucket).key(key).send().await {
            warn!(key, error = %lambda_common::sdk::summary(&e), "pending approval not removed");
        }
    }
}
