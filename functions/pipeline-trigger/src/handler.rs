//! The invocation: decide the job's result, then record exactly one result for the job; or, for
//! the on-failure destination's record, end the job whose trigger invocation failed on every
//! attempt.
//!
//! This module only orchestrates: the decisions are in [`crate::params`], [`crate::token`],
//! [`crate::outcome`], [`crate::waiting`], [`crate::destination`] and [`crate::metrics`], the SDK
//! calls in [`crate::sdk`].

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use lambda_common::error_chain;
use lambda_common::metrics::Metrics;
use lambda_common::sdk::classify;
use tracing::{Instrument, error, info, info_span, warn};

use crate::artifact;
use crate::config::Config;
use crate::destination::{self, Record};
use crate::error::{HandlerError, JobError};
use crate::event::{Event, JobData, Request};
use crate::express::{self, MachineType, MachineTypes};
use crate::metrics::{self, DestinationEnd, JobInvocation, Recorded};
use crate::outcome::{self, ExecutionStatus, ExecutionView, FailureKind, JobResult, Recording};
use crate::params::{self, JobContext, StateMachineArn};
use crate::sdk::{self, SuccessResult};
use crate::token::{self, AfterTransient, ContinuationToken};
use crate::waiting;

/// Clients and configuration, built once at cold start and borrowed by every invocation.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub s3: aws_sdk_s3::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub codepipeline: aws_sdk_codepipeline::Client,
    pub config: Config,
    /// The state machines' types, looked up once per container.
    pub machine_types: Arc<MachineTypes>,
}

/// How long the job logic may run, given the time left before the Lambda deadline: that time
/// minus a reserve (a fifth of it, between 0.3 and 3 seconds) for recording the result. `None`
/// when the runtime gave no deadline.
pub fn work_budget(remaining: Option<Duration>) -> Option<Duration> {
    remaining
        .map(|left| left.saturating_sub((left / 5).clamp(Duration::from_millis(300), Duration::from_secs(3))))
}

