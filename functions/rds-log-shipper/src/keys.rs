//! The S3 key layout: Hive-style partitions that Athena can query.
//!
//! `<prefix>/instance=<id>/log_type=<type>/date=<YYYY-MM-DD>/<file>/g<generation>-<start>.log.gz`
//! where `<date>` is the UTC day the chunk is written and `<start>` the chunk's first byte
//! offset, zero-padded so keys sort in file order.
//! Checkpoints live under `<prefix>/_state/` (Athena skips paths starting with `_`).

/// Characters kept in key segments; anything else becomes `-`.
fn segment(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "_".into()
    } else {
        cleaned
    }
}

fn join(prefix: &str, rest: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        rest.to_owned()
    } else {
        format!("{p}/{rest}")
    }
}

/// Every log type [`log_type`] gives for the file names RDS lists, engine by engine: the
/// directories RDS puts its log files in, and `default` for a file in none.
/// - PostgreSQL, Aurora PostgreSQL: `error/postgresql.log.<date>-<hour>`;
/// - MySQL, MariaDB, Aurora MySQL: `error/mysql-error.log`, `error/mysql-error-running.log.<n>`,
///   `slowquery/mysql-slowquery.log`, `general/mysql-general.log`, `audit/server_audit.log`,
///   `audit/audit.log.<n>.<m>`, and `mysqlUpgrade` (no directory: `default`);
/// - Oracle: `trace/alert_<SID>.log`, `trace/<SID>_ora_<pid>.trc`, `audit/<SID>_ora_<pid>.aud`;
/// - SQL Server: `log/ERROR`, `log/ERROR.<n>`, `log/SQLAgent.out`.
///
/// The Glue table's partition projection in template.yaml (`projection.log_type.values`) lists
/// exactly these, in this order (the unit test below checks it): Athena sees no other log type.
pub const LOG_TYPES: &[&str] = &[
    "error",
    "slowquery",
    "general",
    "audit",
    "trace",
    "log",
    "default",
];

/// The log type: the directory of the RDS file name (one of [`LOG_TYPES`] for the files RDS
/// lists), `default` when there is none.
pub fn log_type(file_name: &str) -> String {
    match file_name.rsplit_once('/') {
        Some((dir, _)) if !dir.is_empty() => segment(&dir.replace('/', "-")),
        _ => "default".into(),
    }
}

fn base_name(file_name: &str) -> &str {
    file_name.rsplit('/').next().unwrap_or(file_name)
}

pub fn chunk_key(
    prefix: &str,
    instance: &str,
    file_name: &str,
    generation: u32,
    date: &str,
    start: u64,
) -> String {
    join(
        prefix,
        &format!(
            "instance={}/log_type={}/date={}/{}/g{generation:04}-{start:020}.log.gz",
            segment(instance),
            log_type(file_name),
            segment(date),
            segment(base_name(file_name)),
        ),
    )
}

/// The prefix holding every chunk of one file (for listing and verification).
pub fn file_prefix(prefix: &str, instance: &str, file_name: &str, date: &str) -> String {
    join(
        prefix,
        &format!(
            "instance={}/log_type={}/date={}/{}/",
            segment(instance),
            log_type(file_name),
            segment(date),
            segment(base_name(file_name)),
        ),
    )
}

pub fn checkpoint_key(prefix: &str, instance: &str) -> String {
    join(
        prefix,
        &format!("_state/instance={}/checkpoint.json", segment(instance)),
    )
}

/// The selection manifest of a state machine run (the Distributed Map's item source).
pub fn manifest_key(prefix: &str, run: &str) -> String {
    join(prefix, &format!("_fleet/{}/instances.json", segment(run)))
}

/// Where the Map's ResultWriter writes a run's results (it adds `/<map run id>/...`).
pub fn results_prefix(prefix: &str, run: &str) -> String {
    join(prefix, &format!("_fleet/{}/results", segment(run)))
}

/// Whether `key` is under the runs' folder (`<prefix>/_fleet/`), where manifests and results are.
pub fn is_fleet_key(prefix: &str, key: &str) -> bool {
    key.starts_with(&join(prefix, "_fleet/")) && !key.contains("/../")
}

/// The fleet's lag index (see `fairness`).
pub fn lag_index_key(prefix: &str) -> String {
    join(prefix, "_state/fleet-lag.json")
}

