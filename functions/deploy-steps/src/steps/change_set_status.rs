//! `deploy-change-set-status`: DescribeChangeSet (first page) and where the change set stands:
//! pending (wait, boundedly), ready, without changes, or failed.

use super::Steps;
use crate::cfn::page_from_sdk;
use crate::changeset::{self, ChangeSetState};
use crate::error::{StepError, aws};
use crate::poll::{self, Poll};
use crate::state::{ChangeSetStatus, State};

impl Steps {
    /// DescribeChangeSet (first page) and the status decision.
    pub async fn change_set_status(&self, state: State) -> Result<ChangeSetStatus, StepError> {
        let cs = state.change_set()?;
        if cs.no_changes {
            return Ok(ChangeSetStatus {
                state: ChangeSetState::NoChanges,
                status: "NOT_CREATED".into(),
                execution_status: None,
                reason: "No updates are to be performed.".into(),
                poll: Poll::default(),
            });
        }
        let out = self
            .cfn
            .describe_change_set()
            .change_set_name(&cs.id)
            .send()
            .await
            .map_err(|e| aws("CloudFormation DescribeChangeSet", e))?;
        let page = page_from_sdk(&out);
        let status = page.status.clone().unwrap_or_default();
        let execution_status = page.execution_status.as_deref();
        let decided = changeset::change_set_state(&status, execution_status, page.status_reason.as_deref());
        let poll = if decided == ChangeSetState::Pending {
            let previous = state.change_set_status.as_ref().map(|s| s.poll);
            poll::next(previous, &self.config.poll)
        } else {
            Poll::default()
        };
        let reason = match decided {
            ChangeSetState::Pending if poll.exhausted => format!(
                "change set {} is still {status} after {} checks",
                cs.name, poll.attempt
            ),
            ChangeSetState::Failed => format!(
                "change set {} is {status} (ExecutionStatus {}): {}",
                cs.name,
                execution_status.unwrap_or("-"),
                page.status_reason.as_deref().unwrap_or("no reason given")
            ),
            _ => page.status_reason.clone().unwrap_or_else(|| status.clone()),
        };
        Ok(ChangeSetStatus {
            state: decided,
            status,
            execution_status: page.execution_status,
            reason,
            poll,
        })
    }
}
