//! Bytes lost, decided from the checkpoint: files RDS stopped listing (retention, rotation)
//! before all of them was shipped, and lines RDS cut at 1 MB.
//!
//! What is exact and what is not: a file's unshipped bytes are counted from its size in the last
//! listing the checkpoint recorded (`FileState::listed`), minus the bytes shipped. Bytes written
//! to the file after that listing were never listed: no one can know them, so the count is
//! exact with respect to what RDS last listed (a lower bound of what the file held when RDS
//! deleted it). A checkpoint written before listings were recorded has only the size at the last
//! chunk committed: the count is then a lower bound, and says so (`size_recorded: false`).
//!
//! Only files the checkpoint knows can be counted: a file RDS listed but no run started before
//! it was deleted never entered the checkpoint (and part of it may be in S3 under the name it had
//! before rotation renamed it); its bytes show in the lag while it is listed, not here.
//!
//! A file replaced under its name (a new generation: `file_replaced`) is not counted here
//! either: the unshipped tail of its old generation (unless a renamed copy continues it) is
//! reported only as that `file_replaced` anomaly, never in `BytesLost`, as no listing tells its
//! size once the name holds the new file.
//! A vanished file that a renamed copy is waiting for (its chunk in flight) is not counted
//! while the copy waits: it stays in the checkpoint until the copy takes it over (`claimed`).

use std::collections::BTreeSet;

use crate::checkpoint::{Checkpoint, FileState};

/// A file the checkpoint knows that RDS no longer lists, before all of it was shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostFile {
    pub name: String,
    /// Its size in the last listing recorded (or at its last commit: see `size_recorded`).
    pub last_size: u64,
    /// Bytes of it in S3.
    pub shipped: u64,
    /// `last_size - shipped`.
    pub bytes: u64,
    /// The size is the last listing's; false: the checkpoint predates recorded listings and the
    /// size is the one at the last commit (a lower bound).
    pub size_recorded: bool,
}

/// The position up to which a file's bytes are in S3, comparable with its listed size. A
/// pending chunk whose object is in S3 (`landed`: the keys found) counts. For a generation with
/// a line RDS cut, the bytes counted fall short of the file's, and the size at the last commit
/// stands for the position instead (the cut bytes are counted as they are cut, not here).
fn position(st: &FileState, landed: &BTreeSet<String>) -> u64 {
    let pending_end = st
        .pending
        .as_ref()
        .filter(|p| landed.contains(&p.key))
        .map_or(0, |p| p.end);
    let shipped = st.shipped.max(st.skip).max(pending_end);
    if st.lossy {
        st.size.max(pending_end)
    } else {
        shipped
    }
}

/// The files of `vanished` (in the checkpoint, absent from a complete listing) that held bytes
/// not shipped. A generation taken over by a renamed copy (`claimed`) is not lost: the copy ships
/// the rest under its new name.
pub fn lost_files(cp: &Checkpoint, vanished: &[String], landed: &BTreeSet<String>) -> Vec<LostFile> {
    vanished
        .iter()
        .filter_map(|name| {
            let st = cp.files.get(name)?;
            if st.claimed {
                return None;
            }
            let (last_size, size_recorded) = match st.listed {
                Some(seen) => (seen.size, true),
                None => (st.size, false),
            };
            let shipped = position(st, landed);
            let bytes = last_size.saturating_sub(shipped);
            (bytes > 0).then(|| LostFile {
                name: name.clone(),
                last_size,
                shipped,
                bytes,
                size_recorded,
            })
        })
        .collect()
}

