//! The twelve steps: [`Step`] names each one's binary, ASL substitution and result path;
//! [`Request`] is a step's typed input, [`Response`] its output, and [`Steps::handle`] runs the
//! step a request is for. Each step is one file here, an `impl Steps` block with one public
//! method; the decisions are delegated to the pure modules.

mod change_set_status;
mod check_stack;
mod create_change_set;
mod create_stack;
mod delete_change_set;
mod drift;
mod execute_change_set;
mod inspect_change_set;
mod prepare;
mod request_approval;
mod review_change_set;
mod stack_status;

use std::time::Instant;

use lambda_common::metrics::Metrics;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::changeset::Verdict;
use crate::config::Config;
use crate::drift::DriftResult;
use crate::error::{StepError, StepInputError};
use crate::plan::Plan;
use crate::state::{
    ApprovalRequest, ApprovalRequested, ChangeSetRef, ChangeSetStatus, Created, Done, Executed, PrepareInput,
    Progress, ReviewRef, StackResult, State,
};

/// Clients and configuration, built once at cold start.
#[derive(Debug, Clone)]
pub struct Steps {
    pub cfn: aws_sdk_cloudformation::Client,
    pub s3: aws_sdk_s3::Client,
    pub sns: aws_sdk_sns::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub config: Config,
}

impl Steps {
    /// The clients from the shared SDK configuration.
    pub fn new(sdk: &aws_config::SdkConfig, config: Config) -> Self {
        Self {
            cfn: aws_sdk_cloudformation::Client::new(sdk),
            s3: lambda_common::sdk::s3_client(sdk),
            sns: aws_sdk_sns::Client::new(sdk),
            sfn: aws_sdk_sfn::Client::new(sdk),
            config,
        }
    }
}

/// The steps, one per function (the one binary runs the step its `DEPLOY_STEP` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Prepare,
    CheckStack,
    CreateStack,
    Drift,
    CreateChangeSet,
    ChangeSetStatus,
    InspectChangeSet,
    ReviewChangeSet,
    RequestApproval,
    ExecuteChangeSet,
    DeleteChangeSet,
    StackStatus,
}

impl Step {
    pub const ALL: [Step; 12] = [
        Step::Prepare,
        Step::CheckStack,
        Step::CreateStack,
        Step::Drift,
        Step::CreateChangeSet,
        Step::ChangeSetStatus,
        Step::InspectChangeSet,
        Step::ReviewChangeSet,
        Step::RequestApproval,
        Step::ExecuteChangeSet,
        Step::DeleteChangeSet,
        Step::StackStatus,
    ];

    /// (function, `DefinitionSubstitutions` key, `ResultPath`): the single table of the three.
    const fn wiring(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Step::Prepare => ("deploy-prepare", "PrepareFunctionArn", "$.plan"),
            Step::CheckStack => ("deploy-check-stack", "CheckStackFunctionArn", "$.stack"),
            Step::CreateStack => ("deploy-create-stack", "CreateStackFunctionArn", "$.created"),
            Step::Drift => ("deploy-drift", "DriftFunctionArn", "$.driftCheck"),
            Step::CreateChangeSet => (
                "deploy-create-change-set",
                "CreateChangeSetFunctionArn",
                "$.changeSet",
            ),
            Step::ChangeSetStatus => (
                "deploy-change-set-status",
                "ChangeSetStatusFunctionArn",
                "$.changeSetStatus",
            ),
            Step::InspectChangeSet => (
                "deploy-inspect-change-set",
                "InspectChangeSetFunctionArn",
                "$.verdict",
            ),
            Step::ReviewChangeSet => (
                "deploy-review-change-set",
                "ReviewChangeSetFunctionArn",
                "$.review",
            ),
            // Invoked with `.waitForTaskToken`: its own answer is only recorded in the history;
            // the decision sent with the token is what the state machine keeps.
            Step::RequestApproval => (
                "deploy-request-approval",
                "RequestApprovalFunctionArn",
                "$.decision",
            ),
            Step::ExecuteChangeSet => (
                "deploy-execute-change-set",
                "ExecuteChangeSetFunctionArn",
                "$.executed",
            ),
            Step::DeleteChangeSet => (
                "deploy-delete-change-set",
                "DeleteChangeSetFunctionArn",
                "$.deleted",
            ),
            Step::StackStatus => ("deploy-stack-status", "StackStatusFunctionArn", "$.progress"),
        }
    }

    /// The function's name, as the ASL's substitutions name it (`deploy-prepare`, …).
    pub const fn function_name(self) -> &'static str {
        self.wiring().0
    }

    /// The step's name, the value of `DEPLOY_STEP` that makes the binary run it (`prepare`, …).
    pub fn name(self) -> &'static str {
        let function = self.function_name();
        function.strip_prefix("deploy-").unwrap_or(function)
    }

    /// The step `DEPLOY_STEP` names.
    pub fn from_name(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The step's function ARN placeholder in `statemachines/deploy.asl.json`
    /// (`DefinitionSubstitutions` key).
    pub const fn substitution(self) -> &'static str {
        self.wiring().1
    }

    /// Where the state machine keeps the step's output: the field of [`State`] later steps read.
    pub const fn result_path(self) -> &'static str {
        self.wiring().2
    }
}

/// A step's typed input: the execution input for `prepare`, the state document for the others.
#[derive(Debug, Clone)]
pub enum Request {
    Prepare(PrepareInput),
    CheckStack(State),
    CreateStack(State),
    Drift(State),
    CreateChangeSet(State),
    ChangeSetStatus(State),
    InspectChangeSet(State),
    ReviewChangeSet(State),
    RequestApproval(ApprovalRequest),
    ExecuteChangeSet(State),
    DeleteChangeSet(State),
    StackStatus(State),
}

