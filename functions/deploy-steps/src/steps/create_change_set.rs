//! `deploy-create-change-set`: CreateChangeSet (UPDATE, or CREATE for a REVIEW_IN_PROGRESS
//! stack), nested stacks included. CloudFormation's "no updates" refusal is no failure.

use aws_sdk_cloudformation::types::ChangeSetType;
use tracing::info;

use super::Steps;
use crate::cfn::{is_no_updates, with_stack_inputs};
use crate::error::{StepError, StepInputError, aws};
use crate::stack::StackNext;
use crate::state::{ChangeSetRef, State};

const OPERATION: &str = "CloudFormation CreateChangeSet";

impl Steps {
    /// CreateChangeSet (UPDATE, or CREATE for a REVIEW_IN_PROGRESS stack), nested stacks included.
    pub async fn create_change_set(&self, state: State) -> Result<ChangeSetRef, StepError> {
        let plan = &state.plan;
        let kind = match state.stack.as_ref().map(|s| s.check.next) {
            Some(StackNext::CreateChangeSet) => ChangeSetType::Create,
            Some(StackNext::UpdateChangeSet) => ChangeSetType::Update,
            other => {
                return Err(StepInputError::Unexpected {
                    field: "stack.next",
                    // As the state machine wrote it ("WAIT"), or "nothing".
                    found: other
                        .and_then(|n| serde_json::to_value(n).ok())
                        .map_or_else(|| "nothing".to_owned(), |v| v.to_string()),
                    expected: "CREATE_CHANGE_SET or UPDATE_CHANGE_SET",
                }
                .into());
            }
        };
        let req = self
            .cfn
            .create_change_set()
            .stack_name(&plan.stack_name)
            .change_set_name(&plan.change_set_name)
            .change_set_type(kind.clone())
            .include_nested_stacks(true)
            .description(format!("Deployment of {}", plan.template_path));
        let created = ChangeSetRef {
            id: String::new(),
            name: plan.change_set_name.clone(),
            stack_name: plan.stack_name.clone(),
            stack_id: None,
            change_set_type: kind.as_str().to_owned(),
            no_changes: false,
            started_at_ms: None,
        };
        let out = match with_stack_inputs!(req, plan).send().await {
            Ok(out) => out,
            Err(e) if is_no_updates(&e) => {
                info!(stack = %plan.stack_name, "nothing to change: no change set created");
                return Ok(ChangeSetRef {
                    no_changes: true,
                    ..created
                });
            }
            Err(e) => return Err(aws(OPERATION, e)),
        };
        let id = out.id().map(str::to_owned).ok_or(StepError::UnexpectedResponse {
            operation: OPERATION,
            problem: "no change set Id".into(),
        })?;
        info!(change_set = %id, change_set_type = kind.as_str(), "change set creation started");
        Ok(ChangeSetRef {
            id,
            stack_id: out.stack_id().map(str::to_owned),
            started_at_ms: Some(lambda_common::clock::now_ms()),
            ..created
        })
    }
}
