//! The invocation: decide the job's result, then record exactly one result for the job.
//!
//! This module only orchestrates: the decisions are in [`crate::params`], [`crate::token`],
//! [`crate::outcome`] and [`crate::waiting`], the SDK calls in [`crate::sdk`].

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use lambda_common::error_chain;
use lambda_common::sdk::classify;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::Config;
use crate::error::{HandlerError, JobError};
use crate::event::{JobData, Request};
use crate::outcome::{self, ExecutionStatus, FailureKind, JobResult};
use crate::params::{self, JobContext};
use crate::sdk::{self, SuccessResult};
use crate::token::ContinuationToken;
use crate::waiting;

/// Clients and configuration, built once at cold start and borrowed by every invocation.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub s3: aws_sdk_s3::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub codepipeline: aws_sdk_codepipeline::Client,
    pub config: Config,
}

/// How long the job logic may run, given the time left before the Lambda deadline: that time
/// minus a reserve (a fifth of it, between 0.3 and 3 seconds) for recording the result. `None`
/// when the runtime gave no deadline.
pub fn work_budget(remaining: Option<Duration>) -> Option<Duration> {
    remaining
        .map(|left| left.saturating_sub((left / 5).clamp(Duration::from_millis(300), Duration::from_secs(3))))
}

/// The longest a continuation waits for the execution history (only read to say what a running
/// execution waits for).
pub const MAX_HISTORY_WAIT: Duration = Duration::from_secs(5);

/// How long reading the history may take, given the work time left: half of it, at most
/// [`MAX_HISTORY_WAIT`], so a slow answer still leaves time to decide (a late history must never
/// turn a running execution into a job out of time).
pub fn history_wait(work_left: Option<Duration>) -> Duration {
    work_left.map_or(MAX_HISTORY_WAIT, |left| (left / 2).min(MAX_HISTORY_WAIT))
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".to_owned())
}

impl Trigger {
    /// The clients from the SDK configuration loaded at cold start.
    pub fn new(sdk: &aws_config::SdkConfig, config: Config) -> Self {
        Self {
            s3: lambda_common::sdk::s3_client(sdk),
            sfn: aws_sdk_sfn::Client::new(sdk),
            codepipeline: aws_sdk_codepipeline::Client::new(sdk),
            config,
        }
    }

    /// One invocation. Returns `Ok` once a result is recorded for the job; `Err` only when the
    /// result could not be recorded (an event without a job id is no [`Request`]).
    pub async fn handle(&self, request: Request, deadline: Option<Instant>) -> Result<(), HandlerError> {
        let span = info_span!("job", job_id = %request.job_id, request_id = %request.request_id);
        async {
            let result = self.decide_in_time(&request, deadline).await;
            Box::pin(self.record(&request.job_id, result)).await
        }
        .instrument(span)
        .await
    }

    /// The job's result, within the work budget: a panic or running out of time still gives one.
    async fn decide_in_time(&self, request: &Request, deadline: Option<Instant>) -> JobResult {
        let budget = work_budget(lambda_common::clock::remaining(deadline));
        let work_deadline = budget.map(|b| Instant::now() + b);
        let work = AssertUnwindSafe(Box::pin(self.run_job(request, work_deadline))).catch_unwind();
        let finished = match budget {
            Some(budget) => tokio::time::timeout(budget, work).await.ok(),
            None => Some(work.await),
        };
        match finished {
            Some(Ok(result)) => result,
            Some(Err(panic)) => {
                let text = panic_text(panic.as_ref());
                error!(panic = %text, "job logic panicked; failing the job");
                outcome::panicked(&text)
            }
            None => {
                error!("job logic did not finish before the Lambda deadline");
                self.out_of_time(request)
            }
        }
    }

    /// The result when the work ran out of time: a first invocation continues with the job's
    /// own execution (see [`outcome::start_unconfirmed`]), anything else fails.
    fn out_of_time(&self, request: &Request) -> JobResult {
        let state_machine = request
            .first_invocation()
            .and_then(|d| params::parse_user_parameters(d.user_parameters()).ok())
            .and_then(|p| params::state_machine(&p, self.default_state_machine()).ok());
        let Some(state_machine) = state_machine else {
            return outcome::out_of_time();
        };
        let name = params::execution_name(&request.job_id);
        let result =
            outcome::start_unconfirmed(&state_machine.execution_arn(&name), &name, state_machine.name());
        if matches!(result, JobResult::Continue { .. }) {
            warn!(execution_name = %name, "start not confirmed before the deadline; continuing with the job's execution");
        }
        result
    }

    /// Decides the job's result by `work_deadline`. Never fails: every error becomes a failure
    /// result.
    async fn run_job(&self, request: &Request, work_deadline: Option<Instant>) -> JobResult {
        self.try_job(request, work_deadline).await.unwrap_or_else(|err| {
            warn!(failure_type = err.failure_kind().as_str(), error = %error_chain(&err), "job failed");
            err.job_result()
        })
    }

    async fn try_job(
        &self,
        request: &Request,
        work_deadline: Option<Instant>,
    ) -> Result<JobResult, JobError> {
        let data = request
            .data
            .as_ref()
            .map_err(|e| JobError::MalformedJobData(e.to_string()))?;
        match data.continuation_token.as_deref() {
            None => self.start(request, data).await,
            Some(token) => self.poll(token, work_deadline).await,
        }
    }

