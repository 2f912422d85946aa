//! The drift gate, pure: from DescribeStackDriftDetectionStatus and DescribeStackResourceDrifts
//! answers (in the shapes below, no SDK types) and the deployment's `drift` mode, the drift
//! step's output: wait, go on (with the drifted resources listed), or block.
//!
//! Under `block` the gate fails closed: drift it cannot detect (an API error, detection that
//! failed or did not finish, a status it cannot read) blocks the deployment like drift found.
//! Property values may hold secrets under any name: the result keeps the drifted properties'
//! paths and kinds, never their values, and is bounded so that it fits in the workflow's state.

use serde::{Deserialize, Serialize};

use crate::plan::DriftMode;
use crate::poll::Poll;
use crate::stack::{StackCheck, StackNext};

/// What the state machine does next (the ASL's "Drift checked?" Choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriftState {
    /// Detection still running: wait `poll.waitSeconds`, then run the step again.
    Pending,
    /// Go on and create the change set (drift found or not; `drifted` lists it).
    Done,
    /// `drift: block` and the stack drifted (or drift could not be detected): fail with
    /// `StackDrifted`, `summary` as the cause.
    Blocked,
}

/// A property whose live value differs from the template's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyDifference {
    pub property_path: String,
    /// ADD, REMOVE or NOT_EQUAL.
    pub difference_type: String,
    /// The template's and the live value, as DescribeStackResourceDrifts gives them; never kept
    /// in the state (see `shown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_value: Option<String>,
}

/// A resource that drifted (MODIFIED or DELETED).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftedResource {
    pub logical_resource_id: String,
    pub resource_type: String,
    pub physical_resource_id: Option<String>,
    /// MODIFIED or DELETED.
    pub status: String,
    pub differences: Vec<PropertyDifference>,
}

/// The drift step's output (`$.drift`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftResult {
    pub state: DriftState,
    /// Whether drift was really detected (false: `drift: ignore`, a stack with no resources yet,
    /// or detection that failed, did not finish or was unavailable; `summary` says which).
    pub checked: bool,
    /// The detection to poll, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection_id: Option<String>,
    /// DRIFTED, IN_SYNC, UNKNOWN or NOT_CHECKED, once detection completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_drift_status: Option<String>,
    pub drifted_count: usize,
    /// At most [`MAX_DRIFTED_IN_STATE`] resources; `drifted_count` says how many there are.
    pub drifted: Vec<DriftedResource>,
    /// One line for outputs and failure causes, at most 4,000 characters.
    pub summary: String,
    pub poll: Poll,
}

/// What the drift result may carry through the state machine (see `Verdict::bounded`).
pub const MAX_DRIFTED_IN_STATE: usize = 50;
/// At most this many property differences per resource in the state.
pub const MAX_DIFFERENCES_PER_RESOURCE: usize = 20;
/// At most this many property differences in all in the state (50 resources of 20 differences
/// of two 200-character values would be over 400,000 characters, more than a state may hold;
/// 60 keep the worst case under 72 KiB).
pub const MAX_DIFFERENCES_IN_STATE: usize = 60;
/// Expected and actual values (and physical ids) are cut to this many characters.
pub const MAX_VALUE_CHARS: usize = 200;
/// The summary becomes a failure cause and an output variable.
pub const MAX_SUMMARY_CHARS: usize = 4_000;
/// One resource's part of the summary (its property paths can be many).
const MAX_ITEM_CHARS: usize = 500;

/// What `drift: warn` appends when it goes on despite drift.
const WENT_ON: &str = "; going on (drift: warn)";
/// What `drift: warn` appends when it goes on without a complete drift check.
const WENT_ON_UNCHECKED: &str = "; going on without a drift check (drift: warn)";

/// DescribeStackDriftDetectionStatus's `DetectionStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectionStatus {
    InProgress,
    Complete,
    Failed,
    /// Absent or a value this gate does not know (it fails closed under `block`).
    Other(String),
}

impl DetectionStatus {
    pub fn parse(status: Option<&str>) -> Self {
        match status {
            Some("DETECTION_IN_PROGRESS") => Self::InProgress,
            Some("DETECTION_COMPLETE") => Self::Complete,
            Some("DETECTION_FAILED") => Self::Failed,
            other => Self::Other(other.unwrap_or("(none)").to_owned()),
        }
    }
}