/// Epoch days to `YYYY-MM-DD` (proleptic Gregorian, UTC).
pub fn date_from_epoch_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(
            chunk_key(
                "rds-logs",
                "prod-db-1",
                "error/postgresql.log.2026-11-22-00",
                0,
                "2026-11-22",
                1_048_576
            ),
            "rds-logs/instance=prod-db-1/log_type=error/date=2026-11-22/postgresql.log.2026-11-22-00/g0000-00000000000001048576.log.gz"
        );
        assert_eq!(log_type("slowquery/mysql-slowquery.log.3"), "slowquery");
        assert_eq!(log_type("trace/alert_ORCL.log"), "trace");
        assert_eq!(log_type("ERROR"), "default");
        assert_eq!(manifest_key("logs", "run:1"), "logs/_fleet/run-1/instances.json");
        assert_eq!(results_prefix("logs/", "r1"), "logs/_fleet/r1/results");
        assert_eq!(lag_index_key("logs"), "logs/_state/fleet-lag.json");
        assert!(is_fleet_key("logs", "logs/_fleet/r1/results/x/manifest.json"));
        assert!(!is_fleet_key("logs", "logs/_state/fleet-lag.json"));
        assert!(!is_fleet_key("logs", "logs/_fleet/../_state/x"));
        assert_eq!(
            checkpoint_key("/logs/", "db 1"),
            "logs/_state/instance=db-1/checkpoint.json"
        );
        assert!(chunk_key("", "db", "../x", 1, "2026-01-01", 0).starts_with("instance=db/log_type=_/"));
        // Keys of one file sort in file order.
        let a = chunk_key("p", "db", "f", 0, "d", 999);
        let b = chunk_key("p", "db", "f", 0, "d", 1_000);
        assert!(a < b);
        assert!(chunk_key("p", "db", "f", 0, "d", 5).starts_with(&file_prefix("p", "db", "f", "d")));
    }

    /// One file name of each engine's logs, as `DescribeDBLogFiles` lists them.
    const ENGINE_FILES: &[&str] = &[
        "error/postgresql.log.2026-11-22-00",
        "error/mysql-error.log",
        "error/mysql-error-running.log.17",
        "slowquery/mysql-slowquery.log.3",
        "general/mysql-general.log",
        "audit/server_audit.log",
        "audit/audit.log.0.2026-11-22-00-00.0",
        "mysqlUpgrade",
        "trace/alert_ORCL.log",
        "trace/ORCL_ora_1234.trc",
        "audit/ORCL_ora_1234_20261122.aud",
        "log/ERROR",
        "log/ERROR.1",
        "log/SQLAgent.out",
    ];

    #[test]
    fn every_engine_s_log_type_is_listed() {
        for name in ENGINE_FILES {
            assert!(
                LOG_TYPES.contains(&log_type(name).as_str()),
                "{name}: {}",
                log_type(name)
            );
        }
        for t in LOG_TYPES {
            assert!(
                ENGINE_FILES.iter().any(|f| log_type(f) == *t),
                "{t}: no file of it listed"
            );
            assert_eq!(segment(t), *t, "{t} is a key segment as is");
        }
    }

    /// The Glue table's `log_type` enum (template.yaml) is exactly [`LOG_TYPES`]: a log type
    /// added here and not there would be invisible to Athena.
    #[test]
    fn the_glue_table_projects_every_log_type() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
        let template = std::fs::read_to_string(path).expect("template.yaml");
        let line = template
            .lines()
            .find_map(|l| l.trim().strip_prefix("projection.log_type.values:"))
            .expect("template.yaml: projection.log_type.values");
        let values: Vec<&str> = line.trim().trim_matches('"').split(',').collect();
        assert_eq!(values, LOG_TYPES, "template.yaml projection.log_type.values");
    }

    #[test]
    fn dates() {
        assert_eq!(date_from_epoch_ms(0), "1970-01-01");
        assert_eq!(date_from_epoch_ms(1_795_305_600_000), "2026-11-22");
        assert_eq!(date_from_epoch_ms(951_782_400_000), "2000-02-29");
        assert_eq!(date_from_epoch_ms(-1), "1969-12-31");
    }
}
