//! Files renamed by rotation: which earlier generation, already shipped in part, a file read
//! from its beginning continues (MySQL renames `x.log` to `x.log.<hour>` every hour; SQL Server
//! shifts `ERROR` -> `ERROR.1` -> `ERROR.2` at each restart), so that its first bytes are read
//! past, not shipped twice.

use crate::checkpoint::{Checkpoint, Continues, HEAD_BYTES, Source, same_file};

/// A file's rotation family: its name without a trailing `.<number>` (`x.log.18` -> `x.log`,
/// `ERROR.2` -> `ERROR`; `postgresql.log.2026-11-22-03` is its own).
pub fn rotation_stem(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((stem, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => stem,
        _ => name,
    }
}

/// What a file read from its beginning continues, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// Nothing: the file is shipped from its beginning.
    New,
    /// A generation renamed into this file: its first `skip` bytes are already shipped.
    Continues { continues: Continues, skip: u64 },
    /// The generation it continues has a chunk in flight: wait for it to be resolved.
    Wait(String),
}

/// Whether recorded first bytes are evidence enough to skip what was shipped: all of them are
/// compared, and they cover either everything shipped or the whole `HEAD_BYTES`.
fn trusted(head: &str, shipped: u64, beginning: &str) -> bool {
    !head.is_empty()
        && beginning.len() >= head.len()
        && (head.len() as u64 >= shipped || head.len() >= HEAD_BYTES)
        && same_file(head, beginning)
}

/// Which generation `name`, read from its beginning, continues: rotation renamed it into `name`
/// (MySQL: `x.log` -> `x.log.<hour>`; SQL Server: `ERROR` -> `ERROR.1` -> `ERROR.2`). It is the
/// current or a retired generation of a file of the same rotation family, with bytes shipped,
/// not continued already, whose recorded first bytes agree with `beginning` (see `trusted`);
/// with several, the one with the most recorded bytes.
pub fn rotation_source(cp: &Checkpoint, name: &str, beginning: &str) -> Rotation {
    if beginning.is_empty() {
        return Rotation::New;
    }
    let stem = rotation_stem(name);
    let current = cp
        .files
        .iter()
        .filter(|(other, st)| other.as_str() != name && rotation_stem(other) == stem && !st.claimed)
        .filter_map(|(other, st)| {
            let shipped = st.shipped.max(st.skip);
            let head = st.head.as_deref()?;
            (shipped > 0 && trusted(head, shipped, beginning)).then(|| {
                let c = Continues {
                    source: Source::Current(other.clone()),
                    lossy: st.lossy,
                };
                (head.len(), c, shipped, st.pending.is_some())
            })
        });
    let retired = cp
        .retired
        .iter()
        .filter(|r| r.name != name && rotation_stem(&r.name) == stem)
        .filter(|r| r.shipped > 0 && trusted(&r.head, r.shipped, beginning))
        .map(|r| {
            let c = Continues {
                source: Source::Retired(r.name.clone(), r.generation),
                lossy: r.lossy,
            };
            (r.head.len(), c, r.shipped, false)
        });
    match current.chain(retired).max_by_key(|(len, ..)| *len) {
        None => Rotation::New,
        Some((_, c, _, true)) => match c.source {
            Source::Current(n) | Source::Retired(n, _) => Rotation::Wait(n),
        },
        Some((_, continues, skip, false)) => Rotation::Continues { continues, skip },
    }
}

/// Whether any other file of `name`'s rotation family, or a retired generation of the family, is
/// in the checkpoint (only then is a new file's beginning worth a request).
pub fn has_rotation_siblings(cp: &Checkpoint, name: &str) -> bool {
    let stem = rotation_stem(name);
    cp.files
        .keys()
        .any(|other| other.as_str() != name && rotation_stem(other) == stem)
        || cp.retired.iter().any(|r| rotation_stem(&r.name) == stem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Pending;
    use crate::checkpoint::tests::state;

    fn source_of(r: Rotation) -> Option<(Source, u64)> {
        match r {
            Rotation::Continues { continues, skip } => Some((continues.source, skip)),
            _ => None,
        }
    }

    #[test]
    fn a_renamed_file_may_continue_the_generation_it_came_from() {
        let mut cp = Checkpoint::new("db1");
        let with_head = |head: &str, shipped: u64| {
            let mut st = state("m", shipped, shipped, 1_000);
            st.head = Some(head.into());
            st
        };
        let active = "slowquery/mysql-slowquery.log";
        cp.files
            .insert(active.into(), with_head("hdr\n# Time: 18:00\n", 17));
        cp.files
            .insert(format!("{active}.17"), with_head("hdr\n# Time: 17:00\n", 17));
        assert_eq!(rotation_stem("slowquery/mysql-slowquery.log.18"), active);
        assert_eq!(
            rotation_stem("error/postgresql.log.2026-11-22-03"),
            "error/postgresql.log.2026-11-22-03"
        );
        let beginning = "hdr\n# Time: 18:00\nselect 1;\n";
        let renamed = format!("{active}.18");
        assert_eq!(
            source_of(rotation_source(&cp, &renamed, beginning)),
            Some((Source::Current(active.into()), 17))
        );
        // A beginning that matches no recorded one, or nothing to compare: no continuation.
        assert_eq!(
            rotation_source(&cp, &renamed, "hdr\n# Time: 19:00\n"),
            Rotation::New
        );
        assert_eq!(rotation_source(&cp, &renamed, ""), Rotation::New);
        assert_eq!(
            rotation_source(&cp, "slowquery/mysql-slowquery.logx", beginning),
            Rotation::New
        );
        // A new active file that holds only the family's header line so far is no continuation.
        assert_eq!(rotation_source(&cp, &renamed, "hdr\n"), Rotation::New);
        // Recorded bytes that cover neither all that was shipped nor a whole HEAD_BYTES: not
        // evidence enough to skip the rest.
        cp.files.get_mut(active).unwrap().shipped = 5_000;
        assert_eq!(rotation_source(&cp, &renamed, beginning), Rotation::New);
        cp.files.get_mut(active).unwrap().shipped = 17;
        // A chunk of the source in flight: wait for it.
        cp.files.get_mut(active).unwrap().pending = Some(Pending {
            key: "k".into(),
            start: 17,
            end: 40,
            end_marker: "m".into(),
            until: 0,
        });
        assert_eq!(
            rotation_source(&cp, &renamed, beginning),
            Rotation::Wait(active.into())
        );
        cp.files.get_mut(active).unwrap().pending = None;
        // Continued once only.
        cp.files.get_mut(active).unwrap().claimed = true;
        assert_eq!(rotation_source(&cp, &renamed, beginning), Rotation::New);
        // SQL Server shifts every file on restart: ERROR.2 now holds what ERROR.1 held.
        let mut cp = Checkpoint::new("sql1");
        cp.files
            .insert("log/ERROR".into(), with_head("2026-11-22 boot 3", 17));
        cp.files
            .insert("log/ERROR.1".into(), with_head("2026-11-21 boot 2", 17));
        assert_eq!(
            source_of(rotation_source(&cp, "log/ERROR.2", "2026-11-21 boot 2\nmore")),
            Some((Source::Current("log/ERROR.1".into()), 17))
        );
        assert!(has_rotation_siblings(&cp, "log/ERROR.3"));
        assert!(!has_rotation_siblings(&cp, "log/SQLAgent.out"));
    }
}
