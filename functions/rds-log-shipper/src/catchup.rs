//! Backlog catch-up: which files are downloaded whole with RDS's `DownloadCompleteLogFile` (one
//! request whatever the file's size, see `complete`) instead of portion after portion (a request
//! per MB of the account's shared RDS budget), and how a whole download's bytes become chunks.
//! No I/O.
//!
//! **The rule.** A file with nothing of it shipped yet (offset 0, nothing read past as a renamed
//! copy's, no chunk pending, not a continuation of another generation) is downloaded whole once
//! it has stopped growing ([`stopped`]):
//! - superseded ([`superseded`]): a later file of its rotation family is listed, and it has not
//!   been written for [`ROTATED_QUIET_MS`] (5 minutes);
//! - or quiet: it has not been written for `COMPLETE_DOWNLOAD_QUIET_MINUTES` (60).
//!
//! Everything else is read in portions: the active files, and the rest of a file shipped in part
//! by portions. A binary file (SQL Server `.trc`/`.xel`), which the portion API refuses and the
//! portion path skips, is downloaded whole by the same rule: at once when it is first met
//! stopped (a backlog), else once it stopped growing after it was skipped (`FileState::binary`).
//!
//! **The rest of a whole download.** A file shipped in part by a whole download (a deadline, the
//! chunk limit, a crash) keeps no RDS marker ([`UNMARKED`]): markers are opaque, the portion API
//! takes only `"0"` or one it returned, and none can be made from a byte offset. Its rest is
//! downloaded whole again, the bytes already shipped read past. Reading portions from `"0"`
//! instead would cost a request per MB again, and would count short past a line RDS cuts at
//! 1 MB (its dropped bytes are not in the portion), so the bytes read past would not be the
//! bytes shipped. Only with whole downloads turned off is the rest read in portions from `"0"`.

use crate::checkpoint::{Checkpoint, HEAD_BYTES, ListedFile, Plan, UNMARKED, Work, head_of};
use crate::cursor::Chunk;

/// When whole downloads are used (from the environment, see `Config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// `COMPLETE_DOWNLOADS` (on unless `false`/`off`/`0`).
    pub enabled: bool,
    /// A file not written for this long has stopped growing (`COMPLETE_DOWNLOAD_QUIET_MINUTES`).
    pub quiet_ms: i64,
}

/// How long a superseded file must have been quiet: a rotation is done with the file it left
/// by then (the engine writes the new file; RDS's `LastWritten` may trail the last write).
pub const ROTATED_QUIET_MS: i64 = 5 * 60_000;

/// A rotated file's name suffix: `.<digits>` (MySQL's `x.log.<hour>`, SQL Server's `ERROR.<n>`)
/// or a timestamp of digits and `-`/`_` (PostgreSQL's `postgresql.log.2026-11-22-00`, Oracle's
/// `alert_<SID>.log.2026-11-22`); `(stem, suffix, numbered)`.
fn suffix(name: &str) -> Option<(&str, &str, bool)> {
    let (stem, s) = name.rsplit_once('.')?;
    let stamp = |b: u8| b.is_ascii_digit() || b == b'-' || b == b'_';
    let numbered = s.bytes().all(|b| b.is_ascii_digit());
    (!s.is_empty() && s.bytes().all(stamp) && s.bytes().any(|b| b.is_ascii_digit()))
        .then_some((stem, s, numbered))
}

/// Whether a later file of `name`'s rotation family is listed, so that nothing more is written
/// to `name`: its family's current file (`x.log` beside `x.log.3`, `ERROR` beside `ERROR.2`,
/// `alert_ORCL.log` beside `alert_ORCL.log.2026-11-22`), or, for a timestamped name, one with a
/// later timestamp of the same form (`postgresql.log.2026-11-22-01` beside `…-00`). Numbers
/// say nothing about order (MySQL's are hours of the day, SQL Server's count backwards).
pub fn superseded(name: &str, listing: &[ListedFile]) -> bool {
    let Some((stem, s, numbered)) = suffix(name) else {
        return false;
    };
    listing.iter().any(|f| {
        f.name == stem
            || (!numbered
                && suffix(&f.name)
                    .is_some_and(|(other, t, n)| !n && other == stem && t.len() == s.len() && t > s))
    })
}

