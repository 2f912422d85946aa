//! Why a run, or one instance's part of it, failed, with the stable `errorType` names the state
//! machine's `Retry` and `Catch` match (`Throttled` is retried).

use aws_sdk_s3::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use lambda_common::sdk::ErrorKind;

use crate::request::InvalidRequest;

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The payload is not a request this function serves; nothing was called.
    #[error(transparent)]
    InvalidRequest(#[from] InvalidRequest),
    /// An AWS call failed; `kind` is its classification (`Throttled` is retried by the state
    /// machine).
    #[error("{operation} failed: {message}")]
    Aws {
        operation: &'static str,
        message: String,
        kind: ErrorKind,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("another run advanced the checkpoint of {0} first; this run stops for that instance")]
    CheckpointConflict(String),
    /// The stored checkpoint is not a checkpoint this version reads.
    #[error("the checkpoint of {instance} is unreadable: {source}")]
    CorruptCheckpoint {
        instance: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("chunk {0} already exists although the checkpoint does not account for it")]
    ChunkExists(String),
    #[error("compressing failed: {0}")]
    Compress(#[from] std::io::Error),
    /// The selection manifest a batch names is not one the select step writes.
    #[error(transparent)]
    InvalidManifest(#[from] crate::fleet::InvalidManifest),
    /// A batch names an instance its selection manifest does not hold: nothing is shipped.
    #[error(transparent)]
    InstanceNotSelected(#[from] crate::fleet::NotSelected),
    /// The Map's result files are not what Step Functions' ResultWriter writes.
    #[error(transparent)]
    InvalidResults(#[from] crate::fleet::InvalidResults),
    /// A checkpoint or a summary could not be written as JSON.
    #[error("writing {what} as JSON failed: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Why a `DownloadCompleteLogFile` request (`complete`, a REST endpoint no SDK models) failed.
/// It reaches the caller as [`ShipError::Aws`] (operation [`DOWNLOAD_COMPLETE`]), classified as
/// the SDK's errors are, so its `errorType` is `Throttled` or `AwsError` like theirs.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("no credentials to sign with: {0}")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    #[error("the request could not be made or signed: {0}")]
    Request(String),
    /// No answer in time (`what`: the headers, or the next bytes of the body).
    #[error("no {what} within {seconds} s")]
    Timeout { what: &'static str, seconds: u64 },
    #[error("connection failed: {0}")]
    Transport(#[source] aws_smithy_runtime_api::client::result::ConnectorError),
    /// RDS answered with an error: its status, and the code and message of its error body.
    #[error("HTTP {status}: {}: {message}", code.as_deref().unwrap_or("no code"))]
    Refused {
        status: u16,
        code: Option<String>,
        message: String,
    },
    #[error("the file's stream broke off: {0}")]
    Body(#[source] aws_smithy_types::byte_stream::error::Error),
}

/// The operation name of a whole download in errors and logs.
pub const DOWNLOAD_COMPLETE: &str = "RDS DownloadCompleteLogFile";

impl DownloadError {
    /// Its classification: a refusal by its code and status (as `lambda_common::sdk` classifies
    /// SDK errors), anything else `Other` (a transport failure, retried by the caller first).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Refused { status, code, .. } => {
                lambda_common::sdk::classify_parts(code.as_deref(), Some(*status))
            }
            _ => ErrorKind::Other,
        }
    }
}

impl From<DownloadError> for ShipError {
    fn from(e: DownloadError) -> Self {
        Self::Aws {
            operation: DOWNLOAD_COMPLETE,
            kind: e.kind(),
            message: e.to_string(),
            source: Box::new(e),
        }
    }
}

/// Every `errorType` the function reports.
pub const ERROR_TYPES: [&str; 11] = [
    "InvalidRequest",
    "InvalidManifest",
    "InstanceNotSelected",
    "InvalidResults",
    "Throttled",
    "AwsError",
    "CheckpointConflict",
    "CorruptCheckpoint",
    "ChunkExists",
    "CompressionFailed",
    "SerializationFailed",
];

impl lambda_common::ErrorType for ShipError {
    fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "InvalidRequest",
            Self::Aws {
                kind: ErrorKind::Throttled,
                ..
            } => "Throttled",
            Self::Aws { .. } => "AwsError",
            Self::InvalidManifest(_) => "InvalidManifest",
            Self::InstanceNotSelected(_) => "InstanceNotSelected",
            Self::InvalidResults(_) => "InvalidResults",
            Self::CheckpointConflict(_) => "CheckpointConflict",
            Self::CorruptCheckpoint { .. } => "CorruptCheckpoint",
            Self::ChunkExists(_) => "ChunkExists",
            Self::Compress(_) => "CompressionFailed",
            Self::Json { .. } => "SerializationFailed",
        }
    }
}

lambda_common::impl_diagnostic!(ShipError);

impl ShipError {
    /// A failed SDK call, classified by `lambda_common::sdk::classify`, its `Code: message` kept
    /// for the summary and the whole error as the source.
    pub fn aws<E>(operation: &'static str, err: SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        Self::Aws {
            operation,
            kind: lambda_common::sdk::classify(&err),
            message: lambda_common::sdk::summary(&err),
            source: Box::new(err),
        }
    }

    /// The response of an AWS call that succeeded could not be read to its end (a transfer cut
    /// short, say).
    pub fn transfer(operation: &'static str, err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Aws {
            operation,
            kind: ErrorKind::Other,
            message: err.to_string(),
            source: Box::new(err),
        }
    }

    pub fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Self::Json {
            what: what.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_common::ErrorType;

    fn aws(kind: ErrorKind) -> ShipError {
        ShipError::Aws {
            operation: "RDS DescribeDBLogFiles",
            message: "Throttling: Rate exceeded".into(),
            kind,
            source: Box::new(std::io::Error::other("x")),
        }
    }

    #[test]
    fn every_error_has_a_listed_stable_type() {
        let json_error = || serde_json::from_str::<u8>("x").unwrap_err();
        let errors = [
            ShipError::InvalidRequest(InvalidRequest::new("action", "is unknown")),
            aws(ErrorKind::Throttled),
            aws(ErrorKind::Other),
            aws(ErrorKind::AccessDenied),
            ShipError::CheckpointConflict("db1".into()),
            ShipError::CorruptCheckpoint {
                instance: "db1".into(),
                source: json_error(),
            },
            ShipError::ChunkExists("k".into()),
            ShipError::InvalidManifest(crate::fleet::InvalidManifest {
                key: "k".into(),
                problem: "p".into(),
            }),
            ShipError::InstanceNotSelected(crate::fleet::NotSelected {
                instance: "db9".into(),
                key: "k".into(),
            }),
            ShipError::InvalidResults(crate::fleet::InvalidResults {
                key: "k".into(),
                problem: "p".into(),
            }),
            ShipError::Compress(std::io::Error::other("x")),
            ShipError::json("the summary", json_error()),
            refused(429, None),
            refused(400, Some("Throttling")),
            refused(403, Some("SignatureDoesNotMatch")),
            DownloadError::Timeout {
                what: "answer",
                seconds: 30,
            }
            .into(),
        ];
        let types: Vec<&str> = errors.iter().map(ErrorType::error_type).collect();
        assert_eq!(
            types,
            [
                "InvalidRequest",
                "Throttled",
                "AwsError",
                "AwsError",
                "CheckpointConflict",
                "CorruptCheckpoint",
                "ChunkExists",
                "InvalidManifest",
                "InstanceNotSelected",
                "InvalidResults",
                "CompressionFailed",
                "SerializationFailed",
                "Throttled",
                "Throttled",
                "AwsError",
                "AwsError"
            ]
        );
        assert!(types.iter().all(|t| ERROR_TYPES.contains(t)));
        assert!(ERROR_TYPES.iter().all(|t| types.contains(t)));
    }

    fn refused(status: u16, code: Option<&str>) -> ShipError {
        DownloadError::Refused {
            status,
            code: code.map(str::to_owned),
            message: "m".into(),
        }
        .into()
    }

    #[test]
    fn a_refused_whole_download_is_classified_like_an_sdk_error() {
        let e = refused(404, Some("DBInstanceNotFound"));
        assert!(matches!(
            &e,
            ShipError::Aws {
                operation: DOWNLOAD_COMPLETE,
                kind: ErrorKind::NotFound,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "RDS DownloadCompleteLogFile failed: HTTP 404: DBInstanceNotFound: m"
        );
        assert!(matches!(
            refused(403, None),
            ShipError::Aws {
                kind: ErrorKind::AccessDenied,
                ..
            }
        ));
    }

    #[test]
    fn a_json_failure_is_not_a_compression_failure() {
        let err = ShipError::json(
            "the checkpoint of db1",
            serde_json::from_str::<u8>("x").unwrap_err(),
        );
        assert_eq!(err.error_type(), "SerializationFailed");
        assert!(
            err.to_string()
                .starts_with("writing the checkpoint of db1 as JSON failed: "),
            "{err}"
        );
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "SerializationFailed");
    }
}
