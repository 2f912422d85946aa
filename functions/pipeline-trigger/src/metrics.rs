//! Decisions: the metrics one invocation records (CloudWatch EMF, dimension `Service` =
//! [`SERVICE`]), from what the invocation did. No I/O: `main` flushes the [`Metrics`] once the
//! entry point returns, whatever it returned.
//!
//! - `JobsStarted` (Count): an execution was started for the job (Standard `StartExecution`,
//!   the job's own execution adopted by a retried start included, or Express
//!   `StartSyncExecution` answered), counted with the result this invocation recorded for the job,
//!   so a retried invocation of an answered job counts nothing.
//! - `JobsSucceeded` (Count): a final `PutJobSuccessResult` (no continuation token) recorded.
//! - `JobsFailed` (Count, dimension `FailureType`): a `PutJobFailureResult` recorded, by its
//!   CodePipeline failure type (`JobFailed`, `ConfigurationError`, `PermissionError`, ...); also
//!   the failure the on-failure destination records (`JobFailed`).
//! - `PollsPerJob` (Count, one sample per job the trigger ended): the invocations the action took,
//!   the first (start) one included, read from the continuation token's poll count.
//! - `ResultsNotRecorded` (Count): a `PutJob*Result` call failed, so the job got no result from
//!   this invocation.
//! - `JobsEndedByDestination` (Count): the on-failure destination recorded the failure of a job
//!   whose trigger invocation failed on every attempt.

use lambda_common::metrics::{Metrics, Unit};

use crate::event::JobData;
use crate::outcome::{FailureKind, Recording};
use crate::token::ContinuationToken;

/// The `Service` dimension of every metric of this function.
pub const SERVICE: &str = "PipelineTrigger";

pub const JOBS_STARTED: &str = "JobsStarted";
pub const JOBS_SUCCEEDED: &str = "JobsSucceeded";
pub const JOBS_FAILED: &str = "JobsFailed";
pub const POLLS_PER_JOB: &str = "PollsPerJob";
pub const RESULTS_NOT_RECORDED: &str = "ResultsNotRecorded";
pub const JOBS_ENDED_BY_DESTINATION: &str = "JobsEndedByDestination";
/// The dimension of [`JOBS_FAILED`].
pub const FAILURE_TYPE: &str = "FailureType";

/// What recording the job's result came to, in this invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A success with a continuation token: the job goes on.
    Continued,
    /// A final success.
    Succeeded,
    /// A failure of this type.
    Failed(FailureKind),
    /// The job already had a result; this invocation recorded none.
    AlreadyAnswered,
    /// The `PutJob*Result` call failed: the job got no result from this invocation.
    NotRecorded,
}

impl Recorded {
    /// `then` when CodePipeline took the result, else [`Recorded::AlreadyAnswered`] (a refused
    /// success is recorded again as a failure by the caller, never counted as one).
    pub fn from_put(recording: &Recording, then: Self) -> Self {
        match recording {
            Recording::Recorded => then,
            Recording::AlreadyAnswered | Recording::Rejected(_) => Self::AlreadyAnswered,
        }
    }
}

/// The facts of one job invocation the metrics come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobInvocation {
    /// An execution was started (or adopted) for the job in this invocation.
    pub started: bool,
    /// The invocations the action has taken, this one included ([`invocations`]).
    pub invocations: u32,
    pub recorded: Recorded,
}

/// The invocations an action has taken when this one runs, this one included: 1 for a first
/// invocation (no continuation token, or job data too malformed to say), else the token's
/// earlier polls plus the first invocation plus this one. A token that cannot be read (a
/// foreign or corrupt one) counts no earlier polls.
pub fn invocations(data: Result<&JobData, &serde_json::Error>) -> u32 {
    let Some(raw) = data.ok().and_then(|d| d.continuation_token.as_deref()) else {
        return 1;
    };
    ContinuationToken::decode(raw)
        .map_or(0, |t| t.polls)
        .saturating_add(2)
}