/// What the drift APIs answered, out of the SDK's types. The drifted resources are as listed
/// (unmasked, uncut): [`decide`] masks and bounds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// DetectStackDrift answered this id; `poll` is the wait before the first status check.
    Started { detection_id: String, poll: Poll },
    /// DETECTION_IN_PROGRESS; `poll` is the polling state after this check.
    InProgress { poll: Poll },
    /// DETECTION_COMPLETE, and the MODIFIED and DELETED resources.
    Complete {
        stack_drift_status: Option<String>,
        drifted: Vec<DriftedResource>,
    },
    /// DETECTION_FAILED (`DetectionStatusReason`), and what was found drifted all the same.
    Failed {
        reason: Option<String>,
        stack_drift_status: Option<String>,
        drifted: Vec<DriftedResource>,
    },
    /// A drift API refused or failed (other than throttling), or answered what the gate cannot
    /// read: `message` says which.
    Unavailable { message: String },
}

impl Observation {
    /// Whether `drift: warn` goes on despite this answer (drift found, or not fully checked): the
    /// step logs a warning when it does.
    pub fn is_concerning(&self) -> bool {
        match self {
            Self::Started { .. } => false,
            Self::InProgress { poll } => poll.exhausted,
            Self::Complete {
                stack_drift_status,
                drifted,
            } => !drifted.is_empty() || stack_drift_status.as_deref() != Some("IN_SYNC"),
            Self::Failed { .. } | Self::Unavailable { .. } => true,
        }
    }
}

/// `drift: ignore`: DONE without a check.
pub fn ignored() -> DriftResult {
    unchecked(DriftState::Done, None, "drift not checked (drift: ignore)".into())
}

/// A stack that is not being updated (created, or REVIEW_IN_PROGRESS) has no deployed resources
/// that could drift: DONE without a check. `None` for a stack being updated.
pub fn not_an_update(stack_name: &str, check: &StackCheck) -> Option<DriftResult> {
    if check.next == StackNext::UpdateChangeSet {
        return None;
    }
    let status = check.status.as_deref().unwrap_or("absent");
    let summary =
        format!("drift not checked: stack {stack_name} ({status}) has no deployed resources to drift yet");
    Some(unchecked(DriftState::Done, None, summary))
}

/// What the drift gate needs besides the answer.
#[derive(Debug, Clone, Copy)]
pub struct Gate<'a> {
    pub mode: DriftMode,
    pub stack_name: &'a str,
    /// The detection being polled (none before DetectStackDrift).
    pub detection_id: Option<&'a str>,
}

/// The drift step's output for an answer of the drift APIs.
pub fn decide(gate: &Gate<'_>, observation: Observation) -> DriftResult {
    let name = gate.stack_name;
    let id = gate.detection_id.map(str::to_owned);
    match observation {
        Observation::Started { detection_id, poll } if !poll.exhausted => DriftResult {
            poll,
            ..unchecked(
                DriftState::Pending,
                Some(detection_id),
                format!("drift detection started on stack {name}"),
            )
        },
        Observation::InProgress { poll } if !poll.exhausted => DriftResult {
            poll,
            ..unchecked(
                DriftState::Pending,
                id,
                format!(
                    "drift detection on stack {name} is in progress (check {})",
                    poll.attempt
                ),
            )
        },
        // With a single check allowed (POLL_MAX_ATTEMPTS=1), detection cannot be waited for.
        Observation::Started { poll, .. } | Observation::InProgress { poll } => {
            let reason = format!(
                "drift detection did not finish after {} checks on stack {name}",
                poll.attempt
            );
            DriftResult {
                poll,
                ..gate.not_detected(reason)
            }
        }
        Observation::Complete {
            stack_drift_status,
            drifted,
        } => gate.complete(stack_drift_status, drifted),
        Observation::Failed {
            reason,
            stack_drift_status,
            drifted,
        } => gate.failed(reason.as_deref(), stack_drift_status, drifted),
        Observation::Unavailable { message } => {
            gate.not_detected(format!("drift could not be detected: {message}"))
        }
    }
}

