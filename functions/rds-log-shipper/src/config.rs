//! The configuration, read from the environment once at cold start.

use std::time::Duration;

use crate::catchup;
use crate::selection::Selection;

/// Read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    pub bucket: String,
    pub prefix: String,
    pub selection: Selection,
    pub requests_per_second: f64,
    pub burst: f64,
    /// Compressed bytes per multipart part (S3's minimum is 5 MiB).
    pub part_size: usize,
    /// Uncompressed bytes per object at most; the rest goes into the next chunk.
    pub max_chunk_bytes: u64,
    pub overlap_ms: i64,
    pub full_listing_every_ms: i64,
    /// No new work starts this close to the Lambda deadline.
    pub reserve: Duration,
    /// Children of the state machine's Distributed Map at once; the budget
    /// (`requests_per_second`, `burst`) is split across them.
    pub map_concurrency: usize,
    /// The schedule's period: a run's children stop before the next run starts.
    pub period_ms: i64,
    /// When files are downloaded whole (`catchup`).
    pub catchup: catchup::Rule,
}

/// A variable that is missing or unusable, by name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{var} must be a number, not {value}")]
    NotANumber { var: &'static str, value: String },
    #[error("{var} must be key=value, not {value}")]
    NotKeyValue { var: &'static str, value: String },
}

impl Config {
    /// From the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// `LOG_BUCKET` (required), `LOG_PREFIX`, `INSTANCES`, `INSTANCE_TAG` (`key=value`),
    /// `CLUSTERS`, `RDS_REQUESTS_PER_SECOND` (8), `RDS_BURST` (20), `PART_SIZE_MB` (8),
    /// `MAX_CHUNK_MB` (1024), `LISTING_OVERLAP_SECONDS` (300), `FULL_LISTING_MINUTES` (60),
    /// `DEADLINE_RESERVE_SECONDS` (20), `MAP_CONCURRENCY` (4, 1-40), `SCHEDULE_PERIOD_MINUTES` (5),
    /// `COMPLETE_DOWNLOADS` (on; `false`, `off` or `0` turn
    /// whole downloads off), `COMPLETE_DOWNLOAD_QUIET_MINUTES` (60). Values are trimmed; an empty
    /// value is an absent one.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| lookup(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let num = |var: &'static str, default: f64| -> Result<f64, ConfigError> {
            get(var).map_or(Ok(default), |value| {
                value
                    .parse::<f64>()
                    .map_err(|_| ConfigError::NotANumber { var, value })
            })
        };
        let selection = selection(get)?;
        let part_mb = num("PART_SIZE_MB", 8.0)?.max(5.0);
        Ok(Self {
            bucket: get("LOG_BUCKET").ok_or(ConfigError::Missing("LOG_BUCKET"))?,
            prefix: get("LOG_PREFIX").unwrap_or_else(|| "rds-logs".into()),
            selection,
            requests_per_second: num("RDS_REQUESTS_PER_SECOND", 8.0)?.clamp(0.1, 12.0),
            burst: num("RDS_BURST", 20.0)?.clamp(1.0, 300.0),
            part_size: (part_mb * 1_048_576.0) as usize,
            max_chunk_bytes: (num("MAX_CHUNK_MB", 1024.0)?.max(1.0) * 1_048_576.0) as u64,
            overlap_ms: (num("LISTING_OVERLAP_SECONDS", 300.0)? * 1000.0) as i64,
            full_listing_every_ms: (num("FULL_LISTING_MINUTES", 60.0)? * 60_000.0) as i64,
            reserve: Duration::from_secs_f64(num("DEADLINE_RESERVE_SECONDS", 20.0)?.max(0.0)),
            map_concurrency: num("MAP_CONCURRENCY", 4.0)?.clamp(1.0, 40.0) as usize,
            period_ms: (num("SCHEDULE_PERIOD_MINUTES", 5.0)?.max(1.0) * 60_000.0) as i64,
            catchup: catchup::Rule {
                enabled: !get("COMPLETE_DOWNLOADS")
                    .is_some_and(|v| ["false", "off", "0", "no"].contains(&v.to_ascii_lowercase().as_str())),
                quiet_ms: (num("COMPLETE_DOWNLOAD_QUIET_MINUTES", 60.0)?.max(0.0) * 60_000.0) as i64,
            },
        })
    }
}

