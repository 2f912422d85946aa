//! `deploy-stack-status`: where the create or update of the target stack stands (waited for,
//! boundedly); on failure, the resources that failed, from the stack events.

use super::Steps;
use crate::error::{StepError, aws};
use crate::poll::{self, Poll};
use crate::stack::{self, Completion};
use crate::state::{Progress, State};

const OPERATION: &str = "CloudFormation DescribeStacks";

/// At most this many failed resources are named in a failure's reason.
const MAX_FAILED_RESOURCES: usize = 10;

impl Steps {
    /// Where the create or update of the target stack stands; on failure, the failed resources.
    pub async fn stack_status(&self, state: State) -> Result<Progress, StepError> {
        let name = state.target_stack().to_owned();
        let stack_ref = state.operation_stack();
        let out = self
            .cfn
            .describe_stacks()
            .stack_name(&stack_ref)
            .send()
            .await
            .map_err(|e| aws(OPERATION, e))?;
        let stack = out
            .stacks()
            .first()
            .ok_or_else(|| StepError::UnexpectedResponse {
                operation: OPERATION,
                problem: format!("no stack {stack_ref} in the answer"),
            })?;
        let stack_id = stack.stack_id().unwrap_or(&stack_ref).to_owned();
        let status = stack
            .stack_status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        let state_now = stack::completion(&status);
        let poll = if state_now == Completion::InProgress {
            let previous = state.progress.as_ref().map(|p| p.poll);
            poll::next(previous, &self.config.poll)
        } else {
            Poll::default()
        };
        let reason = match state_now {
            Completion::Complete => format!("stack {name} is {status}"),
            Completion::InProgress if poll.exhausted => {
                format!("stack {name} is still {status} after {} checks", poll.attempt)
            }
            Completion::InProgress => format!("stack {name} is {status}"),
            Completion::Failed => {
                let causes = self.failed_resources(&stack_id, &name).await;
                failure_reason(&name, &status, stack.stack_status_reason(), &causes)
            }
        };
        Ok(Progress {
            state: state_now,
            stack_name: name,
            stack_id,
            status,
            reason,
            poll,
        })
    }

    /// The resources that failed in the latest operation (best effort: an error here must not
    /// hide the stack's own status).
    async fn failed_resources(&self, stack_id: &str, name: &str) -> Vec<String> {
        let Ok(out) = self.cfn.describe_stack_events().stack_name(stack_id).send().await else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for e in out.stack_events() {
            let status = e.resource_status().map(|s| s.as_str()).unwrap_or("");
            let is_stack = e.resource_type() == Some("AWS::CloudFormation::Stack")
                && e.logical_resource_id() == Some(name);
            if is_stack && (status == "UPDATE_IN_PROGRESS" || status == "CREATE_IN_PROGRESS") {
                break; // the start of the latest operation: older events are not its causes
            }
            if status.ends_with("_FAILED") && !is_stack {
                found.push(format!(
                    "{} ({}) {status}: {}",
                    e.logical_resource_id().unwrap_or("?"),
                    e.resource_type().unwrap_or("?"),
                    e.resource_status_reason().unwrap_or("no reason given")
                ));
            }
            if found.len() >= MAX_FAILED_RESOURCES {
                break;
            }
        }
        found.reverse();
        found
    }
}

/// `stack X ended STATUS[: the stack's reason][; failed resources: …]`.
fn failure_reason(name: &str, status: &str, stack_reason: Option<&str>, causes: &[String]) -> String {
    let mut r = format!("stack {name} ended {status}");
    if let Some(reason) = stack_reason.filter(|r| !r.is_empty()) {
        r.push_str(&format!(": {reason}"));
    }
    if !causes.is_empty() {
        r.push_str(&format!("; failed resources: {}", causes.join("; ")));
    }
    r
}
