//! `deploy-check-stack`: DescribeStacks on the target stack and what to do with it. Only "does
//! not exist" is absence; a busy stack is waited for, boundedly.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tracing::info;

use super::Steps;
use crate::error::{StepError, aws};
use crate::poll::{self, Poll};
use crate::stack::{self, StackNext};
use crate::state::{StackResult, State};

impl Steps {
    /// DescribeStacks on the target stack and the decision. Only "does not exist" is absence.
    pub async fn check_stack(&self, state: State) -> Result<StackResult, StepError> {
        let name = state.target_stack().to_owned();
        let mut check = match self.cfn.describe_stacks().stack_name(&name).send().await {
            Ok(out) => match out.stacks().first().and_then(|s| s.stack_status()) {
                Some(status) => stack::check_existing(&name, status.as_str()),
                None => stack::absent(&name),
            },
            Err(e) if stack::is_absent(e.code(), e.message()) => stack::absent(&name),
            Err(e) => return Err(aws("CloudFormation DescribeStacks", e)),
        };
        let poll = if check.next == StackNext::Wait {
            let previous = state.stack.as_ref().map(|s| s.poll);
            let poll = poll::next(previous, &self.config.poll);
            if poll.exhausted {
                check.reason = format!(
                    "stack {name} is still {} after {} checks; giving up waiting",
                    check.status.as_deref().unwrap_or("busy"),
                    poll.attempt
                );
            }
            poll
        } else {
            Poll::default()
        };
        info!(stack = %name, next = ?check.next, status = ?check.status, "stack checked");
        Ok(StackResult { check, poll })
    }
}
