//! Step errors, with the stable `errorType` names the state machine's Retry and Catch match.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use lambda_common::sdk::ErrorKind;

use crate::plan::InputError;
use crate::template::TemplateError;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The deployment's own input (the execution input) is invalid.
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The step's input (what the state machine passes) is not what the step expects.
    #[error(transparent)]
    StepInput(#[from] StepInputError),
    /// A service answered successfully but not as its API promises (a missing field, an answer
    /// beyond what the step can handle).
    #[error("unexpected answer from {operation}: {problem}")]
    UnexpectedResponse {
        operation: &'static str,
        problem: String,
    },
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
        kind: ErrorKind,
        message: String,
        #[source]
        source: BoxError,
    },
    #[error("change set {change_set} was not executed: {summary}")]
    Unsafe { change_set: String, summary: String },
    #[error("change set {change_set} cannot be executed: its ExecutionStatus is {status}")]
    NotExecutable { change_set: String, status: String },
    /// An approved change set is not the one that was reviewed: it vanished, or its changes differ.
    #[error(
        "change set {change_set} was not executed: {problem}; it is not the change set that was approved"
    )]
    ChangeSetChanged { change_set: String, problem: String },
    /// A document the step writes could not be serialised (a defect, never the input's fault).
    #[error("could not serialise {what}: {source}")]
    Serialization {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The decision in the state is not one the approve function recorded: it was not sent by
    /// the approve function, or does not parse.
    #[error("change set {change_set} was not executed: {problem}")]
    ApprovalNotVerified { change_set: String, problem: String },
    /// The function lacks a setting this step needs (the template sets it).
    #[error("{variable} is not set: {needed_for}")]
    NotConfigured {
        variable: &'static str,
        needed_for: &'static str,
    },
}

/// Why the state machine's input to a step is unusable: the state machine and the step disagree.
#[derive(Debug, thiserror::Error)]
pub enum StepInputError {
    /// The payload does not parse as the step's request.
    #[error("the step's input is not a valid request: {0}: the state machine and the step disagree")]
    Unreadable(#[source] serde_json::Error),
    /// A field an earlier step writes is absent.
    #[error("the step's input lacks {0}: the state machine and the step disagree")]
    Missing(&'static str),
    /// A field holds a value that does not lead to this step.
    #[error(
        "the step's input has {field} = {found}, expected {expected}: the state machine and the step disagree"
    )]
    Unexpected {
        field: &'static str,
        found: String,
        expected: &'static str,
    },
}

impl StepError {
    /// Every `errorType` a step can end with (what the ASL's Retry and Catch may name).
    pub const ERROR_TYPES: [&'static str; 16] = [
        "InvalidDeploymentInput",
        "TemplateNotFound",
        "InvalidTemplate",
        "InvalidStepInput",
        "UnexpectedResponse",
        "ArtifactUnavailable",
        "Throttled",
        "AccessDenied",
        "CloudFormationRejected",
        "AwsError",
        "UnsafeChangeSet",
        "ChangeSetNotExecutable",
        "ChangeSetChanged",
        "NotConfigured",
        "SerializationFailed",
        "ApprovalNotVerified",
    ];
}

/// The `errorType` of an SDK error, by its classification.
fn aws_error_type(kind: ErrorKind) -> &'static str {
    match kind {
        // Throttled even after the SDK's retries: the state machine retries the step.
        ErrorKind::Throttled => "Throttled",
        ErrorKind::AccessDenied => "AccessDenied",
        // The service refused the request as made (ValidationError, AlreadyExists,
        // InsufficientCapabilities, a change set or bucket that does not exist, …).
        ErrorKind::Rejected | ErrorKind::NotFound | ErrorKind::PreconditionFailed => "CloudFormationRejected",
        ErrorKind::Other => "AwsError",
    }
}

impl lambda_common::ErrorType for StepError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::Input(_) => "InvalidDeploymentInput",
            Self::Template(TemplateError::NotFound { .. }) => "TemplateNotFound",
            Self::Template(_) | Self::TemplateTooLarge { .. } => "InvalidTemplate",
            Self::StepInput(_) => "InvalidStepInput",
            Self::UnexpectedResponse { .. } => "UnexpectedResponse",
            Self::Artifact { .. } => "ArtifactUnavailable",
            Self::Aws { kind, .. } => aws_error_type(*kind),
            Self::Unsafe { .. } => "UnsafeChangeSet",
            Self::NotExecutable { .. } => "ChangeSetNotExecutable",
            Self::ChangeSetChanged { .. } => "ChangeSetChanged",
            Self::NotConfigured { .. } => "NotConfigured",
            Self::Serialization { .. } => "SerializationFailed",
            Self::ApprovalNotVerified { .. } => "ApprovalNotVerified",
        }
    }
}

