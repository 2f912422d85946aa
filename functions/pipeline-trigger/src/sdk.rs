//! The SDK adapters: the requests this function sends (S3 `GetObject`, and `PutObject` of the
//! output artifact with the job's credentials; Step Functions `DescribeStateMachine`,
//! `StartExecution`, `StartSyncExecution`, `DescribeExecution` and `GetExecutionHistory`;
//! CodePipeline `PutJobSuccessResult` and `PutJobFailureResult`), their outputs mapped into the
//! pure types, and their errors classified (through [`lambda_common::sdk::classify`]) into
//! [`JobError`]s and [`HandlerError`]s.

use std::collections::BTreeMap;

use aws_sdk_codepipeline::types::{ExecutionDetails, FailureDetails, FailureType};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_sfn::operation::describe_execution::{DescribeExecutionError, DescribeExecutionOutput};
use aws_sdk_sfn::operation::describe_state_machine::DescribeStateMachineError;
use aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryError;
use aws_sdk_sfn::operation::start_execution::StartExecutionError;
use aws_sdk_sfn::operation::start_sync_execution::{StartSyncExecutionError, StartSyncExecutionOutput};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use lambda_common::error_chain;
use lambda_common::sdk::{ErrorKind, classify};
use serde_json::{Map, Value};
use tracing::{error, info, warn};

use crate::artifact::Target;
use crate::error::{HandlerError, JobError};
use crate::express::MachineType;
use crate::outcome::{self, ExecutionStatus, ExecutionView, FailureKind, Recording};
use crate::params::{self, ActionConfigError, InputFile, MAX_EXECUTION_INPUT_BYTES, StateMachineArn};
use crate::waiting;

/// Every SDK crate shares smithy's `SdkError`; this is the same type for S3, Step Functions and
/// CodePipeline.
type SdkError<E> = aws_sdk_s3::error::SdkError<E>;

// ---- S3: the execution input file ----