fn parse<T: DeserializeOwned>(payload: Value) -> Result<T, StepError> {
    serde_json::from_value(payload).map_err(|e| StepInputError::Unreadable(e).into())
}

impl Request {
    /// The payload as `step`'s request; one that does not parse is `InvalidStepInput`.
    pub fn parse(step: Step, payload: Value) -> Result<Self, StepError> {
        let request = match step {
            Step::Prepare => parse(payload).map(Self::Prepare),
            Step::CheckStack => parse(payload).map(Self::CheckStack),
            Step::CreateStack => parse(payload).map(Self::CreateStack),
            Step::Drift => parse(payload).map(Self::Drift),
            Step::CreateChangeSet => parse(payload).map(Self::CreateChangeSet),
            Step::ChangeSetStatus => parse(payload).map(Self::ChangeSetStatus),
            Step::InspectChangeSet => parse(payload).map(Self::InspectChangeSet),
            Step::ReviewChangeSet => parse(payload).map(Self::ReviewChangeSet),
            Step::RequestApproval => parse(payload).map(Self::RequestApproval),
            Step::ExecuteChangeSet => parse(payload).map(Self::ExecuteChangeSet),
            Step::DeleteChangeSet => parse(payload).map(Self::DeleteChangeSet),
            Step::StackStatus => parse(payload).map(Self::StackStatus),
        };
        request.inspect_err(|e| log_failure(step, e))
    }

    /// When the CloudFormation operation this request polls was started (the change set's
    /// creation, the stack's create or update), as the step that started it recorded; `None`
    /// for the steps that poll nothing.
    pub fn wait_started_ms(&self) -> Option<u64> {
        match self {
            Self::ChangeSetStatus(s) => s.change_set.as_ref().and_then(|c| c.started_at_ms),
            Self::StackStatus(s) => s.operation_started_ms(),
            _ => None,
        }
    }

    /// The step this request is for.
    pub fn step(&self) -> Step {
        match self {
            Self::Prepare(_) => Step::Prepare,
            Self::CheckStack(_) => Step::CheckStack,
            Self::CreateStack(_) => Step::CreateStack,
            Self::Drift(_) => Step::Drift,
            Self::CreateChangeSet(_) => Step::CreateChangeSet,
            Self::ChangeSetStatus(_) => Step::ChangeSetStatus,
            Self::InspectChangeSet(_) => Step::InspectChangeSet,
            Self::ReviewChangeSet(_) => Step::ReviewChangeSet,
            Self::RequestApproval(_) => Step::RequestApproval,
            Self::ExecuteChangeSet(_) => Step::ExecuteChangeSet,
            Self::DeleteChangeSet(_) => Step::DeleteChangeSet,
            Self::StackStatus(_) => Step::StackStatus,
        }
    }
}

/// A step's output, kept by the state machine at the step's [`Step::result_path`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Response {
    Plan(Plan),
    Stack(StackResult),
    Created(Created),
    Drift(DriftResult),
    ChangeSet(ChangeSetRef),
    ChangeSetStatus(ChangeSetStatus),
    Verdict(Verdict),
    Review(ReviewRef),
    ApprovalRequested(ApprovalRequested),
    Executed(Executed),
    Deleted(Done),
    Progress(Progress),
}

impl Steps {
    /// The one entry point: runs the step `request` is for, and records its metrics
    /// ([`crate::metrics::record`]) into `metrics`, Ok or Err.
    ///
    /// Each step makes a bounded number of calls (at most 200 change sets described) well within
    /// its function's timeout, so none needs the invocation's `deadline` to stop early; it is
    /// taken so that every function in the workspace has the same entry point.
    pub async fn handle(
        &self,
        request: Request,
        _deadline: Option<Instant>,
        metrics: &mut Metrics,
    ) -> Result<Response, StepError> {
        let step = request.step();
        let started_at_ms = request.wait_started_ms();
        let response = match request {
            Request::Prepare(r) => self.prepare(r).await.map(Response::Plan),
            Request::CheckStack(s) => self.check_stack(s).await.map(Response::Stack),
            Request::CreateStack(s) => self.create_stack(s).await.map(Response::Created),
            Request::Drift(s) => self.drift(s).await.map(Response::Drift),
            Request::CreateChangeSet(s) => self.create_change_set(s).await.map(Response::ChangeSet),
            Request::ChangeSetStatus(s) => self.change_set_status(s).await.map(Response::ChangeSetStatus),
            Request::InspectChangeSet(s) => self.inspect_change_set(s).await.map(Response::Verdict),
            Request::ReviewChangeSet(s) => self.review_change_set(s).await.map(Response::Review),
            Request::RequestApproval(r) => self.request_approval(r).await.map(Response::ApprovalRequested),
            Request::ExecuteChangeSet(s) => self.execute_change_set(s).await.map(Response::Executed),
            Request::DeleteChangeSet(s) => self.delete_change_set(s).await.map(Response::Deleted),
            Request::StackStatus(s) => self.stack_status(s).await.map(Response::Progress),
        };
        crate::metrics::record(
            step,
            started_at_ms,
            &response,
            lambda_common::clock::now_ms(),
            metrics,
        );
        response.inspect_err(|e| log_failure(step, e))
    }
}

/// A payload that is not `step`'s request ([`Request::parse`]'s error): its outcome recorded,
/// the error returned.
pub fn rejected(step: Step, err: StepError, metrics: &mut Metrics) -> StepError {
    crate::metrics::record_outcome(step.name(), lambda_common::ErrorType::error_type(&err), metrics);
    err
}

fn log_failure(step: Step, err: &StepError) {
    tracing::error!(step = ?step, error = %lambda_common::error_chain(err), "step failed");
}
