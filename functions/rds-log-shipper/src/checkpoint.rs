//! The per-instance checkpoint and the plan derived from it.
//!
//! The checkpoint lives in S3 next to the data and is replaced only with compare-and-swap
//! (`If-Match`), after the data it accounts for is durably in S3. A chunk is first recorded as
//! `pending` (write-ahead), then uploaded with `If-None-Match: *`, then committed: a run that
//! crashes anywhere in between is resumed by the next run without losing or duplicating a byte.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const VERSION: u32 = 1;

/// A file as `DescribeDBLogFiles` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    pub name: String,
    pub size: u64,
    /// Epoch milliseconds.
    pub last_written: i64,
}

/// A chunk recorded before its upload: after a crash, the next run looks for this exact key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub key: String,
    pub start: u64,
    pub end: u64,
    /// The RDS marker after the chunk's last byte, exactly as RDS returned it.
    pub end_marker: String,
    /// The deadline (epoch ms) of the run that recorded it, plus a margin for clock skew: until
    /// then that run may still be uploading the chunk, and a missing object is no proof that the
    /// upload failed. 0 in checkpoints written before this field.
    #[serde(default)]
    pub until: i64,
}

/// Whether a pending chunk without an object may be forgotten: only once the run that recorded
/// it cannot still be running (an overlapping run must not re-read and re-key its data).
pub fn pending_expired(p: &Pending, now_ms: i64) -> bool {
    now_ms >= p.until
}

/// Until when a run may still be uploading the chunk it records now: its deadline (`left` from
/// `now_ms`; the longest Lambda run when it has none) plus a minute for clock differences
/// between hosts.
pub fn pending_until(now_ms: i64, left: Option<Duration>) -> i64 {
    const LONGEST_RUN: Duration = Duration::from_secs(15 * 60);
    let left = left.unwrap_or(LONGEST_RUN);
    now_ms + i64::try_from(left.as_millis()).unwrap_or(i64::MAX / 2) + 60_000
}

/// The marker of a file shipped so far by a whole download (`catchup`, `complete`): RDS returns
/// no marker there, and none can be made from a byte offset, so the rest is downloaded whole
/// again, reading past the bytes already shipped. Never an RDS marker (RDS's empty markers are
/// not kept: see `Cursor::advance`).
pub const UNMARKED: &str = "";

/// Bytes of a file's beginning kept in its checkpoint entry, to recognise the file later.
pub const HEAD_BYTES: usize = 1024;

/// The beginning of a file as kept in its checkpoint entry: up to `HEAD_BYTES`, cut at a
/// character boundary.
pub fn head_of(data: &str) -> String {
    let mut end = data.len().min(HEAD_BYTES);
    while !data.is_char_boundary(end) {
        end -= 1;
    }
    data[..end].to_owned()
}

