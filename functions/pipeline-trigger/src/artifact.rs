//! The output artifact, decided from plain data: where it goes, under which key, and its bytes
//! (a zip holding the execution's output as one JSON file). No I/O here: the write is
//! [`crate::sdk::put_output_artifact`].

use std::io::{Cursor, Write};

use crate::event::{ArtifactCredentials, JobData};

/// The one file in the output artifact's zip: the execution's output JSON, as Step Functions
/// returned it.
pub const ENTRY_NAME: &str = "output.json";

/// The largest execution output the artifact takes: Step Functions' own payload limit (256 KiB),
/// so a larger one means the output did not come from Step Functions as documented.
pub const MAX_OUTPUT_BYTES: usize = 262_144;

/// Why the output artifact could not be made; each one fails the job.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArtifactError {
    #[error("the job's outputArtifacts is malformed: {0}")]
    Malformed(String),
    #[error(
        "the action declares {0} output artifacts; the trigger writes one, the execution's output \
         (declare at most one)"
    )]
    TooMany(usize),
    #[error("output artifact {0} has no S3 location in the job data")]
    NoLocation(String),
    #[error("the job data carries no usable artifactCredentials to write output artifact {0}")]
    NoCredentials(String),
    #[error("the job's encryption key has type {0}; only KMS keys are supported")]
    UnsupportedKey(String),
    #[error("the job's encryptionKey is malformed: {0}")]
    MalformedKey(String),
    #[error("the execution returned no output, so output artifact {0} cannot be written")]
    NoOutput(String),
    #[error(
        "the execution's output is {size} bytes, over the {max}-byte limit of output artifact \
         {name} (Step Functions' own payload limit)"
    )]
    TooLarge { name: String, size: usize, max: usize },
    #[error("could not zip the execution's output: {0}")]
    Zip(String),
}

/// Where and how the output artifact is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The artifact's name in the pipeline (for messages).
    pub name: String,
    pub bucket: &'a str,
    pub key: &'a str,
    /// The job's KMS key (`encryptionKey.id`), for SSE-KMS; `None` for the bucket's default.
    pub kms_key_id: Option<&'a str>,
    pub credentials: &'a ArtifactCredentials,
}

/// The output artifact the action declares, if any: `Ok(None)` when it declares none.
pub fn target(data: &JobData) -> Result<Option<Target<'_>>, ArtifactError> {
    let artifacts = data
        .output_artifacts
        .as_ref()
        .map_err(|e| ArtifactError::Malformed(e.clone()))?;
    let artifact = match artifacts.as_slice() {
        [] => return Ok(None),
        [one] => one,
        many => return Err(ArtifactError::TooMany(many.len())),
    };
    let name = artifact
        .name
        .as_ref()
        .and_then(|n| n.as_str())
        .unwrap_or("(unnamed)")
        .to_owned();
    let Some(s3) = artifact.location.as_ref().and_then(|l| l.s3_location.as_ref()) else {
        return Err(ArtifactError::NoLocation(name));
    };
    let Some(Ok(credentials)) = data.artifact_credentials.as_ref() else {
        return Err(ArtifactError::NoCredentials(name));
    };
    let kms_key_id = match &data.encryption_key {
        None => None,
        Some(Err(e)) => return Err(ArtifactError::MalformedKey(e.clone())),
        Some(Ok(key)) => match key.kind.as_deref() {
            None | Some("KMS") if key.id.trim().is_empty() => {
                return Err(ArtifactError::MalformedKey("its id is empty".into()));
            }
            None | Some("KMS") => Some(key.id.as_str()),
            Some(other) => return Err(ArtifactError::UnsupportedKey(other.to_owned())),
        },
    };
    Ok(Some(Target {
        name,
        bucket: &s3.bucket_name,
        key: &s3.object_key,
        kms_key_id,
        credentials,
    }))
}