/// Whether a listed file has stopped growing at `now_ms` (see the module's rule).
pub fn stopped(name: &str, last_written: i64, listing: &[ListedFile], now_ms: i64, rule: &Rule) -> bool {
    let quiet = now_ms.saturating_sub(last_written);
    quiet >= rule.quiet_ms || (quiet >= ROTATED_QUIET_MS && superseded(name, listing))
}

/// The work item that downloads a skipped binary file whole: nothing of it is in S3.
fn binary_from_start(work: Work) -> Work {
    Work {
        marker: "0".into(),
        offset: 0,
        skip: 0,
        continues: None,
        ..work
    }
}

/// Marks the work items of files that have stopped growing (`Work::stopped`), and adds the
/// binary files skipped earlier that have stopped growing since (not in the plan: they did not
/// grow), to be downloaded whole from their beginning. Unchanged with whole downloads off.
pub fn mark(mut plan: Plan, cp: &Checkpoint, listing: &[ListedFile], now_ms: i64, rule: &Rule) -> Plan {
    if !rule.enabled {
        return plan;
    }
    let skipped_binary = |name: &str, generation: u32| {
        cp.files
            .get(name)
            .is_some_and(|st| st.binary && st.generation == generation && st.pending.is_none())
    };
    for w in &mut plan.work {
        w.stopped = stopped(&w.name, w.last_written, listing, now_ms, rule);
        if w.stopped && !w.restarted && skipped_binary(&w.name, w.generation) {
            *w = binary_from_start(w.clone());
        }
    }
    for f in listing {
        let Some(st) = cp.files.get(&f.name) else {
            continue;
        };
        if f.size == 0
            || !skipped_binary(&f.name, st.generation)
            || plan.work.iter().any(|w| w.name == f.name)
            || !stopped(&f.name, f.last_written, listing, now_ms, rule)
        {
            continue;
        }
        plan.work.push(binary_from_start(Work {
            pending: None,
            stopped: true,
            ..Work::resume(f, st)
        }));
        plan.unchanged = plan.unchanged.saturating_sub(1);
    }
    plan.work
        .sort_by(|a, b| a.last_written.cmp(&b.last_written).then(a.name.cmp(&b.name)));
    plan
}

/// How a work item is read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one a file, moved once: boxing would buy nothing
pub enum Path {
    /// Downloaded whole, the first `work.offset` bytes (already shipped) read past.
    Whole,
    /// Portion after portion, from this work item (the rest of a whole download with whole
    /// downloads off: from marker `"0"`, reading past the bytes already shipped).
    Portions(Work),
}

/// The path of a work item, once prepared (its pending chunk resolved, its rotation known);
/// `whole` says whether whole downloads are on (the rule and a configured endpoint).
pub fn path(work: Work, whole: bool) -> Path {
    if work.marker == UNMARKED {
        if whole {
            return Path::Whole;
        }
        return Path::Portions(Work {
            marker: "0".into(),
            offset: 0,
            skip: work.offset.max(work.skip),
            ..work
        });
    }
    let fresh = work.offset == 0 && work.skip == 0 && work.continues.is_none() && work.pending.is_none();
    if whole && work.stopped && fresh {
        Path::Whole
    } else {
        Path::Portions(work)
    }
}

/// A chunk ends at the first newline once it holds the chunk's size (so that chunks hold whole
/// lines), or this much later without one.
pub const LINE_ALLOWANCE: u64 = 1_000_000;

/// Where a whole download's stream stands: the file's bytes arrive in order from its beginning;
/// those before `from` are already shipped and read past, the others go into chunks of at most
/// about `max` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// File offset of the next byte to arrive.
    at: u64,
    /// Bytes already shipped: read past.
    from: u64,
    /// The current chunk's first byte.
    start: u64,
    max: u64,
    /// The file's first bytes (up to `HEAD_BYTES`).
    head: Vec<u8>,
}

