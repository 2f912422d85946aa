//! What a running execution waits for, decided from its latest history events: no I/O here.
//!
//! A task with an integration pattern (`.waitForTaskToken`, `.sync`) records `TaskSubmitted` once
//! its request was submitted, with the resource's answer as `output` (for
//! `lambda:invoke.waitForTaskToken`, Lambda's Invoke response: `{"Payload": <the function's
//! answer>, "StatusCode": 200, ...}`). While that is the latest task event, the execution waits
//! on that task, and the summary says so: the answer's own `summary` when it gives one.

use serde_json::Value;

use crate::outcome::MAX_SUMMARY_CHARS;

/// One history event, as far as the decision needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryEvent {
    /// The event id: ids grow with time, so they order the events whatever order they came in.
    pub id: i64,
    /// The event type as Step Functions spells it (`TaskSubmitted`, `TaskStateEntered`, ...).
    pub kind: String,
    /// `stateEnteredEventDetails.name`.
    pub state_name: Option<String>,
    /// `taskSubmittedEventDetails.resource` (`invoke.waitForTaskToken`, `startExecution.sync:2`).
    pub resource: Option<String>,
    /// `taskSubmittedEventDetails.output`: the resource's answer, a JSON string (absent when the
    /// history was read without execution data).
    pub output: Option<String>,
}

/// The summary for a running execution that waits on a submitted task, at most CodePipeline's
/// 2,048 characters; `None` when the latest events show no such wait (the caller keeps its own
/// summary). `events` may come in any order.
///
/// The wait holds while no task event (scheduled, started, succeeded, failed, timed out, ...),
/// state exit, failure or end of the execution came after the latest `TaskSubmitted`. The
/// summary is the answer's `summary` (the Lambda function's, in `Payload`, or a top-level one),
/// else "waiting for a callback to <state>" (`.sync`: "waiting for <state> to finish"), the state
/// being the nearest `TaskStateEntered` before it, when among the events.
pub fn summary(events: &[HistoryEvent]) -> Option<String> {
    let mut newest_first: Vec<&HistoryEvent> = events.iter().collect();
    newest_first.sort_by_key(|e| std::cmp::Reverse(e.id));
    let mut older = newest_first.into_iter();
    let submitted = loop {
        let event = older.next()?;
        if event.kind == "TaskSubmitted" {
            break event;
        }
        if ends_the_wait(&event.kind) {
            return None;
        }
    };
    if let Some(own) = submitted.output.as_deref().and_then(answer_summary) {
        return Some(cut(&own, MAX_SUMMARY_CHARS));
    }
    let state = older
        .find(|e| e.kind == "TaskStateEntered")
        .and_then(|e| e.state_name.as_deref())
        .filter(|name| !name.is_empty());
    let sync = submitted.resource.as_deref().is_some_and(is_sync);
    let text = match (state, sync) {
        (Some(state), false) => format!("waiting for a callback to {state}"),
        (None, false) => "waiting for a callback".to_owned(),
        (Some(state), true) => format!("waiting for {state} to finish"),
        (None, true) => "waiting for a task to finish".to_owned(),
    };
    Some(cut(&text, MAX_SUMMARY_CHARS))
}

/// Whether an event after `TaskSubmitted` means the execution no longer (only) waits on it: any
/// other task event (another task's included), a state exited, failed or aborted, a `Fail` state
/// entered, or the execution's end. Other events (a state entered in a parallel branch, a map
/// iteration started, ...) say nothing either way.
pub fn ends_the_wait(kind: &str) -> bool {
    (kind.starts_with("Task") && kind != "TaskStateEntered" && kind != "TaskSubmitted")
        || kind.starts_with("Activity")
        || kind.starts_with("LambdaFunction")
        || kind.ends_with("StateExited")
        || kind.ends_with("Failed")
        || kind.ends_with("Aborted")
        || kind.ends_with("TimedOut")
        || kind == "FailStateEntered"
        || kind == "ExecutionSucceeded"
}

/// `.sync` / `.sync:2` resources wait for a job to finish, not for a callback.
fn is_sync(resource: &str) -> bool {
    resource.ends_with(".sync") || resource.contains(".sync:")
}

/// The answer's own summary: `Payload.summary` (Lambda's Invoke response; a `Payload` that is a
/// JSON document in a string is read too), else a top-level `summary`. Blank summaries count as
/// none.
pub fn answer_summary(output: &str) -> Option<String> {
    let answer: Value = serde_json::from_str(output).ok()?;
    let payload = match answer.get("Payload") {
        Some(Value::String(text)) => serde_json::from_str(text).ok(),
        other => other.cloned(),
    };
    payload
        .as_ref()
        .and_then(summary_field)
        .or_else(|| summary_field(&answer))
        .map(str::to_owned)
}