/// The artifact's bytes: a zip with the output as [`ENTRY_NAME`] (deflated).
pub fn zip_output(name: &str, output: Option<&str>) -> Result<Vec<u8>, ArtifactError> {
    let output = output.ok_or_else(|| ArtifactError::NoOutput(name.to_owned()))?;
    if output.len() > MAX_OUTPUT_BYTES {
        return Err(ArtifactError::TooLarge {
            name: name.to_owned(),
            size: output.len(),
            max: MAX_OUTPUT_BYTES,
        });
    }
    let zip_error = |e: &dyn std::fmt::Display| ArtifactError::Zip(e.to_string());
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::with_capacity(output.len() / 2 + 256)));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    zip.start_file(ENTRY_NAME, options).map_err(|e| zip_error(&e))?;
    zip.write_all(output.as_bytes()).map_err(|e| zip_error(&e))?;
    Ok(zip.finish().map_err(|e| zip_error(&e))?.into_inner())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use serde_json::json;

    use super::*;
    use crate::event::job_data;

    fn data(extra: serde_json::Value) -> JobData {
        let mut d = json!({
            "artifactCredentials": {"accessKeyId": "AKIA1", "secretAccessKey": "s3cr3t",
                "sessionToken": "t0k3n", "expirationTime": 1_700_000_000_000u64},
        });
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        job_data(&json!({"CodePipeline.job": {"id": "j", "data": d}})).unwrap()
    }

    fn output_artifact(name: &str, key: &str) -> serde_json::Value {
        json!({"name": name, "location": {"type": "S3",
            "s3Location": {"bucketName": "artifacts", "objectKey": key}}})
    }

    #[test]
    fn no_declared_artifact_means_nothing_to_write() {
        assert_eq!(target(&data(json!({}))), Ok(None));
        assert_eq!(target(&data(json!({"outputArtifacts": []}))), Ok(None));
        assert_eq!(target(&data(json!({"outputArtifacts": null}))), Ok(None));
        assert_eq!(target(&data(json!({"encryptionKey": {"id": 5}}))), Ok(None));
    }

    #[test]
    fn the_declared_artifact_is_the_target_with_the_jobs_key() {
        let d = data(json!({
            "outputArtifacts": [output_artifact("DeployOutput", "MyPipeline/DeployOutp/Xyz12ab")],
            "encryptionKey": {"id": "arn:aws:kms:us-east-1:1:key/k", "type": "KMS"},
        }));
        let t = target(&d).unwrap().unwrap();
        assert_eq!(t.name, "DeployOutput");
        assert_eq!((t.bucket, t.key), ("artifacts", "MyPipeline/DeployOutp/Xyz12ab"));
        assert_eq!(t.kms_key_id, Some("arn:aws:kms:us-east-1:1:key/k"));
        let plain = data(json!({"outputArtifacts": [output_artifact("Out", "k")]}));
        assert_eq!(target(&plain).unwrap().unwrap().kms_key_id, None);
    }

    #[test]
    fn an_unusable_declaration_is_a_named_error() {
        let cases = [
            (json!({"outputArtifacts": "anything"}), "malformed"),
            (
                json!({"outputArtifacts": [output_artifact("A", "a"), output_artifact("B", "b")]}),
                "declares 2 output artifacts",
            ),
            (
                json!({"outputArtifacts": [{"name": "A"}]}),
                "A has no S3 location",
            ),
            (
                json!({"outputArtifacts": [output_artifact("A", "a")], "artifactCredentials": null}),
                "no usable artifactCredentials to write output artifact A",
            ),
            (
                json!({"outputArtifacts": [output_artifact("A", "a")], "artifactCredentials": 42}),
                "no usable artifactCredentials",
            ),
            (
                json!({"outputArtifacts": [output_artifact("A", "a")],
                    "encryptionKey": {"id": "k", "type": "AES"}}),
                "has type AES; only KMS",
            ),
            (
                json!({"outputArtifacts": [output_artifact("A", "a")], "encryptionKey": {"id": 5}}),
                "the job's encryptionKey is malformed: invalid type: integer `5`",
            ),
            (
                json!({"outputArtifacts": [output_artifact("A", "a")], "encryptionKey": {"type": "KMS"}}),
                "the job's encryptionKey is malformed: missing field `id`",
            ),
            (
                json!({"outputArtifacts": [output_artifact("A", "a")],
                    "encryptionKey": {"id": " ", "type": "KMS"}}),
                "the job's encryptionKey is malformed: its id is empty",
            ),
        ];
        for (extra, expected) in cases {
            let err = target(&data(extra.clone())).unwrap_err();
            assert!(err.to_string().contains(expected), "{extra}: {err}");
        }
    }

    #[test]
    fn the_zip_holds_the_output_as_one_json_file() {
        let output = json!({"stackName": "prod-app", "changes": [1, 2, 3]}).to_string();
        let bytes = zip_output("Out", Some(&output)).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut file = archive.by_name(ENTRY_NAME).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, output);
    }

    #[test]
    fn a_missing_or_oversized_output_is_refused() {
        assert_eq!(
            zip_output("Out", None),
            Err(ArtifactError::NoOutput("Out".into()))
        );
        let at_limit = format!("\"{}\"", "x".repeat(MAX_OUTPUT_BYTES - 2));
        assert!(zip_output("Out", Some(&at_limit)).is_ok());
        let over = format!("\"{}\"", "x".repeat(MAX_OUTPUT_BYTES - 1));
        let err = zip_output("Out", Some(&over)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the execution's output is 262145 bytes, over the 262144-byte limit of output artifact Out \
             (Step Functions' own payload limit)"
        );
    }

    #[test]
    fn credentials_never_print() {
        let d = data(json!({"outputArtifacts": [output_artifact("A", "a")]}));
        let t = target(&d).unwrap().unwrap();
        let printed = format!("{t:?} {d:?}");
        for secret in ["AKIA1", "s3cr3t", "t0k3n"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("ArtifactCredentials(redacted)"));
    }
}
