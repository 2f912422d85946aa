//! `deploy-request-approval`, invoked with `.waitForTaskToken`: keeps the task token beside the
//! review (`approvals/<review id>.json`, for the approve function only), publishes the review to
//! the approval topic with how to decide, and answers the summary the pipeline shows while the
//! execution waits. The decision comes back through the token; the wait is the ASL's.

use aws_sdk_s3::primitives::ByteStream;
use tracing::info;

use super::Steps;
use crate::approval::{self, PendingApproval};
use crate::error::{StepError, StepInputError, aws};
use crate::review;
use crate::state::{ApprovalRequest, ApprovalRequested};

/// SNS's subject limit: "less than 100 characters".
const MAX_SUBJECT_CHARS: usize = 99;

impl Steps {
    /// Keeps the token, publishes the review, and answers the waiting summary.
    pub async fn request_approval(&self, request: ApprovalRequest) -> Result<ApprovalRequested, StepError> {
        let bucket = self.review_bucket()?;
        let topic = self
            .config
            .approval_topic_arn
            .as_deref()
            .ok_or(StepError::NotConfigured {
                variable: "APPROVAL_TOPIC_ARN",
                needed_for: "onUnsafe approve publishes its reviews there",
            })?;
        let state = &request.state;
        let review = state
            .review
            .as_ref()
            .ok_or(StepInputError::Missing("review (the review step's output)"))?;
        let pending = PendingApproval {
            task_token: request.task_token.clone(),
            review_id: review.review_id.clone(),
            change_set_id: review.change_set_id.clone(),
            fingerprint: review.fingerprint.clone(),
            markdown_uri: review.markdown_uri.clone(),
            headline: review.headline.clone(),
        };
        let body = serde_json::to_vec(&pending).map_err(|source| StepError::Serialization {
            what: "the pending approval",
            source,
        })?;
        self.s3
            .put_object()
            .bucket(bucket)
            .key(approval::token_key(&review.review_id))
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| aws("S3 PutObject (pending approval)", e))?;
        let instructions = approval::instructions(
            &review.review_id,
            &review.fingerprint,
            self.config.approve_url.as_deref(),
            state.plan.approval_timeout_seconds,
        );
        let markdown = self.review_markdown(bucket, &review.review_id).await?;
        let room = review::MAX_MESSAGE_BYTES.saturating_sub(instructions.len() + 2);
        let message = format!(
            "{instructions}\n{}",
            review::bounded_markdown(&markdown, room, &review.markdown_uri)
        );
        self.sns
            .publish()
            .topic_arn(topic)
            .subject(subject(review.offence_count, &state.plan.stack_name))
            .message(message)
            .send()
            .await
            .map_err(|e| aws("SNS Publish (review)", e))?;
        info!(review = %review.review_id, change_set = %review.change_set_id, "approval requested");
        Ok(ApprovalRequested {
            summary: approval::waiting_summary(&review.headline, &review.markdown_uri),
            review_id: review.review_id.clone(),
            markdown_uri: review.markdown_uri.clone(),
        })
    }

    /// The review's Markdown, whole: the message says how much of it it shows.
    async fn review_markdown(&self, bucket: &str, review_id: &str) -> Result<String, StepError> {
        let key = format!("reviews/{review_id}/review.md");
        let out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| aws("S3 GetObject (review)", e))?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StepError::UnexpectedResponse {
                operation: "S3 GetObject (review)",
                problem: format!("the body of s3://{bucket}/{key} could not be read: {e}"),
            })?;
        Ok(String::from_utf8_lossy(&bytes.into_bytes()).into_owned())
    }
}

/// "Approve 2 unsafe change(s) to prod-app?", printable ASCII, under SNS's 100 characters.
fn subject(offences: usize, stack: &str) -> String {
    let text = format!("Approve {offences} unsafe change(s) to {stack}?");
    let ascii: String = text
        .chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .collect();
    ascii.chars().take(MAX_SUBJECT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn subjects_fit_sns() {
        assert_eq!(
            super::subject(2, "prod-app"),
            "Approve 2 unsafe change(s) to prod-app?"
        );
        let long = super::subject(1, &"a".repeat(128));
        assert_eq!(long.chars().count(), 99);
    }
}
