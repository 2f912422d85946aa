//! The S3 side of the checkpoints: read one with its ETag, replace it only if it is still the
//! version read (compare-and-swap), and tell whether a chunk recorded as pending reached S3.

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use lambda_common::sdk::{ErrorKind, classify};

use crate::checkpoint::Checkpoint;
use crate::error::ShipError;
use crate::keys;

/// An instance's checkpoint and the ETag of the version it was read as (or last saved as):
/// the next save replaces exactly that version, or fails.
#[derive(Debug, Clone)]
pub struct Stored {
    pub cp: Checkpoint,
    etag: Option<String>,
    /// Changed since it was read or last saved, by a change that is saved with the next save
    /// whatever it is (a listing recorded).
    pub dirty: bool,
}

/// The checkpoints in the archive bucket, under `<prefix>/_state/`.
pub struct Checkpoints {
    s3: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl Checkpoints {
    pub fn new(s3: aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Self {
        Self {
            s3,
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    /// The instance's checkpoint; a new one if it has none yet.
    pub async fn read(&self, instance: &str) -> Result<Stored, ShipError> {
        const OPERATION: &str = "S3 GetObject (checkpoint)";
        let key = keys::checkpoint_key(&self.prefix, instance);
        match self.s3.get_object().bucket(&self.bucket).key(&key).send().await {
            Ok(out) => {
                let etag = out.e_tag().map(str::to_owned);
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| ShipError::transfer(OPERATION, e))?
                    .into_bytes();
                let cp = serde_json::from_slice(&bytes).map_err(|source| ShipError::CorruptCheckpoint {
                    instance: instance.to_owned(),
                    source,
                })?;
                Ok(Stored {
                    cp,
                    etag,
                    dirty: false,
                })
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(Stored {
                cp: Checkpoint::new(instance),
                etag: None,
                dirty: false,
            }),
            Err(e) => Err(ShipError::aws(OPERATION, e)),
        }
    }

    /// Compare-and-swap: replaces the checkpoint only if it is still the one this run read
    /// (`If-Match`), or creates it only if there is none (`If-None-Match: *`).
    pub async fn save(&self, stored: &mut Stored) -> Result<(), ShipError> {
        let cp = &stored.cp;
        let key = keys::checkpoint_key(&self.prefix, &cp.instance);
        let body = serde_json::to_vec(cp)
            .map_err(|e| ShipError::json(format!("the checkpoint of {}", cp.instance), e))?;
        let req = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        let req = match stored.etag.as_deref() {
            Some(tag) => req.if_match(tag),
            None => req.if_none_match("*"),
        };
        match req.send().await {
            Ok(out) => {
                stored.etag = out.e_tag().map(str::to_owned);
                stored.dirty = false;
                Ok(())
            }
            // 412, or 409 when another conditional write to the key is in progress.
            Err(e)
                if classify(&e) == ErrorKind::PreconditionFailed
                    || e.code() == Some("ConditionalRequestConflict") =>
            {
                Err(ShipError::CheckpointConflict(cp.instance.clone()))
            }
            Err(e) => Err(ShipError::aws("S3 PutObject (checkpoint)", e)),
        }
    }

    /// Whether an object exists (HeadObject; 404 for a missing one, given `s3:ListBucket`).
    pub async fn exists(&self, key: &str) -> Result<bool, ShipError> {
        match self.s3.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) if classify(&e) == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ShipError::aws("S3 HeadObject", e)),
        }
    }
}