lambda_common::impl_diagnostic!(StepError);

/// Classifies an SDK error (through [`lambda_common::sdk::classify`]) and keeps it as the source.
pub fn aws<E>(operation: &'static str, err: aws_sdk_cloudformation::error::SdkError<E>) -> StepError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    StepError::Aws {
        operation,
        kind: lambda_common::sdk::classify(&err),
        message: lambda_common::sdk::summary(&err),
        source: Box::new(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_common::ErrorType;

    #[test]
    fn every_error_type_is_listed() {
        let kinds = [
            ErrorKind::Throttled,
            ErrorKind::AccessDenied,
            ErrorKind::NotFound,
            ErrorKind::PreconditionFailed,
            ErrorKind::Rejected,
            ErrorKind::Other,
        ];
        let mut names: Vec<&str> = kinds.into_iter().map(aws_error_type).collect();
        let errors = [
            StepError::Input(InputError::Missing { field: "stackName" }),
            StepError::Template(TemplateError::NotFound {
                path: "t".into(),
                listing: "nothing".into(),
            }),
            StepError::Template(TemplateError::NotText { path: "t".into() }),
            StepError::StepInput(StepInputError::Missing("plan")),
            StepError::UnexpectedResponse {
                operation: "CloudFormation CreateChangeSet",
                problem: "no Id".into(),
            },
            StepError::Artifact {
                bucket: "b".into(),
                key: "k".into(),
                message: "m".into(),
                source: "m".into(),
            },
            StepError::Unsafe {
                change_set: "cs".into(),
                summary: "s".into(),
            },
            StepError::NotExecutable {
                change_set: "cs".into(),
                status: "OBSOLETE".into(),
            },
            StepError::ChangeSetChanged {
                change_set: "cs".into(),
                problem: "it no longer exists".into(),
            },
            StepError::NotConfigured {
                variable: "REVIEW_BUCKET",
                needed_for: "onUnsafe approve writes reviews there",
            },
            StepError::ApprovalNotVerified {
                change_set: "cs".into(),
                problem: "no recorded decision".into(),
            },
            StepError::Serialization {
                what: "the review",
                source: serde_json::from_str::<u8>("x").unwrap_err(),
            },
        ];
        names.extend(errors.iter().map(ErrorType::error_type));
        for name in &names {
            assert!(StepError::ERROR_TYPES.contains(name), "{name} is not listed");
        }
        for listed in StepError::ERROR_TYPES {
            assert!(names.contains(&listed), "{listed} is listed but never produced");
        }
    }

    #[test]
    fn sdk_errors_keep_their_error_types() {
        use lambda_common::sdk::classify_parts;
        let cases = [
            (Some("Throttling"), Some(400), "Throttled"),
            (Some("AccessDenied"), Some(403), "AccessDenied"),
            (None, Some(403), "AccessDenied"),
            (Some("ValidationError"), Some(400), "CloudFormationRejected"),
            (
                Some("AlreadyExistsException"),
                Some(400),
                "CloudFormationRejected",
            ),
            (Some("ChangeSetNotFound"), Some(404), "CloudFormationRejected"),
            (Some("NoSuchBucket"), Some(404), "CloudFormationRejected"),
            (Some("InternalFailure"), Some(500), "AwsError"),
            (None, None, "AwsError"),
        ];
        for (code, status, expected) in cases {
            assert_eq!(
                aws_error_type(classify_parts(code, status)),
                expected,
                "{code:?} {status:?}"
            );
        }
    }

    #[test]
    fn messages_say_whose_fault_it_is() {
        let input = StepError::StepInput(StepInputError::Missing("changeSet (the created change set)"));
        assert_eq!(
            input.to_string(),
            "the step's input lacks changeSet (the created change set): the state machine and the step disagree"
        );
        let answer = StepError::UnexpectedResponse {
            operation: "CloudFormation CreateChangeSet",
            problem: "no Id".into(),
        };
        assert_eq!(
            answer.to_string(),
            "unexpected answer from CloudFormation CreateChangeSet: no Id"
        );
        assert!(!answer.to_string().contains("input"));
    }
}