/// Reads the execution input file: one JSON object, at most Step Functions' input limit (checked
/// on the announced length, then on what was read).
pub async fn read_input_file(
    s3: &aws_sdk_s3::Client,
    file: &InputFile,
) -> Result<Map<String, Value>, JobError> {
    let response = s3
        .get_object()
        .bucket(&file.bucket)
        .key(&file.key)
        .send()
        .await
        .map_err(|source| get_object_error(file, source))?;
    let too_large = || ActionConfigError::InputFileTooLarge {
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

/// `GetObject`'s errors: a missing key (S3 answers `NoSuchKey` when the function may list the
/// bucket; a modelled `NoSuchKey` need not carry its code) or a missing bucket is the action's
/// configuration; access denied (which S3 also answers for a missing key otherwise) is a
/// permission problem; anything else (other 404s, throttling after the SDK's retries, 5xx) is a
/// failed read.
pub fn get_object_error(file: &InputFile, source: SdkError<GetObjectError>) -> JobError {
    let (bucket, key) = (file.bucket.clone(), file.key.clone());
    let missing_key = source
        .as_service_error()
        .is_some_and(GetObjectError::is_no_such_key)
        || source.code() == Some("NoSuchKey");
    match classify(&source) {
        _ if missing_key => ActionConfigError::InputFileMissing { bucket, key }.into(),
        ErrorKind::NotFound if source.code() == Some("NoSuchBucket") => {
            JobError::InputBucketMissing { bucket, source }
        }
        ErrorKind::AccessDenied => JobError::InputAccessDenied { bucket, key, source },
        _ => JobError::InputRead { bucket, key, source },
    }
}

// ---- Step Functions: the execution ----

/// Starts the execution named after the job and returns its ARN. Step Functions answers a
/// repeated start with the same name and input with the running execution; when the name is
/// taken otherwise (different input, or the execution already ended), that execution is the
/// job's own, so it is adopted rather than starting another.
pub async fn start_execution(
    sfn: &aws_sdk_sfn::Client,
    state_machine: &StateMachineArn,
    name: &str,
    input: String,
) -> Result<String, JobError> {
    let sent = sfn
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
        Err(source) => Err(start_execution_error(state_machine, source)),
    }
}

/// `StartExecution`'s errors: access denied is a permission problem; a state machine that does
/// not exist, is being deleted or whose ARN Step Functions refuses is the action's configuration;
/// anything else (throttling after the SDK's retries included) fails the job.
pub fn start_execution_error(
    state_machine: &StateMachineArn,
    source: SdkError<StartExecutionError>,
) -> JobError {
    let cannot_start = source.as_service_error().is_some_and(|e| {
        e.is_state_machine_does_not_exist() || e.is_invalid_arn() || e.is_state_machine_deleting()
    });
    by_refusal(
        state_machine,
        source,
        cannot_start,
        [
            |state_machine, source| JobError::StartAccessDenied {
                state_machine,
                source,
            },
            |state_machine, source| JobError::StartRejected {
                state_machine,
                source,
            },
            |state_machine, source| JobError::Start {
                state_machine,
                source,
            },
        ],
    )
}

/// Builds the error of a call on a state machine by how it failed, in this order: access denied
/// (`builders[0]`), refused as the action configured it (`rejected`, `builders[1]`), anything
/// else (`builders[2]`).
fn by_refusal<E: ProvideErrorMetadata>(
    state_machine: &StateMachineArn,
    source: SdkError<E>,
    rejected: bool,
    builders: [fn(String, SdkError<E>) -> JobError; 3],
) -> JobError {
    let [denied, refused, failed] = builders;
    let build = match classify(&source) {
        ErrorKind::AccessDenied => denied,
        _ if rejected => refused,
        _ => failed,
    };
    build(state_machine.as_str().to_owned(), source)
}

/// The state machine's type (Standard or Express).
pub async fn state_machine_type(
    sfn: &aws_sdk_sfn::Client,
    state_machine: &StateMachineArn,
) -> Result<MachineType, JobError> {
    let out = sfn
        .describe_state_machine()
        .state_machine_arn(state_machine.as_str())
        .send()
        .await
        .map_err(|source| state_machine_type_error(state_machine, source))?;
    Ok(MachineType::parse(out.r#type().as_str()))
}

/// `DescribeStateMachine`'s errors: access denied is a permission problem; a state machine that
/// does not exist or whose ARN is refused is the action's configuration; anything else fails.
pub fn state_machine_type_error(
    state_machine: &StateMachineArn,
    source: SdkError<DescribeStateMachineError>,
) -> JobError {
    let rejected = source
        .as_service_error()
        .is_some_and(|e| e.is_state_machine_does_not_exist() || e.is_invalid_arn());
    by_refusal(
        state_machine,
        source,
        rejected,
        [
            |state_machine, source| JobError::TypeAccessDenied {
                state_machine,
                source,
            },
            |state_machine, source| JobError::TypeRejected {
                state_machine,
                source,
            },
            |state_machine, source| JobError::TypeLookup {
                state_machine,
                source,
            },
        ],
    )
}

/// Runs an Express execution to its end (StartSyncExecution) and returns how it ended. One
/// attempt: the SDK's retries are off for this call, since a retry after a failure in transit
/// could run the workflow a second time within the same invocation.
pub async fn start_sync_execution(
    sfn: &aws_sdk_sfn::Client,
    state_machine: &StateMachineArn,
    name: &str,
    input: String,
) -> Result<ExecutionView, JobError> {
    let out = sfn
        .start_sync_execution()
        .state_machine_arn(state_machine.as_str())
        .name(name)
        .input(input)
        .customize()
        .config_override(
            aws_sdk_sfn::config::Builder::default()
                .retry_config(aws_sdk_sfn::config::retry::RetryConfig::standard().with_max_attempts(1)),
        )
        .send()
        .await
        .map_err(|source| start_sync_execution_error(state_machine, source))?;
    Ok(sync_execution_view(out))
}

/// `StartSyncExecution`'s errors: access denied is a permission problem; a state machine that
/// does not exist, is being deleted, is not Express, or refuses the name or input is the
/// action's configuration; anything else (throttling after the SDK's retries included) fails the
/// job, its result unknown.
pub fn start_sync_execution_error(
    state_machine: &StateMachineArn,
    source: SdkError<StartSyncExecutionError>,
) -> JobError {
    let rejected = source.as_service_error().is_some_and(|e| {
        e.is_state_machine_does_not_exist()
            || e.is_state_machine_deleting()
            || e.is_state_machine_type_not_supported()
            || e.is_invalid_arn()
            || e.is_invalid_name()
            || e.is_invalid_execution_input()
    });
    by_refusal(
        state_machine,
        source,
        rejected,
        [
            |state_machine, source| JobError::SyncAccessDenied {
                state_machine,
                source,
            },
            |state_machine, source| JobError::SyncRejected {
                state_machine,
                source,
            },
            |state_machine, source| JobError::Sync {
                state_machine,
                source,
            },
        ],
    )
}

/// The facts of `StartSyncExecution`'s answer the decision needs.
pub fn sync_execution_view(out: StartSyncExecutionOutput) -> ExecutionView {
    view(
        out.execution_arn,
        out.name,
        out.status.as_str(),
        &out.start_date,
        [out.error, out.cause, out.output],
    )
}

/// The view from an execution's facts; the name falls back to the ARN's name part
/// (`…:execution:<machine>:<name>`, or `…:express:<machine>:<name>:<id>`).
fn view(
    arn: String,
    name: Option<String>,
    status: &str,
    started: &aws_smithy_types::DateTime,
    [error, cause, output]: [Option<String>; 3],
) -> ExecutionView {
    let name = name.unwrap_or_else(|| {
        let parts: Vec<&str> = arn.split(':').collect();
        let name = match parts.get(5) {
            Some(&"express") => parts.get(7),
            _ => parts.last(),
        };
        name.copied().unwrap_or_default().to_owned()
    });
    ExecutionView {
        name,
        status: ExecutionStatus::parse(status),
        started: started.fmt(aws_smithy_types::date_time::Format::DateTime).ok(),
        error,
        cause,
        output,
        arn,
    }
}

/// Describes the execution being polled; the caller tells transient errors
/// ([`is_transient`]) from the others ([`describe_execution_error`]).
pub async fn describe_execution(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
) -> Result<ExecutionView, SdkError<DescribeExecutionError>> {
    let out = sfn
        .describe_execution()
        .execution_arn(execution_arn)
        .send()
        .await?;
    Ok(execution_view(out))
}

/// A `DescribeExecution` failure that another poll may not meet: throttling, 5xx, timeouts and
/// connection failures (each after the SDK's own retries). A missing execution, access denied
/// and any other refusal are not transient.
pub fn is_transient(err: &SdkError<DescribeExecutionError>) -> bool {
    let missing = err
        .as_service_error()
        .is_some_and(DescribeExecutionError::is_execution_does_not_exist);
    !missing && matches!(classify(err), ErrorKind::Throttled | ErrorKind::Other)
}

/// `DescribeExecution`'s errors: access denied is a permission problem; an execution that does
/// not exist (never started, or no longer kept) and anything else fail the job.
pub fn describe_execution_error(execution_arn: &str, source: SdkError<DescribeExecutionError>) -> JobError {
    let execution_arn = execution_arn.to_owned();
    let missing = source
        .as_service_error()
        .is_some_and(DescribeExecutionError::is_execution_does_not_exist);
    match classify(&source) {
        ErrorKind::AccessDenied => JobError::DescribeAccessDenied {
            execution_arn,
            source,
        },
        _ if missing => JobError::ExecutionMissing {
            execution_arn,
            source,
        },
        _ => JobError::Describe {
            execution_arn,
            source,
        },
    }
}

/// The facts of `DescribeExecution`'s answer the decision needs.
pub fn execution_view(out: DescribeExecutionOutput) -> ExecutionView {
    view(
        out.execution_arn,
        out.name,
        out.status.as_str(),
        &out.start_date,
        [out.error, out.cause, out.output],
    )
}

/// How many of the latest history events a continuation reads: a callback task's
/// `TaskStateEntered` ... `TaskSubmitted` and what came after, with room for a parallel branch.
pub const HISTORY_EVENTS: i32 = 10;

/// The execution's latest history events (newest first, with their data: a submitted task's
/// answer). The caller treats any error as "nothing known"; it never decides the job.
pub async fn latest_history(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
) -> Result<Vec<waiting::HistoryEvent>, SdkError<GetExecutionHistoryError>> {
    let out = sfn
        .get_execution_history()
        .execution_arn(execution_arn)
        .reverse_order(true)
        .max_results(HISTORY_EVENTS)
        .include_execution_data(true)
        .send()
        .await?;
    Ok(out.events().iter().map(history_event).collect())
}

/// The facts of one history event the decision needs.
pub fn history_event(event: &aws_sdk_sfn::types::HistoryEvent) -> waiting::HistoryEvent {
    let submitted = event.task_submitted_event_details();
    waiting::HistoryEvent {
        id: event.id(),
        kind: event.r#type().as_str().to_owned(),
        state_name: event.state_entered_event_details().map(|d| d.name().to_owned()),
        resource: submitted.map(|d| d.resource().to_owned()),
        output: submitted.and_then(|d| d.output()).map(str::to_owned),
    }
}

// ---- S3: the output artifact ----

/// Writes the output artifact's zip to the job's artifact location with the job's
/// `artifactCredentials` (a client made for this one write, sharing the function's HTTP client),
/// encrypted with the job's KMS key when one is given.
pub async fn put_output_artifact(
    s3: &aws_sdk_s3::Client,
    target: &Target<'_>,
    zip: Vec<u8>,
) -> Result<(), JobError> {
    let conf = s3
        .config()
        .to_builder()
        .credentials_provider(target.credentials.sdk_credentials())
        // No identity cache: the job's credentials serve this one write and are not kept beside
        // the role's.
        .identity_cache(aws_sdk_s3::config::IdentityCache::no_cache())
        .build();
    let mut put = aws_sdk_s3::Client::from_conf(conf)
        .put_object()
        .bucket(target.bucket)
        .key(target.key)
        .content_type("application/zip")
        .body(zip.into());
    if let Some(key_id) = target.kms_key_id {
        put = put
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(key_id);
    }
    put.send()
        .await
        .map_err(|source| put_artifact_error(target, source))?;
    info!(
        bucket = target.bucket,
        key = target.key,
        "output artifact written"
    );
    Ok(())
}

/// `PutObject`'s errors: access denied (the credentials, the bucket policy or the KMS key refused
/// the write) is a permission problem; anything else fails the job.
pub fn put_artifact_error(target: &Target<'_>, source: SdkError<PutObjectError>) -> JobError {
    let (name, bucket, key) = (
        target.name.clone(),
        target.bucket.to_owned(),
        target.key.to_owned(),
    );
    match classify(&source) {
        ErrorKind::AccessDenied => JobError::ArtifactWriteDenied {
            name,
            bucket,
            key,
            source,
        },
        _ => JobError::ArtifactWrite {
            name,
            bucket,
            key,
            source,
        },
    }
}

// ---- CodePipeline: the job's result ----

/// What a `PutJobSuccessResult` sends: with a continuation token the job continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuccessResult {
    pub continuation_token: Option<String>,
    pub summary: String,
    pub external_execution_id: String,
    pub output_variables: BTreeMap<String, String>,
}

/// Puts a success result. [`Recording::Rejected`] when CodePipeline rejected it as invalid (a
/// validation error, or output variables over its limit): the caller records a failure instead.
/// A job that already has a result (a retried invocation) is left as it is.
pub async fn put_success(
    codepipeline: &aws_sdk_codepipeline::Client,
    job_id: &str,
    result: SuccessResult,
) -> Result<Recording, HandlerError> {
    let details = ExecutionDetails::builder()
        .summary(result.summary)
        .external_execution_id(result.external_execution_id)
        .build();
    let vars = (!result.output_variables.is_empty()).then(|| result.output_variables.into_iter().collect());
    let sent = codepipeline
        .put_job_success_result()
        .job_id(job_id)
        .set_continuation_token(result.continuation_token)
        .execution_details(details)
        .set_output_variables(vars)
        .send()
        .await;
    match sent {
        Ok(_) => Ok(Recording::Recorded),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_invalid_job_state_exception()) =>
        {
            warn!(error = %error_chain(&err), "job already has a result; leaving it as it is");
            Ok(Recording::AlreadyAnswered)
        }
        Err(err)
            if err.as_service_error().is_some_and(|e| {
                e.is_validation_exception() || e.is_output_variables_size_exceeded_exception()
            }) =>
        {
            let reason = error_chain(&err);
            error!(error = %reason, "CodePipeline rejected the success result; recording a failure instead");
            Ok(Recording::Rejected(format!(
                "CodePipeline rejected the trigger's success result: {reason}"
            )))
        }
        Err(source) => Err(HandlerError::RecordSuccess {
            job_id: job_id.to_owned(),
            source,
        }),
    }
}

/// Puts a failure result. Whatever produced it, a message over CodePipeline's limit would be
/// refused and leave the job without a result, so it is cut to fit here. A job that already has
/// a result (a retried invocation) is left as it is.
pub async fn put_failure(
    codepipeline: &aws_sdk_codepipeline::Client,
    job_id: &str,
    kind: FailureKind,
    message: &str,
    external_execution_id: Option<String>,
) -> Result<Recording, HandlerError> {
    let details = FailureDetails::builder()
        .r#type(failure_type(kind))
        .message(outcome::truncate_chars(
            message,
            outcome::MAX_FAILURE_MESSAGE_CHARS,
        ))
        .set_external_execution_id(external_execution_id)
        .build()
        .map_err(|source| HandlerError::BuildResult {
            job_id: job_id.to_owned(),
            source,
        })?;
    let sent = codepipeline
        .put_job_failure_result()
        .job_id(job_id)
        .failure_details(details)
        .send()
        .await;
    match sent {
        Ok(_) => {
            info!(job_status = "Failed", "job result recorded");
            Ok(Recording::Recorded)
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_invalid_job_state_exception()) =>
        {
            warn!(error = %error_chain(&err), "job already has a result; leaving it as it is");
            Ok(Recording::AlreadyAnswered)
        }
        Err(source) => Err(HandlerError::RecordFailure {
            job_id: job_id.to_owned(),
            source,
        }),
    }
}

/// `FailureDetails.type` for a failure kind.
pub fn failure_type(kind: FailureKind) -> FailureType {
    match kind {
        FailureKind::JobFailed => FailureType::JobFailed,
        FailureKind::ConfigurationError => FailureType::ConfigurationError,
        FailureKind::PermissionError => FailureType::PermissionError,
        FailureKind::RevisionOutOfSync => FailureType::RevisionOutOfSync,
        FailureKind::RevisionUnavailable => FailureType::RevisionUnavailable,
        FailureKind::SystemUnavailable => FailureType::SystemUnavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureKind::{ConfigurationError, JobFailed, PermissionError};
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::types::error::NoSuchKey;
    use aws_sdk_sfn::types::error::{
        ExecutionDoesNotExist, InvalidArn, StateMachineDeleting, StateMachineDoesNotExist,
    };
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    const SM: &str = "arn:aws:states:us-east-1:1:stateMachine:deploy";
    const EXEC: &str = "arn:aws:states:us-east-1:1:execution:deploy:codepipeline-j1";

    fn service_error<E>(err: E, status: u16) -> SdkError<E> {
        SdkError::service_error(
            err,
            HttpResponse::new(status.try_into().unwrap(), SdkBody::empty()),
        )
    }

    fn meta(code: Option<&str>) -> ErrorMetadata {
        let builder = ErrorMetadata::builder().message("the service's message");
        match code {
            Some(code) => builder.code(code).build(),
            None => builder.build(),
        }
    }

    /// The variant's name and the failure type CodePipeline gets.
    fn verdict(err: &JobError) -> (&'static str, FailureKind) {
        let variant = match err {
            JobError::ActionConfig(ActionConfigError::InputFileMissing { .. }) => "InputFileMissing",
            JobError::ActionConfig(_) => "ActionConfig",
            JobError::Token(_) => "Token",
            JobError::MalformedJobData(_) => "MalformedJobData",
            JobError::InputAccessDenied { .. } => "InputAccessDenied",
            JobError::InputBucketMissing { .. } => "InputBucketMissing",
            JobError::InputRead { .. } => "InputRead",
            JobError::InputBody { .. } => "InputBody",
            JobError::StartAccessDenied { .. } => "StartAccessDenied",
            JobError::StartRejected { .. } => "StartRejected",
            JobError::Start { .. } => "Start",
            JobError::DescribeAccessDenied { .. } => "DescribeAccessDenied",
            JobError::ExecutionMissing { .. } => "ExecutionMissing",
            JobError::Describe { .. } => "Describe",
            JobError::TransientPollsExhausted { .. } => "TransientPollsExhausted",
            JobError::ForeignToken(_) => "ForeignToken",
            JobError::TypeAccessDenied { .. } => "TypeAccessDenied",
            JobError::TypeRejected { .. } => "TypeRejected",
            JobError::TypeLookup { .. } => "TypeLookup",
            JobError::SyncAccessDenied { .. } => "SyncAccessDenied",
            JobError::SyncRejected { .. } => "SyncRejected",
            JobError::Sync { .. } => "Sync",
            JobError::Artifact(_) => "Artifact",
            JobError::ArtifactWriteDenied { .. } => "ArtifactWriteDenied",
            JobError::ArtifactWrite { .. } => "ArtifactWrite",
            JobError::ArtifactDeadline(_) => "ArtifactDeadline",
            JobError::StartedNotStandard { .. } => "StartedNotStandard",
        };
        (variant, err.failure_kind())
    }

    #[test]
    fn get_object_errors() {
        let file = InputFile {
            bucket: "inputs".into(),
            key: "deploy/prod.json".into(),
        };
        let modelled_missing = GetObjectError::NoSuchKey(NoSuchKey::builder().build());
        let err = get_object_error(&file, service_error(modelled_missing, 404));
        assert_eq!(verdict(&err), ("InputFileMissing", ConfigurationError));
        let cases = [
            (Some("NoSuchKey"), 404, ("InputFileMissing", ConfigurationError)),
            (
                Some("NoSuchBucket"),
                404,
                ("InputBucketMissing", ConfigurationError),
            ),
            (Some("AccessDenied"), 403, ("InputAccessDenied", PermissionError)),
            (None, 403, ("InputAccessDenied", PermissionError)),
            (
                Some("InvalidAccessKeyId"),
                403,
                ("InputAccessDenied", PermissionError),
            ),
            (Some("ExpiredToken"), 400, ("InputAccessDenied", PermissionError)),
            (None, 404, ("InputRead", JobFailed)),
            (Some("NoSuchVersion"), 404, ("InputRead", JobFailed)),
            (Some("SlowDown"), 503, ("InputRead", JobFailed)),
            (Some("InternalError"), 500, ("InputRead", JobFailed)),
        ];
        for (code, status, expected) in cases {
            let err = get_object_error(&file, service_error(GetObjectError::generic(meta(code)), status));
            assert_eq!(verdict(&err), expected, "{code:?} {status}");
        }
        let timeout = get_object_error(&file, SdkError::timeout_error("timed out"));
        assert_eq!(verdict(&timeout), ("InputRead", JobFailed));
        let denied = service_error(GetObjectError::generic(meta(Some("AccessDenied"))), 403);
        assert_eq!(
            get_object_error(&file, denied).operator_message(),
            "access denied reading input file s3://inputs/deploy/prod.json (S3 also answers 403 for a \
             missing key when the function may not list the bucket): AccessDenied: the service's message"
        );
    }

    #[test]
    fn start_execution_errors() {
        let sm = StateMachineArn::parse(SM).unwrap();
        let generic = |code| StartExecutionError::generic(meta(Some(code)));
        let missing = StateMachineDoesNotExist::builder().message("gone").build();
        let deleting = StateMachineDeleting::builder().message("deleting").build();
        let cases = [
            (
                generic("AccessDeniedException"),
                400,
                ("StartAccessDenied", PermissionError),
            ),
            (
                generic("UnrecognizedClientException"),
                400,
                ("StartAccessDenied", PermissionError),
            ),
            (
                StartExecutionError::StateMachineDoesNotExist(missing),
                400,
                ("StartRejected", ConfigurationError),
            ),
            (
                StartExecutionError::InvalidArn(InvalidArn::builder().message("bad").build()),
                400,
                ("StartRejected", ConfigurationError),
            ),
            (
                StartExecutionError::StateMachineDeleting(deleting),
                400,
                ("StartRejected", ConfigurationError),
            ),
            (generic("ThrottlingException"), 400, ("Start", JobFailed)),
            (generic("ExecutionLimitExceeded"), 400, ("Start", JobFailed)),
            (generic("InternalFailure"), 500, ("Start", JobFailed)),
        ];
        for (err, status, expected) in cases {
            let err = start_execution_error(&sm, service_error(err, status));
            assert_eq!(verdict(&err), expected, "{err:?}");
            assert_eq!(err.external_execution_id(), None);
        }
    }

    #[test]
    fn describe_execution_errors() {
        let generic = |code| DescribeExecutionError::generic(meta(code));
        let gone = ExecutionDoesNotExist::builder().message("gone").build();
        let cases = [
            (
                generic(Some("AccessDeniedException")),
                400,
                ("DescribeAccessDenied", PermissionError),
            ),
            (generic(None), 403, ("DescribeAccessDenied", PermissionError)),
            (
                DescribeExecutionError::ExecutionDoesNotExist(gone),
                400,
                ("ExecutionMissing", JobFailed),
            ),
            (generic(Some("ThrottlingException")), 400, ("Describe", JobFailed)),
            (generic(Some("InvalidArn")), 400, ("Describe", JobFailed)),
        ];
        for (err, status, expected) in cases {
            let err = describe_execution_error(EXEC, service_error(err, status));
            assert_eq!(verdict(&err), expected, "{err:?}");
            assert_eq!(err.external_execution_id(), Some(EXEC));
        }
    }

    #[test]
    fn describe_execution_failures_that_another_poll_may_not_meet_are_transient() {
        let generic = |code| DescribeExecutionError::generic(meta(code));
        let gone = ExecutionDoesNotExist::builder().message("gone").build();
        let cases = [
            (generic(Some("ThrottlingException")), 400, true),
            (generic(Some("TooManyRequestsException")), 400, true),
            (generic(Some("InternalFailure")), 500, true),
            (generic(None), 503, true),
            (generic(Some("AccessDeniedException")), 400, false),
            (generic(None), 403, false),
            (DescribeExecutionError::ExecutionDoesNotExist(gone), 400, false),
            (generic(Some("InvalidArn")), 400, false),
        ];
        for (err, status, expected) in cases {
            let err = service_error(err, status);
            assert_eq!(is_transient(&err), expected, "{err:?}");
        }
        assert!(is_transient(&SdkError::timeout_error("timed out")));
    }

    #[test]
    fn describe_state_machine_errors() {
        let sm = StateMachineArn::parse(SM).unwrap();
        let generic = |code| DescribeStateMachineError::generic(meta(Some(code)));
        let missing = StateMachineDoesNotExist::builder().message("gone").build();
        let cases = [
            (
                generic("AccessDeniedException"),
                400,
                ("TypeAccessDenied", PermissionError),
            ),
            (
                DescribeStateMachineError::StateMachineDoesNotExist(missing),
                400,
                ("TypeRejected", ConfigurationError),
            ),
            (
                DescribeStateMachineError::InvalidArn(InvalidArn::builder().message("bad").build()),
                400,
                ("TypeRejected", ConfigurationError),
            ),
            (generic("ThrottlingException"), 400, ("TypeLookup", JobFailed)),
            (generic("InternalFailure"), 500, ("TypeLookup", JobFailed)),
        ];
        for (err, status, expected) in cases {
            let err = state_machine_type_error(&sm, service_error(err, status));
            assert_eq!(verdict(&err), expected, "{err:?}");
        }
        let denied = state_machine_type_error(&sm, service_error(generic("AccessDeniedException"), 400));
        assert_eq!(
            denied.operator_message(),
            format!(
                "access denied describing state machine {SM} (the trigger reads its type): \
                 AccessDeniedException: the service's message"
            )
        );
    }

    #[test]
    fn start_sync_execution_errors() {
        use aws_sdk_sfn::types::error::{InvalidExecutionInput, StateMachineTypeNotSupported};
        let sm = StateMachineArn::parse(SM).unwrap();
        let generic = |code| StartSyncExecutionError::generic(meta(Some(code)));
        let cases = [
            (
                generic("AccessDeniedException"),
                400,
                ("SyncAccessDenied", PermissionError),
            ),
            (
                StartSyncExecutionError::StateMachineTypeNotSupported(
                    StateMachineTypeNotSupported::builder()
                        .message("standard")
                        .build(),
                ),
                400,
                ("SyncRejected", ConfigurationError),
            ),
            (
                StartSyncExecutionError::InvalidExecutionInput(
                    InvalidExecutionInput::builder().message("bad").build(),
                ),
                400,
                ("SyncRejected", ConfigurationError),
            ),
            (
                StartSyncExecutionError::StateMachineDoesNotExist(
                    StateMachineDoesNotExist::builder().message("gone").build(),
                ),
                400,
                ("SyncRejected", ConfigurationError),
            ),
            (generic("ThrottlingException"), 400, ("Sync", JobFailed)),
            (generic("InternalFailure"), 500, ("Sync", JobFailed)),
        ];
        for (err, status, expected) in cases {
            let err = start_sync_execution_error(&sm, service_error(err, status));
            assert_eq!(verdict(&err), expected, "{err:?}");
        }
        let failed = start_sync_execution_error(&sm, service_error(generic("InternalFailure"), 500));
        assert!(
            failed.operator_message().contains("its result is unknown"),
            "{failed}"
        );
    }

    #[test]
    fn put_artifact_errors_say_which() {
        let data = crate::event::job_data(&serde_json::json!({"CodePipeline.job": {"id": "j", "data": {
            "outputArtifacts": [{"name": "Out", "location": {"type": "S3",
                "s3Location": {"bucketName": "artifacts", "objectKey": "p/Out/k1"}}}],
            "artifactCredentials": {"accessKeyId": "A", "secretAccessKey": "S", "sessionToken": "T"},
        }}}))
        .unwrap();
        let target = crate::artifact::target(&data).unwrap().unwrap();
        let generic = |code| PutObjectError::generic(meta(Some(code)));
        let denied = put_artifact_error(&target, service_error(generic("AccessDenied"), 403));
        assert_eq!(verdict(&denied), ("ArtifactWriteDenied", PermissionError));
        assert_eq!(
            denied.operator_message(),
            "S3 refused to write output artifact Out to s3://artifacts/p/Out/k1 with the job's artifact \
             credentials: AccessDenied: the service's message"
        );
        let expired = put_artifact_error(&target, service_error(generic("ExpiredToken"), 400));
        assert_eq!(verdict(&expired), ("ArtifactWriteDenied", PermissionError));
        let failed = put_artifact_error(&target, service_error(generic("InternalError"), 500));
        assert_eq!(verdict(&failed), ("ArtifactWrite", JobFailed));
        assert!(
            failed
                .operator_message()
                .starts_with("could not write output artifact Out to s3://artifacts/p/Out/k1")
        );
    }

    #[test]
    fn the_execution_view_of_start_sync_execution() {
        let express = "arn:aws:states:us-east-1:1:express:fast:codepipeline-j1:4e1b8f0c";
        let out = StartSyncExecutionOutput::builder()
            .execution_arn(express)
            .start_date(aws_smithy_types::DateTime::from_secs(1_700_000_000))
            .stop_date(aws_smithy_types::DateTime::from_secs(1_700_000_001))
            .status(aws_sdk_sfn::types::SyncExecutionStatus::TimedOut)
            .error("States.Timeout")
            .cause("took too long")
            .build()
            .unwrap();
        assert_eq!(
            sync_execution_view(out),
            ExecutionView {
                arn: express.into(),
                name: "codepipeline-j1".into(),
                status: ExecutionStatus::TimedOut,
                started: Some("2023-11-14T22:13:20Z".into()),
                error: Some("States.Timeout".into()),
                cause: Some("took too long".into()),
                output: None,
            }
        );
    }

    #[test]
    fn the_execution_view_of_describe_execution() {
        let out = DescribeExecutionOutput::builder()
            .execution_arn(EXEC)
            .state_machine_arn(SM)
            .status(aws_sdk_sfn::types::ExecutionStatus::Running)
            .start_date(aws_smithy_types::DateTime::from_secs(1_700_000_000))
            .build()
            .unwrap();
        assert_eq!(
            execution_view(out),
            ExecutionView {
                arn: EXEC.into(),
                name: "codepipeline-j1".into(),
                status: ExecutionStatus::Running,
                started: Some("2023-11-14T22:13:20Z".into()),
                error: None,
                cause: None,
                output: None,
            }
        );
        let named = DescribeExecutionOutput::builder()
            .execution_arn(EXEC)
            .state_machine_arn(SM)
            .name("given")
            .status(aws_sdk_sfn::types::ExecutionStatus::Failed)
            .start_date(aws_smithy_types::DateTime::from_secs(0))
            .error("E")
            .cause("C")
            .build()
            .unwrap();
        let view = execution_view(named);
        assert_eq!(
            (
                view.name.as_str(),
                &view.status,
                view.error.as_deref(),
                view.cause.as_deref()
            ),
            ("given", &ExecutionStatus::Failed, Some("E"), Some("C"))
        );
    }

    #[test]
    fn history_events_keep_what_the_decision_reads() {
        use aws_sdk_sfn::types::{
            HistoryEvent, HistoryEventType, StateEnteredEventDetails, TaskSubmittedEventDetails,
        };
        let at = aws_smithy_types::DateTime::from_secs(0);
        let entered = HistoryEvent::builder()
            .id(2)
            .timestamp(at)
            .r#type(HistoryEventType::TaskStateEntered)
            .state_entered_event_details(StateEnteredEventDetails::builder().name("Ask").build().unwrap())
            .build()
            .unwrap();
        let submitted = HistoryEvent::builder()
            .id(5)
            .timestamp(at)
            .r#type(HistoryEventType::TaskSubmitted)
            .task_submitted_event_details(
                TaskSubmittedEventDetails::builder()
                    .resource_type("lambda")
                    .resource("invoke.waitForTaskToken")
                    .output(r#"{"Payload":{"summary":"s"}}"#)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert_eq!(
            history_event(&entered),
            waiting::HistoryEvent {
                id: 2,
                kind: "TaskStateEntered".into(),
                state_name: Some("Ask".into()),
                resource: None,
                output: None,
            }
        );
        assert_eq!(
            history_event(&submitted),
            waiting::HistoryEvent {
                id: 5,
                kind: "TaskSubmitted".into(),
                state_name: None,
                resource: Some("invoke.waitForTaskToken".into()),
                output: Some(r#"{"Payload":{"summary":"s"}}"#.into()),
            }
        );
    }

    #[test]
    fn failure_types_keep_their_names() {
        for kind in [
            FailureKind::JobFailed,
            FailureKind::ConfigurationError,
            FailureKind::PermissionError,
            FailureKind::RevisionOutOfSync,
            FailureKind::RevisionUnavailable,
            FailureKind::SystemUnavailable,
        ] {
            assert_eq!(failure_type(kind).as_str(), kind.as_str());
        }
    }
}
