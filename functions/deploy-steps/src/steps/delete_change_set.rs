//! `deploy-delete-change-set`: deletes the change set (unsafe, failed or empty); it is never
//! executed. Nothing to delete when CloudFormation created none.

use tracing::info;

use super::Steps;
use crate::error::{StepError, aws};
use crate::state::{Done, State};

impl Steps {
    /// Deletes the change set (unsafe or empty); it is never executed.
    pub async fn delete_change_set(&self, state: State) -> Result<Done, StepError> {
        let cs = state.change_set()?;
        if cs.id.is_empty() {
            return Ok(Done {
                change_set_id: String::new(),
            });
        }
        self.cfn
            .delete_change_set()
            .change_set_name(&cs.id)
            .send()
            .await
            .map_err(|e| aws("CloudFormation DeleteChangeSet", e))?;
        info!(change_set = %cs.id, "change set deleted");
        Ok(Done {
            change_set_id: cs.id.clone(),
        })
    }
}