/// Whether a file that starts with `beginning` (read from marker "0") is still the file whose
/// beginning was recorded as `head`: one must be a prefix of the other. A file that was replaced
/// under the same name (MySQL's `.log.N` reused the next day, SQL Server's `ERROR.N` shifted, an
/// instance recreated under the same identifier) starts differently and must be read again from
/// the beginning, whatever its size.
pub fn same_file(head: &str, beginning: &str) -> bool {
    let n = head.len().min(beginning.len());
    head.as_bytes()[..n] == beginning.as_bytes()[..n]
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileState {
    /// Where to resume: the RDS marker exactly as returned ("0" = the beginning), or
    /// [`UNMARKED`] after a whole download.
    pub marker: String,
    /// Bytes of the file already in S3.
    pub shipped: u64,
    /// Size and last-written time at the last listing.
    pub size: u64,
    pub last_written: i64,
    /// Incremented when the file starts over under the same name (rotated in place).
    pub generation: u32,
    /// The UTC date (YYYY-MM-DD) this generation of the file was first seen. (A chunk's key has
    /// the date it is written.)
    pub date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// The file's first bytes (see `head_of`); absent in checkpoints written before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// RDS truncated a line over 1 MB in this generation: `shipped` counts fewer bytes than the
    /// file holds, so the end of the file is known from RDS (`AdditionalDataPending` false) and
    /// changes from the listed size, not from `shipped`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lossy: bool,
    /// Bytes at the file's beginning that were shipped under another name: the file is an
    /// earlier file renamed by rotation (MySQL's `x.log` -> `x.log.<hour>`), whose first `skip`
    /// bytes are in that file's objects. They are read past, not shipped again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip: u64,
    /// This generation's bytes were taken over by a renamed copy (see `skip`); no other file
    /// can continue it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub claimed: bool,
    /// The file as the last listing this checkpoint recorded saw it (every listing that names
    /// the file records it, whether or not the run got to the file). `size` above is the size
    /// at the last chunk committed, so it stays what the plan compares; this is what loss
    /// detection counts from. Absent in checkpoints written before this field (then `size` is
    /// the last size known: a lower bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<Seen>,
    /// RDS refused to serve this generation in portions (a binary file, see `skip_file`):
    /// `shipped` is how far it was skipped, and nothing of it is in S3 until it is downloaded
    /// whole once it stopped growing (`catchup::mark`). Cleared by the first chunk committed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub binary: bool,
}

/// A file's size and last-written time (epoch ms) in a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seen {
    pub size: u64,
    pub last_written: i64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub version: u32,
    pub instance: String,
    /// Epoch ms of the last complete listing (entries are dropped only after one).
    #[serde(default)]
    pub full_listing_at: i64,
    pub files: BTreeMap<String, FileState>,
    /// Generations replaced under their name before a renamed copy continued them: kept (for
    /// `RETIRED_FOR_MS`) so that a copy listed later can still continue them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<Retired>,
}

/// A file generation that was shipped in part and then replaced under its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retired {
    pub name: String,
    pub generation: u32,
    pub head: String,
    pub shipped: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lossy: bool,
    /// Its file's last-written time (epoch ms) when it was replaced.
    pub at: i64,
}

/// Longer than RDS keeps rotated MySQL logs (24 hours).
pub const RETIRED_FOR_MS: i64 = 48 * 3600 * 1000;
pub const MAX_RETIRED: usize = 200;

impl Checkpoint {
    pub fn new(instance: &str) -> Self {
        Self {
            version: VERSION,
            instance: instance.to_owned(),
            full_listing_at: 0,
            files: BTreeMap::new(),
            retired: Vec::new(),
        }
    }
}

/// Where one file's shipping starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Work {
    pub name: String,
    pub marker: String,
    pub offset: u64,
    pub generation: u32,
    pub size: u64,
    pub last_written: i64,
    pub date: String,
    /// A chunk that may or may not have reached S3: resolve it first.
    pub pending: Option<Pending>,
    /// The file restarted under the same name (its size fell below what was shipped).
    pub restarted: bool,
    /// Bytes at the beginning already shipped under another name (see `FileState::skip`).
    pub skip: u64,
    /// The generation this file continues (it was renamed into this one).
    pub continues: Option<Continues>,
    /// The file has stopped growing (`catchup::mark`): with nothing of it shipped yet, it may be
    /// downloaded whole.
    pub stopped: bool,
}

impl Work {
    /// File `f` as listed, resumed where its checkpoint entry `st` left it (its pending chunk
    /// included).
    pub fn resume(f: &ListedFile, st: &FileState) -> Work {
        Work {
            name: f.name.clone(),
            marker: st.marker.clone(),
            offset: st.shipped,
            generation: st.generation,
            size: f.size,
            last_written: f.last_written,
            date: st.date.clone(),
            pending: st.pending.clone(),
            restarted: false,
            skip: st.skip,
            continues: None,
            stopped: false,
        }
    }
}

/// Where a file's first bytes were shipped before it was renamed into its current name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continues {
    pub source: Source,
    /// The source generation had a line over 1 MB cut: so has this file.
    pub lossy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The current generation of another file in the checkpoint.
    Current(String),
    /// A retired generation (name, generation).
    Retired(String, u32),
}

/// What a run does for one instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub work: Vec<Work>,
    /// Files in the checkpoint that no longer exist (only decided after a complete listing).
    pub dropped: Vec<String>,
    /// Listed files already shipped completely.
    pub unchanged: usize,
}

/// Which of an instance's files to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingScope {
    /// Every file (no `FileLastWritten` filter): only such a listing drops entries.
    pub complete: bool,
    /// Epoch ms: only files written since (`FileLastWritten`).
    pub since: Option<i64>,
}