impl Gate<'_> {
    /// Drift not (fully) detected: BLOCKED under `block`, DONE unchecked under `warn`.
    fn not_detected(&self, reason: String) -> DriftResult {
        let (state, summary) = self.verdict(&reason, "", &[], WENT_ON_UNCHECKED);
        unchecked(state, self.detection_id.map(str::to_owned), summary)
    }

    /// BLOCKED (summary `prefix items`) under `block`, DONE (the same and `went_on`) otherwise.
    fn verdict(&self, prefix: &str, infix: &str, items: &[String], went_on: &str) -> (DriftState, String) {
        let (state, suffix) = match self.mode {
            DriftMode::Block => (DriftState::Blocked, ""),
            DriftMode::Warn | DriftMode::Ignore => (DriftState::Done, went_on),
        };
        (state, bounded_summary(prefix, infix, items, suffix))
    }

    fn complete(&self, stack_drift_status: Option<String>, drifted: Vec<DriftedResource>) -> DriftResult {
        let name = self.stack_name;
        let status = stack_drift_status.as_deref().unwrap_or("(none)");
        let (state, summary) = if !drifted.is_empty() || status == "DRIFTED" {
            let items = summary_items(&drifted);
            let prefix = if drifted.is_empty() {
                format!(
                    "stack {name} has drifted (StackDriftStatus DRIFTED, no MODIFIED or DELETED resource listed)"
                )
            } else {
                format!("stack {name} has drifted: {} resource(s)", drifted.len())
            };
            self.verdict(&prefix, ": ", &items, WENT_ON)
        } else if status == "IN_SYNC" {
            (
                DriftState::Done,
                format!("stack {name} is in sync with its template"),
            )
        } else {
            let reason = format!(
                "drift of stack {name} could not be determined: detection completed with StackDriftStatus \
                 {status}"
            );
            return DriftResult {
                stack_drift_status,
                ..self.not_detected(reason)
            };
        };
        self.with_drifted(state, true, stack_drift_status, drifted, summary)
    }

    fn failed(
        &self,
        reason: Option<&str>,
        stack_drift_status: Option<String>,
        drifted: Vec<DriftedResource>,
    ) -> DriftResult {
        let mut prefix = format!(
            "drift detection failed on stack {}: {}",
            self.stack_name,
            reason.filter(|r| !r.is_empty()).unwrap_or("no reason given")
        );
        let items = summary_items(&drifted);
        if !drifted.is_empty() {
            prefix = cut(&prefix, MAX_SUMMARY_CHARS / 2);
            prefix.push_str(&format!("; drifted so far: {} resource(s)", drifted.len()));
        }
        let (state, summary) = self.verdict(&prefix, ": ", &items, WENT_ON_UNCHECKED);
        self.with_drifted(state, false, stack_drift_status, drifted, summary)
    }

    fn with_drifted(
        &self,
        state: DriftState,
        checked: bool,
        stack_drift_status: Option<String>,
        drifted: Vec<DriftedResource>,
        summary: String,
    ) -> DriftResult {
        DriftResult {
            state,
            checked,
            detection_id: self.detection_id.map(str::to_owned),
            stack_drift_status,
            drifted_count: drifted.len(),
            drifted: bounded(drifted),
            summary,
            poll: Poll::default(),
        }
    }
}

/// A result without drifted resources.
fn unchecked(state: DriftState, detection_id: Option<String>, summary: String) -> DriftResult {
    DriftResult {
        state,
        checked: false,
        detection_id,
        stack_drift_status: None,
        drifted_count: 0,
        drifted: Vec::new(),
        summary: cut(&summary, MAX_SUMMARY_CHARS),
        poll: Poll::default(),
    }
}

/// `Logical (Type) STATUS (/path, /path)` per resource, each at most 500 characters.
fn summary_items(drifted: &[DriftedResource]) -> Vec<String> {
    drifted
        .iter()
        .map(|r| {
            let mut item = format!("{} ({}) {}", r.logical_resource_id, r.resource_type, r.status);
            let paths: Vec<&str> = r.differences.iter().map(|d| d.property_path.as_str()).collect();
            if !paths.is_empty() {
                item.push_str(&format!(" ({})", paths.join(", ")));
            }
            cut(&item, MAX_ITEM_CHARS)
        })
        .collect()
}

