//! One chunk of one file: read portion after portion through the [`Cursor`] into the
//! [`ChunkWriter`], then recorded in the checkpoint ahead of its upload (write-ahead), created
//! in S3 only if absent, and committed. A file that `catchup` says to download whole goes to
//! `whole.rs` instead, whose chunks are committed the same way.

use tracing::warn;

use crate::catchup::{self, Path};
use crate::checkpoint::{self, Pending, Work};
use crate::cursor::{Chunk, Cursor, Finish, Step};
use crate::error::ShipError;
use crate::keys;
use crate::portion::Next;
use crate::rds::{Portion, PortionRead};
use crate::run::{Deadline, Shipper, now_ms};
use crate::store::Stored;
use crate::summary::{InstanceSummary, Lost, kind};
use crate::upload::ChunkWriter;

/// How one chunk's shipping ended.
pub(crate) struct FileOutcome {
    /// Bytes of the chunk created (already counted in the summary).
    pub bytes: u64,
    pub out_of_time: bool,
    /// The chunk reached `max_chunk_bytes`: the file continues in a new chunk.
    pub chunk_full: bool,
}

impl FileOutcome {
    pub(crate) fn nothing(out_of_time: bool) -> Self {
        Self {
            bytes: 0,
            out_of_time,
            chunk_full: false,
        }
    }
}

/// How the reading of a chunk ended.
enum Reading {
    Ended {
        out_of_time: bool,
    },
    /// A binary file: it is not shipped.
    Binary,
}

impl Shipper {
    pub(crate) async fn ship_file(
        &self,
        instance: &str,
        st: &mut Stored,
        work: &Work,
        first: Option<Portion>,
        deadline: Deadline,
        s: &mut InstanceSummary,
    ) -> Result<FileOutcome, ShipError> {
        let whole = self.config.catchup.enabled && self.rds.downloads_whole();
        let resumed = work;
        let work = &match catchup::path(work.clone(), whole) {
            Path::Whole => return self.ship_whole(instance, st, work, deadline, s).await,
            Path::Portions(w) => w,
        };
        // `first` stands in for a read at the work's own marker and offset: not for a work the
        // path rewrote (a file begun by a whole download, read past from its beginning).
        let first = first.filter(|_| {
            (&work.marker, work.offset, work.skip) == (&resumed.marker, resumed.offset, resumed.skip)
        });
        let mut cursor = Cursor::new(work, st.cp.files.get(&work.name), self.config.max_chunk_bytes);
        // The date partition is the day the chunk is written: a file written for weeks (an
        // Oracle alert log, say) keeps landing under recent dates, where Athena looks for it.
        let date = keys::date_from_epoch_ms(now_ms());
        let (prefix, start) = (&self.config.prefix, cursor.start());
        let key = keys::chunk_key(prefix, instance, &work.name, work.generation, &date, start);
        let mut buffer = self.part_buffer.lock().await;
        let mut writer = ChunkWriter::new(
            &self.s3,
            &self.config.bucket,
            key,
            self.config.part_size,
            &mut buffer,
        );
        let read = self
            .read_chunk(instance, work, first, &mut cursor, &mut writer, deadline, s)
            .await;
        let out_of_time = match read {
            Ok(Reading::Ended { out_of_time }) => out_of_time,
            Ok(Reading::Binary) => {
                writer.abort().await;
                checkpoint::skip_file(&mut st.cp, work);
                self.checkpoints.save(st).await?;
                return Ok(FileOutcome::nothing(false));
            }
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        };
        self.record(st, work, writer, cursor.finish(), deadline, out_of_time, s)
            .await
    }

    /// Records what the reading found: a chunk (written ahead, uploaded, committed), progress
    /// without a chunk, or the file as seen.
    #[allow(clippy::too_many_arguments)] // the chunk's whole context, passed through once
    async fn record(
        &self,
        st: &mut Stored,
        work: &Work,
        writer: ChunkWriter<'_>,
        finish: Finish,
        deadline: Deadline,
        out_of_time: bool,
        s: &mut InstanceSummary,
    ) -> Result<FileOutcome, ShipError> {
        match finish {
            Finish::Chunk(chunk) => {
                let (bytes, chunk_full) = (chunk.end - chunk.start, chunk.full);
                self.commit(st, work, writer, chunk, deadline, s).await?;
                return Ok(FileOutcome {
                    bytes,
                    out_of_time,
                    chunk_full,
                });
            }
            Finish::ReadPast {
                marker,
                offset,
                head,
                lossy,
            } => {
                // Everything read was already shipped under the name this file had before.
                writer.abort().await;
                checkpoint::read_past(&mut st.cp, work, marker, offset, head, lossy);
                self.checkpoints.save(st).await?;
            }
            Finish::Untouched => {
                writer.abort().await;
                // Saved now, or a file with nothing to read would be listed and read every run.
                if checkpoint::touch(&mut st.cp, work) {
                    self.checkpoints.save(st).await?;
                }
            }
        }
        Ok(FileOutcome::nothing(out_of_time))
    }

