//! The invocation: decide the job's result, then record exactly one result for the job.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_codepipeline::types::{ExecutionDetails, FailureDetails, FailureType};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use futures_util::FutureExt;
use lambda_runtime::LambdaEvent;
use serde_json::{Map, Value};
use tracing::{Instrument, error, info, info_span, warn};

use lambda_common::error_chain;

use crate::error::{HandlerError, JobError, is_access_denied};
use crate::event::{self, JobData};
use crate::outcome::{self, ExecutionStatus, ExecutionView, FailureKind, JobResult};
use crate::params::{self, ConfigError, InputFile, JobContext, MAX_EXECUTION_INPUT_BYTES, StateMachineArn};
use crate::token::ContinuationToken;

/// Configuration read once at cold start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The state machine started when the action does not name one (`STATE_MACHINE_ARN`, or the
    /// sample's `stateMachineArn`).
    pub default_state_machine_arn: Option<String>,
}

impl Config {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let default_state_machine_arn = ["STATE_MACHINE_ARN", "stateMachineArn"]
            .into_iter()
            .find_map(|k| lookup(k).filter(|v| !v.trim().is_empty()));
        Self {
            default_state_machine_arn,
        }
    }
}

/// Clients and configuration, built once at cold start and borrowed by every invocation.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub s3: aws_sdk_s3::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub codepipeline: aws_sdk_codepipeline::Client,
    pub config: Config,
}

/// How long the job logic may run: the time left before the Lambda deadline minus a reserve
/// (a fifth of it, between 0.3 and 3 seconds) for recording the result. `None` when the runtime
/// gave no deadline.
pub fn work_budget(deadline_ms: u64, now_ms: u64) -> Option<Duration> {
    if deadline_ms == 0 {
        return None;
    }
    let remaining = deadline_ms.saturating_sub(now_ms);
    let reserve = (remaining / 5).clamp(300, 3_000);
    Some(Duration::from_millis(remaining.saturating_sub(reserve)))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".to_owned())
}