/// The bytes RDS dropped from the lines it cut in one reading, when they are known: the reading
/// began where the file's bytes and the bytes counted agree (no line cut earlier in this
/// generation) and went on to the end of the file. Then the file's bytes read are the bytes
/// received less the notices RDS appended, and the rest of the listed size is what RDS dropped.
/// If the file grew while it was read, the listed size is short of the end reached: the result is
/// a lower bound (exact when the file did not grow while read). `None`: not known.
pub fn dropped_by_truncation(
    cuts: u32,
    clean_before: bool,
    reached_end: bool,
    listed_size: u64,
    received_end: u64,
    notice_len: u64,
) -> Option<u64> {
    if cuts == 0 || !clean_before || !reached_end {
        return None;
    }
    let file_bytes_read = received_end.saturating_sub(u64::from(cuts) * notice_len);
    Some(listed_size.saturating_sub(file_bytes_read))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::tests::state;
    use crate::checkpoint::{Pending, Seen};

    fn cp(entries: Vec<(&str, FileState)>) -> Checkpoint {
        let mut cp = Checkpoint::new("db1");
        for (name, st) in entries {
            cp.files.insert(name.into(), st);
        }
        cp
    }

    fn listed(mut st: FileState, size: u64) -> FileState {
        st.listed = Some(Seen {
            size,
            last_written: 2_000,
        });
        st
    }

    #[test]
    fn a_vanished_file_loses_what_its_last_listing_held_beyond_what_was_shipped() {
        let pending = |key: &str| Pending {
            key: key.into(),
            start: 400,
            end: 700,
            end_marker: "1:700".into(),
            until: 0,
        };
        let mut claimed = listed(state("m", 100, 100, 1_000), 900);
        claimed.claimed = true;
        let mut landed_chunk = listed(state("m", 400, 400, 1_000), 1_000);
        landed_chunk.pending = Some(pending("landed"));
        let mut lost_chunk = listed(state("m", 400, 400, 1_000), 1_000);
        lost_chunk.pending = Some(pending("never-landed"));
        let mut lossy = listed(state("m", 1_048_600, 2_000_000, 1_000), 2_000_500);
        lossy.lossy = true;
        let mut renamed = listed(state("m", 900, 900, 1_000), 1_000);
        renamed.skip = 950;
        let checkpoint = cp(vec![
            ("complete", listed(state("m", 500, 500, 1_000), 500)),
            ("partly", listed(state("m", 300, 500, 1_000), 800)),
            ("old-checkpoint", state("m", 300, 450, 1_000)),
            ("never-listed-again", state("m", 300, 300, 1_000)),
            ("claimed", claimed),
            ("landed", landed_chunk),
            ("not-landed", lost_chunk),
            ("lossy", lossy),
            ("renamed", renamed),
            ("kept", listed(state("m", 1, 5, 1_000), 5)),
        ]);
        let vanished: Vec<String> = [
            "complete",
            "partly",
            "old-checkpoint",
            "never-listed-again",
            "claimed",
            "landed",
            "not-landed",
            "lossy",
            "renamed",
            "unknown",
        ]
        .map(String::from)
        .to_vec();
        let landed = BTreeSet::from(["landed".to_owned()]);
        let lost = lost_files(&checkpoint, &vanished, &landed);
        let table: Vec<(&str, u64, u64, u64, bool)> = lost
            .iter()
            .map(|l| (l.name.as_str(), l.last_size, l.shipped, l.bytes, l.size_recorded))
            .collect();
        assert_eq!(
            table,
            [
                ("partly", 800, 300, 500, true),
                // Only the size at the last commit is known: a lower bound, said so.
                ("old-checkpoint", 450, 300, 150, false),
                // The chunk in S3 counts as shipped; the one that never landed does not.
                ("landed", 1_000, 700, 300, true),
                ("not-landed", 1_000, 400, 600, true),
                // A cut line: counted from the size at its last commit.
                ("lossy", 2_000_500, 2_000_000, 500, true),
                // Read past what was shipped under its earlier name.
                ("renamed", 1_000, 950, 50, true),
            ]
        );
    }

    #[test]
    fn dropped_bytes_are_known_only_after_a_clean_read_to_the_end() {
        let notice = crate::portion::TRUNCATION_SUFFIX.len() as u64;
        // A 1,500,000-byte line cut to 1 MB (notice included), 10 bytes on either side.
        let received = 10 + 1_048_576 + 10;
        let size = 10 + 1_500_000 + 10;
        let dropped = 1_500_000 - (1_048_576 - notice);
        assert_eq!(
            dropped_by_truncation(1, true, true, size, received, notice),
            Some(dropped)
        );
        assert_eq!(dropped_by_truncation(0, true, true, size, received, notice), None);
        assert_eq!(
            dropped_by_truncation(1, false, true, size, received, notice),
            None,
            "cut before: the offsets no longer agree with the file's"
        );
        assert_eq!(
            dropped_by_truncation(1, true, false, size, received, notice),
            None,
            "the end not reached: the rest may be unread, not dropped"
        );
        // The file grew past its listed size while read: a lower bound, never negative.
        assert_eq!(
            dropped_by_truncation(1, true, true, 100, received, notice),
            Some(0)
        );
    }
}