/// Records one job invocation's metrics.
pub fn record_job(job: &JobInvocation, m: &mut Metrics) {
    let answered = !matches!(job.recorded, Recorded::AlreadyAnswered | Recorded::NotRecorded);
    if job.started && answered {
        m.count(JOBS_STARTED, 1, &[]);
    }
    match job.recorded {
        Recorded::Succeeded => {
            m.count(JOBS_SUCCEEDED, 1, &[]);
            m.sample(POLLS_PER_JOB, Unit::Count, f64::from(job.invocations), &[]);
        }
        Recorded::Failed(kind) => {
            m.count(JOBS_FAILED, 1, &[(FAILURE_TYPE, kind.as_str())]);
            m.sample(POLLS_PER_JOB, Unit::Count, f64::from(job.invocations), &[]);
        }
        Recorded::NotRecorded => m.count(RESULTS_NOT_RECORDED, 1, &[]),
        Recorded::Continued | Recorded::AlreadyAnswered => {}
    }
}

/// How the on-failure destination's attempt to end a job came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationEnd {
    /// The `JobFailed` result was recorded.
    Ended,
    /// The job already had a result, or no longer exists: left alone.
    LeftAlone,
    /// `PutJobFailureResult` failed.
    NotRecorded,
}

/// Records the destination's metrics: an ended job counts `JobsEndedByDestination` and
/// `JobsFailed{FailureType=JobFailed}` (the failure it recorded), so that the failures by type
/// over both functions equal CodePipeline's recorded failures.
pub fn record_destination(end: DestinationEnd, m: &mut Metrics) {
    match end {
        DestinationEnd::Ended => {
            m.count(JOBS_ENDED_BY_DESTINATION, 1, &[]);
            m.count(JOBS_FAILED, 1, &[(FAILURE_TYPE, FailureKind::JobFailed.as_str())]);
        }
        DestinationEnd::NotRecorded => m.count(RESULTS_NOT_RECORDED, 1, &[]),
        DestinationEnd::LeftAlone => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// `(metric, dimensions beyond Service, values)`.
    type Published = (String, Vec<(String, String)>, Value);

    /// Every metric of every document, sorted.
    fn published(m: &Metrics) -> Vec<Published> {
        let mut out = Vec::new();
        for doc in m.documents(0) {
            let directive = &doc["_aws"]["CloudWatchMetrics"][0];
            let dims: Vec<(String, String)> = directive["Dimensions"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .filter(|k| *k != "Service")
                .map(|k| (k.to_owned(), doc[k].as_str().unwrap().to_owned()))
                .collect();
            assert_eq!(doc["Service"], SERVICE);
            for metric in directive["Metrics"].as_array().unwrap() {
                let name = metric["Name"].as_str().unwrap();
                assert_eq!(metric["Unit"], "Count", "{name}");
                out.push((name.to_owned(), dims.clone(), doc[name].clone()));
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    fn job(started: bool, invocations: u32, recorded: Recorded) -> Vec<Published> {
        let mut m = Metrics::new("ns", SERVICE);
        record_job(
            &JobInvocation {
                started,
                invocations,
                recorded,
            },
            &mut m,
        );
        published(&m)
    }

    fn plain(name: &str, v: Value) -> Published {
        (name.to_owned(), vec![], v)
    }

    #[test]
    fn each_job_outcome_records_its_metrics() {
        use FailureKind::{ConfigurationError, JobFailed, PermissionError};
        let failed = |kind: &str| {
            (
                JOBS_FAILED.to_owned(),
                vec![(FAILURE_TYPE.to_owned(), kind.to_owned())],
                json!(1.0),
            )
        };
        let cases = vec![
            // A Standard start: continues, started.
            (
                job(true, 1, Recorded::Continued),
                vec![plain(JOBS_STARTED, json!(1.0))],
            ),
            // A poll that continues: nothing.
            (job(false, 3, Recorded::Continued), vec![]),
            // An Express run that succeeded in its first invocation.
            (
                job(true, 1, Recorded::Succeeded),
                vec![
                    plain(JOBS_STARTED, json!(1.0)),
                    plain(JOBS_SUCCEEDED, json!(1.0)),
                    plain(POLLS_PER_JOB, json!(1.0)),
                ],
            ),
            (
                job(false, 5, Recorded::Succeeded),
                vec![
                    plain(JOBS_SUCCEEDED, json!(1.0)),
                    plain(POLLS_PER_JOB, json!(5.0)),
                ],
            ),
            (
                job(false, 1, Recorded::Failed(ConfigurationError)),
                vec![failed("ConfigurationError"), plain(POLLS_PER_JOB, json!(1.0))],
            ),
            (
                job(false, 4, Recorded::Failed(JobFailed)),
                vec![failed("JobFailed"), plain(POLLS_PER_JOB, json!(4.0))],
            ),
            (
                job(true, 1, Recorded::Failed(PermissionError)),
                vec![
                    plain(JOBS_STARTED, json!(1.0)),
                    failed("PermissionError"),
                    plain(POLLS_PER_JOB, json!(1.0)),
                ],
            ),
            // A retried invocation of an answered job counts nothing, not even its start.
            (job(true, 1, Recorded::AlreadyAnswered), vec![]),
            // A result that could not be recorded: only that.
            (
                job(true, 2, Recorded::NotRecorded),
                vec![plain(RESULTS_NOT_RECORDED, json!(1.0))],
            ),
        ];
        for (n, (got, mut want)) in cases.into_iter().enumerate() {
            want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            assert_eq!(got, want, "case {n}");
        }
    }

    #[test]
    fn the_destination_records_the_end_and_the_failure() {
        let mut m = Metrics::new("ns", SERVICE);
        record_destination(DestinationEnd::Ended, &mut m);
        assert_eq!(
            published(&m),
            vec![
                (JOBS_ENDED_BY_DESTINATION.to_owned(), vec![], json!(1.0)),
                (
                    JOBS_FAILED.to_owned(),
                    vec![(FAILURE_TYPE.to_owned(), "JobFailed".to_owned())],
                    json!(1.0)
                ),
            ]
        );
        let mut m = Metrics::new("ns", SERVICE);
        record_destination(DestinationEnd::LeftAlone, &mut m);
        assert!(m.is_empty());
        record_destination(DestinationEnd::NotRecorded, &mut m);
        assert_eq!(published(&m), vec![plain(RESULTS_NOT_RECORDED, json!(1.0))]);
    }

    #[test]
    fn the_invocations_come_from_the_token() {
        let data = |token: Option<&str>| JobData {
            continuation_token: token.map(str::to_owned),
            ..JobData::default()
        };
        assert_eq!(invocations(Ok(&data(None))), 1);
        let arn = "arn:aws:states:us-east-1:111111111111:execution:deploy:codepipeline-1";
        let token = |polls: u32| ContinuationToken::new(arn, polls).encode().unwrap();
        // The first poll reads the start's token (0 polls): the start and itself.
        assert_eq!(invocations(Ok(&data(Some(&token(0))))), 2);
        assert_eq!(invocations(Ok(&data(Some(&token(7))))), 9);
        // A token issued before the count (the sample's) counts no earlier polls.
        let sample = format!(r#"{{"stateMachineExecutionArn": "{arn}"}}"#);
        assert_eq!(invocations(Ok(&data(Some(&sample)))), 2);
        assert_eq!(invocations(Ok(&data(Some("garbage")))), 2);
        let err = serde_json::from_str::<JobData>(r#"{"inputArtifacts": "x"}"#).unwrap_err();
        assert_eq!(invocations(Err(&err)), 1);
        assert_eq!(
            invocations(Ok(&data(Some(
                &ContinuationToken::new(arn, u32::MAX).encode().unwrap()
            )))),
            u32::MAX
        );
    }

    #[test]
    fn a_put_that_was_not_taken_is_not_counted() {
        let failed = Recorded::Failed(FailureKind::JobFailed);
        assert_eq!(Recorded::from_put(&Recording::Recorded, failed), failed);
        assert_eq!(
            Recorded::from_put(&Recording::AlreadyAnswered, failed),
            Recorded::AlreadyAnswered
        );
        assert_eq!(
            Recorded::from_put(&Recording::Rejected("x".into()), Recorded::Succeeded),
            Recorded::AlreadyAnswered
        );
    }
}