/// A complete listing once `full_every_ms` has passed since the last one; otherwise the files
/// written since the latest last-written time recorded, less `overlap_ms`.
pub fn listing_scope(cp: &Checkpoint, now_ms: i64, full_every_ms: i64, overlap_ms: i64) -> ListingScope {
    let complete = now_ms - cp.full_listing_at >= full_every_ms;
    let since = if complete {
        None
    } else {
        cp.files
            .values()
            .map(|f| f.last_written)
            .max()
            .map(|m| m - overlap_ms)
    };
    ListingScope { complete, since }
}

/// Decides what to ship from the listing and the checkpoint. `complete_listing` says whether the
/// listing holds every file of the instance (no `FileLastWritten` filter); `today` is the UTC
/// date for files seen for the first time.
pub fn plan(checkpoint: &Checkpoint, listing: &[ListedFile], complete_listing: bool, today: &str) -> Plan {
    let mut plan = Plan::default();
    for f in listing {
        let work = match checkpoint.files.get(&f.name) {
            None => Some(Work {
                name: f.name.clone(),
                marker: "0".into(),
                offset: 0,
                generation: 0,
                size: f.size,
                last_written: f.last_written,
                date: today.to_owned(),
                pending: None,
                restarted: false,
                skip: 0,
                continues: None,
                stopped: false,
            }),
            Some(st) if f.size < st.shipped => Some(Work {
                name: f.name.clone(),
                marker: "0".into(),
                offset: 0,
                generation: st.generation + 1,
                size: f.size,
                last_written: f.last_written,
                date: today.to_owned(),
                // A pending chunk of the old generation: resolve it before starting over.
                pending: st.pending.clone(),
                restarted: true,
                skip: 0,
                continues: None,
                stopped: false,
            }),
            Some(st)
                if st.pending.is_some()
                    || f.last_written > st.last_written
                    || if st.lossy {
                        f.size != st.size
                    } else {
                        f.size > st.shipped
                    } =>
            {
                Some(Work::resume(f, st))
            }
            Some(_) => None,
        };
        match work {
            Some(w) => plan.work.push(w),
            None => plan.unchanged += 1,
        }
    }
    if complete_listing {
        plan.dropped = checkpoint
            .files
            .keys()
            .filter(|name| !listing.iter().any(|f| &f.name == *name))
            .cloned()
            .collect();
    }
    // Oldest first: rotated files before the active one.
    plan.work
        .sort_by(|a, b| a.last_written.cmp(&b.last_written).then(a.name.cmp(&b.name)));
    plan
}

/// The checkpoint entry of a work item's file, created as the work item starts it.
fn entry_for<'a>(cp: &'a mut Checkpoint, work: &Work) -> &'a mut FileState {
    cp.files.entry(work.name.clone()).or_insert_with(|| FileState {
        marker: work.marker.clone(),
        shipped: work.offset,
        size: work.size,
        last_written: work.last_written,
        generation: work.generation,
        date: work.date.clone(),
        pending: None,
        head: None,
        lossy: false,
        skip: work.skip,
        claimed: false,
        listed: Some(Seen {
            size: work.size,
            last_written: work.last_written,
        }),
        binary: false,
    })
}

/// The entry of `work`'s file, reset first if `work` starts a new generation; the generation
/// it replaces is retired if a renamed copy may still continue it.
fn generation_entry<'a>(cp: &'a mut Checkpoint, work: &Work) -> &'a mut FileState {
    if work.restarted
        && let Some(old) = cp.files.get(&work.name)
        && old.generation != work.generation
        && old.shipped > 0
        && !old.claimed
        && old.pending.is_none()
        && let Some(head) = old.head.clone()
    {
        let retired = Retired {
            name: work.name.clone(),
            generation: old.generation,
            head,
            shipped: old.shipped.max(old.skip),
            lossy: old.lossy,
            at: old.last_written,
        };
        cp.retired.push(retired);
    }
    let entry = entry_for(cp, work);
    if work.restarted && entry.generation != work.generation {
        entry.marker = "0".into();
        entry.shipped = 0;
        entry.generation = work.generation;
        entry.date = work.date.clone();
        entry.head = None;
        entry.lossy = false;
        entry.skip = work.skip;
        entry.claimed = false;
        entry.binary = false;
    }
    entry
}

