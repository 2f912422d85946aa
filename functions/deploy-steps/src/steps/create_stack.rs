//! `deploy-create-stack`: CreateStack for the target stack (absent, or the blue-green stack).
//! A retried step that finds the stack it created carries on with it.

use tracing::{info, warn};

use super::Steps;
use crate::cfn::with_stack_inputs;
use crate::error::{StepError, aws};
use crate::state::{Created, State};

impl Steps {
    /// CreateStack for the target stack (absent, or the blue-green stack).
    pub async fn create_stack(&self, state: State) -> Result<Created, StepError> {
        let name = state.target_stack().to_owned();
        let req = with_stack_inputs!(self.cfn.create_stack().stack_name(&name), &state.plan);
        let stack_id = match req.send().await {
            Ok(out) => out.stack_id().unwrap_or(&name).to_owned(),
            // A retried step whose first attempt created the stack (CheckStack found it absent,
            // and blue-green names are unique per execution): carry on with that stack.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                warn!(stack = %name, "stack already exists: a previous attempt of this step created it");
                self.stack_id(&name).await?
            }
            Err(e) => return Err(aws("CloudFormation CreateStack", e)),
        };
        info!(stack = %name, "stack creation started");
        Ok(Created {
            stack_id,
            stack_name: name,
            // For a previous attempt's stack, when this attempt found it.
            started_at_ms: Some(lambda_common::clock::now_ms()),
        })
    }

    /// The id of the stack named `name` (the name itself when DescribeStacks gives none).
    async fn stack_id(&self, name: &str) -> Result<String, StepError> {
        let out = self
            .cfn
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| aws("CloudFormation DescribeStacks", e))?;
        Ok(out
            .stacks()
            .first()
            .and_then(|s| s.stack_id())
            .unwrap_or(name)
            .to_owned())
    }
}
