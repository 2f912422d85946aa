//! A file downloaded whole (`catchup::Path::Whole`): one `DownloadCompleteLogFile` request,
//! streamed through `catchup::Stream` into chunks, each written ahead, created only if absent and
//! committed exactly as the portion path's chunks are (`file.rs`), through the one part buffer:
//! memory stays one part plus one frame of the stream, whatever the file's size.
//!
//! At the deadline (half the reserve before it, as for portions) the chunk streamed so far is
//! committed and the next run downloads the file whole again, reading past what was shipped; a
//! failure mid-stream aborts the chunk's multipart upload and records nothing, so the chunk is
//! redone. A crash anywhere is resumed by the checkpoint's write-ahead record as for portions.

use std::time::Duration;

use aws_smithy_types::byte_stream::ByteStream;
use bytes::Bytes;
use tracing::info;

use crate::catchup::Stream;
use crate::checkpoint::{self, Work};
use crate::complete::CompleteDownloads;
use crate::error::{DownloadError, ShipError};
use crate::file::FileOutcome;
use crate::keys;
use crate::rds::WholeRead;
use crate::run::{Deadline, Shipper, now_ms};
use crate::store::Stored;
use crate::summary::{InstanceSummary, kind};
use crate::upload::ChunkWriter;

/// The longest wait for the stream's next bytes before the download counts as stalled.
const FRAME_TIMEOUT: Duration = Duration::from_secs(60);

/// How a chunk's streaming ended.
enum Ended {
    /// The chunk holds its size; the file goes on.
    Full,
    /// The end of the file.
    End,
    /// The deadline.
    OutOfTime,
}

impl Shipper {
    /// Downloads files that have stopped growing whole (see `catchup`); without this, every file
    /// is read in portions.
    pub fn with_complete_downloads(mut self, complete: CompleteDownloads) -> Self {
        self.rds.set_complete_downloads(complete);
        self
    }

    /// Ships `work`'s file from one whole download, chunk after chunk, past the `work.offset`
    /// bytes already shipped.
    pub(crate) async fn ship_whole(
        &self,
        instance: &str,
        st: &mut Stored,
        work: &Work,
        deadline: Deadline,
        s: &mut InstanceSummary,
    ) -> Result<FileOutcome, ShipError> {
        let mut body = match self.rds.download_whole(instance, &work.name).await? {
            WholeRead::Body(body) => body,
            WholeRead::Gone => {
                s.anomaly(
                    kind::FILE_GONE_WHILE_READ,
                    format!("{}: removed or rotated away before its whole download", work.name),
                );
                return Ok(FileOutcome::nothing(false));
            }
        };
        info!(instance, file = %work.name, from = work.offset, size = work.size, "downloading a file whole");
        let mut stream = Stream::new(work.offset, self.config.max_chunk_bytes);
        let (mut work, mut carry, mut bytes) = (work.clone(), Bytes::new(), 0);
        let date = keys::date_from_epoch_ms(now_ms());
        let mut buffer = self.part_buffer.lock().await;
        loop {
            let (prefix, bucket) = (&self.config.prefix, &self.config.bucket);
            let key = keys::chunk_key(prefix, instance, &work.name, work.generation, &date, work.offset);
            let mut writer = ChunkWriter::new(&self.s3, bucket, key, self.config.part_size, &mut buffer);
            let ended = match self
                .stream_chunk(&mut body, &mut carry, &mut stream, &mut writer, deadline)
                .await
            {
                Ok(ended) => ended,
                Err(e) => {
                    writer.abort().await;
                    return Err(e);
                }
            };
            match stream.end_chunk(matches!(ended, Ended::Full)) {
                Some(chunk) => {
                    bytes += chunk.end - chunk.start;
                    self.commit(st, &work, writer, chunk, deadline, s).await?;
                }
                None => {
                    writer.abort().await;
                    // Nothing past what was shipped: seen, as a file with nothing to read is.
                    if matches!(ended, Ended::End) && checkpoint::touch(&mut st.cp, &work) {
                        self.checkpoints.save(st).await?;
                    }
                }
            }
            let out_of_time = match ended {
                Ended::Full => match checkpoint::next_chunk(&st.cp, work.clone()) {
                    Some(next) => {
                        work = next;
                        continue;
                    }
                    None => false,
                },
                Ended::End => false,
                Ended::OutOfTime => true,
            };
            info!(instance, file = %work.name, bytes, out_of_time, "whole download shipped");
            return Ok(FileOutcome {
                bytes,
                out_of_time,
                chunk_full: false,
            });
        }
    }

    /// The stream into `writer` until the chunk is full, the file ends or the deadline nears;
    /// `carry` holds the bytes received and not yet taken in (the rest of a frame after a full
    /// chunk).
    async fn stream_chunk(
        &self,
        body: &mut ByteStream,
        carry: &mut Bytes,
        stream: &mut Stream,
        writer: &mut ChunkWriter<'_>,
        deadline: Deadline,
    ) -> Result<Ended, ShipError> {
        let margin = self.config.reserve / 2;
        loop {
            if carry.is_empty() {
                if deadline.near(margin) {
                    return Ok(Ended::OutOfTime);
                }
                let left = deadline.remaining().map(|l| l.saturating_sub(margin));
                let wait = left.map_or(FRAME_TIMEOUT, |l| l.min(FRAME_TIMEOUT));
                match tokio::time::timeout(wait, body.next()).await {
                    Err(_) if wait < FRAME_TIMEOUT => return Ok(Ended::OutOfTime),
                    Err(_) => {
                        let seconds = FRAME_TIMEOUT.as_secs();
                        let what = "bytes of the file";
                        return Err(DownloadError::Timeout { what, seconds }.into());
                    }
                    Ok(None) => return Ok(Ended::End),
                    Ok(Some(Err(e))) => return Err(DownloadError::Body(e).into()),
                    Ok(Some(Ok(frame))) => *carry = frame,
                }
            }
            let fed = stream.feed(carry);
            let ship = carry.slice(fed.past..fed.past + fed.ship);
            if !ship.is_empty() {
                writer.write(&ship).await?;
            }
            *carry = carry.slice(fed.past + fed.ship..);
            if fed.full {
                return Ok(Ended::Full);
            }
        }
    }
}