/// Records a chunk before it is uploaded, with what reading it taught about the file: its first
/// bytes when the chunk has them, and whether RDS cut a line over 1 MB (true of the file's
/// generation whether or not the chunk reaches S3).
pub fn begin_chunk(cp: &mut Checkpoint, work: &Work, pending: Pending, head: Option<String>, lossy: bool) {
    let entry = generation_entry(cp, work);
    entry.pending = Some(pending);
    entry.lossy |= lossy;
    if head.is_some() {
        entry.head = head;
    }
    claim(cp, work);
}

/// Marks the generation that `work` continues as taken over, in the same checkpoint write as
/// the work's first progress; the continuing file inherits its lossiness.
fn claim(cp: &mut Checkpoint, work: &Work) {
    let Some(c) = &work.continues else {
        return;
    };
    match &c.source {
        Source::Current(name) => {
            if let Some(source) = cp.files.get_mut(name) {
                source.claimed = true;
            }
        }
        Source::Retired(name, generation) => cp
            .retired
            .retain(|r| !(&r.name == name && r.generation == *generation)),
    }
    if let Some(entry) = cp.files.get_mut(&work.name) {
        entry.lossy |= c.lossy;
    }
}

/// Progress without a chunk: everything read was already shipped under another name.
pub fn read_past(
    cp: &mut Checkpoint,
    work: &Work,
    marker: String,
    offset: u64,
    head: Option<String>,
    lossy: bool,
) {
    let entry = generation_entry(cp, work);
    entry.marker = marker;
    entry.shipped = offset;
    entry.skip = work.skip;
    entry.size = work.size;
    entry.last_written = entry.last_written.max(work.last_written);
    entry.lossy |= lossy;
    if head.is_some() {
        entry.head = head;
    }
    claim(cp, work);
}

/// Drops retired generations that no renamed copy can still come for.
pub fn prune_retired(cp: &mut Checkpoint, now_ms: i64) {
    cp.retired.retain(|r| now_ms - r.at < RETIRED_FOR_MS);
    if cp.retired.len() > MAX_RETIRED {
        cp.retired.sort_by_key(|r| std::cmp::Reverse(r.at));
        cp.retired.truncate(MAX_RETIRED);
    }
}

/// The work item that reads a file again from its beginning, as a new generation (the file was
/// replaced under its name). A pending chunk of the old generation is resolved first.
pub fn restart(work: Work, generation: u32, today: &str) -> Work {
    Work {
        marker: "0".into(),
        offset: 0,
        generation,
        date: today.to_owned(),
        restarted: true,
        skip: 0,
        continues: None,
        ..work
    }
}

/// The work that continues `work`'s file in a new chunk, where its last committed chunk ended
/// (a file larger than one chunk).
pub fn next_chunk(cp: &Checkpoint, work: Work) -> Option<Work> {
    let entry = cp.files.get(&work.name)?;
    Some(Work {
        marker: entry.marker.clone(),
        offset: entry.shipped,
        generation: entry.generation,
        date: entry.date.clone(),
        pending: None,
        restarted: false,
        ..work
    })
}

/// Commits the pending chunk of `name`: it is durably in S3.
pub fn commit_chunk(cp: &mut Checkpoint, name: &str, size: u64, last_written: i64) -> bool {
    let Some(entry) = cp.files.get_mut(name) else {
        return false;
    };
    let Some(p) = entry.pending.take() else {
        return false;
    };
    entry.marker = p.end_marker;
    entry.shipped = p.end;
    entry.size = size;
    entry.last_written = entry.last_written.max(last_written);
    entry.binary = false;
    true
}

/// Forgets a pending chunk that never reached S3 (nothing was shipped for it).
pub fn abandon_chunk(cp: &mut Checkpoint, name: &str) {
    if let Some(entry) = cp.files.get_mut(name) {
        entry.pending = None;
    }
}