impl Trigger {
    /// One invocation. Returns `Ok` once a result is recorded for the job; `Err` only when there
    /// is no job id to answer or the result could not be recorded.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<(), HandlerError> {
        let LambdaEvent { payload, context } = event;
        let Some(job_id) = event::job_id(&payload) else {
            error!("event has no CodePipeline job id; nothing can be answered");
            return Err(HandlerError::NotAJobEvent);
        };
        let span = info_span!("job", job_id = %job_id, request_id = %context.request_id);
        async {
            let work = AssertUnwindSafe(Box::pin(self.run_job(job_id, &payload))).catch_unwind();
            let outcome = match work_budget(context.deadline, now_ms()) {
                Some(budget) => tokio::time::timeout(budget, work).await.ok(),
                None => Some(work.await),
            };
            let result = match outcome {
                Some(Ok(result)) => result,
                Some(Err(panic)) => {
                    let text = panic_text(panic.as_ref());
                    error!(panic = %text, "job logic panicked; failing the job");
                    JobResult::failed(
                        FailureKind::JobFailed,
                        format!(
                            "internal error in the pipeline trigger (panic: {text}); see the function's logs"
                        ),
                    )
                }
                None => {
                    error!("job logic did not finish before the Lambda deadline");
                    self.deadline_result(job_id, &payload)
                }
            };
            Box::pin(self.record(job_id, result)).await
        }
        .instrument(span)
        .await
    }

    /// The result when the work ran out of time. On a first invocation the execution may have
    /// started (its name is derived from the job id), so the job continues with that execution's
    /// ARN: the next poll finds it, or reports that it was never started. Failing the job instead
    /// would let a retried stage start a second deployment while the first one runs.
    fn deadline_result(&self, job_id: &str, payload: &Value) -> JobResult {
        let first_call = event::job_data(payload)
            .ok()
            .filter(|d| d.continuation_token.is_none());
        let state_machine = first_call
            .as_ref()
            .and_then(|d| params::parse_user_parameters(d.user_parameters()).ok())
            .and_then(|p| {
                p.state_machine_arn
                    .or_else(|| self.config.default_state_machine_arn.clone())
            })
            .and_then(|arn| StateMachineArn::parse(&arn).ok());
        if let Some(sm) = state_machine {
            let name = params::execution_name(job_id);
            if let Ok(JobResult::Continue {
                token,
                external_execution_id,
                ..
            }) = outcome::started(&sm.execution_arn(&name), &name, sm.name())
            {
                warn!(execution_name = %name, "start not confirmed before the deadline; continuing with the job's execution");
                return JobResult::Continue {
                    token,
                    summary: format!(
                        "The start of execution {name} was not confirmed before the Lambda deadline; \
                         checking it on the next poll"
                    ),
                    external_execution_id,
                };
            }
        }
        JobResult::failed(
            FailureKind::JobFailed,
            "the pipeline trigger did not finish before its Lambda deadline; retry the action or raise \
             the function's timeout",
        )
    }

    /// Decides the job's result. Never fails: every error becomes a failure result.
    async fn run_job(&self, job_id: &str, payload: &Value) -> JobResult {
        let decided = match event::job_data(payload) {
            Ok(data) => match data.continuation_token.as_deref() {
                None => self.start(job_id, event::account_id(payload), &data).await,
                Some(token) => self.poll(token).await,
            },
            Err(e) => Err(JobError::MalformedJobData(e.to_string())),
        };
        decided.unwrap_or_else(|err| {
            warn!(failure_type = err.failure_kind().as_str(), error = %error_chain(&err), "job failed");
            match JobResult::failed(err.failure_kind(), err.operator_message()) {
                JobResult::Failed { kind, message, .. } => JobResult::Failed {
                    kind,
                    message,
                    external_execution_id: err.external_execution_id().map(str::to_owned),
                },
                other => other,
            }
        })
    }

    /// First invocation: build the input, start the execution (idempotently), continue.
    async fn start(
        &self,
        job_id: &str,
        account_id: Option<&str>,
        data: &JobData,
    ) -> Result<JobResult, JobError> {
        let params = params::parse_user_parameters(data.user_parameters())?;
        let arn = params
            .state_machine_arn
            .as_deref()
            .or(self.config.default_state_machine_arn.as_deref())
            .ok_or(ConfigError::NoStateMachine)?;
        let state_machine = StateMachineArn::parse(arn)?;
        let file = match &params.input_file {
            Some(file) => Some(self.read_input_file(file).await?),
            None => None,
        };
        let input = params::build_execution_input(
            file,
            params.inline_input,
            JobContext {
                job_id,
                account_id,
                revision: data.first_input_revision(),
            },
        )?;
        let name = params::execution_name(job_id);
        let execution_arn = self.start_execution(&state_machine, &name, input).await?;
        info!(execution_arn = %execution_arn, "execution started");
        Ok(outcome::started(&execution_arn, &name, state_machine.name())?)
    }

    async fn read_input_file(&self, file: &InputFile) -> Result<Map<String, Value>, JobError> {
        let response = self
            .s3
            .get_object()
            .bucket(&file.bucket)
            .key(&file.key)
            .send()
            .await
            .map_err(|source| classify_get_object(file, source))?;
        let too_large = || ConfigError::InputFileTooLarge {
            bucket: file.bucket.clone(),
            key: file.key.clone(),
            max: MAX_EXECUTION_INPUT_BYTES,
        };
        if response
            .content_length()
            .is_some_and(|len| usize::try_from(len).map_or(true, |l| l > MAX_EXECUTION_INPUT_BYTES))
        {
            return Err(too_large().into());
        }
        let bytes = response
            .body
            .collect()
            .await
            .map_err(|source| JobError::InputBody {
                bucket: file.bucket.clone(),
                key: file.key.clone(),
                source,
            })?
            .into_bytes();
        if bytes.len() > MAX_EXECUTION_INPUT_BYTES {
            return Err(too_large().into());
        }
        Ok(params::parse_input_file(file, &bytes)?)
    }

    /// Starts the execution named after the job. Step Functions answers a repeated start with
    /// the same name and input with the running execution; when the name is taken otherwise
    /// (different input, or the execution already ended), that execution is the job's own, so
    /// it is adopted rather than starting another.
    async fn start_execution(
        &self,
        state_machine: &StateMachineArn,
        name: &str,
        input: String,
    ) -> Result<String, JobError> {
        let sent = self
            .sfn
            .start_execution()
            .state_machine_arn(state_machine.as_str())
            .name(name)
            .input(input)
            .send()
            .await;
        match sent {
            Ok(out) => Ok(out.execution_arn),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(StartExecutionError::is_execution_already_exists) =>
            {
                let arn = state_machine.execution_arn(name);
                info!(execution_arn = %arn, "execution for this job already exists; polling it");
                Ok(arn)
            }
            Err(source) => {
                let state_machine = state_machine.as_str().to_owned();
                if is_access_denied(&source) {
                    Err(JobError::StartAccessDenied {
                        state_machine,
                        source,
                    })
                } else if source.as_service_error().is_some_and(|e| {
                    e.is_state_machine_does_not_exist() || e.is_invalid_arn() || e.is_state_machine_deleting()
                }) {
                    Err(JobError::StartRejected {
                        state_machine,
                        source,
                    })
                } else {
                    Err(JobError::Start {
                        state_machine,
                        source,
                    })
                }
            }
        }
    }

    /// A continuation: look at the execution and decide.
    async fn poll(&self, raw_token: &str) -> Result<JobResult, JobError> {
        let token = ContinuationToken::decode(raw_token)?;
        let out = self
            .sfn
            .describe_execution()
            .execution_arn(&token.execution_arn)
            .send()
            .await
            .map_err(|source| {
                let execution_arn = token.execution_arn.clone();
                if is_access_denied(&source) {
                    JobError::DescribeAccessDenied {
                        execution_arn,
                        source,
                    }
                } else if source
                    .as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist())
                {
                    JobError::ExecutionMissing {
                        execution_arn,
                        source,
                    }
                } else {
                    JobError::Describe {
                        execution_arn,
                        source,
                    }
                }
            })?;
        let view = execution_view(out);
        info!(execution_arn = %view.arn, status = view.status.as_str(), "execution status");
        Ok(outcome::decide(&view, token.polls.saturating_add(1))?)
    }

    /// Records the job's one result. A success CodePipeline rejects as invalid is replaced by a
    /// failure naming the rejection, so the job never hangs. A job that already has a result
    /// (a retried invocation) is left as it is.
    async fn record(&self, job_id: &str, result: JobResult) -> Result<(), HandlerError> {
        let status = result.status();
        let failure = match result {
            JobResult::Failed {
                kind,
                message,
                external_execution_id,
            } => (kind, message, external_execution_id),
            JobResult::Continue {
                token,
                summary,
                external_execution_id,
            } => match self
                .put_success(job_id, Some(token), summary, external_execution_id.clone(), None)
                .await?
            {
                None => {
                    log_recorded(status);
                    return Ok(());
                }
                Some(rejection) => (FailureKind::JobFailed, rejection, Some(external_execution_id)),
            },
            JobResult::Succeeded {
                summary,
                external_execution_id,
                output_variables,
            } => {
                let vars = (!output_variables.is_empty()).then(|| output_variables.into_iter().collect());
                match self
                    .put_success(job_id, None, summary, external_execution_id.clone(), vars)
                    .await?
                {
                    None => {
                        log_recorded(status);
                        return Ok(());
                    }
                    Some(rejection) => (FailureKind::JobFailed, rejection, Some(external_execution_id)),
                }
            }
        };
        let (kind, message, external_execution_id) = failure;
        // Whatever produced it, a message over CodePipeline's limit would be refused and leave
        // the job without a result.
        let message = outcome::truncate_chars(&message, outcome::MAX_FAILURE_MESSAGE_CHARS);
        let details = FailureDetails::builder()
            .r#type(failure_type(kind))
            .message(message)
            .set_external_execution_id(external_execution_id)
            .build()
            .map_err(|source| HandlerError::BuildResult {
                job_id: job_id.to_owned(),
                source,
            })?;
        match self
            .codepipeline
            .put_job_failure_result()
            .job_id(job_id)
            .failure_details(details)
            .send()
            .await
        {
            Ok(_) => {
                log_recorded("Failed");
                Ok(())
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_invalid_job_state_exception()) =>
            {
                warn!(error = %error_chain(&err), "job already has a result; leaving it as it is");
                Ok(())
            }
            Err(source) => Err(HandlerError::RecordFailure {
                job_id: job_id.to_owned(),
                source,
            }),
        }
    }

    /// Puts a success result. `Ok(Some(reason))` when CodePipeline rejected it as invalid.
    async fn put_success(
        &self,
        job_id: &str,
        token: Option<String>,
        summary: String,
        external_execution_id: String,
        output_variables: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Option<String>, HandlerError> {
        let details = ExecutionDetails::builder()
            .summary(summary)
            .external_execution_id(external_execution_id)
            .build();
        let sent = self
            .codepipeline
            .put_job_success_result()
            .job_id(job_id)
            .set_continuation_token(token)
            .execution_details(details)
            .set_output_variables(output_variables)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(None),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_invalid_job_state_exception()) =>
            {
                warn!(error = %error_chain(&err), "job already has a result; leaving it as it is");
                Ok(None)
            }
            Err(err)
                if err.as_service_error().is_some_and(|e| {
                    e.is_validation_exception() || e.is_output_variables_size_exceeded_exception()
                }) =>
            {
                let reason = error_chain(&err);
                error!(error = %reason, "CodePipeline rejected the success result; recording a failure instead");
                Ok(Some(format!(
                    "CodePipeline rejected the trigger's success result: {reason}"
                )))
            }
            Err(source) => Err(HandlerError::RecordSuccess {
                job_id: job_id.to_owned(),
                source,
            }),
        }
    }
}