/// `INSTANCES`, else `INSTANCE_TAG`, else `CLUSTERS`, else every instance.
fn selection(get: impl Fn(&str) -> Option<String>) -> Result<Selection, ConfigError> {
    let list = |v: String| {
        v.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    };
    Ok(if let Some(ids) = get("INSTANCES") {
        Selection::Ids(list(ids))
    } else if let Some(tag) = get("INSTANCE_TAG") {
        let (k, v) = tag.split_once('=').ok_or_else(|| ConfigError::NotKeyValue {
            var: "INSTANCE_TAG",
            value: tag.clone(),
        })?;
        Selection::Tag(k.trim().to_owned(), v.trim().to_owned())
    } else if let Some(c) = get("CLUSTERS") {
        Selection::Clusters(list(c))
    } else {
        Selection::All
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn defaults_with_only_the_bucket() {
        let c = from(&[("LOG_BUCKET", "archive")]).unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("archive", "rds-logs"));
        assert_eq!(c.selection, Selection::All);
        assert_eq!((c.requests_per_second, c.burst), (8.0, 20.0));
        assert_eq!(c.part_size, 8 << 20);
        assert_eq!(c.max_chunk_bytes, 1 << 30);
        assert_eq!((c.overlap_ms, c.full_listing_every_ms), (300_000, 3_600_000));
        assert_eq!(c.reserve, Duration::from_secs(20));
        assert_eq!((c.map_concurrency, c.period_ms), (4, 300_000));
        assert_eq!(
            c.catchup,
            catchup::Rule {
                enabled: true,
                quiet_ms: 3_600_000
            }
        );
    }

    #[test]
    fn whole_downloads_can_be_turned_off_and_their_quiet_time_set() {
        for off in ["false", "OFF", "0", "no"] {
            let c = from(&[("LOG_BUCKET", "b"), ("COMPLETE_DOWNLOADS", off)]).unwrap();
            assert!(!c.catchup.enabled, "{off}");
        }
        let c = from(&[
            ("LOG_BUCKET", "b"),
            ("COMPLETE_DOWNLOADS", "true"),
            ("COMPLETE_DOWNLOAD_QUIET_MINUTES", "1.5"),
        ])
        .unwrap();
        assert_eq!(
            c.catchup,
            catchup::Rule {
                enabled: true,
                quiet_ms: 90_000
            }
        );
        assert!(from(&[("LOG_BUCKET", "b"), ("COMPLETE_DOWNLOAD_QUIET_MINUTES", "x")]).is_err());
    }

    #[test]
    fn values_are_bounded_and_the_selection_has_a_precedence() {
        let c = from(&[
            ("LOG_BUCKET", " archive "),
            ("LOG_PREFIX", ""),
            ("INSTANCES", "db2, db1,,"),
            ("INSTANCE_TAG", "logs=ship"),
            ("RDS_REQUESTS_PER_SECOND", "50"),
            ("RDS_BURST", "0"),
            ("PART_SIZE_MB", "1"),
            ("DEADLINE_RESERVE_SECONDS", "-3"),
        ])
        .unwrap();
        assert_eq!(c.bucket, "archive");
        assert_eq!(c.prefix, "rds-logs");
        assert_eq!(c.selection, Selection::Ids(vec!["db2".into(), "db1".into()]));
        assert_eq!((c.requests_per_second, c.burst), (12.0, 1.0));
        assert_eq!(c.part_size, 5 << 20, "S3's minimum part size");
        assert_eq!(c.reserve, Duration::ZERO);
        let c = from(&[
            ("LOG_BUCKET", "b"),
            ("INSTANCE_TAG", " logs = ship "),
            ("CLUSTERS", "c1"),
        ])
        .unwrap();
        assert_eq!(c.selection, Selection::Tag("logs".into(), "ship".into()));
        let c = from(&[("LOG_BUCKET", "b"), ("CLUSTERS", "c1,c2")]).unwrap();
        assert_eq!(c.selection, Selection::Clusters(vec!["c1".into(), "c2".into()]));
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(from(&[]).unwrap_err(), ConfigError::Missing("LOG_BUCKET"));
        assert_eq!(
            from(&[("LOG_BUCKET", "  ")]).unwrap_err().to_string(),
            "LOG_BUCKET is required"
        );
        let err = from(&[("LOG_BUCKET", "b"), ("RDS_BURST", "lots")]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::NotANumber {
                var: "RDS_BURST",
                value: "lots".into()
            }
        );
        assert_eq!(err.to_string(), "RDS_BURST must be a number, not lots");
        let err = from(&[("LOG_BUCKET", "b"), ("INSTANCE_TAG", "logs")]).unwrap_err();
        assert_eq!(err.to_string(), "INSTANCE_TAG must be key=value, not logs");
    }
}
