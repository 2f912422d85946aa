//! Decisions for Express state machines, which run to their end inside one invocation
//! (StartSyncExecution): the state machine's type, how long the call may wait, and the job's
//! result from its answer. No I/O here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::outcome::{self, ExecutionStatus, ExecutionView, FailureKind, JobResult};

/// Express executions run at most five minutes (Step Functions' limit).
pub const EXPRESS_MAX_DURATION: Duration = Duration::from_secs(300);

/// A state machine's type (DescribeStateMachine's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineType {
    Standard,
    Express,
}

impl MachineType {
    /// `EXPRESS` is Express; `STANDARD`, and any type this function does not know, are polled as
    /// Standard (DescribeExecution then answers or fails by name).
    pub fn parse(s: &str) -> Self {
        if s == "EXPRESS" {
            Self::Express
        } else {
            Self::Standard
        }
    }
}

/// The types of the state machines this container has looked up: a state machine's type cannot
/// change after it is created, so each is described once per container.
#[derive(Debug, Default)]
pub struct MachineTypes(Mutex<HashMap<String, MachineType>>);

impl MachineTypes {
    pub fn get(&self, state_machine_arn: &str) -> Option<MachineType> {
        self.0.lock().ok()?.get(state_machine_arn).copied()
    }

    pub fn remember(&self, state_machine_arn: &str, kind: MachineType) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(state_machine_arn.to_owned(), kind);
        }
    }

    /// Forgets a type that may be stale: a state machine deleted and created again under the same
    /// name may have the other type, so the next job looks it up again.
    pub fn forget(&self, state_machine_arn: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(state_machine_arn);
        }
    }
}

/// How long StartSyncExecution may wait, given the work time left: that time minus a margin (a
/// tenth, between 0.2 and 2 seconds) for writing the output artifact, so that a run which cannot
/// finish in time still gets its own clear failure before the work budget ends.
pub fn sync_wait(work_left: Option<Duration>) -> Duration {
    match work_left {
        Some(left) => {
            left.saturating_sub((left / 10).clamp(Duration::from_millis(200), Duration::from_secs(2)))
        }
        // No deadline (not under Lambda): Express's own limit, plus slack for the answer.
        None => EXPRESS_MAX_DURATION + Duration::from_secs(10),
    }
}

/// The failure when the Express execution did not answer within `waited`: never a success, and
/// the message names the limit and what to change.
pub fn out_of_time(execution_name: &str, state_machine_name: &str, waited: Duration) -> JobResult {
    JobResult::failed(
        FailureKind::JobFailed,
        format!(
            "Express execution {execution_name} of state machine {state_machine_name} did not finish \
             within the {:.1} s left before the pipeline trigger's Lambda deadline, so its result is \
             unknown (it may still be running; it was not reported as a success). Express workflows \
             run inside one invocation: give the trigger a timeout above the workflow's duration \
             (Express runs at most {} s; 330 s covers any Express run)",
            waited.as_secs_f64(),
            EXPRESS_MAX_DURATION.as_secs()
        ),
    )
}

/// The failure when the invocation's work, for a state machine known to be Express, did not
/// finish before the Lambda deadline outside the run's own wait (reading the input took too long,
/// or the runtime could not keep time): the outcome is unknown, and never a success.
pub fn unfinished(execution_name: &str, state_machine_name: &str, budget: Duration) -> JobResult {
    JobResult::failed(
        FailureKind::JobFailed,
        format!(
            "the pipeline trigger did not finish within the {:.1} s of work its Lambda deadline left, \
             while preparing or running Express execution {execution_name} of state machine \
             {state_machine_name}; its outcome is unknown and not reported as a success. Give the \
             trigger a longer timeout (330 s covers any Express run)",
            budget.as_secs_f64()
        ),
    )
}