fn log_recorded(status: &str) {
    info!(job_status = status, "job result recorded");
}

fn failure_type(kind: FailureKind) -> FailureType {
    match kind {
        FailureKind::JobFailed => FailureType::JobFailed,
        FailureKind::ConfigurationError => FailureType::ConfigurationError,
        FailureKind::PermissionError => FailureType::PermissionError,
        FailureKind::RevisionOutOfSync => FailureType::RevisionOutOfSync,
        FailureKind::RevisionUnavailable => FailureType::RevisionUnavailable,
        FailureKind::SystemUnavailable => FailureType::SystemUnavailable,
    }
}

fn classify_get_object(file: &InputFile, source: aws_sdk_s3::error::SdkError<GetObjectError>) -> JobError {
    let (bucket, key) = (file.bucket.clone(), file.key.clone());
    if source
        .as_service_error()
        .is_some_and(GetObjectError::is_no_such_key)
        || source.code() == Some("NoSuchKey")
    {
        ConfigError::InputFileMissing { bucket, key }.into()
    } else if source.code() == Some("NoSuchBucket") {
        JobError::InputBucketMissing { bucket, source }
    } else if is_access_denied(&source) {
        JobError::InputAccessDenied { bucket, key, source }
    } else {
        JobError::InputRead { bucket, key, source }
    }
}

fn execution_view(out: DescribeExecutionOutput) -> ExecutionView {
    let name = out.name.clone().unwrap_or_else(|| {
        out.execution_arn
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    ExecutionView {
        name,
        status: ExecutionStatus::parse(out.status.as_str()),
        started: out
            .start_date
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .ok(),
        error: out.error,
        cause: out.cause,
        output: out.output,
        arn: out.execution_arn,
    }
}