/// `prefix` + (`infix` + the items joined with `; `, if any) + `suffix`, at most
/// [`MAX_SUMMARY_CHARS`]: the items that do not fit are counted as `… and N more`.
fn bounded_summary(prefix: &str, infix: &str, items: &[String], suffix: &str) -> String {
    let fixed = suffix.chars().count();
    let mut summary = cut(prefix, MAX_SUMMARY_CHARS.saturating_sub(fixed));
    if !items.is_empty() {
        let room = MAX_SUMMARY_CHARS.saturating_sub(summary.chars().count() + infix.chars().count() + fixed);
        summary.push_str(infix);
        summary.push_str(&bounded_list(items, room));
    }
    summary.push_str(suffix);
    cut(&summary, MAX_SUMMARY_CHARS)
}

/// The items joined with `; ` in at most `room` characters, those that do not fit counted.
fn bounded_list(items: &[String], room: usize) -> String {
    let full = items.join("; ");
    if full.chars().count() <= room {
        return full;
    }
    let reserve = format!("; … and {} more", items.len()).chars().count();
    let (mut list, mut len, mut shown) = (String::new(), 0, 0);
    for item in items {
        let add = item.chars().count() + if shown == 0 { 0 } else { 2 };
        if len + add + reserve > room {
            break;
        }
        if shown > 0 {
            list.push_str("; ");
        }
        list.push_str(item);
        len += add;
        shown += 1;
    }
    if shown > 0 {
        list.push_str("; ");
    }
    list.push_str(&format!("… and {} more", items.len() - shown));
    list
}

/// At most `max` characters: longer text is cut and ends with `…`.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A difference as the state keeps it: its path and kind, never its values. A live value can
/// hold a secret that neither its property's name nor CloudFormation marks (a NoEcho value
/// under a plain name, an environment variable's value), and the state reaches the execution's
/// history, its outputs and the review; CloudFormation's drift view shows the values.
fn shown(d: PropertyDifference) -> PropertyDifference {
    PropertyDifference {
        property_path: cut(&d.property_path, MAX_VALUE_CHARS),
        difference_type: d.difference_type,
        expected_value: None,
        actual_value: None,
    }
}