/// The job's result from StartSyncExecution's answer: SUCCEEDED completes the job (with output
/// variables, as for Standard); FAILED, TIMED_OUT and any other status fail it with the error and
/// the cause.
pub fn decide(view: &ExecutionView) -> JobResult {
    match &view.status {
        ExecutionStatus::Succeeded | ExecutionStatus::Failed | ExecutionStatus::TimedOut => {
            outcome::decide(view, 1)
                .unwrap_or_else(|e| JobResult::failed(FailureKind::JobFailed, e.to_string()))
        }
        // StartSyncExecution only answers once the execution has ended; anything else is not a
        // success.
        other => JobResult::Failed {
            kind: FailureKind::JobFailed,
            message: outcome::truncate_chars(
                &format!(
                    "Express execution {} answered status {}, which is not an end this trigger \
                     recognises; it is not reported as a success",
                    view.arn,
                    other.as_str()
                ),
                outcome::MAX_FAILURE_MESSAGE_CHARS,
            ),
            external_execution_id: Some(view.arn.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:states:us-east-1:1:express:fast:codepipeline-j1:4e1b8f0c";

    fn view(status: &str, output: Option<&str>, error: Option<&str>, cause: Option<&str>) -> ExecutionView {
        ExecutionView {
            arn: ARN.into(),
            name: "codepipeline-j1".into(),
            status: ExecutionStatus::parse(status),
            started: None,
            error: error.map(str::to_owned),
            cause: cause.map(str::to_owned),
            output: output.map(str::to_owned),
        }
    }

    #[test]
    fn only_express_is_run_synchronously() {
        assert_eq!(MachineType::parse("EXPRESS"), MachineType::Express);
        assert_eq!(MachineType::parse("STANDARD"), MachineType::Standard);
        assert_eq!(MachineType::parse("SOMETHING_NEW"), MachineType::Standard);
        let types = MachineTypes::default();
        assert_eq!(types.get("a"), None);
        types.remember("a", MachineType::Express);
        assert_eq!(types.get("a"), Some(MachineType::Express));
        assert_eq!(types.get("b"), None);
        types.forget("a");
        assert_eq!(types.get("a"), None);
    }

    #[test]
    fn the_sync_call_leaves_time_for_the_artifact() {
        let ms = Duration::from_millis;
        assert_eq!(sync_wait(Some(ms(10_000))), ms(9_000));
        assert_eq!(sync_wait(Some(ms(1_000))), ms(800));
        assert_eq!(sync_wait(Some(ms(100))), ms(0));
        assert_eq!(sync_wait(Some(ms(300_000))), ms(298_000));
        assert_eq!(sync_wait(None), ms(310_000));
    }

    #[test]
    fn a_success_exports_output_variables() {
        let r = decide(&view(
            "SUCCEEDED",
            Some(r#"{"stackName": "prod-app", "n": 3}"#),
            None,
            None,
        ));
        let JobResult::Succeeded {
            summary,
            external_execution_id,
            output_variables,
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(
            summary,
            "Execution codepipeline-j1 SUCCEEDED; 2 output variable(s) exported"
        );
        assert_eq!(external_execution_id, ARN);
        assert_eq!(output_variables["stackName"], "prod-app");
    }

    #[test]
    fn a_failure_or_timeout_carries_the_error_and_cause() {
        for status in ["FAILED", "TIMED_OUT"] {
            let r = decide(&view(
                status,
                None,
                Some("States.TaskFailed"),
                Some("the deploy broke"),
            ));
            let JobResult::Failed { kind, message, .. } = r else {
                panic!("{r:?}")
            };
            assert_eq!(kind, FailureKind::JobFailed);
            assert_eq!(
                message,
                format!(
                    "Execution {ARN} ended with status {status}. Error: States.TaskFailed. Cause: the \
                     deploy broke"
                )
            );
        }
    }

    #[test]
    fn any_other_status_is_never_a_success() {
        for status in ["RUNNING", "ABORTED", "PENDING_REDRIVE", "WHATEVER"] {
            let r = decide(&view(status, Some("{}"), None, None));
            assert_eq!(r.status(), "Failed", "{status}: {r:?}");
        }
    }

    #[test]
    fn unfinished_work_is_never_a_success() {
        let r = unfinished("codepipeline-j1", "fast", Duration::from_millis(2_000));
        let JobResult::Failed { kind, message, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(kind, FailureKind::JobFailed);
        assert!(message.starts_with("the pipeline trigger did not finish within the 2.0 s of work"));
        assert!(message.contains("Express execution codepipeline-j1 of state machine fast"));
        assert!(message.contains("not reported as a success"));
    }

    #[test]
    fn running_out_of_time_names_the_limit() {
        let r = out_of_time("codepipeline-j1", "fast", Duration::from_millis(4_500));
        let JobResult::Failed { kind, message, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(kind, FailureKind::JobFailed);
        assert!(message.starts_with(
            "Express execution codepipeline-j1 of state machine fast did not finish within the 4.5 s left \
             before the pipeline trigger's Lambda deadline"
        ));
        assert!(message.contains("not reported as a success"));
        assert!(message.contains("Express runs at most 300 s"));
    }
}
