//! `deploy-review-change-set`: describes the unsafe change set again with its property values
//! (every page, nested change sets), renders the review (`review`) and writes it to
//! `s3://REVIEW_BUCKET/reviews/<stack>/<change set>/review.json` and `review.md`.

use aws_sdk_s3::primitives::ByteStream;
use tracing::info;

use super::Steps;
use crate::error::StepError;
use crate::review::{self, Review, ReviewInput};
use crate::state::{ReviewRef, State};

/// How many offences the headline names (the rest are counted).
const HEADLINE_OFFENCES: usize = 5;
/// The headline's cap: with the review's URI it fits CodePipeline's 2,048-character summary.
const MAX_HEADLINE_CHARS: usize = 1_500;

impl Steps {
    /// The review, written to S3; the state keeps where it is and what it fingerprints.
    pub async fn review_change_set(&self, state: State) -> Result<ReviewRef, StepError> {
        let bucket = self.review_bucket()?;
        let cs = state.change_set()?;
        let described = self.describe_all(&cs.id, true).await?;
        let review_id = format!("{}/{}", cs.stack_name, cs.name);
        let drift = state.drift_check.as_ref();
        let review = review::build(&ReviewInput {
            review_id: &review_id,
            stack_name: &cs.stack_name,
            stack_id: described.root.stack_id.as_deref().or(cs.stack_id.as_deref()),
            change_set_id: &cs.id,
            change_set_name: &cs.name,
            changes: &described.changes,
            parameters: &described.root.parameters,
            given_parameters: &state.plan.parameters,
            policy: &state.plan.policy,
            drifted: drift.map_or(&[][..], |d| d.drifted.as_slice()),
            drift_summary: drift.map(|d| d.summary.as_str()),
        });
        let json = serde_json::to_vec_pretty(&review).map_err(|source| StepError::Serialization {
            what: "the review",
            source,
        })?;
        let prefix = format!("reviews/{review_id}");
        let json_key = format!("{prefix}/review.json");
        let markdown_key = format!("{prefix}/review.md");
        self.put_review(bucket, &json_key, json, "application/json")
            .await?;
        let markdown = review::markdown(&review).into_bytes();
        self.put_review(bucket, &markdown_key, markdown, "text/markdown; charset=utf-8")
            .await?;
        info!(change_set = %cs.id, review = %review_id, offences = review.offence_count, "review written");
        Ok(ReviewRef {
            review_id,
            change_set_id: cs.id.clone(),
            fingerprint: review.fingerprint.clone(),
            offence_count: review.offence_count,
            changes: review.change_count,
            headline: headline(&review),
            summary: review.summary.clone(),
            json_uri: format!("s3://{bucket}/{json_key}"),
            markdown_uri: format!("s3://{bucket}/{markdown_key}"),
        })
    }

    pub(super) fn review_bucket(&self) -> Result<&str, StepError> {
        self.config
            .review_bucket
            .as_deref()
            .ok_or(StepError::NotConfigured {
                variable: "REVIEW_BUCKET",
                needed_for: "onUnsafe approve keeps its reviews and pending approvals there",
            })
    }

    async fn put_review(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StepError> {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| crate::error::aws("S3 PutObject (review)", e))
    }
}

/// "2 unsafe change(s): Uploads (AWS::S3::Bucket) removed, …": the review's offences in one line
/// (the review judged every change once; its values are masked).
fn headline(review: &Review) -> String {
    let named: Vec<String> = review
        .changes
        .iter()
        .filter_map(|c| c.offence.as_ref().map(|o| (c, o)))
        .take(HEADLINE_OFFENCES)
        .map(|(c, o)| {
            let rtype = c.change.resource_type.as_deref().unwrap_or("?");
            format!("{} ({rtype}) {}", c.resource, o.reason)
        })
        .collect();
    let more = review.offence_count.saturating_sub(named.len());
    let mut line = format!("{} unsafe change(s): {}", review.offence_count, named.join(", "));
    if more > 0 {
        line.push_str(&format!(", and {more} more"));
    }
    if line.chars().count() > MAX_HEADLINE_CHARS {
        line = line.chars().take(MAX_HEADLINE_CHARS - 1).collect();
        line.push('…');
    }
    line
}
