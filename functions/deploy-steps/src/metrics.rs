//! The deploy workflow's metrics (Service `DeployWorkflow`), decided from a step's answer alone:
//! no SDK types, no clock (the caller passes the time).
//!
//! - `StepOutcomes` (Count, dimensions `Outcome`, `Step`): one per invocation of every step and of
//!   the approve function; `Outcome` is `Success` or the `errorType` the invocation ended with
//!   (the name the ASL's Retry and Catch match), `Step` the step's `DEPLOY_STEP` name.
//! - `ChangeSetVerdicts` (Count, dimension `Verdict`: `Safe`, `Unsafe` or `NoChanges`): one per
//!   change set, from the step that decides it: the inspect step's verdict (`Safe`, `Unsafe`), or
//!   the change-set-status step finding a change set without changes (`NoChanges`).
//! - `CloudFormationWaitSeconds` (Seconds, one sample per finished wait, no dimension beyond
//!   `Service`): how long the workflow waited on a CloudFormation operation it started. The step
//!   that starts the operation (CreateChangeSet, CreateStack, ExecuteChangeSet) records in the
//!   state when CloudFormation accepted it (`startedAtMs`, the function's clock); the status step
//!   polling it (change-set status, stack status) samples `now - startedAtMs` when its answer ends
//!   the wait loop: the operation reached a terminal status, or the poll gave up. The sample thus
//!   includes the last poll interval, as the workflow waited it.

use lambda_common::ErrorType;
use lambda_common::metrics::{Metrics, Unit};

use crate::changeset::{ChangeSetState, Verdict};
use crate::poll::Poll;
use crate::stack::Completion;
use crate::steps::{Response, Step};

/// The `Service` dimension of every deploy function's metrics.
pub const SERVICE: &str = "DeployWorkflow";

pub const STEP_OUTCOMES: &str = "StepOutcomes";
pub const CHANGE_SET_VERDICTS: &str = "ChangeSetVerdicts";
pub const CLOUDFORMATION_WAIT_SECONDS: &str = "CloudFormationWaitSeconds";

/// The `Outcome` of an invocation that ended without error.
pub const SUCCESS: &str = "Success";

/// A change set's verdict, as `ChangeSetVerdicts` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictKind {
    Safe,
    Unsafe,
    NoChanges,
}

impl VerdictKind {
    /// The inspect step's verdict.
    pub fn of(verdict: &Verdict) -> Self {
        if verdict.safe { Self::Safe } else { Self::Unsafe }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Safe => "Safe",
            Self::Unsafe => "Unsafe",
            Self::NoChanges => "NoChanges",
        }
    }
}

/// The `Outcome` of an invocation's result: `Success` or its `errorType`.
pub fn outcome<T, E: ErrorType>(result: &Result<T, E>) -> &'static str {
    match result {
        Ok(_) => SUCCESS,
        Err(e) => e.error_type(),
    }
}

/// One invocation of `step` (a step's `DEPLOY_STEP` name, or `approve`) that ended `outcome`.
pub fn record_outcome(step: &str, outcome: &str, metrics: &mut Metrics) {
    metrics.count(STEP_OUTCOMES, 1, &[("Outcome", outcome), ("Step", step)]);
}

pub fn record_verdict(kind: VerdictKind, metrics: &mut Metrics) {
    metrics.count(CHANGE_SET_VERDICTS, 1, &[("Verdict", kind.as_str())]);
}

/// The seconds waited, when this poll's answer ends the wait (`still_waiting` false, or the
/// poll gave up) and the operation's start is known: `now_ms - started_at_ms`, never negative.
pub fn finished_wait(
    still_waiting: bool,
    poll: Poll,
    started_at_ms: Option<u64>,
    now_ms: u64,
) -> Option<f64> {
    if still_waiting && !poll.exhausted {
        return None;
    }
    let started = started_at_ms?;
    Some(now_ms.saturating_sub(started) as f64 / 1000.0)
}

