//! `deploy-execute-change-set`: executes the change set, only after judging it again (whatever
//! the state machine says) and only when its ExecutionStatus is AVAILABLE.

use tracing::{info, warn};

use super::Steps;
use crate::error::{StepError, aws};
use crate::state::{Executed, State};

impl Steps {
    /// Executes the change set, only after judging it again (whatever the state machine says)
    /// and only when its ExecutionStatus is AVAILABLE.
    pub async fn execute_change_set(&self, state: State) -> Result<Executed, StepError> {
        let cs = state.change_set()?;
        let (verdict, root) = self.judge(&cs.id, &state.plan.policy).await?;
        if !verdict.safe {
            return Err(StepError::Unsafe {
                change_set: cs.id.clone(),
                summary: verdict.bounded().summary,
            });
        }
        let executed = Executed {
            change_set_id: cs.id.clone(),
            stack_id: root.stack_id.or_else(|| cs.stack_id.clone()),
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
        info!(change_set = %cs.id, "change set executed");
        Ok(executed)
    }
}
