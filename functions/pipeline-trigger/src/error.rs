//! Typed errors. `JobError`s become CodePipeline failure results; `HandlerError`s are returned
//! to Lambda (only when no result could be recorded), with stable `errorType` names.

use aws_sdk_codepipeline::operation::put_job_failure_result::PutJobFailureResultError;
use aws_sdk_codepipeline::operation::put_job_success_result::PutJobSuccessResultError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionError;
use aws_sdk_sfn::operation::describe_state_machine::DescribeStateMachineError;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_sdk_sfn::operation::start_sync_execution::StartSyncExecutionError;
use lambda_common::sdk::summary;

use crate::artifact::ArtifactError;
use crate::destination::RecordError;
use crate::outcome::{self, FailureKind, JobResult};
use crate::params::ActionConfigError;
use crate::token::TokenError;
use crate::token::{MAX_TRANSIENT_FAILURES, MAX_TRANSIENT_SECONDS};

type S3Error<E> = aws_sdk_s3::error::SdkError<E>;
type SfnError<E> = aws_sdk_sfn::error::SdkError<E>;
type PipelineError<E> = aws_sdk_codepipeline::error::SdkError<E>;

/// Why a job failed; each maps to a CodePipeline failure type.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    ActionConfig(#[from] ActionConfigError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the job data is malformed: {0}")]
    MalformedJobData(String),
    #[error(
        "access denied reading input file s3://{bucket}/{key} (S3 also answers 403 for a missing key \
         when the function may not list the bucket)"
    )]
    InputAccessDenied {
        bucket: String,
        key: String,
        #[source]
        source: S3Error<GetObjectError>,
    },
    #[error("input bucket {bucket} does not exist")]
    InputBucketMissing {
        bucket: String,
        #[source]
        source: S3Error<GetObjectError>,
    },
    #[error("could not read input file s3://{bucket}/{key}")]
    InputRead {
        bucket: String,
        key: String,
        #[source]
        source: S3Error<GetObjectError>,
    },
    #[error("could not read the body of input file s3://{bucket}/{key}")]
    InputBody {
        bucket: String,
        key: String,
        #[source]
        source: aws_smithy_types::byte_stream::error::Error,
    },
    #[error("access denied starting an execution of {state_machine}")]
    StartAccessDenied {
        state_machine: String,
        #[source]
        source: SfnError<StartExecutionError>,
    },
    #[error("state machine {state_machine} cannot be started")]
    StartRejected {
        state_machine: String,
        #[source]
        source: SfnError<StartExecutionError>,
    },
    #[error("could not start an execution of {state_machine}")]
    Start {
        state_machine: String,
        #[source]
        source: SfnError<StartExecutionError>,
    },
    #[error("access denied describing execution {execution_arn}")]
    DescribeAccessDenied {
        execution_arn: String,
        #[source]
        source: SfnError<DescribeExecutionError>,
    },
    #[error(
        "execution {execution_arn} does not exist: it was never started (the first invocation ran out of \
         time before starting it) or it is no longer kept"
    )]
    ExecutionMissing {
        execution_arn: String,
        #[source]
        source: SfnError<DescribeExecutionError>,
    },
    #[error("could not describe execution {execution_arn}")]
    Describe {
        execution_arn: String,
        #[source]
        source: SfnError<DescribeExecutionError>,
    },
    #[error(
        "could not check execution {execution_arn}: {failures} consecutive transient failures over \
         {seconds} s (the trigger gives up at {MAX_TRANSIENT_FAILURES} in a row or after \
         {MAX_TRANSIENT_SECONDS} s); the last one"
    )]
    TransientPollsExhausted {
        execution_arn: String,
        failures: u32,
        seconds: u64,
        #[source]
        source: SfnError<DescribeExecutionError>,
    },
    #[error("{0}")]
    ForeignToken(String),
    #[error("access denied describing state machine {state_machine} (the trigger reads its type)")]
    TypeAccessDenied {
        state_machine: String,
        #[source]
        source: SfnError<DescribeStateMachineError>,
    },
    #[error("state machine {state_machine} cannot be started")]
    TypeRejected {
        state_machine: String,
        #[source]
        source: SfnError<DescribeStateMachineError>,
    },
    #[error("could not describe state machine {state_machine}")]
    TypeLookup {
        state_machine: String,
        #[source]
        source: SfnError<DescribeStateMachineError>,
    },
    #[error("access denied running an Express execution of {state_machine} (StartSyncExecution)")]
    SyncAccessDenied {
        state_machine: String,
        #[source]
        source: SfnError<StartSyncExecutionError>,
    },
    #[error("state machine {state_machine} cannot run this Express execution")]
    SyncRejected {
        state_machine: String,
        #[source]
        source: SfnError<StartSyncExecutionError>,
    },
    #[error("could not run an Express execution of {state_machine}; its result is unknown")]
    Sync {
        state_machine: String,
        #[source]
        source: SfnError<StartSyncExecutionError>,
    },
    #[error(
        "state machine {state_machine} started {execution_arn}, which is not a Standard execution (was \
         it created again as Express?); it cannot be polled, and the next job reads the type again"
    )]
    StartedNotStandard {
        state_machine: String,
        execution_arn: String,
    },
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(
        "S3 refused to write output artifact {name} to s3://{bucket}/{key} with the job's artifact \
         credentials"
    )]
    ArtifactWriteDenied {
        name: String,
        bucket: String,
        key: String,
        #[source]
        source: S3Error<PutObjectError>,
    },
    #[error(
        "the execution SUCCEEDED, but output artifact {0} could not be written before the pipeline \
         trigger's Lambda deadline, so the job is not reported as a success"
    )]
    ArtifactDeadline(String),
    #[error("could not write output artifact {name} to s3://{bucket}/{key}")]
    ArtifactWrite {
        name: String,
        bucket: String,
        key: String,
        #[source]
        source: S3Error<PutObjectError>,
    },
}