/// Everything one invocation of `step` records: its outcome, the verdict it decided, the wait it
/// ended. `started_at_ms` is when the operation the step polls was started (from its request,
/// [`crate::Request::wait_started_ms`]); `now_ms` is when the step answered.
pub fn record<E: ErrorType>(
    step: Step,
    started_at_ms: Option<u64>,
    result: &Result<Response, E>,
    now_ms: u64,
    metrics: &mut Metrics,
) {
    record_outcome(step.name(), outcome(result), metrics);
    let (verdict, waited) = match result {
        Ok(Response::Verdict(v)) => (Some(VerdictKind::of(v)), None),
        Ok(Response::ChangeSetStatus(s)) => (
            (s.state == ChangeSetState::NoChanges).then_some(VerdictKind::NoChanges),
            finished_wait(s.state == ChangeSetState::Pending, s.poll, started_at_ms, now_ms),
        ),
        Ok(Response::Progress(p)) => (
            None,
            finished_wait(p.state == Completion::InProgress, p.poll, started_at_ms, now_ms),
        ),
        _ => (None, None),
    };
    if let Some(kind) = verdict {
        record_verdict(kind, metrics);
    }
    if let Some(seconds) = waited {
        metrics.sample(CLOUDFORMATION_WAIT_SECONDS, Unit::Seconds, seconds, &[]);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::StepError;
    use crate::changeset::{Policy, ResourceChange, verdict};
    use crate::error::StepInputError;
    use crate::state::{ChangeSetStatus, Progress};

    fn docs(m: &Metrics) -> Vec<Value> {
        m.documents(0)
    }

    /// A metric, its dimensions beyond Service, its value(s).
    type Datum = (String, Vec<(String, String)>, Value);

    /// Every metric of every document.
    fn data(m: &Metrics) -> Vec<Datum> {
        let mut out = Vec::new();
        for d in docs(m) {
            let directive = &d["_aws"]["CloudWatchMetrics"][0];
            let keys: Vec<String> = directive["Dimensions"]
                .as_array()
                .and_then(|sets| sets.last())
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            let dims = keys
                .iter()
                .filter(|k| k.as_str() != "Service")
                .map(|k| (k.clone(), d[k].as_str().unwrap_or_default().to_owned()))
                .collect::<Vec<_>>();
            for metric in directive["Metrics"].as_array().into_iter().flatten() {
                let name = metric["Name"].as_str().unwrap_or_default().to_owned();
                out.push((name.clone(), dims.clone(), d[&name].clone()));
            }
            assert_eq!(d["Service"], SERVICE);
        }
        out
    }

    fn dims(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn change(action: &str) -> ResourceChange {
        ResourceChange {
            action: Some(action.into()),
            logical_resource_id: Some("Q".into()),
            resource_type: Some("AWS::SQS::Queue".into()),
            ..ResourceChange::default()
        }
    }

    fn status(state: ChangeSetState, poll: Poll) -> Response {
        Response::ChangeSetStatus(ChangeSetStatus {
            state,
            status: "CREATE_COMPLETE".into(),
            execution_status: None,
            reason: "r".into(),
            poll,
        })
    }

    fn progress(state: Completion, poll: Poll) -> Response {
        Response::Progress(Progress {
            state,
            stack_name: "s".into(),
            stack_id: "id".into(),
            status: "UPDATE_COMPLETE".into(),
            reason: "r".into(),
            poll,
        })
    }

    const WAITING: Poll = Poll {
        attempt: 2,
        wait_seconds: 10,
        exhausted: false,
    };
    const GAVE_UP: Poll = Poll {
        attempt: 60,
        wait_seconds: 60,
        exhausted: true,
    };

    #[test]
    fn verdicts_come_from_the_pure_verdict() {
        let safe = verdict([("", &change("Add"))], &Policy::default());
        let removed = verdict([("", &change("Remove"))], &Policy::default());
        assert_eq!(VerdictKind::of(&safe), VerdictKind::Safe);
        assert_eq!(VerdictKind::of(&removed), VerdictKind::Unsafe);
        let mut m = Metrics::new("Ns", SERVICE);
        let ok: Result<Response, StepError> = Ok(Response::Verdict(removed.bounded()));
        record(Step::InspectChangeSet, None, &ok, 5_000, &mut m);
        assert_eq!(
            data(&m),
            [
                (
                    STEP_OUTCOMES.into(),
                    dims(&[("Outcome", "Success"), ("Step", "inspect-change-set")]),
                    json!(1.0)
                ),
                (
                    CHANGE_SET_VERDICTS.into(),
                    dims(&[("Verdict", "Unsafe")]),
                    json!(1.0)
                ),
            ]
        );
    }

    #[test]
    fn errors_count_under_their_error_type_and_nothing_else() {
        let mut m = Metrics::new("Ns", SERVICE);
        let err: Result<Response, StepError> = Err(StepInputError::Missing("changeSet").into());
        record(Step::ChangeSetStatus, Some(1_000), &err, 5_000, &mut m);
        let unsafe_: Result<Response, StepError> = Err(StepError::Unsafe {
            change_set: "cs".into(),
            summary: "s".into(),
        });
        record(Step::ExecuteChangeSet, Some(1_000), &unsafe_, 5_000, &mut m);
        record(Step::ExecuteChangeSet, Some(1_000), &unsafe_, 5_000, &mut m);
        assert_eq!(
            data(&m),
            [
                (
                    STEP_OUTCOMES.into(),
                    dims(&[("Outcome", "InvalidStepInput"), ("Step", "change-set-status")]),
                    json!(1.0)
                ),
                (
                    STEP_OUTCOMES.into(),
                    dims(&[("Outcome", "UnsafeChangeSet"), ("Step", "execute-change-set")]),
                    json!(2.0)
                ),
            ]
        );
    }

    #[test]
    fn a_wait_is_sampled_once_when_it_ends() {
        // Still pending: no sample; ready, failed or given up: one, from the recorded start.
        assert_eq!(finished_wait(true, WAITING, Some(1_000), 9_500), None);
        assert_eq!(
            finished_wait(false, Poll::default(), Some(1_000), 9_500),
            Some(8.5)
        );
        assert_eq!(finished_wait(true, GAVE_UP, Some(1_000), 61_000), Some(60.0));
        // No recorded start (nothing was started, or an older execution's state): no sample.
        assert_eq!(finished_wait(false, Poll::default(), None, 9_500), None);
        // A clock behind the start never makes a negative wait.
        assert_eq!(
            finished_wait(false, Poll::default(), Some(9_000), 8_000),
            Some(0.0)
        );

        let mut m = Metrics::new("Ns", SERVICE);
        let polls: [Result<Response, StepError>; 4] = [
            Ok(status(ChangeSetState::Pending, WAITING)),
            Ok(status(ChangeSetState::Ready, Poll::default())),
            Ok(progress(Completion::InProgress, WAITING)),
            Ok(progress(Completion::Failed, Poll::default())),
        ];
        for (i, r) in polls.iter().enumerate() {
            let step = if i < 2 {
                Step::ChangeSetStatus
            } else {
                Step::StackStatus
            };
            record(step, Some(1_000), r, 3_000 + 1_000 * i as u64, &mut m);
        }
        let waits: Vec<Value> = data(&m)
            .into_iter()
            .filter(|(name, ..)| name == CLOUDFORMATION_WAIT_SECONDS)
            .map(|(_, d, v)| {
                assert!(d.is_empty());
                v
            })
            .collect();
        assert_eq!(waits, [json!([3.0, 5.0])]);
    }

    #[test]
    fn a_change_set_without_changes_is_the_no_changes_verdict() {
        let mut m = Metrics::new("Ns", SERVICE);
        let none: Result<Response, StepError> = Ok(status(ChangeSetState::NoChanges, Poll::default()));
        // CloudFormation refused to create it: nothing was started, nothing waited for.
        record(Step::ChangeSetStatus, None, &none, 5_000, &mut m);
        let d = data(&m);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(
            d[1],
            (
                CHANGE_SET_VERDICTS.into(),
                dims(&[("Verdict", "NoChanges")]),
                json!(1.0)
            )
        );
    }
}
