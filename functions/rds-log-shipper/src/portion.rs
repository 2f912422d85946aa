//! Reading a file with `DownloadDBLogFilePortion` despite RDS's quirks.

/// What RDS appends to a portion whose lines did not fit in 1 MB.
pub const TRUNCATION_SUFFIX: &str = " [Your log message was truncated]";
/// RDS returns at most 10,000 lines per portion.
pub const MAX_LINES: u32 = 10_000;

/// True when RDS cut the portion at 1 MB: its data ends with the truncation notice.
pub fn is_truncated(data: &str) -> bool {
    data.trim_end_matches(['\n', '\r']).ends_with(TRUNCATION_SUFFIX)
}

/// What a resumed read at `offset` would return, cut from `data`, a portion read from the
/// file's beginning that held all of it (nothing pending): the bytes past those shipped. `None`
/// when it cannot stand in for that read: it is shorter than what was shipped (the file
/// shrank: the resumed read decides), or `offset` falls inside a character (it is not where a
/// portion ended).
pub fn rest_of_whole(data: &str, offset: u64) -> Option<&str> {
    data.get(usize::try_from(offset).ok()?..)
}

/// The newlines in `data`: the complete lines it holds.
fn newlines(data: &str) -> u32 {
    u32::try_from(data.bytes().filter(|b| *b == b'\n').count()).unwrap_or(u32::MAX)
}

/// What a portion should carry: a little under RDS's 1 MB, so that it is not cut.
pub const TARGET_PORTION_BYTES: usize = 900_000;

/// How many lines to ask for next, from the last portion's average line length: as many as fit
/// in about 900 KB (at most 10,000). Asking for 10,000 long lines again and again would have
/// every other request truncated and wasted, under a request budget shared by the account.
pub fn lines_for_next(data: &str) -> u32 {
    if data.is_empty() {
        return MAX_LINES;
    }
    // A portion without a newline is one line (one cut at 1 MB, say): its length counts.
    let lines = usize::try_from(newlines(data)).unwrap_or(usize::MAX).max(1);
    let average = (data.len() / lines).max(1);
    u32::try_from(TARGET_PORTION_BYTES / average)
        .unwrap_or(MAX_LINES)
        .clamp(1, MAX_LINES)
}

/// What to do with a portion RDS answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// RDS cut the portion (and moved its marker past every line asked for): ask again from the
    /// same marker for this many lines.
    RetryWith(u32),
    /// A single line over 1 MB: accepted as RDS returns it, and flagged.
    AcceptAndFlag,
}

/// A cut portion's data before RDS's notice.
fn before_notice(data: &str) -> &str {
    let body = data.trim_end_matches(['\n', '\r']);
    body.strip_suffix(TRUNCATION_SUFFIX).unwrap_or(body)
}

/// The complete lines a cut portion holds before the line RDS cut: the newlines before its
/// notice.
pub fn lines_before_cut(data: &str) -> u32 {
    newlines(before_notice(data))
}

/// How much of its cut line a cut portion shows: the bytes after its last complete line.
pub fn cut_line_shown(data: &str) -> usize {
    let body = before_notice(data);
    body.len() - body.rfind('\n').map_or(0, |i| i + 1)
}

/// A cut line shown this long is taken for a line over 1 MB: asked for alone once the lines
/// before it are read. Shorter, it may be an ordinary line that happened to cross the 1 MB
/// boundary, read with the lines after it (one request fewer); were it a line over 1 MB after
/// all, its portion is cut in its first line and the line asked for alone then.
pub const LONG_LINE_SHOWN: usize = 16 * 1024;

/// After a portion cut at 1 MB, asked for `asked` lines: the `k` complete lines before the cut
/// fit (they came in under 1 MB), so exactly `k` are asked for again; when the cut line comes
/// first (`k` = 0), that line alone; a single line cut is accepted. Always fewer lines than
/// asked, so the retries end.
pub fn on_truncated(asked: u32, data: &str) -> Truncation {
    if asked <= 1 {
        return Truncation::AcceptAndFlag;
    }
    Truncation::RetryWith(lines_before_cut(data).clamp(1, asked - 1))
}

