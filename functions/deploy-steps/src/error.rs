//! Step errors, with the stable `errorType` names the state machine's Retry and Catch match.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::plan::InputError;
use crate::template::TemplateError;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("the step's input lacks {0}: the state machine and the step disagree")]
    State(String),
    #[error("could not read the source artifact s3://{bucket}/{key}: {message}")]
    Artifact {
        bucket: String,
        key: String,
        message: String,
        #[source]
        source: BoxError,
    },
    #[error(
        "template {path} is {size} bytes, over CloudFormation's {max}-byte TemplateBody limit, and no \
         TEMPLATE_BUCKET is configured to stage it in S3"
    )]
    TemplateTooLarge { path: String, size: usize, max: usize },
    #[error("{operation} failed: {message}")]
    Aws {
        operation: &'static str,
        kind: AwsErrorKind,
        message: String,
        #[source]
        source: BoxError,
    },
    #[error("change set {change_set} was not executed: {summary}")]
    Unsafe { change_set: String, summary: String },
    #[error("change set {change_set} cannot be executed: its ExecutionStatus is {status}")]
    NotExecutable { change_set: String, status: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// Throttled even after the SDK's retries: the state machine retries the step.
    Throttled,
    AccessDenied,
    /// CloudFormation refused the request (ValidationError, AlreadyExists, InsufficientCapabilities…).
    Rejected,
    Other,
}

impl lambda_common::ErrorType for StepError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::Input(_) => "InvalidDeploymentInput",
            Self::Template(TemplateError::NotFound { .. }) => "TemplateNotFound",
            Self::Template(_) | Self::TemplateTooLarge { .. } => "InvalidTemplate",
            Self::State(_) => "InvalidStepInput",
            Self::Artifact { .. } => "ArtifactUnavailable",
            Self::Aws { kind, .. } => match kind {
                AwsErrorKind::Throttled => "Throttled",
                AwsErrorKind::AccessDenied => "AccessDenied",
                AwsErrorKind::Rejected => "CloudFormationRejected",
                AwsErrorKind::Other => "AwsError",
            },
            Self::Unsafe { .. } => "UnsafeChangeSet",
            Self::NotExecutable { .. } => "ChangeSetNotExecutable",
        }
    }
}

/// Classifies an SDK error and keeps it as the source.
pub fn aws<E>(operation: &'static str, err: aws_sdk_cloudformation::error::SdkError<E>) -> StepError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_owned);
    let status = err.raw_response().map(|r| r.status().as_u16());
    let kind = match code.as_deref() {
        Some(
            "Throttling"
            | "ThrottlingException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "SlowDown",
        ) => AwsErrorKind::Throttled,
        Some("AccessDenied" | "AccessDeniedException" | "ExpiredToken" | "InvalidClientTokenId") => {
            AwsErrorKind::AccessDenied
        }
        _ if status == Some(403) => AwsErrorKind::AccessDenied,
        Some(_) if status.is_some_and(|s| (400..500).contains(&s)) => AwsErrorKind::Rejected,
        _ => AwsErrorKind::Other,
    };
    let message = lambda_common::sdk::summary(&err);
    StepError::Aws {
        operation,
        kind,
        message,
        source: Box::new(err),
    }
}