fn summary_field(value: &Value) -> Option<&str> {
    value
        .get("summary")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// At most `max` characters (not bytes); a longer text keeps its first `max - 1` and ends in "…".
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    if max > 0 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPROVAL: &str = "waiting for approval of 2 unsafe change(s): Uploads (AWS::S3::Bucket) \
                            removed; review: s3://reviews/r1/review.md";

    fn ev(id: i64, kind: &str) -> HistoryEvent {
        HistoryEvent {
            id,
            kind: kind.into(),
            ..HistoryEvent::default()
        }
    }

    fn entered(id: i64, name: &str) -> HistoryEvent {
        HistoryEvent {
            state_name: Some(name.into()),
            ..ev(id, "TaskStateEntered")
        }
    }

    fn submitted(id: i64, resource: &str, output: Option<&str>) -> HistoryEvent {
        HistoryEvent {
            resource: Some(resource.into()),
            output: output.map(str::to_owned),
            ..ev(id, "TaskSubmitted")
        }
    }

    fn lambda_answer(payload: &Value) -> String {
        serde_json::json!({"Payload": payload, "StatusCode": 200, "ExecutedVersion": "$LATEST"}).to_string()
    }

    /// A callback task's events, oldest first: entered, scheduled, started, submitted.
    fn waiting_on(state: &str, output: Option<&str>) -> Vec<HistoryEvent> {
        vec![
            ev(1, "ExecutionStarted"),
            entered(2, state),
            ev(3, "TaskScheduled"),
            ev(4, "TaskStarted"),
            submitted(5, "invoke.waitForTaskToken", output),
        ]
    }

    #[test]
    fn which_summary_from_these_events() {
        let approval = lambda_answer(&serde_json::json!({
            "summary": APPROVAL, "reviewId": "r1", "markdownUri": "s3://reviews/r1/review.md"
        }));
        let no_summary = lambda_answer(&serde_json::json!({"reviewId": "r1"}));
        let blank = lambda_answer(&serde_json::json!({"summary": "  "}));
        let not_text = lambda_answer(&serde_json::json!({"summary": 3}));
        let string_payload = lambda_answer(&Value::String(r#"{"summary": "in a string"}"#.into()));
        let top_level = r#"{"summary": "top level", "MessageId": "m1"}"#;
        let with_events = |mut events: Vec<HistoryEvent>, more: &[HistoryEvent]| {
            events.extend_from_slice(more);
            events
        };
        let cases: Vec<(&str, Vec<HistoryEvent>, Option<&str>)> = vec![
            (
                "the function's summary",
                waiting_on("RequestApproval", Some(&approval)),
                Some(APPROVAL),
            ),
            (
                "a payload in a string",
                waiting_on("Ask", Some(&string_payload)),
                Some("in a string"),
            ),
            (
                "a top-level summary",
                waiting_on("Ask", Some(top_level)),
                Some("top level"),
            ),
            (
                "no summary in the answer",
                waiting_on("RequestApproval", Some(&no_summary)),
                Some("waiting for a callback to RequestApproval"),
            ),
            (
                "a blank summary",
                waiting_on("Ask", Some(&blank)),
                Some("waiting for a callback to Ask"),
            ),
            (
                "a summary that is no text",
                waiting_on("Ask", Some(&not_text)),
                Some("waiting for a callback to Ask"),
            ),
            (
                "no output",
                waiting_on("Ask", None),
                Some("waiting for a callback to Ask"),
            ),
            (
                "output that is no JSON",
                waiting_on("Ask", Some("not json")),
                Some("waiting for a callback to Ask"),
            ),
            (
                "the state entered was not fetched",
                vec![
                    ev(40, "TaskStarted"),
                    submitted(41, "invoke.waitForTaskToken", None),
                ],
                Some("waiting for a callback"),
            ),
            (
                "a .sync task",
                vec![
                    entered(7, "RunChild"),
                    submitted(9, "startExecution.sync:2", Some("{}")),
                ],
                Some("waiting for RunChild to finish"),
            ),
            (
                "a .sync task, state not fetched",
                vec![submitted(9, "runTask.sync", None)],
                Some("waiting for a task to finish"),
            ),
            (
                "a parallel branch entered a Wait state since",
                with_events(waiting_on("Ask", Some(&approval)), &[ev(6, "WaitStateEntered")]),
                Some(APPROVAL),
            ),
            (
                "the callback came",
                with_events(waiting_on("Ask", Some(&approval)), &[ev(6, "TaskSucceeded")]),
                None,
            ),
            (
                "the callback failed",
                with_events(waiting_on("Ask", Some(&approval)), &[ev(6, "TaskFailed")]),
                None,
            ),
            (
                "the task timed out",
                with_events(waiting_on("Ask", Some(&approval)), &[ev(6, "TaskTimedOut")]),
                None,
            ),
            (
                "the state exited",
                with_events(waiting_on("Ask", None), &[ev(6, "TaskStateExited")]),
                None,
            ),
            (
                "the state was aborted",
                with_events(waiting_on("Ask", None), &[ev(6, "TaskStateAborted")]),
                None,
            ),
            (
                "another task runs since",
                with_events(waiting_on("Ask", None), &[ev(6, "TaskScheduled")]),
                None,
            ),
            (
                "a Fail state was entered",
                with_events(waiting_on("Ask", None), &[ev(6, "FailStateEntered")]),
                None,
            ),
            (
                "the execution ended",
                with_events(waiting_on("Ask", None), &[ev(6, "ExecutionSucceeded")]),
                None,
            ),
            (
                "a plain task runs",
                vec![entered(2, "Deploy"), ev(3, "TaskScheduled"), ev(4, "TaskStarted")],
                None,
            ),
            (
                "a Wait state",
                vec![ev(1, "ExecutionStarted"), ev(2, "WaitStateEntered")],
                None,
            ),
            ("no events", vec![], None),
        ];
        for (case, events, expected) in cases {
            assert_eq!(summary(&events).as_deref(), expected, "{case}");
            // The order the events came in does not matter (moto answers oldest first).
            let mut reversed = events.clone();
            reversed.reverse();
            assert_eq!(summary(&reversed).as_deref(), expected, "{case}, reversed");
        }
    }

    #[test]
    fn a_second_callback_task_is_named_after_its_own_state() {
        let events = vec![
            entered(2, "First"),
            submitted(5, "invoke.waitForTaskToken", None),
            ev(6, "TaskSucceeded"),
            ev(7, "TaskStateExited"),
            entered(8, "Second"),
            ev(9, "TaskScheduled"),
            ev(10, "TaskStarted"),
            submitted(11, "invoke.waitForTaskToken", None),
        ];
        assert_eq!(
            summary(&events).as_deref(),
            Some("waiting for a callback to Second")
        );
    }

    #[test]
    fn long_summaries_are_cut_to_codepipelines_limit() {
        let long = "ü".repeat(5_000);
        let answer = lambda_answer(&serde_json::json!({"summary": long}));
        let got = summary(&waiting_on("Ask", Some(&answer))).unwrap();
        assert_eq!(got.chars().count(), MAX_SUMMARY_CHARS);
        assert!(got.ends_with("ü…"), "{got}");
        let state = "s".repeat(3_000);
        let got = summary(&waiting_on(&state, None)).unwrap();
        assert_eq!(got.chars().count(), MAX_SUMMARY_CHARS);
        assert!(got.starts_with("waiting for a callback to sss") && got.ends_with('…'));
    }

    #[test]
    fn cutting_counts_characters() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        assert_eq!(cut("éééé", 2), "é…");
        assert_eq!(cut("abc", 1), "…");
        assert_eq!(cut("abc", 0), "");
        assert_eq!(cut("", 0), "");
    }

    #[test]
    fn which_events_end_the_wait() {
        let ending = [
            "TaskScheduled",
            "TaskStarted",
            "TaskStartFailed",
            "TaskSubmitFailed",
            "TaskSucceeded",
            "TaskFailed",
            "TaskTimedOut",
            "TaskStateExited",
            "TaskStateAborted",
            "PassStateExited",
            "ChoiceStateExited",
            "ParallelStateFailed",
            "MapStateAborted",
            "ActivityScheduled",
            "LambdaFunctionScheduled",
            "EvaluationFailed",
            "FailStateEntered",
            "ExecutionSucceeded",
            "ExecutionFailed",
            "ExecutionAborted",
            "ExecutionTimedOut",
        ];
        for kind in ending {
            assert!(ends_the_wait(kind), "{kind}");
        }
        let neutral = [
            "TaskSubmitted",
            "TaskStateEntered",
            "PassStateEntered",
            "WaitStateEntered",
            "SucceedStateEntered",
            "ParallelStateStarted",
            "MapIterationStarted",
            "ExecutionStarted",
            "ExecutionRedriven",
        ];
        for kind in neutral {
            assert!(!ends_the_wait(kind), "{kind}");
        }
    }

    #[test]
    fn the_answers_own_summary() {
        assert_eq!(
            answer_summary(r#"{"Payload": {"summary": " padded "}, "summary": "outer"}"#).as_deref(),
            Some("padded")
        );
        assert_eq!(
            answer_summary(r#"{"Payload": {"other": 1}, "summary": "outer"}"#).as_deref(),
            Some("outer")
        );
        assert_eq!(answer_summary(r#"{"Payload": "plain text"}"#), None);
        assert_eq!(answer_summary(r#"{"Payload": null}"#), None);
        assert_eq!(answer_summary("[1, 2]"), None);
        assert_eq!(answer_summary(""), None);
    }
}