/// Records a file as seen and complete without a new chunk (e.g. an empty file); says whether
/// the checkpoint changed.
pub fn touch(cp: &mut Checkpoint, work: &Work) -> bool {
    let before = cp.files.get(&work.name).map(|e| (e.size, e.last_written));
    let entry = entry_for(cp, work);
    entry.size = work.size;
    entry.last_written = entry.last_written.max(work.last_written);
    let changed = before != Some((entry.size, entry.last_written));
    // A continuation recorded (its `skip`) claims its source in the same write.
    if changed {
        claim(cp, work);
    }
    changed
}

/// Records a file that RDS serves only whole (a binary file) as skipped to its listed size,
/// without shipping it, and as `binary`: it is not read in portions again until it grows, and it
/// is downloaded whole once it stopped growing (`catchup::mark`).
pub fn skip_file(cp: &mut Checkpoint, work: &Work) {
    let _ = touch(
        cp,
        &Work {
            offset: work.size,
            ..work.clone()
        },
    );
    if let Some(f) = cp.files.get_mut(&work.name) {
        f.shipped = f.shipped.max(work.size);
        f.binary = true;
    }
}

/// Records what a listing says of the files the checkpoint knows (see `FileState::listed`);
/// says whether anything changed. Files not yet in the checkpoint are recorded as they start.
pub fn record_listing(cp: &mut Checkpoint, listing: &[ListedFile]) -> bool {
    let mut changed = false;
    for f in listing {
        if let Some(entry) = cp.files.get_mut(&f.name) {
            let seen = Some(Seen {
                size: f.size,
                last_written: f.last_written,
            });
            changed |= entry.listed != seen;
            entry.listed = seen;
        }
    }
    changed
}