    /// First invocation: build the input, start the execution (idempotently), continue.
    async fn start(&self, request: &Request, data: &JobData) -> Result<JobResult, JobError> {
        let params = params::parse_user_parameters(data.user_parameters())?;
        let state_machine = params::state_machine(&params, self.default_state_machine())?;
        let file = match &params.input_file {
            Some(file) => Some(sdk::read_input_file(&self.s3, file).await?),
            None => None,
        };
        let job = JobContext {
            job_id: &request.job_id,
            account_id: request.account_id.as_deref(),
            revision: data.first_input_revision(),
        };
        let input = params::build_execution_input(file, params.inline_input, job)?;
        let name = params::execution_name(&request.job_id);
        let execution_arn = sdk::start_execution(&self.sfn, &state_machine, &name, input).await?;
        info!(execution_arn = %execution_arn, "execution started");
        Ok(outcome::started(&execution_arn, &name, state_machine.name())?)
    }

    /// A continuation: look at the execution and decide. A running execution's summary says
    /// what it waits for, when its history shows a task waiting on a callback.
    async fn poll(&self, raw_token: &str, work_deadline: Option<Instant>) -> Result<JobResult, JobError> {
        let token = ContinuationToken::decode(raw_token)?;
        let view = sdk::describe_execution(&self.sfn, &token.execution_arn).await?;
        info!(execution_arn = %view.arn, status = view.status.as_str(), "execution status");
        let result = outcome::decide(&view, token.polls.saturating_add(1))?;
        if view.status != ExecutionStatus::Running {
            return Ok(result);
        }
        let wait = history_wait(lambda_common::clock::remaining(work_deadline));
        Ok(match self.waiting_summary(&view.arn, wait).await {
            Some(summary) => result.with_running_summary(&summary),
            None => result,
        })
    }

    /// What the running execution waits for, from its latest history events; `None` when it
    /// waits on no callback. Best effort: an error or a slow answer is logged and gives `None`,
    /// so the job continues with the usual summary.
    async fn waiting_summary(&self, execution_arn: &str, wait: Duration) -> Option<String> {
        let read = tokio::time::timeout(wait, sdk::latest_history(&self.sfn, execution_arn)).await;
        match read {
            Ok(Ok(events)) => {
                let summary = waiting::summary(&events);
                if summary.is_some() {
                    info!(execution_arn, "execution is waiting on a task's callback");
                }
                summary
            }
            Ok(Err(err)) => {
                warn!(
                    execution_arn,
                    error_kind = ?classify(&err),
                    error = %lambda_common::sdk::summary(&err),
                    "could not read the execution history; keeping the running summary"
                );
                None
            }
            Err(_) => {
                warn!(
                    execution_arn,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "the execution history did not come in time; keeping the running summary"
                );
                None
            }
        }
    }

    /// Records the job's one result. A success CodePipeline rejects as invalid is replaced by a
    /// failure naming the rejection, so the job never hangs. A job that already has a result
    /// (a retried invocation) is left as it is.
    async fn record(&self, job_id: &str, result: JobResult) -> Result<(), HandlerError> {
        let status = result.status();
        let success = match result {
            JobResult::Failed {
                kind,
                message,
                external_execution_id,
            } => {
                return sdk::put_failure(&self.codepipeline, job_id, kind, &message, external_execution_id)
                    .await;
            }
            JobResult::Continue {
                token,
                summary,
                external_execution_id,
            } => SuccessResult {
                continuation_token: Some(token),
                summary,
                external_execution_id,
                output_variables: BTreeMap::new(),
            },
            JobResult::Succeeded {
                summary,
                external_execution_id,
                output_variables,
            } => SuccessResult {
                continuation_token: None,
                summary,
                external_execution_id,
                output_variables,
            },
        };
        let external_execution_id = success.external_execution_id.clone();
        match sdk::put_success(&self.codepipeline, job_id, success).await? {
            None => {
                info!(job_status = status, "job result recorded");
                Ok(())
            }
            Some(rejection) => {
                let kind = FailureKind::JobFailed;
                sdk::put_failure(
                    &self.codepipeline,
                    job_id,
                    kind,
                    &rejection,
                    Some(external_execution_id),
                )
                .await
            }
        }
    }

    fn default_state_machine(&self) -> Option<&str> {
        self.config.default_state_machine_arn.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_budget_keeps_a_reserve_for_recording_the_result() {
        let ms = Duration::from_millis;
        assert_eq!(work_budget(None), None);
        // A fifth of the time left...
        assert_eq!(work_budget(Some(ms(5_000))), Some(ms(4_000)));
        // ...at least 0.3 s...
        assert_eq!(work_budget(Some(ms(1_000))), Some(ms(700)));
        assert_eq!(work_budget(Some(ms(200))), Some(ms(0)));
        assert_eq!(work_budget(Some(ms(0))), Some(ms(0)));
        // ...at most 3 s.
        assert_eq!(work_budget(Some(ms(30_000))), Some(ms(27_000)));
        assert_eq!(work_budget(Some(ms(900_000))), Some(ms(897_000)));
    }

    #[test]
    fn reading_the_history_leaves_time_to_decide() {
        let ms = Duration::from_millis;
        assert_eq!(history_wait(None), MAX_HISTORY_WAIT);
        assert_eq!(history_wait(Some(ms(60_000))), MAX_HISTORY_WAIT);
        assert_eq!(history_wait(Some(ms(4_000))), ms(2_000));
        assert_eq!(history_wait(Some(ms(0))), ms(0));
    }

    #[test]
    fn panic_payloads_become_text() {
        let text: Box<dyn std::any::Any + Send> = Box::new("index out of bounds");
        assert_eq!(panic_text(text.as_ref()), "index out of bounds");
        let owned: Box<dyn std::any::Any + Send> = Box::new(String::from("formatted 7"));
        assert_eq!(panic_text(owned.as_ref()), "formatted 7");
        let other: Box<dyn std::any::Any + Send> = Box::new(7_u32);
        assert_eq!(panic_text(other.as_ref()), "non-text panic payload");
    }
}