/// What the output artifact's write leaves of the work time, so that its own timeout fires
/// before the work budget's.
pub const ARTIFACT_MARGIN: Duration = Duration::from_millis(50);

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
        Self::from_clients(
            lambda_common::sdk::s3_client(sdk),
            aws_sdk_sfn::Client::new(sdk),
            aws_sdk_codepipeline::Client::new(sdk),
            config,
        )
    }

    /// A trigger over the given clients (tests pass mocked ones).
    pub fn from_clients(
        s3: aws_sdk_s3::Client,
        sfn: aws_sdk_sfn::Client,
        codepipeline: aws_sdk_codepipeline::Client,
        config: Config,
    ) -> Self {
        Self {
            s3,
            sfn,
            codepipeline,
            config,
            machine_types: Arc::default(),
        }
    }

    /// One invocation, of either kind: a job event ([`Self::handle`]) or a destination record
    /// ([`Self::end_job`]). Its metrics go to `metrics`, for `main` to flush.
    pub async fn invoke(
        &self,
        event: Event,
        deadline: Option<Instant>,
        metrics: &mut Metrics,
    ) -> Result<(), HandlerError> {
        match event {
            Event::Job(request) => self.handle(request, deadline, metrics).await,
            Event::Destination(record) => self.end_job(&record, metrics).await,
        }
    }

    /// One job invocation. Returns `Ok` once a result is recorded for the job; `Err` only when the
    /// result could not be recorded (an event without a job id is no [`Request`]).
    pub async fn handle(
        &self,
        request: Request,
        deadline: Option<Instant>,
        metrics: &mut Metrics,
    ) -> Result<(), HandlerError> {
        let span = info_span!("job", job_id = %request.job_id, request_id = %request.request_id);
        let invocations = metrics::invocations(request.data.as_ref());
        let started = AtomicBool::new(false);
        let recorded = async {
            let result = self.decide_in_time(&request, deadline, &started).await;
            Box::pin(self.record(&request.job_id, result)).await
        }
        .instrument(span)
        .await;
        let job = JobInvocation {
            started: started.load(Ordering::SeqCst),
            invocations,
            recorded: *recorded.as_ref().unwrap_or(&Recorded::NotRecorded),
        };
        metrics::record_job(&job, metrics);
        recorded.map(|_| ())
    }

    /// The job's result, within the work budget: a panic or running out of time still gives one.
    /// `started` is set once an execution was started (or adopted) for the job.
    async fn decide_in_time(
        &self,
        request: &Request,
        deadline: Option<Instant>,
        started: &AtomicBool,
    ) -> JobResult {
        let budget = work_budget(lambda_common::clock::remaining(deadline));
        let work_deadline = budget.map(|b| Instant::now() + b);
        let work = AssertUnwindSafe(Box::pin(self.run_job(request, work_deadline, started))).catch_unwind();
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
                self.out_of_time(request, budget.unwrap_or_default())
            }
        }
    }

    /// The result when the work ran out of time: a first invocation of a Standard state machine
    /// continues with the job's own execution (see [`outcome::start_unconfirmed`]); an Express
    /// one, and anything else, fails.
    fn out_of_time(&self, request: &Request, budget: Duration) -> JobResult {
        let state_machine = request
            .first_invocation()
            .and_then(|d| params::parse_user_parameters(d.user_parameters()).ok())
            .and_then(|p| params::state_machine(&p, self.default_state_machine()).ok());
        let Some(state_machine) = state_machine else {
            return outcome::out_of_time();
        };
        let name = params::execution_name(&request.job_id);
        if self.machine_types.get(state_machine.as_str()) == Some(MachineType::Express) {
            return express::unfinished(&name, state_machine.name(), budget);
        }
        let result =
            outcome::start_unconfirmed(&state_machine.execution_arn(&name), &name, state_machine.name());
        if matches!(result, JobResult::Continue { .. }) {
            warn!(execution_name = %name, "start not confirmed before the deadline; continuing with the job's execution");
        }
        result
    }

    /// Decides the job's result by `work_deadline`. Never fails: every error becomes a failure
    /// result.
    async fn run_job(
        &self,
        request: &Request,
        work_deadline: Option<Instant>,
        started: &AtomicBool,
    ) -> JobResult {
        self.try_job(request, work_deadline, started)
            .await
            .unwrap_or_else(|err| {
                warn!(failure_type = err.failure_kind().as_str(), error = %error_chain(&err), "job failed");
                err.job_result()
            })
    }

    async fn try_job(
        &self,
        request: &Request,
        work_deadline: Option<Instant>,
        started: &AtomicBool,
    ) -> Result<JobResult, JobError> {
        let data = request
            .data
            .as_ref()
            .map_err(|e| JobError::MalformedJobData(e.to_string()))?;
        match data.continuation_token.as_deref() {
            None => self.start(request, data, work_deadline, started).await,
            Some(token) => self.poll(request, data, token, work_deadline).await,
        }
    }

    /// First invocation: build the input; start a Standard execution (idempotently) and continue,
    /// or run an Express one to its end.
    async fn start(
        &self,
        request: &Request,
        data: &JobData,
        work_deadline: Option<Instant>,
        started: &AtomicBool,
    ) -> Result<JobResult, JobError> {
        let params = params::parse_user_parameters(data.user_parameters())?;
        let state_machine = params::state_machine(&params, self.default_state_machine())?;
        let region = self.config.region.as_deref();
        if let Some(wrong) = token::elsewhere(state_machine.as_str(), request.account_id.as_deref(), region) {
            let arn = state_machine.as_str().to_owned();
            return Err(params::ActionConfigError::StateMachineElsewhere { arn, wrong }.into());
        }
        // An output artifact that could never be written fails the job before anything runs.
        artifact::target(data)?;
        let kind = self.machine_type(&state_machine).await?;
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
        if kind == MachineType::Express {
            return self
                .run_express(data, &state_machine, &name, input, (work_deadline, started))
                .await;
        }
        let execution_arn = sdk::start_execution(&self.sfn, &state_machine, &name, input)
            .await
            .inspect_err(|_| self.machine_types.forget(state_machine.as_str()))?;
        if !execution_arn.contains(":execution:") {
            // Started, but not as a Standard execution (the state machine was created again as
            // Express): it cannot be polled, and the next job looks the type up again.
            self.machine_types.forget(state_machine.as_str());
            return Err(JobError::StartedNotStandard {
                state_machine: state_machine.as_str().to_owned(),
                execution_arn,
            });
        }
        started.store(true, Ordering::SeqCst);
        info!(execution_arn = %execution_arn, "execution started");
        Ok(outcome::started(&execution_arn, &name, state_machine.name())?)
    }

    /// The state machine's type: from this container's cache, else DescribeStateMachine.
    async fn machine_type(&self, state_machine: &StateMachineArn) -> Result<MachineType, JobError> {
        if let Some(kind) = self.machine_types.get(state_machine.as_str()) {
            return Ok(kind);
        }
        let kind = sdk::state_machine_type(&self.sfn, state_machine).await?;
        info!(state_machine = state_machine.as_str(), machine_type = ?kind, "state machine type");
        self.machine_types.remember(state_machine.as_str(), kind);
        Ok(kind)
    }

    /// Runs an Express execution to its end within this invocation and decides from its answer.
    /// One that cannot answer before the deadline fails the job, naming the limit.
    async fn run_express(
        &self,
        data: &JobData,
        state_machine: &StateMachineArn,
        name: &str,
        input: String,
        (work_deadline, started): (Option<Instant>, &AtomicBool),
    ) -> Result<JobResult, JobError> {
        let wait = express::sync_wait(lambda_common::clock::remaining(work_deadline));
        let run = sdk::start_sync_execution(&self.sfn, state_machine, name, input);
        let Ok(view) = tokio::time::timeout(wait, run).await else {
            warn!(
                execution_name = name,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "the Express execution did not answer before the deadline; failing the job"
            );
            return Ok(express::out_of_time(name, state_machine.name(), wait));
        };
        let view = view.inspect_err(|_| self.machine_types.forget(state_machine.as_str()))?;
        started.store(true, Ordering::SeqCst);
        info!(execution_arn = %view.arn, status = view.status.as_str(), "Express execution ended");
        let result = express::decide(&view);
        Ok(self
            .with_output_artifact(data, &view, result, work_deadline)
            .await)
    }

    /// A continuation: look at the execution and decide. A running execution's summary says
    /// what it waits for, when its history shows a task waiting on a callback. A token naming
    /// another account's or region's execution is refused unpolled; a transient failure to
    /// describe the execution continues the job, within a bound.
    async fn poll(
        &self,
        request: &Request,
        data: &JobData,
        raw_token: &str,
        work_deadline: Option<Instant>,
    ) -> Result<JobResult, JobError> {
        let token = ContinuationToken::decode(raw_token)?;
        let region = self.config.region.as_deref();
        if let Some(why) = token.foreign_to(request.account_id.as_deref(), region) {
            return Err(JobError::ForeignToken(why));
        }
        let view = match sdk::describe_execution(&self.sfn, &token.execution_arn).await {
            Ok(view) => view,
            Err(err) if sdk::is_transient(&err) => return Ok(self.transient(&token, err)),
            Err(err) => return Err(sdk::describe_execution_error(&token.execution_arn, err)),
        };
        info!(execution_arn = %view.arn, status = view.status.as_str(), "execution status");
        let result = outcome::decide(&view, token.polls.saturating_add(1))?;
        match view.status {
            ExecutionStatus::Running => {}
            ExecutionStatus::Succeeded => {
                return Ok(self
                    .with_output_artifact(data, &view, result, work_deadline)
                    .await);
            }
            _ => return Ok(result),
        }
        let wait = history_wait(lambda_common::clock::remaining(work_deadline));
        Ok(match self.waiting_summary(&view.arn, wait).await {
            Some(summary) => result.with_running_summary(&summary),
            None => result,
        })
    }

    /// After a transient DescribeExecution failure: continue with the same execution, the
    /// failure counted in the token, or fail with this last error once the bound is reached.
    fn transient(
        &self,
        token: &ContinuationToken,
        err: aws_sdk_sfn::error::SdkError<aws_sdk_sfn::operation::describe_execution::DescribeExecutionError>,
    ) -> JobResult {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let error = lambda_common::sdk::summary(&err);
        let failure = match token.after_transient_failure(now) {
            AfterTransient::Retry(next) => {
                warn!(
                    execution_arn = %token.execution_arn,
                    transient_failures = next.transient_failures,
                    error_kind = ?classify(&err),
                    error = %error,
                    "could not describe the execution; continuing with it"
                );
                match outcome::transient(&next, &error) {
                    Ok(result) => return result,
                    Err(e) => JobError::Token(e),
                }
            }
            AfterTransient::GiveUp { failures, seconds } => JobError::TransientPollsExhausted {
                execution_arn: token.execution_arn.clone(),
                failures,
                seconds,
                source: err,
            },
        };
        warn!(failure_type = failure.failure_kind().as_str(), error = %error_chain(&failure), "job failed");
        failure.job_result()
    }

    /// A succeeded execution's result once its output is written to the action's output
    /// artifact, when it declares one; a write that fails turns the result into that failure.
    async fn with_output_artifact(
        &self,
        data: &JobData,
        view: &ExecutionView,
        result: JobResult,
        work_deadline: Option<Instant>,
    ) -> JobResult {
        let JobResult::Succeeded {
            summary,
            external_execution_id,
            output_variables,
        } = result
        else {
            return result;
        };
        match self.write_output_artifact(data, view, work_deadline).await {
            Ok(written) => JobResult::Succeeded {
                summary: match written {
                    Some(name) => outcome::truncate_chars(
                        &format!("{summary}; output artifact {name} written"),
                        outcome::MAX_SUMMARY_CHARS,
                    ),
                    None => summary,
                },
                external_execution_id,
                output_variables,
            },
            Err(err) => {
                warn!(failure_type = err.failure_kind().as_str(), error = %error_chain(&err), "output artifact not written");
                JobResult::Failed {
                    kind: err.failure_kind(),
                    message: outcome::truncate_chars(
                        &err.operator_message(),
                        outcome::MAX_FAILURE_MESSAGE_CHARS,
                    ),
                    external_execution_id: Some(external_execution_id),
                }
            }
        }
    }

    /// Writes the output artifact, by the work deadline (less a moment, so that this failure,
    /// not the generic one, is what the job gets); its name when the action declares one.
    async fn write_output_artifact(
        &self,
        data: &JobData,
        view: &ExecutionView,
        work_deadline: Option<Instant>,
    ) -> Result<Option<String>, JobError> {
        let Some(target) = artifact::target(data)? else {
            return Ok(None);
        };
        let zip = artifact::zip_output(&target.name, view.output.as_deref())?;
        let write = sdk::put_output_artifact(&self.s3, &target, zip);
        match lambda_common::clock::remaining(work_deadline) {
            None => write.await?,
            Some(left) => tokio::time::timeout(left.saturating_sub(ARTIFACT_MARGIN), write)
                .await
                .map_err(|_| JobError::ArtifactDeadline(target.name.clone()))??,
        }
        Ok(Some(target.name))
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
    async fn record(&self, job_id: &str, result: JobResult) -> Result<Recorded, HandlerError> {
        let status = result.status();
        let (success, then) = match result {
            JobResult::Failed {
                kind,
                message,
                external_execution_id,
            } => {
                let put = sdk::put_failure(&self.codepipeline, job_id, kind, &message, external_execution_id);
                return Ok(Recorded::from_put(&put.await?, Recorded::Failed(kind)));
            }
            JobResult::Continue {
                token,
                summary,
                external_execution_id,
            } => (
                SuccessResult {
                    continuation_token: Some(token),
                    summary,
                    external_execution_id,
                    output_variables: BTreeMap::new(),
                },
                Recorded::Continued,
            ),
            JobResult::Succeeded {
                summary,
                external_execution_id,
                output_variables,
            } => (
                SuccessResult {
                    continuation_token: None,
                    summary,
                    external_execution_id,
                    output_variables,
                },
                Recorded::Succeeded,
            ),
        };
        let external_execution_id = success.external_execution_id.clone();
        match sdk::put_success(&self.codepipeline, job_id, success).await? {
            Recording::Rejected(rejection) => {
                let kind = FailureKind::JobFailed;
                let put = sdk::put_failure(
                    &self.codepipeline,
                    job_id,
                    kind,
                    &rejection,
                    Some(external_execution_id),
                );
                Ok(Recorded::from_put(&put.await?, Recorded::Failed(kind)))
            }
            recording => {
                if recording == Recording::Recorded {
                    info!(job_status = status, "job result recorded");
                }
                Ok(Recorded::from_put(&recording, then))
            }
        }
    }

    /// The on-failure destination: a record of a trigger invocation that failed on every
    /// attempt ends its job with `JobFailed`. A job that already has a result, or no longer
    /// exists (expired), is left alone: that is logged, and is no error. A record that ends no
    /// job (a `Success` one, or one whose payload is no job event) is refused by name. A poll's
    /// record links the execution it was polling, which may still be running.
    pub async fn end_job(&self, record: &Record, metrics: &mut Metrics) -> Result<(), HandlerError> {
        let end = destination::decide(record).inspect_err(|e| {
            error!(condition = record.condition.as_str(), error = %e, "destination record refused");
        })?;
        let span = info_span!("destination", job_id = %end.job_id, condition = record.condition.as_str());
        let ended = async {
            warn!(
                attempts = record.attempts,
                error_type = record.error_type.as_deref(),
                function_error = record.function_error.as_deref(),
                execution_arn = end.external_execution_id.as_deref(),
                "the pipeline trigger failed on every attempt; ending its job"
            );
            let (kind, execution) = (FailureKind::JobFailed, end.external_execution_id.clone());
            let put = sdk::put_failure(&self.codepipeline, &end.job_id, kind, &end.message, execution);
            match put.await {
                Ok(Recording::Recorded) => Ok(DestinationEnd::Ended),
                Ok(_) => Ok(DestinationEnd::LeftAlone),
                Err(HandlerError::RecordFailure { source, .. })
                    if source.as_service_error().is_some_and(|e| e.is_job_not_found_exception()) =>
                {
                    info!(error = %error_chain(&source), "the job no longer exists (expired); leaving it alone");
                    Ok(DestinationEnd::LeftAlone)
                }
                Err(err) => Err(err),
            }
        }
        .instrument(span)
        .await;
        metrics::record_destination(*ended.as_ref().unwrap_or(&DestinationEnd::NotRecorded), metrics);
        ended.map(|_| ())
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