pub fn drop_files(cp: &mut Checkpoint, names: &[String]) {
    for n in names {
        cp.files.remove(n);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rotation::{Rotation, rotation_source};

    /// A file as a listing shows it.
    pub(crate) fn listed(name: &str, size: u64, last_written: i64) -> ListedFile {
        ListedFile {
            name: name.into(),
            size,
            last_written,
        }
    }

    /// A file's state as a checkpoint holds it (also used by the rotation tests).
    pub(crate) fn state(marker: &str, shipped: u64, size: u64, last_written: i64) -> FileState {
        FileState {
            marker: marker.into(),
            shipped,
            size,
            last_written,
            generation: 0,
            date: "2026-11-21".into(),
            pending: None,
            head: None,
            lossy: false,
            skip: 0,
            claimed: false,
            listed: None,
            binary: false,
        }
    }

    #[test]
    fn new_files_start_at_the_beginning_oldest_first() {
        let cp = Checkpoint::new("db1");
        let p = plan(
            &cp,
            &[
                listed("error/postgresql.log.2026-11-22-01", 10, 2_000),
                listed("error/postgresql.log.2026-11-22-00", 50, 1_000),
            ],
            true,
            "2026-11-22",
        );
        assert_eq!(p.work.len(), 2);
        assert_eq!(p.work[0].name, "error/postgresql.log.2026-11-22-00");
        assert_eq!(
            (p.work[0].marker.as_str(), p.work[0].offset, p.work[0].generation),
            ("0", 0, 0)
        );
        assert_eq!(p.work[0].date, "2026-11-22");
    }

    #[test]
    fn growing_files_resume_at_the_stored_marker_and_finished_ones_are_skipped() {
        let mut cp = Checkpoint::new("db1");
        cp.files
            .insert("a.log".into(), state("7:4096", 4096, 4096, 1_000));
        cp.files.insert("b.log".into(), state("3:100", 100, 100, 1_000));
        let p = plan(
            &cp,
            &[listed("a.log", 5000, 1_500), listed("b.log", 100, 1_000)],
            true,
            "2026-11-22",
        );
        assert_eq!(p.work.len(), 1);
        assert_eq!(p.work[0].marker, "7:4096");
        assert_eq!(p.work[0].offset, 4096);
        assert_eq!(p.work[0].date, "2026-11-21");
        assert_eq!(p.unchanged, 1);
        // Rewritten in place with the same size: last-written moves, so it is read again.
        let p = plan(&cp, &[listed("b.log", 100, 2_000)], false, "2026-11-22");
        assert_eq!(p.work.len(), 1);
    }

    #[test]
    fn a_file_that_shrank_restarted_under_its_name() {
        let mut cp = Checkpoint::new("db1");
        cp.files
            .insert("mysql-error.log".into(), state("9:90000", 90_000, 90_000, 1_000));
        let p = plan(&cp, &[listed("mysql-error.log", 120, 2_000)], true, "2026-11-22");
        let w = &p.work[0];
        assert!(w.restarted);
        assert_eq!((w.marker.as_str(), w.offset, w.generation), ("0", 0, 1));
    }

    #[test]
    fn vanished_files_are_dropped_only_after_a_complete_listing() {
        let mut cp = Checkpoint::new("db1");
        cp.files.insert("old.log".into(), state("1:1", 1, 1, 1));
        cp.files.insert("kept.log".into(), state("1:1", 1, 1, 1));
        let listing = [listed("kept.log", 1, 1)];
        assert!(plan(&cp, &listing, false, "d").dropped.is_empty());
        assert_eq!(plan(&cp, &listing, true, "d").dropped, ["old.log"]);
    }

    #[test]
    fn a_pending_chunk_is_resolved_even_when_nothing_grew() {
        let mut cp = Checkpoint::new("db1");
        let mut st = state("1:10", 10, 20, 1_000);
        st.pending = Some(Pending {
            key: "k".into(),
            start: 10,
            end: 20,
            end_marker: "1:20".into(),
            until: 0,
        });
        cp.files.insert("a.log".into(), st);
        let p = plan(&cp, &[listed("a.log", 20, 1_000)], false, "d");
        assert_eq!(p.work[0].pending.as_ref().unwrap().key, "k");
    }

    #[test]
    fn chunks_are_written_ahead_then_committed() {
        let mut cp = Checkpoint::new("db1");
        let p = plan(&cp, &[listed("a.log", 30, 1_000)], true, "2026-11-22");
        let w = &p.work[0];
        begin_chunk(
            &mut cp,
            w,
            Pending {
                key: "k0".into(),
                start: 0,
                end: 30,
                end_marker: "5:30".into(),
                until: 0,
            },
            Some("first line\n".into()),
            false,
        );
        assert_eq!(cp.files["a.log"].shipped, 0, "nothing counts before the commit");
        assert_eq!(
            cp.files["a.log"].head.as_deref(),
            Some("first line\n"),
            "the file's first bytes are recorded with the write-ahead record"
        );
        let json = serde_json::to_string(&cp).unwrap();
        let back: Checkpoint = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cp);
        assert!(commit_chunk(&mut cp, "a.log", 30, 1_000));
        assert_eq!(cp.files["a.log"].shipped, 30);
        assert_eq!(cp.files["a.log"].marker, "5:30");
        assert!(cp.files["a.log"].pending.is_none());
        assert!(
            !commit_chunk(&mut cp, "a.log", 30, 1_000),
            "nothing left to commit"
        );
        // Finished: the next plan skips it.
        assert!(
            plan(&cp, &[listed("a.log", 30, 1_000)], true, "d")
                .work
                .is_empty()
        );
    }

    #[test]
    fn a_restart_resets_the_entry_when_its_first_chunk_begins() {
        let mut cp = Checkpoint::new("db1");
        cp.files.insert("a.log".into(), state("9:900", 900, 900, 1_000));
        let p = plan(&cp, &[listed("a.log", 50, 2_000)], true, "2026-11-23");
        begin_chunk(
            &mut cp,
            &p.work[0],
            Pending {
                key: "k".into(),
                start: 0,
                end: 50,
                end_marker: "1:50".into(),
                until: 0,
            },
            None,
            false,
        );
        let e = &cp.files["a.log"];
        assert_eq!(
            (e.generation, e.shipped, e.marker.as_str(), e.date.as_str()),
            (1, 0, "0", "2026-11-23")
        );
        commit_chunk(&mut cp, "a.log", 50, 2_000);
        assert_eq!(cp.files["a.log"].shipped, 50);
    }

    #[test]
    fn a_file_is_recognised_by_its_beginning() {
        let head =
            head_of("2026-11-22 00:00:01 UTC [1] LOG:  started\n2026-11-22 00:00:02 UTC [1] LOG:  x\n");
        assert!(same_file(&head, &format!("{head}more lines\n")));
        assert!(same_file(&head, "2026-11-22 00:00:01 UTC [1] LOG:  sta"));
        assert!(!same_file(&head, "2026-11-23 00:00:01 UTC [1] LOG:  started\n"));
        // Nothing to compare: no evidence of a replacement.
        assert!(same_file(&head, ""));
        assert!(same_file("", "anything"));
        // Kept short, cut at a character boundary.
        let long = "é".repeat(HEAD_BYTES);
        let h = head_of(&long);
        assert!(h.len() <= HEAD_BYTES && long.starts_with(&h));
    }

    #[test]
    fn a_pending_chunk_is_forgotten_only_after_its_run_ended() {
        let p = Pending {
            key: "k".into(),
            start: 0,
            end: 10,
            end_marker: "1:10".into(),
            until: 5_000,
        };
        assert!(!pending_expired(&p, 4_999));
        assert!(pending_expired(&p, 5_000));
        // Written before `until` existed: long expired.
        let old: Pending = serde_json::from_str(r#"{"key":"k","start":0,"end":1,"endMarker":"0"}"#).unwrap();
        assert!(pending_expired(&old, 1));
    }

    #[test]
    fn a_lossy_file_is_read_again_only_when_its_listing_changes() {
        let mut cp = Checkpoint::new("db1");
        let mut st = state("5:2000000", 1_048_600, 2_000_000, 1_000);
        st.lossy = true;
        cp.files.insert("slow.log".into(), st);
        // Fewer bytes shipped than listed (a 1 MB line was cut), nothing new: no work.
        let p = plan(&cp, &[listed("slow.log", 2_000_000, 1_000)], true, "2026-11-22");
        assert!(p.work.is_empty());
        let p = plan(&cp, &[listed("slow.log", 2_000_500, 1_000)], true, "2026-11-22");
        assert_eq!(p.work.len(), 1);
        assert_eq!(p.work[0].marker, "5:2000000");
    }

    #[test]
    fn every_listing_records_what_it_says_of_the_files_known() {
        let mut cp = Checkpoint::new("db1");
        cp.files.insert("a.log".into(), state("1:10", 10, 10, 1_000));
        let listing = [listed("a.log", 40, 2_000), listed("new.log", 5, 2_000)];
        assert!(record_listing(&mut cp, &listing));
        assert!(!record_listing(&mut cp, &listing), "nothing new");
        let a = &cp.files["a.log"];
        assert_eq!(
            a.listed,
            Some(Seen {
                size: 40,
                last_written: 2_000
            })
        );
        assert_eq!(
            (a.size, a.shipped),
            (10, 10),
            "what the plan compares is left alone"
        );
        assert!(!cp.files.contains_key("new.log"), "recorded as it starts");
        // Written before the field: read as not recorded.
        let old: FileState = serde_json::from_str(
            r#"{"marker":"0","shipped":0,"size":0,"lastWritten":0,"generation":0,"date":"d"}"#,
        )
        .unwrap();
        assert_eq!(old.listed, None);
    }

    #[test]
    fn touching_says_whether_anything_changed() {
        let mut cp = Checkpoint::new("db1");
        let w = plan(&cp, &[listed("empty.log", 0, 1_000)], true, "2026-11-22")
            .work
            .remove(0);
        assert!(touch(&mut cp, &w));
        assert!(!touch(&mut cp, &w));
    }

    #[test]
    fn a_generation_replaced_before_its_renamed_copy_was_listed_is_kept_for_it() {
        // x.log restarts (new content) in a run whose listing did not include x.log.18 yet.
        let mut cp = Checkpoint::new("db1");
        let mut st = state("18:900", 900, 900, 1_000);
        st.head = Some("old beginning\n".repeat(100));
        cp.files.insert("x.log".into(), st);
        let w = plan(&cp, &[listed("x.log", 10, 2_000)], false, "2026-11-22")
            .work
            .remove(0);
        assert!(w.restarted);
        begin_chunk(
            &mut cp,
            &w,
            Pending {
                key: "k".into(),
                start: 0,
                end: 10,
                end_marker: "19:10".into(),
                until: 0,
            },
            Some("new beginning\n".into()),
            false,
        );
        assert_eq!(cp.retired.len(), 1);
        assert_eq!((cp.retired[0].generation, cp.retired[0].shipped), (0, 900));
        // The copy, listed later, continues the retired generation, which is then claimed.
        let beginning = "old beginning\n".repeat(100);
        let Rotation::Continues { continues, skip } = rotation_source(&cp, "x.log.18", &beginning) else {
            panic!("no continuation");
        };
        assert_eq!(
            (continues.source.clone(), skip),
            (Source::Retired("x.log".into(), 0), 900)
        );
        let copy = Work {
            skip,
            continues: Some(continues),
            ..plan(&cp, &[listed("x.log.18", 1_000, 1_500)], true, "2026-11-22")
                .work
                .remove(0)
        };
        read_past(&mut cp, &copy, "18:900".into(), 900, None, false);
        assert!(cp.retired.is_empty());
        assert_eq!(rotation_source(&cp, "x.log.19", &beginning), Rotation::New);
        // Kept 48 hours at most.
        cp.retired.push(Retired {
            name: "x.log".into(),
            generation: 1,
            head: "h".into(),
            shipped: 1,
            lossy: false,
            at: 0,
        });
        prune_retired(&mut cp, RETIRED_FOR_MS);
        assert!(cp.retired.is_empty());
    }

    #[test]
    fn a_complete_listing_comes_at_its_interval_and_others_overlap_the_latest_write() {
        let mut cp = Checkpoint::new("db1");
        cp.full_listing_at = 10_000;
        let scope = listing_scope(&cp, 20_000, 60_000, 300);
        assert_eq!(
            scope,
            ListingScope {
                complete: false,
                since: None
            }
        );
        cp.files.insert("a.log".into(), state("1:1", 1, 1, 5_000));
        cp.files.insert("b.log".into(), state("1:1", 1, 1, 9_000));
        let scope = listing_scope(&cp, 20_000, 60_000, 300);
        assert_eq!(
            scope,
            ListingScope {
                complete: false,
                since: Some(8_700)
            }
        );
        let scope = listing_scope(&cp, 70_000, 60_000, 300);
        assert_eq!(
            scope,
            ListingScope {
                complete: true,
                since: None
            }
        );
        assert!(listing_scope(&cp, 10_000, 0, 300).complete);
    }

    #[test]
    fn a_pending_chunk_is_protected_until_its_run_cannot_be_running() {
        assert_eq!(pending_until(1_000, Some(Duration::from_secs(30))), 91_000);
        assert_eq!(pending_until(1_000, Some(Duration::ZERO)), 61_000);
        assert_eq!(pending_until(1_000, None), 1_000 + 900_000 + 60_000);
    }

    #[test]
    fn a_large_file_continues_where_its_last_chunk_ended() {
        let mut cp = Checkpoint::new("db1");
        let w = plan(&cp, &[listed("big.log", 3_000, 1_000)], true, "2026-11-22")
            .work
            .remove(0);
        assert_eq!(next_chunk(&cp, w.clone()), None);
        begin_chunk(
            &mut cp,
            &w,
            Pending {
                key: "k0".into(),
                start: 0,
                end: 1_000,
                end_marker: "1:1000".into(),
                until: 0,
            },
            None,
            false,
        );
        commit_chunk(&mut cp, "big.log", 3_000, 1_000);
        let next = next_chunk(&cp, w).unwrap();
        assert_eq!(
            (next.marker.as_str(), next.offset, next.size),
            ("1:1000", 1_000, 3_000)
        );
        assert!(next.pending.is_none() && !next.restarted);
    }

    #[test]
    fn a_skipped_file_counts_as_shipped_to_its_listed_size() {
        let mut cp = Checkpoint::new("sql1");
        let w = plan(&cp, &[listed("trace/x.trc", 4_096, 1_000)], true, "2026-11-22")
            .work
            .remove(0);
        skip_file(&mut cp, &w);
        assert_eq!(
            (cp.files["trace/x.trc"].shipped, cp.files["trace/x.trc"].size),
            (4_096, 4_096)
        );
        assert!(
            plan(&cp, &[listed("trace/x.trc", 4_096, 1_000)], true, "d")
                .work
                .is_empty()
        );
        assert_eq!(
            plan(&cp, &[listed("trace/x.trc", 5_000, 2_000)], true, "d")
                .work
                .len(),
            1
        );
    }
}