/// What [`Stream::feed`] makes of the next bytes: `data[..past]` is read past,
/// `data[past..past + ship]` goes into the current chunk, and when `full` the chunk ends there
/// (the rest begins the next one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    pub past: usize,
    pub ship: usize,
    pub full: bool,
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Stream {
    /// A stream whose first `from` bytes are already shipped; chunks of `max` bytes.
    pub fn new(from: u64, max: u64) -> Self {
        Self {
            at: 0,
            from,
            start: from,
            max: max.max(1),
            head: Vec::new(),
        }
    }

    /// Takes in the next bytes of the file (call again with the rest while `past + ship` is
    /// short of `data.len()`).
    pub fn feed(&mut self, data: &[u8]) -> Fed {
        let keep = to_usize(HEAD_BYTES as u64)
            .saturating_sub(to_usize(self.at))
            .min(data.len());
        self.head.extend_from_slice(&data[..keep]);
        let past = to_usize(self.from.saturating_sub(self.at)).min(data.len());
        self.at += past as u64;
        let rest = &data[past..];
        let held = self.at.saturating_sub(self.start);
        // The byte at `from` would end the chunk at (or past) its size if it is a newline.
        let from = to_usize(self.max.saturating_sub(held).saturating_sub(1));
        let hard = to_usize((self.max + LINE_ALLOWANCE).saturating_sub(held));
        let newline = rest
            .get(from..rest.len().min(hard))
            .and_then(|r| r.iter().position(|b| *b == b'\n'))
            .map(|i| from + i + 1);
        let (ship, full) = match newline {
            Some(n) => (n, true),
            None if hard <= rest.len() => (hard, true),
            None => (rest.len(), false),
        };
        self.at += ship as u64;
        Fed { past, ship, full }
    }

    /// The file's first bytes, as the checkpoint keeps them: the longest valid UTF-8 prefix
    /// (the portion API serves text; a binary file's may be empty).
    fn head(&self) -> Option<String> {
        let valid = match std::str::from_utf8(&self.head) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&self.head[..e.valid_up_to()]).unwrap_or_default(),
        };
        (!valid.is_empty()).then(|| head_of(valid))
    }

    /// The current chunk, if it holds bytes (`full`: it ended at its size and the file goes on);
    /// the next one begins where it ends.
    pub fn end_chunk(&mut self, full: bool) -> Option<Chunk> {
        if self.at <= self.start {
            return None;
        }
        let chunk = Chunk {
            start: self.start,
            end: self.at,
            end_marker: UNMARKED.to_owned(),
            head: if self.start == 0 { self.head() } else { None },
            lossy: false,
            full,
            cuts: 0,
            dropped: None,
        };
        self.start = self.at;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::tests::listed;
    use crate::checkpoint::{self, Checkpoint};

    const HOUR: i64 = 3_600_000;
    const NOW: i64 = 100 * HOUR;
    const RULE: Rule = Rule {
        enabled: true,
        quiet_ms: HOUR,
    };

    #[test]
    fn a_rotated_file_is_superseded_by_a_later_one_of_its_family() {
        let pg = |h: u32| listed(&format!("error/postgresql.log.2026-11-22-{h:02}"), 9, 0);
        let listing = [pg(0), pg(1), pg(2)];
        let table = [
            ("error/postgresql.log.2026-11-22-00", true),
            ("error/postgresql.log.2026-11-22-01", true),
            // The latest is the one being written.
            ("error/postgresql.log.2026-11-22-02", false),
        ];
        for (name, expected) in table {
            assert_eq!(superseded(name, &listing), expected, "{name}");
        }
        let mysql = [
            listed("slowquery/mysql-slowquery.log", 1, 0),
            listed("slowquery/mysql-slowquery.log.3", 1, 0),
            listed("log/ERROR.2", 1, 0),
            listed("trace/alert_ORCL.log.2026-11-21", 1, 0),
        ];
        assert!(superseded("slowquery/mysql-slowquery.log.3", &mysql));
        assert!(
            !superseded("slowquery/mysql-slowquery.log", &mysql),
            "the current one"
        );
        // No current ERROR listed: a number says nothing about order.
        assert!(!superseded("log/ERROR.2", &mysql));
        assert!(!superseded("log/ERROR.2", &[listed("log/ERROR.3", 1, 0)]));
        assert!(superseded("log/ERROR.2", &[listed("log/ERROR", 1, 0)]));
        assert!(superseded(
            "trace/alert_ORCL.log.2026-11-21",
            &[listed("trace/alert_ORCL.log", 1, 0)]
        ));
        // A different form of timestamp is not "later"; names without a suffix never are.
        assert!(!superseded(
            "error/postgresql.log.2026-11-22-00",
            &[listed("error/postgresql.log.2026-11-22-0030", 1, 0)]
        ));
        assert!(!superseded("error/mysql-error.log", &mysql));
        assert!(!superseded(
            "audit/audit.log.a-b",
            &[listed("audit/audit.log", 1, 0)]
        ));
    }

    #[test]
    fn stopped_growing_means_superseded_and_quiet_a_while_or_quiet_long() {
        let listing = [
            listed("error/postgresql.log.2026-11-22-00", 9, 0),
            listed("error/postgresql.log.2026-11-22-01", 9, 0),
        ];
        let old = "error/postgresql.log.2026-11-22-00";
        let current = "error/postgresql.log.2026-11-22-01";
        let table = [
            (old, NOW - ROTATED_QUIET_MS, true),
            (old, NOW - ROTATED_QUIET_MS + 1, false),
            (current, NOW - ROTATED_QUIET_MS, false),
            (current, NOW - HOUR, true),
            (current, NOW - HOUR + 1, false),
            // Written after now (clock skew): not quiet.
            (current, NOW + 1_000, false),
        ];
        for (name, written, expected) in table {
            assert_eq!(
                stopped(name, written, &listing, NOW, &RULE),
                expected,
                "{name} written {} ms ago",
                NOW - written
            );
        }
    }

    fn plan_of(cp: &Checkpoint, listing: &[ListedFile]) -> Plan {
        mark(
            checkpoint::plan(cp, listing, true, "2026-11-22"),
            cp,
            listing,
            NOW,
            &RULE,
        )
    }

    #[test]
    fn only_files_with_nothing_shipped_that_stopped_growing_are_downloaded_whole() {
        let mut cp = Checkpoint::new("db1");
        // Shipped in part by portions: the rest stays with portions.
        cp.files
            .insert("a.log.1".into(), checkpoint::tests::state("4:40", 40, 40, 0));
        let listing = [
            listed("a.log", 10, NOW),
            listed("a.log.1", 90, 0),
            listed("a.log.2", 90, 0),
            listed("quiet.log", 90, NOW - 2 * HOUR),
        ];
        let p = plan_of(&cp, &listing);
        let paths: Vec<(String, bool)> = p
            .work
            .into_iter()
            .map(|w| (w.name.clone(), path(w, true) == Path::Whole))
            .collect();
        assert_eq!(
            paths,
            [
                ("a.log.1".to_owned(), false),
                ("a.log.2".to_owned(), true),
                ("quiet.log".to_owned(), true),
                ("a.log".to_owned(), false),
            ]
        );
        // Whole downloads off: portions throughout, and no file marked.
        let off = Rule {
            enabled: false,
            ..RULE
        };
        let p = mark(
            checkpoint::plan(&cp, &listing, true, "d"),
            &cp,
            &listing,
            NOW,
            &off,
        );
        assert!(p.work.iter().all(|w| !w.stopped));
        assert!(
            p.work
                .into_iter()
                .all(|w| path(w.clone(), true) == Path::Portions(w))
        );
    }

    #[test]
    fn a_renamed_copy_a_pending_chunk_or_a_skip_keeps_a_stopped_file_on_portions() {
        let w = checkpoint::plan(&Checkpoint::new("db1"), &[listed("x.log.3", 90, 0)], true, "d")
            .work
            .remove(0);
        let stopped = Work { stopped: true, ..w };
        assert_eq!(path(stopped.clone(), true), Path::Whole);
        assert_eq!(path(stopped.clone(), false), Path::Portions(stopped.clone()));
        let renamed = Work {
            skip: 30,
            continues: Some(checkpoint::Continues {
                source: checkpoint::Source::Current("x.log".into()),
                lossy: false,
            }),
            ..stopped.clone()
        };
        assert_eq!(path(renamed.clone(), true), Path::Portions(renamed));
        let pending = Work {
            pending: Some(checkpoint::Pending {
                key: "k".into(),
                start: 0,
                end: 9,
                end_marker: "1:9".into(),
                until: 0,
            }),
            ..stopped.clone()
        };
        assert_eq!(path(pending.clone(), true), Path::Portions(pending));
        let started = Work {
            marker: "2:20".into(),
            offset: 20,
            ..stopped
        };
        assert_eq!(path(started.clone(), true), Path::Portions(started));
    }

    #[test]
    fn the_rest_of_a_whole_download_is_downloaded_whole_or_read_past_from_the_beginning() {
        let w = checkpoint::plan(&Checkpoint::new("db1"), &[listed("x.log", 90, NOW)], true, "d")
            .work
            .remove(0);
        // Active again, or not: the rest of a whole download stays whole.
        let rest = Work {
            marker: UNMARKED.into(),
            offset: 50,
            ..w
        };
        assert_eq!(path(rest.clone(), true), Path::Whole);
        match path(rest, false) {
            Path::Portions(p) => assert_eq!(
                (p.marker.as_str(), p.offset, p.skip),
                ("0", 0, 50),
                "from the beginning, the 50 bytes shipped read past"
            ),
            Path::Whole => panic!("whole downloads are off"),
        }
    }

    #[test]
    fn a_skipped_binary_file_is_downloaded_whole_from_its_beginning_once_it_stopped() {
        let mut cp = Checkpoint::new("db1");
        let w = checkpoint::plan(&cp, &[listed("log/x.trc", 500, NOW)], true, "d")
            .work
            .remove(0);
        checkpoint::skip_file(&mut cp, &w);
        assert!(cp.files["log/x.trc"].binary);
        assert_eq!(cp.files["log/x.trc"].shipped, 500);
        // Still being written and not grown: nothing to do.
        let p = plan_of(&cp, &[listed("log/x.trc", 500, NOW)]);
        assert!(p.work.is_empty());
        assert_eq!(p.unchanged, 1);
        // Quiet since: downloaded whole from its beginning.
        let p = plan_of(&cp, &[listed("log/x.trc", 500, NOW - 2 * HOUR)]);
        assert_eq!(p.unchanged, 0);
        let w = &p.work[0];
        assert_eq!(
            (w.offset, w.marker.as_str(), w.skip, w.stopped),
            (0, "0", 0, true)
        );
        assert_eq!(path(w.clone(), true), Path::Whole);
        // Grown and quiet: the same.
        let p = plan_of(&cp, &[listed("log/x.trc", 700, NOW - 2 * HOUR)]);
        assert_eq!((p.work.len(), p.work[0].offset), (1, 0));
        // An empty one is left alone; a committed chunk ends the waiting.
        let mut empty = cp.clone();
        empty.files.get_mut("log/x.trc").unwrap().shipped = 0;
        assert!(plan_of(&empty, &[listed("log/x.trc", 0, 0)]).work.is_empty());
        let mut cp2 = cp.clone();
        checkpoint::begin_chunk(
            &mut cp2,
            &p.work[0],
            checkpoint::Pending {
                key: "k".into(),
                start: 0,
                end: 700,
                end_marker: UNMARKED.into(),
                until: 0,
            },
            None,
            false,
        );
        assert!(checkpoint::commit_chunk(
            &mut cp2,
            "log/x.trc",
            700,
            NOW - 2 * HOUR
        ));
        assert!(!cp2.files["log/x.trc"].binary);
        assert!(
            plan_of(&cp2, &[listed("log/x.trc", 700, NOW - 2 * HOUR)])
                .work
                .is_empty()
        );
    }

    /// Feeds `data` in frames of `frame` bytes; returns the chunks (start, end, head) and the
    /// bytes shipped in order.
    fn stream(from: u64, max: u64, data: &[u8], frame: usize) -> (Vec<(u64, u64, bool)>, Vec<u8>) {
        let mut s = Stream::new(from, max);
        let (mut chunks, mut shipped) = (Vec::new(), Vec::new());
        for mut f in data.chunks(frame) {
            while !f.is_empty() {
                let fed = s.feed(f);
                shipped.extend_from_slice(&f[fed.past..fed.past + fed.ship]);
                if fed.full {
                    let c = s.end_chunk(true).unwrap();
                    chunks.push((c.start, c.end, c.head.is_some()));
                }
                f = &f[fed.past + fed.ship..];
            }
        }
        if let Some(c) = s.end_chunk(false) {
            chunks.push((c.start, c.end, c.head.is_some()));
        }
        (chunks, shipped)
    }

    #[test]
    fn a_stream_ships_every_byte_past_those_shipped_once_in_chunks_of_whole_lines() {
        let line = |i: usize| format!("line {i:04} {}\n", "x".repeat(i % 37));
        let data: String = (0..400).map(line).collect();
        let data = data.as_bytes();
        for frame in [1, 7, 64, 4096, data.len()] {
            for from in [0u64, 1, 500, data.len() as u64 - 1, data.len() as u64] {
                let (chunks, shipped) = stream(from, 1000, data, frame);
                assert_eq!(shipped, &data[from as usize..], "frame {frame}, from {from}");
                let mut at = from;
                for (i, (start, end, head)) in chunks.iter().enumerate() {
                    assert_eq!(*start, at, "chunks follow each other");
                    assert!(end - start <= 1000 + 60, "about the chunk size: {chunks:?}");
                    if i + 1 < chunks.len() {
                        assert!(end - start >= 1000, "{chunks:?}");
                        assert_eq!(data[*end as usize - 1], b'\n', "a chunk ends a line");
                    }
                    assert_eq!(*head, *start == 0, "the head is the file's beginning");
                    at = *end;
                }
                assert_eq!(at, data.len() as u64);
            }
        }
    }

    #[test]
    fn a_stream_without_newlines_is_cut_at_the_allowance() {
        let data = vec![b'a'; 5_000_000];
        let (chunks, shipped) = stream(0, 1_000_000, &data, 65_536);
        assert_eq!(shipped.len(), data.len());
        assert_eq!(chunks[0], (0, 2_000_000, true));
        assert_eq!(chunks[1], (2_000_000, 4_000_000, false));
        assert_eq!(chunks[2], (4_000_000, 5_000_000, false));
    }

    #[test]
    fn the_head_is_the_valid_text_of_the_first_bytes() {
        let mut s = Stream::new(0, 1 << 20);
        let mut data = "é".repeat(600).into_bytes();
        let fed = s.feed(&data);
        assert_eq!(fed.ship, data.len());
        let c = s.end_chunk(false).unwrap();
        let head = c.head.unwrap();
        assert!(
            head.len() <= HEAD_BYTES && head.len() >= HEAD_BYTES - 1,
            "{}",
            head.len()
        );
        assert_eq!(c.end_marker, UNMARKED);
        // Binary: the text before the first invalid byte.
        let mut s = Stream::new(0, 1 << 20);
        data = b"SQLTRC\xff\x00\x01".to_vec();
        s.feed(&data);
        assert_eq!(s.end_chunk(false).unwrap().head.as_deref(), Some("SQLTRC"));
        let mut s = Stream::new(0, 1 << 20);
        s.feed(b"\xff\xfe");
        assert_eq!(s.end_chunk(false).unwrap().head, None);
        // Nothing past the bytes shipped: no chunk.
        let mut s = Stream::new(10, 1 << 20);
        assert_eq!(s.feed(b"0123456789").ship, 0);
        assert_eq!(s.end_chunk(false), None);
    }
}
