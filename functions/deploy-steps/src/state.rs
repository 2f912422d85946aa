//! The workflow's state document: what the prepare step receives, and what each step writes at
//! its `ResultPath` for the next ones (and for the ASL's Choices, which `tests/asl_contract.rs`
//! checks against these types).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::changeset::ChangeSetState;
use crate::drift::DriftResult;
use crate::error::StepInputError;
use crate::plan::Plan;
use crate::poll::Poll;
use crate::stack::{Completion, StackCheck};

/// The prepare step's input: the execution input and the execution's name.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareInput {
    pub input: Value,
    pub execution_name: String,
}

/// How the targeted stack is deployed (the ASL's Pass states write it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetMode {
    /// The pipeline's stack, created or updated through a change set.
    InPlace,
    /// A new stack beside the pipeline's, after an unsafe change set (`onUnsafe: blue-green`).
    BlueGreen,
}

/// The stack an operation targets: the pipeline's stack, or the blue-green one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub stack_name: String,
    pub mode: TargetMode,
}

/// The state document the steps after `prepare` receive. Only `plan` is always present.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub plan: Plan,
    #[serde(default)]
    pub target: Option<Target>,
    #[serde(default)]
    pub stack: Option<StackResult>,
    #[serde(default)]
    pub created: Option<Created>,
    #[serde(default)]
    pub change_set: Option<ChangeSetRef>,
    #[serde(default)]
    pub change_set_status: Option<ChangeSetStatus>,
    /// The drift step's output, `$.driftCheck` (the execution input's own `drift` is the mode).
    #[serde(default)]
    pub drift_check: Option<DriftResult>,
    #[serde(default)]
    pub review: Option<ReviewRef>,
    /// The decision sent with the task token, as sent: only the execute step reads it, strictly
    /// (a malformed one must not stop the other steps from deleting the change set).
    #[serde(default)]
    pub decision: Option<Value>,
    #[serde(default)]
    pub executed: Option<Executed>,
    #[serde(default)]
    pub progress: Option<Progress>,
}

impl State {
    /// The stack the deployment targets now.
    pub(crate) fn target_stack(&self) -> &str {
        self.target
            .as_ref()
            .map_or(&self.plan.stack_name, |t| &t.stack_name)
    }

    /// The target is the blue-green stack.
    fn blue_green_target(&self) -> bool {
        self.target
            .as_ref()
            .is_some_and(|t| t.mode == TargetMode::BlueGreen)
    }

    /// The stack the running operation works on: by id when known (names can be reused), the
    /// blue-green stack once it is the target.
    pub(crate) fn operation_stack(&self) -> String {
        let id = if self.blue_green_target() {
            self.created.as_ref().map(|c| c.stack_id.clone())
        } else {
            self.executed
                .as_ref()
                .and_then(|e| e.stack_id.clone())
                .or_else(|| self.created.as_ref().map(|c| c.stack_id.clone()))
        };
        id.unwrap_or_else(|| self.target_stack().to_owned())
    }

    /// When the running operation (the one [`Self::operation_stack`] names) was started, as the
    /// step that started it recorded (epoch milliseconds); `None` when it recorded none.
    pub(crate) fn operation_started_ms(&self) -> Option<u64> {
        let created = self.created.as_ref().and_then(|c| c.started_at_ms);
        if self.blue_green_target() {
            created
        } else {
            match &self.executed {
                Some(e) => e.started_at_ms,
                None => created,
            }
        }
    }

    /// The change set created by this execution.
    pub(crate) fn change_set(&self) -> Result<&ChangeSetRef, StepInputError> {
        self.change_set
            .as_ref()
            .ok_or(StepInputError::Missing("changeSet (the created change set)"))
    }
}

/// The check-stack step's output (`$.stack`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackResult {
    #[serde(flatten)]
    pub check: StackCheck,
    pub poll: Poll,
}

/// The create-stack step's output (`$.created`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub stack_name: String,
    pub stack_id: String,
    /// When CloudFormation accepted the CreateStack (epoch milliseconds, the step's clock): the
    /// start of the wait `CloudFormationWaitSeconds` measures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
}

/// The create-change-set step's output (`$.changeSet`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeSetRef {
    /// Empty when CloudFormation refused to create it because nothing changes.
    pub id: String,
    pub name: String,
    pub stack_name: String,
    #[serde(default)]
    pub stack_id: Option<String>,
    pub change_set_type: String,
    /// CreateChangeSet answered "No updates are to be performed." (as moto and UpdateStack do;
    /// CloudFormation itself creates a FAILED change set saying so).
    #[serde(default)]
    pub no_changes: bool,
    /// When CloudFormation accepted the CreateChangeSet (epoch milliseconds, the step's clock);
    /// absent when it created none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
}

/// The change-set-status step's output (`$.changeSetStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeSetStatus {
    pub state: ChangeSetState,
    pub status: String,
    pub execution_status: Option<String>,
    pub reason: String,
    pub poll: Poll,
}

/// The stack-status step's output (`$.progress`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub state: Completion,
    pub stack_name: String,
    pub stack_id: String,
    pub status: String,
    pub reason: String,
    pub poll: Poll,
}

/// The delete-change-set step's output (`$.deleted`); empty when there was nothing to delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Done {
    pub change_set_id: String,
}

/// The execute-change-set step's output (`$.executed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Executed {
    pub change_set_id: String,
    #[serde(default)]
    pub stack_id: Option<String>,
    /// When CloudFormation accepted the ExecuteChangeSet (epoch milliseconds, the step's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
}

/// The review step's output (`$.review`): where the review is and what was reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewRef {
    /// What the approver names in a decision: `<stack>/<change set name>`.
    pub review_id: String,
    pub change_set_id: String,
    /// SHA-256 of the reviewed changes, property values included (`review::fingerprint`): the
    /// execute step refuses a change set whose changes no longer hash to it.
    pub fingerprint: String,
    pub offence_count: usize,
    pub changes: usize,
    /// The offences in one line of at most 1,500 characters, for the pipeline's summary.
    pub headline: String,
    /// The verdict's summary, at most 4,000 characters (a failure cause, an output).
    pub summary: String,
    pub json_uri: String,
    pub markdown_uri: String,
}

/// The request-approval step's input: the state and the `.waitForTaskToken` token.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequest {
    pub state: State,
    pub task_token: String,
}

/// The request-approval step's own answer: recorded in the execution's history while it waits,
/// where the trigger reads `summary` for the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequested {
    pub summary: String,
    pub review_id: String,
    pub markdown_uri: String,
}

/// A decision, as the approve function sends it with the task token (`$.decision`): an
/// approval, or a rejection the state machine turns into `ChangeSetRejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub approved: bool,
    /// The IAM identity that decided, as Lambda's function URL authenticated it.
    pub decided_by: String,
    pub reason: String,
    pub review_id: String,
    /// The change set and fingerprint of the review that was decided on.
    pub change_set_id: String,
    pub fingerprint: String,
    /// A rejection's failure cause: who rejected it, and why (the ASL's `CausePath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}
