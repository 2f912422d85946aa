//! `deploy-execute-change-set`: executes the change set, only after judging it again (whatever
//! the state machine says) and only when its ExecutionStatus is AVAILABLE. An unsafe change set
//! runs only when approved, with the approval the approve function recorded, and only if it is
//! still exactly the one reviewed: same id, changes that hash to the reviewed fingerprint,
//! property values included.

use lambda_common::sdk::ErrorKind;
use tracing::{info, warn};

use super::Steps;
use crate::changeset::ChangeSetPage;
use crate::error::{StepError, StepInputError, aws};
use crate::state::{Decision, Executed, State};
use crate::{approval, review};

impl Steps {
    /// Executes the change set, only after judging it again (whatever the state machine says)
    /// and only when its ExecutionStatus is AVAILABLE; an approved one only if unchanged.
    pub async fn execute_change_set(&self, state: State) -> Result<Executed, StepError> {
        let cs = state.change_set()?;
        let decision = match &state.decision {
            None => None,
            Some(value) => Some(serde_json::from_value::<Decision>(value.clone()).map_err(|e| {
                StepError::ApprovalNotVerified {
                    change_set: cs.id.clone(),
                    problem: format!("the decision in the state is not one the approve function sends: {e}"),
                }
            })?),
        };
        let approved = decision.as_ref().filter(|d| d.approved);
        let root = match approved {
            None => {
                let (verdict, root) = self.judge(&cs.id, &state.plan.policy).await?;
                if !verdict.safe {
                    return Err(StepError::Unsafe {
                        change_set: cs.id.clone(),
                        summary: verdict.bounded().summary,
                    });
                }
                root
            }
            Some(decision) => {
                self.recorded(&state, decision).await?;
                self.still_as_reviewed(&state, decision).await?
            }
        };
        let executed = Executed {
            change_set_id: cs.id.clone(),
            stack_id: root.stack_id.or_else(|| cs.stack_id.clone()),
            // A previous attempt's execution: its start is unknown, the wait runs from now.
            started_at_ms: Some(lambda_common::clock::now_ms()),
        };
        let status = root.execution_status.unwrap_or_else(|| "unknown".into());
        if status == "EXECUTE_IN_PROGRESS" || status == "EXECUTE_COMPLETE" {
            // A retried step whose first attempt executed it (this change set is this execution's
            // own, and only this step executes change sets, after judging them safe).
            warn!(change_set = %cs.id, status = %status, "change set already executed by a previous attempt");
            return Ok(executed);
        }
        if status != "AVAILABLE" {
            return Err(StepError::NotExecutable {
                change_set: cs.id.clone(),
                status,
            });
        }
        self.cfn
            .execute_change_set()
            .change_set_name(&cs.id)
            .send()
            .await
            .map_err(|e| aws("CloudFormation ExecuteChangeSet", e))?;
        info!(change_set = %cs.id, approved_by = approved.map(|d| d.decided_by.as_str()), "change set executed");
        Ok(Executed {
            started_at_ms: Some(lambda_common::clock::now_ms()),
            ..executed
        })
    }

    /// The approval as the approve function recorded it before sending it: the decision in the
    /// state must be exactly that one. Anyone holding the task token could send a decision; only
    /// the approve function can record one.
    async fn recorded(&self, state: &State, decision: &Decision) -> Result<(), StepError> {
        let cs = state.change_set()?;
        let unverified = |problem: String| StepError::ApprovalNotVerified {
            change_set: cs.id.clone(),
            problem,
        };
        let reviewed = state.review.as_ref().ok_or(StepInputError::Missing(
            "review (the reviewed change set's fingerprint)",
        ))?;
        if decision.review_id != reviewed.review_id {
            return Err(unverified(format!(
                "the decision is for review {}, this execution's review is {}",
                decision.review_id, reviewed.review_id
            )));
        }
        let bucket = self.review_bucket()?;
        // Keyed by this execution's own review, not by what the decision says.
        let key = approval::decision_key(&reviewed.review_id);
        let out = match self.s3.get_object().bucket(bucket).key(&key).send().await {
            Ok(out) => out,
            // Without s3:ListBucket, S3 answers a missing key with 403: either way, no record.
            Err(e)
                if matches!(
                    lambda_common::sdk::classify(&e),
                    ErrorKind::NotFound | ErrorKind::AccessDenied
                ) =>
            {
                return Err(unverified(format!(
                    "the approval by {} was not recorded by the approve function (s3://{bucket}/{key}: {})",
                    decision.decided_by,
                    lambda_common::sdk::summary(&e)
                )));
            }
            Err(e) => return Err(aws("S3 GetObject (recorded decision)", e)),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StepError::UnexpectedResponse {
                operation: "S3 GetObject (recorded decision)",
                problem: format!("the body of s3://{bucket}/{key} could not be read: {e}"),
            })?;
        let recorded: Decision = serde_json::from_slice(&bytes.into_bytes())
            .map_err(|e| unverified(format!("s3://{bucket}/{key} is not a recorded decision: {e}")))?;
        if recorded != *decision {
            return Err(unverified(format!(
                "the decision in the state is not the one recorded in s3://{bucket}/{key}"
            )));
        }
        Ok(())
    }

    /// The approved change set described again: it must be the reviewed one (the approval names
    /// the review's change set and fingerprint) and its changes must still hash to that
    /// fingerprint. A change set that vanished or changed is never executed.
    async fn still_as_reviewed(
        &self,
        state: &State,
        decision: &Decision,
    ) -> Result<ChangeSetPage, StepError> {
        let cs = state.change_set()?;
        let reviewed = state.review.as_ref().ok_or(StepInputError::Missing(
            "review (the reviewed change set's fingerprint)",
        ))?;
        let changed = |problem: String| StepError::ChangeSetChanged {
            change_set: cs.id.clone(),
            problem,
        };
        if decision.change_set_id != cs.id || reviewed.change_set_id != cs.id {
            return Err(changed(format!(
                "the approval is for change set {}, the review for {}",
                decision.change_set_id, reviewed.change_set_id
            )));
        }
        if decision.fingerprint != reviewed.fingerprint {
            return Err(changed(format!(
                "the approval is for a review with fingerprint {}, the review has {}",
                decision.fingerprint, reviewed.fingerprint
            )));
        }
        let described = match self.describe_all(&cs.id, true).await {
            Ok(d) => d,
            Err(StepError::Aws {
                kind: ErrorKind::NotFound,
                ..
            }) => {
                return Err(changed("it no longer exists".into()));
            }
            Err(StepError::Aws {
                kind: ErrorKind::Rejected,
                message,
                ..
            }) if message.contains("does not exist") || message.contains("ChangeSetNotFound") => {
                return Err(changed("it no longer exists".into()));
            }
            Err(e) => return Err(e),
        };
        if described
            .root
            .change_set_id
            .as_deref()
            .is_some_and(|id| id != cs.id)
        {
            return Err(changed(format!(
                "DescribeChangeSet answers for change set {}",
                described.root.change_set_id.as_deref().unwrap_or("-")
            )));
        }
        let now = review::fingerprint(&cs.id, &described.changes);
        if now != reviewed.fingerprint {
            return Err(changed(format!(
                "its changes differ from the review's (fingerprint {now}, reviewed {})",
                reviewed.fingerprint
            )));
        }
        info!(change_set = %cs.id, approved_by = %decision.decided_by, "approved change set is unchanged since its review");
        Ok(described.root)
    }
}
