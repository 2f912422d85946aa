//! Where the reading of one chunk stands in its file, portion after portion: the RDS marker, the
//! byte offset, the lines to ask for, the file's first bytes, whether RDS cut a line, and the
//! decision that the file has been read to its end. No I/O: the shipper asks RDS for the portion
//! the cursor names, hands the answer to [`Cursor::advance`], and writes what it returns.

use crate::checkpoint::{self, FileState, Work};
use crate::loss;
use crate::portion::{self, Ask, Next, Truncation};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The first byte this chunk ships: bytes before it are already in another file's objects
    /// (a file renamed by rotation) and are read past.
    start: u64,
    /// Where the work began (bytes before it were shipped by earlier chunks).
    began: u64,
    marker: String,
    offset: u64,
    /// How many lines to ask for (`portion::Ask`).
    ask: Ask,
    empty_in_a_row: u32,
    /// The file's first bytes (up to `HEAD_BYTES`) while they cover everything read: from the
    /// beginning, or from those recorded when they end where this chunk starts.
    head: Option<String>,
    /// RDS cut a line over 1 MB in this chunk.
    lossy: bool,
    /// ... or earlier in this generation.
    lossy_before: bool,
    /// Lines RDS cut in this chunk.
    cuts: u32,
    /// The reading reached the end of the file.
    reached_end: bool,
    /// The file's listed size.
    size: u64,
    max_chunk_bytes: u64,
}

/// What one portion did to the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'d> {
    /// RDS cut the portion at 1 MB: ask again from the same marker for fewer lines.
    Retry,
    /// The portion is taken in.
    Read {
        /// Its bytes that this chunk ships (none before the chunk's start).
        ship: &'d [u8],
        /// RDS cut a line over 1 MB, near this byte offset; the portion is accepted as is.
        truncated_near: Option<u64>,
        /// Whether to read on: `Done` at the end of the file, `Stalled` when RDS keeps answering
        /// with nothing before the listed size.
        next: Next,
    },
}

/// What the reading leaves to record in the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Nothing was read: the file is only recorded as seen (`checkpoint::touch`).
    Untouched,
    /// Read, but every byte read was already shipped under the file's earlier name: progress
    /// without a chunk (`checkpoint::read_past`).
    ReadPast {
        marker: String,
        offset: u64,
        head: Option<String>,
        lossy: bool,
    },
    /// Bytes to ship as one chunk: written ahead, uploaded, committed.
    Chunk(Chunk),
}

/// A chunk read: bytes `start..end` of the file, the marker after them, and what reading them
/// taught about the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub start: u64,
    pub end: u64,
    pub end_marker: String,
    /// The file's first bytes, when this reading knows them.
    pub head: Option<String>,
    /// RDS cut a line over 1 MB in it.
    pub lossy: bool,
    /// The chunk holds the most a chunk may: the file continues in a new one.
    pub full: bool,
    /// Lines RDS cut in it, and the bytes it dropped from them when known
    /// (`loss::dropped_by_truncation`).
    pub cuts: u32,
    pub dropped: Option<u64>,
}

impl Cursor {
    /// A chunk of `work`'s file; `recorded` is the file's checkpoint entry, if it has one.
    pub fn new(work: &Work, recorded: Option<&FileState>, max_chunk_bytes: u64) -> Self {
        let head = if work.offset == 0 {
            Some(String::new())
        } else {
            recorded
                .and_then(|f| f.head.clone())
                .filter(|h| h.len() as u64 == work.offset)
        };
        // A line over 1 MB was cut by RDS earlier in this generation: bytes counted fall short
        // of the file's, and RDS's `AdditionalDataPending` tells the end.
        let lossy_before =
            recorded.is_some_and(|f| f.lossy && f.generation == work.generation && !work.restarted);
        Self {
            start: work.offset.max(work.skip),
            began: work.offset,
            marker: work.marker.clone(),
            offset: work.offset,
            ask: Ask::new(),
            empty_in_a_row: 0,
            head,
            lossy: false,
            lossy_before,
            cuts: 0,
            reached_end: false,
            size: work.size,
            max_chunk_bytes,
        }
    }

