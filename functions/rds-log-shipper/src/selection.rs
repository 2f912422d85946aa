//! Which instances a run ships: the configured selection, and which listed instances it takes.

/// Which instances a run ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Ids(Vec<String>),
    Tag(String, String),
    /// Aurora clusters: every member instance.
    Clusters(Vec<String>),
}

/// An instance as `DescribeDBInstances` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListedInstance<'a> {
    pub id: &'a str,
    pub engine: Option<&'a str>,
    pub status: Option<&'a str>,
    /// Its tags that have both a key and a value.
    pub tags: Vec<(&'a str, &'a str)>,
}

impl Selection {
    /// Whether a listed instance is shipped (by a selection by tag or of all instances, the ones
    /// that list instances): it must have logs to read now and, by tag, carry the tag.
    pub fn takes(&self, instance: &ListedInstance) -> bool {
        let tagged = match self {
            Self::Tag(k, v) => instance.tags.iter().any(|(tk, tv)| tk == k && tv == v),
            Self::All | Self::Ids(_) | Self::Clusters(_) => true,
        };
        tagged && has_reachable_logs(instance.engine, instance.status)
    }
}

/// Whether a listed instance has log files to read now: DescribeDBInstances also lists
/// DocumentDB and Neptune instances (no log files through this API), and a stopped instance
/// answers every log call with an error. Instances named explicitly are not filtered.
pub fn has_reachable_logs(engine: Option<&str>, status: Option<&str>) -> bool {
    let other_service = engine.is_some_and(|e| matches!(e, "docdb" | "neptune"));
    let down =
        status.is_some_and(|s| matches!(s, "stopped" | "stopping" | "starting" | "creating" | "deleting"));
    !other_service && !down
}

/// Whether the shipper knows an engine's log files (their names and directories, see
/// `keys::LOG_TYPES`): MySQL, MariaDB, PostgreSQL (and their Aurora editions), Oracle, SQL
/// Server, Db2, and their RDS Custom editions. An instance of another engine is left out of a
/// listed selection, named in the log (a new engine is never shipped under guessed names).
/// No engine reported (an emulator, an old API answer): taken.
pub fn engine_known(engine: Option<&str>) -> bool {
    let Some(engine) = engine else {
        return true;
    };
    let engine = engine.strip_prefix("custom-").unwrap_or(engine);
    [
        "aurora",
        "mysql",
        "mariadb",
        "postgres",
        "oracle-",
        "sqlserver-",
        "db2-",
    ]
    .iter()
    .any(|known| engine.starts_with(known))
}

/// The selected identifiers, each once, sorted (the state machine's Map ships them in order).
pub fn selected(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_without_readable_logs_are_left_out() {
        assert!(has_reachable_logs(Some("postgres"), Some("available")));
        assert!(has_reachable_logs(None, None));
        assert!(has_reachable_logs(Some("aurora-mysql"), Some("backing-up")));
        for engine in ["docdb", "neptune"] {
            assert!(!has_reachable_logs(Some(engine), Some("available")), "{engine}");
        }
        for status in ["stopped", "stopping", "starting", "creating", "deleting"] {
            assert!(!has_reachable_logs(Some("mysql"), Some(status)), "{status}");
        }
    }

    #[test]
    fn a_selection_by_tag_takes_the_tagged_instances_with_logs() {
        let tagged = ListedInstance {
            id: "db1",
            engine: Some("postgres"),
            status: Some("available"),
            tags: vec![("team", "a"), ("logs", "ship")],
        };
        let by_tag = Selection::Tag("logs".into(), "ship".into());
        assert!(by_tag.takes(&tagged));
        assert!(Selection::All.takes(&tagged));
        let other_value = ListedInstance {
            tags: vec![("logs", "keep")],
            ..tagged.clone()
        };
        assert!(!by_tag.takes(&other_value));
        assert!(Selection::All.takes(&other_value));
        let stopped = ListedInstance {
            status: Some("stopped"),
            ..tagged.clone()
        };
        assert!(!by_tag.takes(&stopped));
        assert!(!Selection::All.takes(&stopped));
        let neptune = ListedInstance {
            engine: Some("neptune"),
            ..tagged
        };
        assert!(!Selection::All.takes(&neptune));
    }

    #[test]
    fn engines_with_known_log_files_are_taken_and_others_named() {
        for engine in [
            "postgres",
            "aurora-postgresql",
            "mysql",
            "aurora-mysql",
            "aurora",
            "mariadb",
            "oracle-ee",
            "oracle-se2-cdb",
            "sqlserver-ex",
            "custom-sqlserver-ee",
            "custom-oracle-ee",
            "db2-se",
        ] {
            assert!(engine_known(Some(engine)), "{engine}");
        }
        for engine in ["docdb", "neptune", "cassandra", "", "oracle", "Postgres"] {
            assert!(!engine_known(Some(engine)), "{engine}");
        }
        assert!(engine_known(None));
    }

    #[test]
    fn selected_ids_are_sorted_once_each() {
        let ids = ["b", "a", "b", "c"].map(String::from).to_vec();
        assert_eq!(selected(ids), ["a", "b", "c"]);
    }
}