impl JobError {
    /// The failure message for CodePipeline: what failed, then the service's code and message.
    pub fn operator_message(&self) -> String {
        let detail = match self {
            Self::InputAccessDenied { source, .. }
            | Self::InputBucketMissing { source, .. }
            | Self::InputRead { source, .. } => Some(summary(source)),
            Self::StartAccessDenied { source, .. }
            | Self::StartRejected { source, .. }
            | Self::Start { source, .. } => Some(summary(source)),
            Self::DescribeAccessDenied { source, .. }
            | Self::Describe { source, .. }
            | Self::ExecutionMissing { source, .. }
            | Self::TransientPollsExhausted { source, .. } => Some(summary(source)),
            Self::TypeAccessDenied { source, .. }
            | Self::TypeRejected { source, .. }
            | Self::TypeLookup { source, .. } => Some(summary(source)),
            Self::SyncAccessDenied { source, .. }
            | Self::SyncRejected { source, .. }
            | Self::Sync { source, .. } => Some(summary(source)),
            Self::ArtifactWriteDenied { source, .. } | Self::ArtifactWrite { source, .. } => {
                Some(summary(source))
            }
            Self::InputBody { source, .. } => Some(lambda_common::error_chain(source)),
            Self::ActionConfig(_)
            | Self::Token(_)
            | Self::MalformedJobData(_)
            | Self::ForeignToken(_)
            | Self::ArtifactDeadline(_)
            | Self::StartedNotStandard { .. }
            | Self::Artifact(_) => None,
        };
        match detail {
            Some(d) => format!("{self}: {d}"),
            None => self.to_string(),
        }
    }

    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Self::ActionConfig(_)
            | Self::MalformedJobData(_)
            | Self::InputBucketMissing { .. }
            | Self::StartRejected { .. }
            | Self::TypeRejected { .. }
            | Self::SyncRejected { .. } => FailureKind::ConfigurationError,
            Self::Artifact(e) => match e {
                ArtifactError::NoOutput(_) | ArtifactError::TooLarge { .. } | ArtifactError::Zip(_) => {
                    FailureKind::JobFailed
                }
                _ => FailureKind::ConfigurationError,
            },
            Self::InputAccessDenied { .. }
            | Self::StartAccessDenied { .. }
            | Self::DescribeAccessDenied { .. }
            | Self::TypeAccessDenied { .. }
            | Self::SyncAccessDenied { .. }
            | Self::ArtifactWriteDenied { .. } => FailureKind::PermissionError,
            Self::Token(_)
            | Self::InputRead { .. }
            | Self::InputBody { .. }
            | Self::Start { .. }
            | Self::Describe { .. }
            | Self::ExecutionMissing { .. }
            | Self::TransientPollsExhausted { .. }
            | Self::ForeignToken(_)
            | Self::TypeLookup { .. }
            | Self::Sync { .. }
            | Self::ArtifactDeadline(_)
            | Self::StartedNotStandard { .. }
            | Self::ArtifactWrite { .. } => FailureKind::JobFailed,
        }
    }

    /// The failure result CodePipeline gets for this error.
    pub fn job_result(&self) -> JobResult {
        JobResult::Failed {
            kind: self.failure_kind(),
            message: outcome::truncate_chars(&self.operator_message(), outcome::MAX_FAILURE_MESSAGE_CHARS),
            external_execution_id: self.external_execution_id().map(str::to_owned),
        }
    }

    /// The execution this failure concerns, when known.
    pub fn external_execution_id(&self) -> Option<&str> {
        match self {
            Self::DescribeAccessDenied { execution_arn, .. }
            | Self::Describe { execution_arn, .. }
            | Self::ExecutionMissing { execution_arn, .. }
            | Self::TransientPollsExhausted { execution_arn, .. } => Some(execution_arn),
            _ => None,
        }
    }
}

/// Errors returned to Lambda: there was no job to answer (or a destination record that ends
/// none), or the answer could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("the event is not a CodePipeline job event: \"CodePipeline.job\".\"id\" is missing")]
    NotAJobEvent,
    /// A destination record this function does not act on.
    #[error(transparent)]
    Destination(#[from] RecordError),
    #[error("could not record the success result of job {job_id}")]
    RecordSuccess {
        job_id: String,
        #[source]
        source: PipelineError<PutJobSuccessResultError>,
    },
    #[error("could not record the failure result of job {job_id}")]
    RecordFailure {
        job_id: String,
        #[source]
        source: PipelineError<PutJobFailureResultError>,
    },
    #[error("could not build the failure result of job {job_id}")]
    BuildResult {
        job_id: String,
        #[source]
        source: aws_sdk_codepipeline::error::BuildError,
    },
}

impl lambda_common::ErrorType for HandlerError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::NotAJobEvent => "NotACodePipelineJob",
            Self::Destination(RecordError::NotAFailure) => "DestinationRecordNotAFailure",
            Self::Destination(RecordError::UnknownCondition(_)) => "DestinationRecordUnknownCondition",
            Self::Destination(RecordError::NotAJobEvent) => "DestinationRecordNotACodePipelineJob",
            Self::RecordSuccess { .. } | Self::RecordFailure { .. } | Self::BuildResult { .. } => {
                "JobResultNotRecorded"
            }
        }
    }
}

lambda_common::impl_diagnostic!(HandlerError);