/// The drifted resources as the state keeps them: without property values, at most
/// [`MAX_DRIFTED_IN_STATE`] resources, [`MAX_DIFFERENCES_PER_RESOURCE`] differences each and
/// [`MAX_DIFFERENCES_IN_STATE`] in all.
pub fn bounded(drifted: Vec<DriftedResource>) -> Vec<DriftedResource> {
    let mut left = MAX_DIFFERENCES_IN_STATE;
    drifted
        .into_iter()
        .take(MAX_DRIFTED_IN_STATE)
        .map(|r| {
            let keep = r.differences.len().min(MAX_DIFFERENCES_PER_RESOURCE).min(left);
            left -= keep;
            DriftedResource {
                physical_resource_id: r.physical_resource_id.map(|p| cut(&p, MAX_VALUE_CHARS)),
                differences: r.differences.into_iter().take(keep).map(shown).collect(),
                ..r
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "drift-1111";

    fn diff(path: &str, expected: &str, actual: &str) -> PropertyDifference {
        PropertyDifference {
            property_path: path.into(),
            difference_type: "NOT_EQUAL".into(),
            expected_value: Some(expected.into()),
            actual_value: Some(actual.into()),
        }
    }

    fn resource(
        logical: &str,
        rtype: &str,
        status: &str,
        differences: Vec<PropertyDifference>,
    ) -> DriftedResource {
        DriftedResource {
            logical_resource_id: logical.into(),
            resource_type: rtype.into(),
            physical_resource_id: Some(format!("{logical}-physical")),
            status: status.into(),
            differences,
        }
    }

    fn two_drifted() -> Vec<DriftedResource> {
        vec![
            resource(
                "Uploads",
                "AWS::S3::Bucket",
                "MODIFIED",
                vec![diff(
                    "/Properties/VersioningConfiguration",
                    "{\"Status\":\"Enabled\"}",
                    "null",
                )],
            ),
            resource("Queue", "AWS::SQS::Queue", "DELETED", vec![]),
        ]
    }

    fn gate(mode: DriftMode) -> Gate<'static> {
        Gate {
            mode,
            stack_name: "prod-app",
            detection_id: Some(ID),
        }
    }

    fn poll(attempt: u32, exhausted: bool) -> Poll {
        Poll {
            attempt,
            wait_seconds: 10,
            exhausted,
        }
    }

    const LISTED: &str = "stack prod-app has drifted: 2 resource(s): Uploads (AWS::S3::Bucket) MODIFIED \
                          (/Properties/VersioningConfiguration); Queue (AWS::SQS::Queue) DELETED";

    #[test]
    fn the_gate_decides() {
        use DriftMode::{Block, Warn};
        use DriftState::{Blocked, Done, Pending};
        let complete = |status: &str, drifted| Observation::Complete {
            stack_drift_status: Some(status.into()),
            drifted,
        };
        let failed = |drifted| Observation::Failed {
            reason: Some("Failed to detect drift on resource [Fn]".into()),
            stack_drift_status: Some("DRIFTED".into()),
            drifted,
        };
        let unavailable = || Observation::Unavailable {
            message: "CloudFormation DetectStackDrift failed: AccessDenied: no".into(),
        };
        let cases: Vec<(DriftMode, Observation, DriftState, bool, usize, String)> = vec![
            (Block, Observation::InProgress { poll: poll(2, false) }, Pending, false, 0,
             "drift detection on stack prod-app is in progress (check 2)".into()),
            (Block, Observation::InProgress { poll: poll(3, true) }, Blocked, false, 0,
             "drift detection did not finish after 3 checks on stack prod-app".into()),
            (Warn, Observation::InProgress { poll: poll(3, true) }, Done, false, 0,
             "drift detection did not finish after 3 checks on stack prod-app; going on without a drift \
              check (drift: warn)".into()),
            (Block, complete("IN_SYNC", vec![]), Done, true, 0, "stack prod-app is in sync with its template".into()),
            (Warn, complete("IN_SYNC", vec![]), Done, true, 0, "stack prod-app is in sync with its template".into()),
            (Block, complete("DRIFTED", two_drifted()), Blocked, true, 2, LISTED.into()),
            (Warn, complete("DRIFTED", two_drifted()), Done, true, 2, format!("{LISTED}; going on (drift: warn)")),
            (Block, complete("DRIFTED", vec![]), Blocked, true, 0, "stack prod-app has drifted (StackDriftStatus DRIFTED, no MODIFIED or DELETED resource listed)".into()),
            (Block, complete("UNKNOWN", vec![]), Blocked, false, 0,
             "drift of stack prod-app could not be determined: detection completed with StackDriftStatus \
              UNKNOWN".into()),
            (Block, failed(vec![]), Blocked, false, 0,
             "drift detection failed on stack prod-app: Failed to detect drift on resource [Fn]".into()),
            (Warn, failed(two_drifted()), Done, false, 2,
             format!("drift detection failed on stack prod-app: Failed to detect drift on resource [Fn]; \
                      drifted so far: 2 resource(s): {}; going on without a drift check (drift: warn)",
                     LISTED.split(": ").skip(2).collect::<Vec<_>>().join(": "))),
            (Block, unavailable(), Blocked, false, 0,
             "drift could not be detected: CloudFormation DetectStackDrift failed: AccessDenied: no".into()),
            (Warn, unavailable(), Done, false, 0,
             "drift could not be detected: CloudFormation DetectStackDrift failed: AccessDenied: no; going on \
              without a drift check (drift: warn)".into()),
        ];
        for (mode, observation, state, checked, count, summary) in cases {
            let label = format!("{mode:?} {observation:?}");
            let r = decide(&gate(mode), observation);
            assert_eq!(r.state, state, "{label}");
            assert_eq!(r.checked, checked, "{label}");
            assert_eq!(r.drifted_count, count, "{label}");
            assert_eq!(r.drifted.len(), count, "{label}");
            assert_eq!(r.summary, summary, "{label}");
            assert_eq!(r.detection_id.as_deref(), Some(ID), "{label}");
        }
    }

    #[test]
    fn pending_keeps_the_poll_and_the_end_resets_it() {
        let started = decide(
            &Gate {
                detection_id: None,
                ..gate(DriftMode::Block)
            },
            Observation::Started {
                detection_id: "new-id".into(),
                poll: poll(1, false),
            },
        );
        assert_eq!(
            (started.state, started.detection_id.as_deref(), started.poll),
            (DriftState::Pending, Some("new-id"), poll(1, false))
        );
        assert_eq!(started.summary, "drift detection started on stack prod-app");
        let exhausted = decide(
            &gate(DriftMode::Warn),
            Observation::InProgress { poll: poll(3, true) },
        );
        assert_eq!(exhausted.poll, poll(3, true));
        let done = decide(
            &gate(DriftMode::Warn),
            Observation::Complete {
                stack_drift_status: Some("IN_SYNC".into()),
                drifted: vec![],
            },
        );
        assert_eq!(done.poll, Poll::default());
        assert_eq!(done.stack_drift_status.as_deref(), Some("IN_SYNC"));
    }

    #[test]
    fn nothing_to_check() {
        let r = ignored();
        assert_eq!((r.state, r.checked), (DriftState::Done, false));
        assert_eq!(r.summary, "drift not checked (drift: ignore)");
        let check = |next, status: Option<&str>| StackCheck {
            next,
            status: status.map(str::to_owned),
            reason: String::new(),
        };
        let review = not_an_update(
            "prod-app",
            &check(StackNext::CreateChangeSet, Some("REVIEW_IN_PROGRESS")),
        );
        let review = review.unwrap();
        assert_eq!((review.state, review.checked), (DriftState::Done, false));
        assert_eq!(
            review.summary,
            "drift not checked: stack prod-app (REVIEW_IN_PROGRESS) has no deployed resources to drift yet"
        );
        assert!(not_an_update("prod-app", &check(StackNext::CreateStack, None)).is_some());
        assert!(
            not_an_update(
                "prod-app",
                &check(StackNext::UpdateChangeSet, Some("UPDATE_COMPLETE"))
            )
            .is_none()
        );
    }

    #[test]
    fn a_single_allowed_check_never_leaves_the_gate_pending() {
        let poll = Poll {
            attempt: 1,
            wait_seconds: 5,
            exhausted: true,
        };
        for (mode, expected) in [
            (DriftMode::Block, DriftState::Blocked),
            (DriftMode::Warn, DriftState::Done),
        ] {
            let gate = Gate {
                mode,
                stack_name: "prod-app",
                detection_id: None,
            };
            let out = decide(
                &gate,
                Observation::Started {
                    detection_id: ID.into(),
                    poll,
                },
            );
            assert_eq!(out.state, expected, "{mode:?}");
            assert!(
                out.summary.contains("did not finish after 1 checks"),
                "{}",
                out.summary
            );
        }
    }

    #[test]
    fn detection_statuses() {
        assert_eq!(
            DetectionStatus::parse(Some("DETECTION_IN_PROGRESS")),
            DetectionStatus::InProgress
        );
        assert_eq!(
            DetectionStatus::parse(Some("DETECTION_COMPLETE")),
            DetectionStatus::Complete
        );
        assert_eq!(
            DetectionStatus::parse(Some("DETECTION_FAILED")),
            DetectionStatus::Failed
        );
        assert_eq!(
            DetectionStatus::parse(Some("NEW")),
            DetectionStatus::Other("NEW".into())
        );
        assert_eq!(
            DetectionStatus::parse(None),
            DetectionStatus::Other("(none)".into())
        );
    }

    #[test]
    fn concerning_answers() {
        let complete = |status: &str, drifted| Observation::Complete {
            stack_drift_status: Some(status.into()),
            drifted,
        };
        let cases = [
            (
                Observation::Started {
                    detection_id: ID.into(),
                    poll: poll(1, false),
                },
                false,
            ),
            (Observation::InProgress { poll: poll(2, false) }, false),
            (Observation::InProgress { poll: poll(3, true) }, true),
            (complete("IN_SYNC", vec![]), false),
            (complete("DRIFTED", two_drifted()), true),
            (complete("UNKNOWN", vec![]), true),
            (Observation::Unavailable { message: "m".into() }, true),
            (
                Observation::Failed {
                    reason: None,
                    stack_drift_status: None,
                    drifted: vec![],
                },
                true,
            ),
        ];
        for (observation, expected) in cases {
            assert_eq!(observation.is_concerning(), expected, "{observation:?}");
        }
    }

    #[test]
    fn no_value_is_kept_only_paths_and_kinds() {
        let long = "p".repeat(500);
        let drifted = vec![resource(
            "Db",
            "AWS::RDS::DBInstance",
            "MODIFIED",
            vec![
                diff("/Properties/MasterUserPassword", "hunter2", "hunter3"),
                // A secret under a plain name: only dropping values keeps it out.
                diff(
                    "/Properties/Environment/Variables/DB_URL",
                    "postgres://u:pw1@h",
                    "postgres://u:pw2@h",
                ),
                diff(&format!("/Properties/{long}"), "a", "b"),
            ],
        )];
        let kept = bounded(drifted);
        let d = &kept[0].differences;
        assert_eq!(d.len(), 3);
        for difference in d {
            assert_eq!(
                (
                    difference.expected_value.as_deref(),
                    difference.actual_value.as_deref()
                ),
                (None, None)
            );
            assert_eq!(difference.difference_type, "NOT_EQUAL");
        }
        assert_eq!(d[0].property_path, "/Properties/MasterUserPassword");
        assert_eq!(d[2].property_path.chars().count(), MAX_VALUE_CHARS);
        let json = serde_json::to_string(&kept).unwrap();
        for secret in ["hunter2", "hunter3", "pw1", "pw2"] {
            assert!(!json.contains(secret), "{secret} in {json}");
        }
    }

    #[test]
    fn the_state_is_bounded() {
        let big = "x".repeat(1_000);
        let many: Vec<DriftedResource> = (0..120)
            .map(|i| {
                resource(
                    &format!("Resource{i:03}{}", "L".repeat(200)),
                    "AWS::Some::Type",
                    "MODIFIED",
                    (0..30)
                        .map(|j| diff(&format!("/Properties/P{j}{}", "p".repeat(300)), &big, &big))
                        .collect(),
                )
            })
            .collect();
        for mode in [DriftMode::Block, DriftMode::Warn] {
            let r = decide(
                &gate(mode),
                Observation::Complete {
                    stack_drift_status: Some("DRIFTED".into()),
                    drifted: many.clone(),
                },
            );
            assert_eq!(r.drifted_count, 120);
            assert_eq!(r.drifted.len(), MAX_DRIFTED_IN_STATE);
            assert!(
                r.drifted
                    .iter()
                    .all(|d| d.differences.len() <= MAX_DIFFERENCES_PER_RESOURCE)
            );
            let total: usize = r.drifted.iter().map(|d| d.differences.len()).sum();
            assert_eq!(total, MAX_DIFFERENCES_IN_STATE);
            assert!(
                r.summary.chars().count() <= MAX_SUMMARY_CHARS,
                "{}",
                r.summary.len()
            );
            assert!(
                r.summary
                    .starts_with("stack prod-app has drifted: 120 resource(s): Resource000")
            );
            let shown = r.summary.matches("(AWS::Some::Type)").count();
            assert!(shown >= 5, "{shown}");
            let more = format!("; … and {} more", 120 - shown);
            assert!(r.summary.contains(&more), "{more} not in {}", r.summary);
            if mode == DriftMode::Warn {
                assert!(r.summary.ends_with(&format!("{more}; going on (drift: warn)")));
            } else {
                assert!(r.summary.ends_with(&more));
            }
            // What the state carries, well under Step Functions' 256 KiB.
            let size = serde_json::to_string(&r).unwrap().len();
            assert!(size < 72 * 1024, "{size} bytes");
        }
        let long_reason = decide(
            &gate(DriftMode::Warn),
            Observation::Unavailable {
                message: "m".repeat(10_000),
            },
        );
        assert_eq!(long_reason.summary.chars().count(), MAX_SUMMARY_CHARS);
        assert!(long_reason.summary.ends_with(WENT_ON_UNCHECKED));
    }

    #[test]
    fn lists_that_fit_are_not_cut() {
        let items: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
        assert_eq!(bounded_list(&items, 7), "a; b; c");
        let items: Vec<String> = ["aaaa", "bbbb", "cccc"].map(str::to_owned).to_vec();
        assert_eq!(bounded_list(&items, 16), "aaaa; bbbb; cccc");
        assert_eq!(bounded_list(&items, 15), "… and 3 more");
        let items: Vec<String> = ["aaaa", "bbbb", "cccc", "dddd"].map(str::to_owned).to_vec();
        assert_eq!(bounded_list(&items, 21), "aaaa; … and 3 more");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 3), "abc");
    }
}