    /// The first byte this chunk ships (its key names it).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The marker to read the next portion from, exactly as RDS returned it.
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// How many lines to ask for.
    pub fn lines(&self) -> u32 {
        self.ask.lines
    }

    /// The chunk holds as much as a chunk may: no further portion is read into it.
    pub fn chunk_full(&self) -> bool {
        self.offset.saturating_sub(self.start) >= self.max_chunk_bytes
    }

    /// Takes in the portion RDS answered: its data, its marker and `AdditionalDataPending`.
    pub fn advance<'d>(&mut self, data: &'d str, marker: Option<&str>, pending: bool) -> Step<'d> {
        let mut truncated_near = None;
        let (cut, next) = self.ask.answer(data);
        self.ask = next;
        match cut {
            Some(Truncation::RetryWith(_)) => return Step::Retry,
            Some(Truncation::AcceptAndFlag) => {
                self.lossy = true;
                self.cuts += 1;
                truncated_near = Some(self.offset);
            }
            None => {}
        }
        let mut ship: &[u8] = &[];
        if data.is_empty() {
            self.empty_in_a_row += 1;
        } else {
            self.empty_in_a_row = 0;
            self.extend_head(data);
            let from = usize::try_from(self.start.saturating_sub(self.offset))
                .unwrap_or(usize::MAX)
                .min(data.len());
            ship = &data.as_bytes()[from..];
            self.offset += data.len() as u64;
        }
        if let Some(m) = marker.filter(|m| !m.is_empty()) {
            self.marker = m.to_owned();
        }
        let next = self.next(pending, data.len());
        self.reached_end |= next == Next::Done;
        Step::Read {
            ship,
            truncated_near,
            next,
        }
    }

    fn extend_head(&mut self, data: &str) {
        if let Some(h) = self.head.as_mut()
            && h.len() as u64 == self.offset
            && h.len() < checkpoint::HEAD_BYTES
        {
            *h = checkpoint::head_of(&format!("{h}{}", checkpoint::head_of(data)));
        }
    }

    /// The end-of-file rule. After a cut line the byte count falls short of `Size`: the end is
    /// RDS's empty answer with nothing pending (a short portion may also say nothing is
    /// pending). Otherwise the bytes read are compared with the listed size.
    fn next(&self, pending: bool, got: usize) -> Next {
        if (self.lossy || self.lossy_before) && !pending && got == 0 {
            return Next::Done;
        }
        portion::next(pending, self.offset, self.size, got, self.empty_in_a_row)
    }

    /// What the reading leaves to record.
    pub fn finish(self) -> Finish {
        let full = self.chunk_full();
        let head = self.head.filter(|h| !h.is_empty());
        if self.offset > self.start {
            let notice = portion::TRUNCATION_SUFFIX.len() as u64;
            let dropped = loss::dropped_by_truncation(
                self.cuts,
                !self.lossy_before,
                self.reached_end,
                self.size,
                self.offset,
                notice,
            );
            Finish::Chunk(Chunk {
                start: self.start,
                end: self.offset,
                end_marker: self.marker,
                head,
                lossy: self.lossy,
                full,
                cuts: self.cuts,
                dropped,
            })
        } else if self.offset > self.began {
            Finish::ReadPast {
                marker: self.marker,
                offset: self.offset,
                head,
                lossy: self.lossy,
            }
        } else {
            Finish::Untouched
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::HEAD_BYTES;
    use crate::portion::{MAX_LINES, TRUNCATION_SUFFIX};

    fn work(marker: &str, offset: u64, size: u64) -> Work {
        Work {
            name: "error/postgresql.log".into(),
            marker: marker.into(),
            offset,
            generation: 0,
            size,
            last_written: 1_000,
            date: "2026-11-22".into(),
            pending: None,
            restarted: false,
            skip: 0,
            continues: None,
            stopped: false,
        }
    }

    fn entry(shipped: u64, head: Option<&str>, lossy: bool) -> FileState {
        FileState {
            marker: "m".into(),
            shipped,
            size: shipped,
            last_written: 500,
            generation: 0,
            date: "2026-11-21".into(),
            pending: None,
            head: head.map(str::to_owned),
            lossy,
            skip: 0,
            claimed: false,
            listed: None,
            binary: false,
        }
    }

    /// The bytes shipped and the `next` of a step that read.
    fn read(step: Step<'_>) -> (Vec<u8>, Option<u64>, Next) {
        match step {
            Step::Read {
                ship,
                truncated_near,
                next,
            } => (ship.to_vec(), truncated_near, next),
            Step::Retry => panic!("a retry"),
        }
    }

    #[test]
    fn a_file_is_read_to_its_listed_size_with_the_markers_rds_returns() {
        let mut c = Cursor::new(&work("0", 0, 12), None, 1 << 20);
        assert_eq!((c.marker(), c.lines(), c.start()), ("0", MAX_LINES, 0));
        let (ship, cut, next) = read(c.advance("line 1\n", Some("1:7"), true));
        assert_eq!(
            (ship.as_slice(), cut, next),
            (&b"line 1\n"[..], None, Next::Continue)
        );
        assert_eq!(c.marker(), "1:7");
        // A short portion says nothing is pending before the end: the size says more.
        assert_eq!(read(c.advance("l2\n", Some("1:10"), false)).2, Next::Continue);
        // An empty marker is no marker: the last one stays.
        assert_eq!(read(c.advance("l3", Some(""), false)).2, Next::Done);
        assert_eq!(c.marker(), "1:10");
        assert_eq!(
            c.finish(),
            Finish::Chunk(Chunk {
                start: 0,
                end: 12,
                end_marker: "1:10".into(),
                head: Some("line 1\nl2\nl3".into()),
                lossy: false,
                full: false,
                cuts: 0,
                dropped: None,
            })
        );
    }

    #[test]
    fn the_file_growing_while_read_is_read_on() {
        let mut c = Cursor::new(&work("1:5", 5, 10), Some(&entry(5, None, false)), 1 << 20);
        assert_eq!(read(c.advance("12345", Some("1:10"), true)).2, Next::Continue);
        assert_eq!(read(c.advance("678", Some("1:13"), false)).2, Next::Done);
    }

    #[test]
    fn a_portion_cut_in_its_first_line_is_asked_again_for_that_line_alone_then_flagged() {
        let mut c = Cursor::new(&work("0", 0, 5_000_000), None, 1 << 30);
        let cut = format!("{}{TRUNCATION_SUFFIX}", "x".repeat(100));
        let mut asked = vec![c.lines()];
        loop {
            match c.advance(&cut, Some("1:999"), true) {
                Step::Retry => {
                    assert_eq!(c.marker(), "0", "asked again from the same marker");
                    asked.push(c.lines());
                }
                Step::Read {
                    ship,
                    truncated_near,
                    next,
                } => {
                    // The one-line portion is accepted as RDS returns it, flagged where it starts.
                    assert_eq!(ship, cut.as_bytes());
                    assert_eq!((truncated_near, next), (Some(0), Next::Continue));
                    break;
                }
            }
        }
        assert_eq!(asked, [10_000, 1]);
        assert_eq!(c.marker(), "1:999");
        let (_, near, _) = read(c.advance("more\n", Some("2:5"), true));
        assert_eq!(near, None);
        match c.finish() {
            Finish::Chunk(Chunk {
                end,
                lossy,
                cuts,
                dropped,
                ..
            }) => {
                assert_eq!((end, lossy), (cut.len() as u64 + 5, true));
                // The end of the file was not reached: what RDS dropped is not known.
                assert_eq!((cuts, dropped), (1, None));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_bytes_a_cut_dropped_are_known_after_reading_to_the_end() {
        // "a\n", a 2,000,000-byte line, "b\n": RDS cuts the long line to 1 MB with its notice.
        let size = 2 + 2_000_001 + 2;
        let mut c = Cursor::new(&work("0", 0, size), None, 1 << 30);
        read(c.advance("a\n", Some("1:2"), true));
        let cut = format!(
            "{}{TRUNCATION_SUFFIX}",
            "x".repeat(1_048_576 - TRUNCATION_SUFFIX.len())
        );
        assert_eq!(c.advance(&cut, Some("1:2000003"), true), Step::Retry);
        let (_, near, _) = read(c.advance(&cut, Some("1:2000003"), true));
        assert_eq!(near, Some(2));
        assert_eq!(read(c.advance("b\n", Some("1:2000005"), false)).2, Next::Continue);
        assert_eq!(read(c.advance("", Some("1:2000005"), false)).2, Next::Done);
        match c.finish() {
            Finish::Chunk(Chunk { cuts, dropped, .. }) => {
                let kept = 1_048_576 - TRUNCATION_SUFFIX.len() as u64;
                assert_eq!((cuts, dropped), (1, Some(2_000_001 - kept)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_next_request_is_sized_from_the_last_portion() {
        let mut c = Cursor::new(&work("0", 0, 10_000_000), None, 1 << 30);
        let long_lines = format!("{}\n", "y".repeat(99_999)).repeat(3);
        read(c.advance(&long_lines, Some("1:300000"), true));
        assert_eq!(c.lines(), portion::lines_for_next(&long_lines));
        assert_eq!(c.lines(), 9);
    }

    #[test]
    fn the_lines_before_a_cut_are_asked_for_then_the_cut_line_alone_then_as_many_as_before() {
        // Three 100-byte lines, then a line RDS cuts: the portion holds the three and the cut.
        let line = format!("{}\n", "a".repeat(99));
        let mut c = Cursor::new(&work("0", 0, 10_000_000), None, 1 << 30);
        let cut = format!("{}{}{TRUNCATION_SUFFIX}", line.repeat(3), "x".repeat(1_000_000));
        assert_eq!(c.advance(&cut, Some("1:9"), true), Step::Retry);
        assert_eq!((c.marker(), c.lines()), ("0", 3));
        let (ship, near, _) = read(c.advance(&line.repeat(3), Some("1:300"), true));
        assert_eq!((ship.len(), near), (300, None));
        assert_eq!(c.lines(), 1, "the cut line, shown long, comes first: alone");
        let long = format!("{}{TRUNCATION_SUFFIX}", "x".repeat(1_048_000));
        let (_, near, _) = read(c.advance(&long, Some("1:2000300"), true));
        assert_eq!(near, Some(300));
        // Back to what the 100-byte lines call for, not one line.
        assert_eq!(c.lines(), 9_000);
    }

    #[test]
    fn after_a_cut_line_the_end_is_rds_saying_nothing_more() {
        // Lossy earlier in this generation: fewer bytes counted than listed, and RDS's empty
        // answer with nothing pending is the end.
        let recorded = entry(100, None, true);
        let mut c = Cursor::new(&work("5:100", 100, 500), Some(&recorded), 1 << 20);
        assert_eq!(read(c.advance("x\n", Some("5:102"), true)).2, Next::Continue);
        assert_eq!(read(c.advance("", Some("5:102"), false)).2, Next::Done);
        // Not lossy: the same answers before the listed size are read again, then stall.
        let mut c = Cursor::new(&work("5:100", 100, 500), Some(&entry(100, None, false)), 1 << 20);
        assert_eq!(read(c.advance("", None, false)).2, Next::Continue);
        assert_eq!(read(c.advance("", None, false)).2, Next::Continue);
        assert_eq!(read(c.advance("", None, false)).2, Next::Stalled);
        assert_eq!(c.finish(), Finish::Untouched);
        // Lossy in another generation, or a restarted file: not this one's.
        let mut other = entry(100, None, true);
        other.generation = 3;
        let mut c = Cursor::new(&work("5:100", 100, 500), Some(&other), 1 << 20);
        assert_eq!(read(c.advance("", None, false)).2, Next::Continue);
        let mut restarted = work("0", 0, 500);
        restarted.restarted = true;
        let mut c = Cursor::new(&restarted, Some(&entry(100, None, true)), 1 << 20);
        assert_eq!(read(c.advance("", None, false)).2, Next::Continue);
        // Cut in this chunk: the same rule.
        let mut c = Cursor::new(&work("0", 0, 5_000_000), None, 1 << 30);
        let cut = format!("{}{TRUNCATION_SUFFIX}", "x".repeat(100));
        while c.advance(&cut, Some("1:1"), true) == Step::Retry {}
        assert_eq!(read(c.advance("", Some("1:1"), false)).2, Next::Done);
    }

    #[test]
    fn bytes_shipped_under_an_earlier_name_are_read_past() {
        // A renamed file whose first 10 bytes are in its earlier name's objects.
        let mut w = work("0", 0, 16);
        w.skip = 10;
        let mut c = Cursor::new(&w, None, 1 << 20);
        assert_eq!(c.start(), 10);
        let (ship, _, _) = read(c.advance("0123456", Some("1:7"), true));
        assert!(ship.is_empty());
        let (ship, _, next) = read(c.advance("789abc", Some("1:13"), true));
        assert_eq!((ship.as_slice(), next), (&b"abc"[..], Next::Continue));
        let (ship, _, next) = read(c.advance("def", Some("1:16"), false));
        assert_eq!((ship.as_slice(), next), (&b"def"[..], Next::Done));
        assert_eq!(
            c.finish(),
            Finish::Chunk(Chunk {
                start: 10,
                end: 16,
                end_marker: "1:16".into(),
                head: Some("0123456789abcdef".into()),
                lossy: false,
                full: false,
                cuts: 0,
                dropped: None,
            })
        );
        // Everything read is before the start: progress without a chunk.
        let mut w = work("0", 0, 7);
        w.skip = 10;
        let mut c = Cursor::new(&w, None, 1 << 20);
        read(c.advance("0123456", Some("1:7"), false));
        assert_eq!(
            c.finish(),
            Finish::ReadPast {
                marker: "1:7".into(),
                offset: 7,
                head: Some("0123456".into()),
                lossy: false,
            }
        );
    }

    #[test]
    fn the_first_bytes_are_known_while_they_cover_everything_read() {
        // Resumed where the recorded first bytes end: they grow on.
        let recorded = entry(4, Some("abcd"), false);
        let mut c = Cursor::new(&work("1:4", 4, 8), Some(&recorded), 1 << 20);
        read(c.advance("efgh", Some("1:8"), false));
        match c.finish() {
            Finish::Chunk(Chunk { head, .. }) => assert_eq!(head.as_deref(), Some("abcdefgh")),
            other => panic!("{other:?}"),
        }
        // Recorded first bytes that end elsewhere are not extended (nor recorded again).
        let recorded = entry(6, Some("abcd"), false);
        let mut c = Cursor::new(&work("1:6", 6, 8), Some(&recorded), 1 << 20);
        read(c.advance("gh", Some("1:8"), false));
        match c.finish() {
            Finish::Chunk(Chunk { head, .. }) => assert_eq!(head, None),
            other => panic!("{other:?}"),
        }
        // At most HEAD_BYTES.
        let mut c = Cursor::new(&work("0", 0, 5_000), None, 1 << 20);
        let data = "z".repeat(700);
        for i in 1..=5 {
            read(c.advance(&data, Some(&format!("1:{}", 700 * i)), true));
        }
        match c.finish() {
            Finish::Chunk(Chunk { head, .. }) => assert_eq!(head.map(|h| h.len()), Some(HEAD_BYTES)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_chunk_ends_once_it_holds_the_most_a_chunk_may() {
        let mut c = Cursor::new(&work("0", 0, 100), None, 10);
        read(c.advance("0123456", Some("1:7"), true));
        assert!(!c.chunk_full());
        read(c.advance("789abc", Some("1:13"), true));
        assert!(c.chunk_full());
        match c.finish() {
            Finish::Chunk(Chunk { end, full, .. }) => assert_eq!((end, full), (13, true)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nothing_read_leaves_the_file_untouched() {
        let c = Cursor::new(&work("1:5", 5, 5), Some(&entry(5, None, false)), 1 << 20);
        assert_eq!(c.finish(), Finish::Untouched);
    }
}
