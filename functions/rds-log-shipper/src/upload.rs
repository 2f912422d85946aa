//! One chunk on its way to S3: gzip-compressed as it is read, uploaded in multipart parts once
//! the compressed data reaches the part size, created only if it does not exist yet.

use std::io::Write;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{BufMut, Bytes, BytesMut};
use flate2::Compression;
use flate2::write::GzEncoder;
use lambda_common::sdk::{ErrorKind, classify};
use tracing::warn;

use crate::error::ShipError;

/// Input is fed to the compressor in slices this large and the part is cut as soon as the part
/// size is reached, so what one slice adds (about the slice at worst, plus what the compressor
/// held back) stays within the part buffer's slack and the buffer does not reallocate.
const FEED: usize = 64 * 1024;
const PART_SLACK: usize = 2 * FEED;

/// The writer of one chunk object. The compressed bytes go into one part buffer that lives as
/// long as the `Shipper` and is reused for every part of every chunk, so memory is bounded by
/// the part size whatever the file size (and the allocator sees no churn of multi-megabyte
/// blocks that it might not give back).
pub struct ChunkWriter<'a> {
    s3: &'a aws_sdk_s3::Client,
    bucket: &'a str,
    key: String,
    encoder: GzEncoder<bytes::buf::Writer<&'a mut BytesMut>>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    part_size: usize,
}

impl<'a> ChunkWriter<'a> {
    /// A writer of `key` whose compressed bytes go into `buffer` (cleared, and grown once to a
    /// part and its slack).
    pub fn new(
        s3: &'a aws_sdk_s3::Client,
        bucket: &'a str,
        key: String,
        part_size: usize,
        buffer: &'a mut BytesMut,
    ) -> Self {
        buffer.clear();
        buffer.reserve(part_size + PART_SLACK);
        Self {
            s3,
            bucket,
            key,
            encoder: GzEncoder::new(buffer.writer(), Compression::default()),
            upload_id: None,
            parts: Vec::new(),
            part_size,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    fn buffer(&mut self) -> &mut BytesMut {
        self.encoder.get_mut().get_mut()
    }

    /// Compresses `data` into the part buffer, uploading each part as it fills.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), ShipError> {
        for slice in data.chunks(FEED) {
            self.encoder.write_all(slice)?;
            if self.encoder.get_ref().get_ref().len() >= self.part_size {
                // The part is split off the buffer without copying; once S3 has it and the SDK
                // has dropped it, `reserve` takes the same allocation back (it allocates anew only
                // if something still holds the part).
                let body = self.buffer().split().freeze();
                self.upload_part(body).await?;
                let capacity = self.part_size + PART_SLACK;
                self.buffer().reserve(capacity);
            }
        }
        Ok(())
    }

    async fn upload_part(&mut self, body: Bytes) -> Result<(), ShipError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let out = self
                    .s3
                    .create_multipart_upload()
                    .bucket(self.bucket)
                    .key(&self.key)
                    .content_type("application/gzip")
                    .send()
                    .await
                    .map_err(|e| ShipError::aws("S3 CreateMultipartUpload", e))?;
                let id = out.upload_id().unwrap_or_default().to_owned();
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = i32::try_from(self.parts.len() + 1).unwrap_or(i32::MAX);
        let out = self
            .s3
            .upload_part()
            .bucket(self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| ShipError::aws("S3 UploadPart", e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build(),
        );
        Ok(())
    }

    /// Creates the object, only if it does not exist yet (`If-None-Match: *`): one PUT for a
    /// chunk smaller than a part, else the last part and the completion.
    pub async fn finish(mut self) -> Result<(), ShipError> {
        if let Err(e) = self.encoder.try_finish() {
            self.abort().await;
            return Err(e.into());
        }
        let rest = self.buffer().split().freeze();
        let Some(upload_id) = self.upload_id.clone() else {
            return self.put(rest).await;
        };
        if let Err(e) = self.upload_part(rest).await {
            abort_upload(self.s3, self.bucket, &self.key, &upload_id).await;
            return Err(e);
        }
        let done = self
            .s3
            .complete_multipart_upload()
            .bucket(self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await;
        match done {
            Ok(_) => Ok(()),
            Err(e) => {
                abort_upload(self.s3, self.bucket, &self.key, &upload_id).await;
                if classify(&e) == ErrorKind::PreconditionFailed {
                    Err(ShipError::ChunkExists(self.key))
                } else {
                    Err(ShipError::aws("S3 CompleteMultipartUpload", e))
                }
            }
        }
    }

    /// The whole chunk in one PUT.
    async fn put(self, body: Bytes) -> Result<(), ShipError> {
        let sent = self
            .s3
            .put_object()
            .bucket(self.bucket)
            .key(&self.key)
            .content_type("application/gzip")
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if classify(&e) == ErrorKind::PreconditionFailed => Err(ShipError::ChunkExists(self.key)),
            Err(e) => Err(ShipError::aws("S3 PutObject", e)),
        }
    }

    /// Gives the chunk up: the parts uploaded so far are removed.
    pub async fn abort(self) {
        if let Some(id) = &self.upload_id {
            abort_upload(self.s3, self.bucket, &self.key, id).await;
        }
    }
}

/// Best effort: parts of an upload that is not completed are also removed by the bucket's
/// lifecycle rule.
async fn abort_upload(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, upload_id: &str) {
    if let Err(e) = s3
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        warn!(key, error = %lambda_common::sdk::summary(&e), "multipart upload not aborted");
    }
}