/// How many lines to ask for, portion after portion (no I/O: [`Ask::answer`] takes RDS's data
/// and says what to do with it and what to ask next).
///
/// The count is sized from the lengths of the complete lines read ([`lines_for_next`]), at most
/// 10,000. A cut line is no sample of a line's length (RDS dropped its tail): after one, the
/// count is the one the lines before it call for, not one line for ever after, nor 10,000
/// straight away (doubling back from one line would cost about 13 small requests per long
/// line). In a run of lines over 1 MB, from the third on, each is asked for alone, right after
/// the one before. A cut portion also says where its cut line is: once the `k` lines before it
/// are read, it comes first, and is asked for alone when RDS showed [`LONG_LINE_SHOWN`] of it or
/// more.
///
/// So a line over 1 MB is in at most three requests of about 1 MB: the portion it cut, then
/// itself alone; or, shown shorter than `LONG_LINE_SHOWN`, also the portion cut in it first; or,
/// in a run of them, one. The
/// bytes received are at most twice the file's, plus less than `LONG_LINE_SHOWN` for each line
/// over 1 MB of that second kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Lines to ask for next.
    pub lines: u32,
    /// Complete lines left before a line RDS cut in an earlier portion, when one is known.
    before_cut: Option<u32>,
    /// The count the lengths of the last complete lines read call for.
    sized: u32,
    /// The last line taken in was a cut line (no complete line since).
    after_cut: bool,
}

impl Default for Ask {
    fn default() -> Self {
        Self::new()
    }
}

impl Ask {
    /// Nothing read yet: 10,000 lines.
    pub const fn new() -> Self {
        Self {
            lines: MAX_LINES,
            before_cut: None,
            sized: MAX_LINES,
            after_cut: false,
        }
    }

    /// Given the data RDS answered for `self.lines` lines: whether to take it in (`None`) or
    /// what a cut says, and what to ask for next.
    pub fn answer(self, data: &str) -> (Option<Truncation>, Self) {
        if is_truncated(data) {
            let t = on_truncated(self.lines, data);
            let next = match t {
                Truncation::RetryWith(lines) => Self {
                    lines,
                    // The `k` lines before the cut asked for: a long cut line follows them. (With
                    // `k` = 0 the cut line is the one asked for.)
                    before_cut: (lines_before_cut(data) == lines && cut_line_shown(data) >= LONG_LINE_SHOWN)
                        .then_some(lines),
                    sized: self.sized,
                    after_cut: self.after_cut,
                },
                // The cut line is read: back to the count the lines before it call for; but
                // right after another cut line (a run of lines over 1 MB), the next line alone:
                // each further one of the run then costs one request.
                Truncation::AcceptAndFlag => Self {
                    lines: if self.after_cut { 1 } else { self.sized },
                    before_cut: None,
                    sized: self.sized,
                    after_cut: true,
                },
            };
            return (Some(t), next);
        }
        let sized = if data.is_empty() {
            self.sized
        } else {
            lines_for_next(data)
        };
        let read = newlines(data);
        let (lines, before_cut) = match self.before_cut.map(|k| k.saturating_sub(read)) {
            // The lines before a known cut line are read: it comes first, alone.
            Some(0) => (1, None),
            // A short portion: the lines left before it.
            Some(left) => (left, Some(left)),
            None => (sized, None),
        };
        let next = Self {
            lines,
            before_cut,
            sized,
            after_cut: data.is_empty() && self.after_cut,
        };
        (None, next)
    }
}

/// Whether to keep reading a file after a portion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Everything listed has been read.
    Done,
    /// RDS keeps answering with nothing although `Size` says more: stop for this run (the data
    /// is read on a later run, from the same marker).
    Stalled,
}