    /// Portion after portion into the writer, as the cursor says, until the end of the file, a
    /// full chunk or the deadline. `first`, when given, is the portion a read at the work's own
    /// marker would return (already read with the file's beginning): it is taken instead.
    #[allow(clippy::too_many_arguments)] // the reading's whole context, passed through once
    async fn read_chunk(
        &self,
        instance: &str,
        work: &Work,
        mut first: Option<Portion>,
        cursor: &mut Cursor,
        writer: &mut ChunkWriter<'_>,
        deadline: Deadline,
        s: &mut InstanceSummary,
    ) -> Result<Reading, ShipError> {
        let name = &work.name;
        loop {
            if deadline.near(self.config.reserve / 2) {
                return Ok(Reading::Ended { out_of_time: true });
            }
            if cursor.chunk_full() {
                return Ok(Reading::Ended { out_of_time: false });
            }
            let prefetched = first.take().filter(|_| cursor.marker() == work.marker);
            let read = match prefetched {
                Some(p) => PortionRead::Portion(p),
                None => {
                    self.rds
                        .read_portion(instance, name, cursor.marker(), cursor.lines())
                        .await?
                }
            };
            let portion = match read {
                PortionRead::Portion(p) => p,
                PortionRead::Gone => {
                    s.anomaly(
                        kind::FILE_GONE_WHILE_READ,
                        format!("{name}: removed or rotated away while being read"),
                    );
                    return Ok(Reading::Ended { out_of_time: false });
                }
                PortionRead::Binary => {
                    warn!(file = %name, "binary log file skipped: RDS serves it only through DownloadCompleteLogFile");
                    s.anomaly(kind::BINARY_FILE_SKIPPED, format!("{name}: binary file skipped"));
                    return Ok(Reading::Binary);
                }
            };
            let step = cursor.advance(&portion.data, portion.marker.as_deref(), portion.pending);
            let Step::Read {
                ship,
                truncated_near,
                next,
            } = step
            else {
                continue; // RDS cut the portion: asked again for fewer lines
            };
            if let Some(at) = truncated_near {
                s.anomaly(
                    kind::LINE_TRUNCATED,
                    format!("{name}: a line over 1 MB near byte {at} was truncated by RDS"),
                );
            }
            if !ship.is_empty() {
                writer.write(ship).await?;
            }
            match next {
                Next::Continue => {}
                Next::Done => return Ok(Reading::Ended { out_of_time: false }),
                Next::Stalled => {
                    s.anomaly(
                        kind::READ_STALLED,
                        format!("{name}: RDS returned no data before the listed size; resuming next run"),
                    );
                    return Ok(Reading::Ended { out_of_time: false });
                }
            }
        }
    }

    /// Write-ahead: the chunk is recorded before it exists (with the recording run's deadline),
    /// created only if absent, then committed. Its bytes count as shipped once the object is
    /// created, whether or not the commit that follows succeeds (the next run commits it then);
    /// the bytes RDS dropped from lines it cut count as lost once the chunk is committed, in the
    /// checkpoint write that moves past them (a re-read after a failed commit counts them then).
    pub(crate) async fn commit(
        &self,
        st: &mut Stored,
        work: &Work,
        writer: ChunkWriter<'_>,
        chunk: Chunk,
        deadline: Deadline,
        s: &mut InstanceSummary,
    ) -> Result<(), ShipError> {
        let (bytes, cuts, dropped) = (chunk.end - chunk.start, chunk.cuts, chunk.dropped);
        let pending = Pending {
            key: writer.key().to_owned(),
            start: chunk.start,
            end: chunk.end,
            end_marker: chunk.end_marker,
            until: checkpoint::pending_until(now_ms(), deadline.hard_remaining()),
        };
        checkpoint::begin_chunk(&mut st.cp, work, pending, chunk.head, chunk.lossy);
        if let Err(e) = self.checkpoints.save(st).await {
            writer.abort().await;
            return Err(e);
        }
        writer.finish().await?;
        s.bytes += bytes;
        s.objects += 1;
        checkpoint::commit_chunk(&mut st.cp, &work.name, work.size, work.last_written);
        self.checkpoints.save(st).await?;
        if cuts > 0 {
            s.lost(Lost {
                kind: kind::LINE_TRUNCATED,
                file: work.name.clone(),
                bytes: dropped.unwrap_or(0),
                lower_bound: dropped.is_none(),
            });
        }
        Ok(())
    }
}
