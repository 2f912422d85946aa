//! Reading a file with `DownloadDBLogFilePortion` despite RDS's quirks.

/// What RDS appends to a portion whose lines did not fit in 1 MB.
pub const TRUNCATION_SUFFIX: &str = " [Your log message was truncated]";
/// RDS returns at most 10,000 lines per portion.
pub const MAX_LINES: u32 = 10_000;

/// True when RDS cut the portion at 1 MB: its data ends with the truncation notice.
pub fn is_truncated(data: &str) -> bool {
    data.trim_end_matches(['\n', '\r']).ends_with(TRUNCATION_SUFFIX)
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
    let lines = data.bytes().filter(|b| *b == b'\n').count().max(1);
    let average = (data.len() / lines).max(1);
    u32::try_from(TARGET_PORTION_BYTES / average)
        .unwrap_or(MAX_LINES)
        .clamp(1, MAX_LINES)
}

/// After a truncated portion: ask again from the same marker for fewer lines, down to one line;
/// a single line over 1 MB is accepted as RDS returns it, and flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    RetryWith(u32),
    AcceptAndFlag,
}

pub fn on_truncated(lines: u32) -> Truncation {
    if lines <= 1 {
        Truncation::AcceptAndFlag
    } else {
        Truncation::RetryWith((lines / 2).max(1))
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

    #[test]
    fn fewer_lines_until_one_never_forever() {
        let mut lines = MAX_LINES;
        let mut steps = 0;
        loop {
            steps += 1;
            match on_truncated(lines) {
                Truncation::RetryWith(n) => {
                    assert!(n < lines);
                    lines = n;
                }
                Truncation::AcceptAndFlag => break,
            }
        }
        assert_eq!(lines, 1);
        assert!(steps <= 15);
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
}