/// `AdditionalDataPending` can be false before the end of the file (a short portion): the bytes
/// shipped are compared with the listed `Size` instead. Empty answers are retried a bounded
/// number of times.
pub fn next(pending: bool, shipped: u64, size: u64, got: usize, empty_in_a_row: u32) -> Next {
    if shipped >= size && !pending {
        return Next::Done;
    }
    if got == 0 && empty_in_a_row >= 3 {
        return Next::Stalled;
    }
    if pending || shipped < size {
        Next::Continue
    } else {
        Next::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_is_recognised() {
        assert!(is_truncated(&format!("{}{TRUNCATION_SUFFIX}", "x".repeat(10))));
        assert!(is_truncated(&format!("a\n{TRUNCATION_SUFFIX}\n")));
        assert!(!is_truncated("a normal line\n"));
        assert!(!is_truncated(""));
    }

    /// A portion RDS cut: `k` complete lines of `len` bytes, then `cut` bytes of the cut line.
    fn cut(k: usize, len: usize, cut: usize) -> String {
        let line = format!("{}\n", "a".repeat(len - 1));
        format!("{}{}{TRUNCATION_SUFFIX}", line.repeat(k), "x".repeat(cut))
    }

    #[test]
    fn a_cut_portion_asks_for_the_lines_before_its_cut_or_its_cut_line_alone() {
        // (lines asked, the portion) -> what to do.
        let table = [
            // k complete lines before the cut: exactly k, from the same marker.
            (10_000, cut(3, 100, 1_000), Truncation::RetryWith(3)),
            (10_000, cut(9_000, 100, 100), Truncation::RetryWith(9_000)),
            (12, cut(10, 100_000, 48_000), Truncation::RetryWith(10)),
            (2, cut(1, 100, 1_000_000), Truncation::RetryWith(1)),
            // The cut line first (k = 0): that line alone.
            (10_000, cut(0, 1, 1_048_000), Truncation::RetryWith(1)),
            (2, cut(0, 1, 1_048_000), Truncation::RetryWith(1)),
            // A cut ending on a newline: the k lines, then the line with nothing of it shown.
            (50, cut(5, 200, 0), Truncation::RetryWith(5)),
            // One line asked for and cut: accepted and flagged.
            (1, cut(0, 1, 1_048_000), Truncation::AcceptAndFlag),
            // Never as many lines as asked (RDS would not put more lines before the cut).
            (4, cut(7, 10, 10), Truncation::RetryWith(3)),
        ];
        for (asked, data, expected) in table {
            assert_eq!(on_truncated(asked, &data), expected, "asked {asked}");
        }
        assert_eq!(lines_before_cut(&format!("a\nb\n{TRUNCATION_SUFFIX}\n")), 2);
        assert_eq!(lines_before_cut(&format!("abc{TRUNCATION_SUFFIX}")), 0);
        assert_eq!(cut_line_shown(&format!("a\nb\nxyz{TRUNCATION_SUFFIX}\n")), 3);
        assert_eq!(cut_line_shown(&format!("a\n{TRUNCATION_SUFFIX}")), 0);
        assert_eq!(cut_line_shown(&format!("abc{TRUNCATION_SUFFIX}")), 3);
    }

    #[test]
    fn after_a_cut_the_count_grows_back_to_what_the_lines_read_call_for() {
        let lines = |n: usize, len: usize| format!("{}\n", "a".repeat(len - 1)).repeat(n);
        let long = cut(0, 1, 1_048_000);
        // (data RDS answers, whether it is taken in, the lines asked for next).
        let table: [(String, Option<Truncation>, u32); 18] = [
            // 100-byte lines: 9,000 fit in 900 KB.
            (lines(10_000, 90), None, 10_000),
            (lines(10_000, 100), None, 9_000),
            // An ordinary line across the 1 MB boundary: the lines before it, then on as before.
            (cut(8_990, 116, 50), Some(Truncation::RetryWith(8_990)), 8_990),
            (lines(8_990, 116), None, 7_758),
            // 3 lines of 100 bytes before a cut line shown long: those 3, then the cut line
            // alone, accepted.
            (cut(3, 100, 1_000_000), Some(Truncation::RetryWith(3)), 3),
            (lines(3, 100), None, 1),
            (long.clone(), Some(Truncation::AcceptAndFlag), 9_000),
            (lines(9_000, 100), None, 9_000),
            // A line over 1 MB first: cut, asked for alone, accepted; back to 9,000, not to 1.
            (long.clone(), Some(Truncation::RetryWith(1)), 1),
            (long.clone(), Some(Truncation::AcceptAndFlag), 9_000),
            // Two such lines in a row: the second costs the same two requests, and as it was
            // right after another, the next line is asked for alone: a third costs one request;
            // the short line after the run sets the count back.
            (long.clone(), Some(Truncation::RetryWith(1)), 1),
            (long.clone(), Some(Truncation::AcceptAndFlag), 1),
            (long.clone(), Some(Truncation::AcceptAndFlag), 1),
            (lines(1, 100), None, 9_000),
            // A line over 1 MB shown short: read after the lines before it, as if ordinary, and
            // asked for alone when it cuts a portion in its first line.
            (cut(5, 100, 100), Some(Truncation::RetryWith(5)), 5),
            (lines(5, 100), None, 9_000),
            (long.clone(), Some(Truncation::RetryWith(1)), 1),
            (long, Some(Truncation::AcceptAndFlag), 9_000),
        ];
        let mut ask = Ask::new();
        for (i, (data, taken, next)) in table.into_iter().enumerate() {
            let (t, after) = ask.answer(&data);
            assert_eq!((t, after.lines), (taken, next), "step {i}");
            ask = after;
        }
        // Longer lines, fewer of them; an empty answer changes nothing.
        let (_, ask) = ask.answer(&lines(9, 100_000));
        assert_eq!(ask.lines, 9);
        assert_eq!(ask.answer("").1.lines, 9);
        // A short portion before the cut line: the lines left before it, then the cut line.
        let (_, ask) = Ask::new().answer(&cut(6, 100, LONG_LINE_SHOWN));
        assert_eq!(ask.lines, 6);
        let (_, ask) = ask.answer(&lines(4, 100));
        assert_eq!(ask.lines, 2);
        let (_, ask) = ask.answer(&format!("{}a", lines(1, 100)));
        assert_eq!(ask.lines, 1, "the rest of the 6th line");
        let (_, ask) = ask.answer("aaa\n");
        assert_eq!(ask.lines, 1, "now the cut line");
        // It turned out under 1 MB: taken in, and the count follows its length.
        let (t, ask) = ask.answer(&lines(1, 300_000));
        assert_eq!((t, ask.lines), (None, 3));
    }

    /// RDS as it is seen to behave (and as the emulator in tests/src/rds.rs answers): `asked`
    /// lines from byte `at`; over 1 MB, the first 1 MB less the notice, then the notice, and the
    /// marker past every line asked for.
    fn rds(file: &[u8], at: usize, asked: u32) -> (std::borrow::Cow<'_, str>, usize) {
        let mut end = at;
        for _ in 0..asked {
            match file[end..].iter().position(|b| *b == b'\n') {
                Some(i) => end += i + 1,
                None => {
                    end = file.len();
                    break;
                }
            }
        }
        fn text(b: &[u8]) -> &str {
            std::str::from_utf8(b).unwrap()
        }
        if end - at > 1_048_576 {
            let kept = text(&file[at..at + 1_048_576 - TRUNCATION_SUFFIX.len()]);
            (format!("{kept}{TRUNCATION_SUFFIX}").into(), end)
        } else {
            (text(&file[at..end]).into(), end)
        }
    }

    /// Per line RDS cut, by its first byte: (the portions cut in it, and all requests spent on
    /// it: those and the requests for the lines before it that its cuts led to).
    type Spent = std::collections::BTreeMap<usize, (u32, u32)>;

    /// Reads `file` to its end as the cursor does: (requests, bytes received, requests spent).
    fn read_all(file: &[u8]) -> (u32, usize, Spent) {
        let (mut ask, mut at, mut requests, mut received) = (Ask::new(), 0, 0, 0);
        let (mut spent, mut last_cut) = (Spent::new(), None);
        while at < file.len() {
            requests += 1;
            assert!(requests < 100_000, "no end");
            let (data, end) = rds(file, at, ask.lines);
            received += data.len();
            let cut_in = is_truncated(&data).then(|| {
                // The line the cut falls in, by its first byte.
                let cut_at = at + 1_048_576 - TRUNCATION_SUFFIX.len();
                file[..cut_at]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1)
            });
            // A request for the lines before a cut is spent on the cut line.
            if let Some(line) = cut_in.or(last_cut.take()) {
                let (cuts, all) = spent.entry(line).or_insert((0, 0));
                *cuts += u32::from(cut_in.is_some());
                *all += 1;
            }
            let (t, next) = ask.answer(&data);
            ask = next;
            match t {
                Some(Truncation::RetryWith(lines)) => {
                    last_cut = cut_in.filter(|_| lines_before_cut(&data) == lines);
                }
                // Taken in: exactly once, from where the last portion ended.
                _ => at = end,
            }
        }
        (requests, received, spent)
    }

    #[test]
    fn a_line_over_1_mb_costs_at_most_three_requests_and_twice_its_bytes() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut below = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for case in 0..16 {
            // 3,000 short lines of 20 B to 2 KB, or (every third case) 300 of up to 200 KB, and
            // lines over 1 MB among them: at random, or three in a row first.
            let (count, spread) = if case % 3 == 0 {
                (300, 200_000)
            } else {
                (3_000, 2_000)
            };
            let (mut file, mut short, mut long) = (Vec::new(), Vec::new(), Vec::new());
            let mut at_long: Vec<u64> = (0..1 + below(5)).map(|_| below(count)).collect();
            if case % 4 == 1 {
                at_long = vec![0, 0, 0];
            }
            for i in 0..count {
                for _ in at_long.iter().filter(|a| **a == i) {
                    long.push(file.len());
                    file.resize(file.len() + 1_048_576 + below(3_000_000) as usize, b'L');
                    file.push(b'\n');
                }
                let line_at = short.len();
                short.resize(line_at + 20 + below(spread) as usize, b's');
                short.push(b'\n');
                file.extend_from_slice(&short[line_at..]);
            }
            let (requests, received, spent) = read_all(&file);
            // Every line over 1 MB is in at most 3 requests of about 1 MB (2 when it comes first
            // or RDS showed enough of it, 1 from the third of a run on) and 4 requests in all
            // (3 but when shown short).
            for l in &long {
                let (cuts, all) = spent.get(l).copied().unwrap_or_default();
                assert!(
                    (1..=3).contains(&cuts) && all <= 4,
                    "case {case}: {cuts} cut, {all} in all for the line at {l}"
                );
            }
            // Against the same file without its long lines: at most 3 more requests each. (Lines
            // of 20 B to 200 KB make the count noisy: where portions begin moves their cuts.)
            let (baseline, _, _) = read_all(&short);
            let n = long.len() as u32;
            assert!(
                spread > 2_000 || requests <= baseline + 3 * n,
                "case {case}: {requests} requests, {baseline} without the {n} long lines"
            );
            assert!(
                received <= 2 * file.len() + LONG_LINE_SHOWN * long.len(),
                "case {case}: {received} of {}",
                file.len()
            );
        }
    }

    #[test]
    fn line_counts_follow_the_data() {
        assert_eq!(lines_for_next(""), MAX_LINES);
        assert_eq!(
            lines_for_next(
                &"x".repeat(99)
                    .chars()
                    .chain(['\n'])
                    .collect::<String>()
                    .repeat(50)
            ),
            9_000
        );
        assert_eq!(lines_for_next(&format!("{}\n", "y".repeat(2_000_000))), 1);
        assert_eq!(lines_for_next("a\nb\n"), MAX_LINES);
        // One line cut at 1 MB, without its newline: the next request is for one line.
        assert_eq!(
            lines_for_next(&format!("{}{TRUNCATION_SUFFIX}", "z".repeat(1_048_000))),
            1
        );
    }

    #[test]
    fn short_portions_are_read_past() {
        // AdditionalDataPending false but fewer bytes than Size: keep going.
        assert_eq!(next(false, 500, 1000, 500, 0), Next::Continue);
        assert_eq!(next(true, 500, 1000, 500, 0), Next::Continue);
        assert_eq!(next(false, 1000, 1000, 500, 0), Next::Done);
        // The file grew while being read: RDS says more is pending.
        assert_eq!(next(true, 1000, 1000, 10, 0), Next::Continue);
        assert_eq!(next(false, 500, 1000, 0, 3), Next::Stalled);
        assert_eq!(next(false, 500, 1000, 0, 1), Next::Continue);
    }

    #[test]
    fn a_whole_file_read_from_its_beginning_stands_in_for_the_resumed_read() {
        assert_eq!(
            rest_of_whole("line 1\nline 2\nline 3\n", 7),
            Some("line 2\nline 3\n")
        );
        assert_eq!(rest_of_whole("line 1\n", 7), Some(""), "nothing new");
        assert_eq!(rest_of_whole("line 1\n", 0), Some("line 1\n"));
        assert_eq!(rest_of_whole("short", 9), None, "shorter than what was shipped");
        assert_eq!(rest_of_whole("é\n", 1), None, "inside a character");
        assert_eq!(rest_of_whole("x", u64::MAX), None);
    }
}
