//! What the job result should be, decided from plain data: no I/O here.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::token::ContinuationToken;

/// CodePipeline limits (PutJobSuccessResult / PutJobFailureResult).
pub const MAX_SUMMARY_CHARS: usize = 2048;
pub const MAX_FAILURE_MESSAGE_CHARS: usize = 5000;
pub const MAX_EXTERNAL_EXECUTION_ID_CHARS: usize = 1500;
pub const MAX_OUTPUT_VARIABLES_BYTES: usize = 122_880;

/// `FailureDetails.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    JobFailed,
    ConfigurationError,
    PermissionError,
    RevisionOutOfSync,
    RevisionUnavailable,
    SystemUnavailable,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JobFailed => "JobFailed",
            Self::ConfigurationError => "ConfigurationError",
            Self::PermissionError => "PermissionError",
            Self::RevisionOutOfSync => "RevisionOutOfSync",
            Self::RevisionUnavailable => "RevisionUnavailable",
            Self::SystemUnavailable => "SystemUnavailable",
        }
    }
}

/// The one result every invocation records for its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// Success with a continuation token: CodePipeline invokes again with a new job.
    Continue {
        token: String,
        summary: String,
        external_execution_id: String,
    },
    /// Final success.
    Succeeded {
        summary: String,
        external_execution_id: String,
        output_variables: BTreeMap<String, String>,
    },
    Failed {
        kind: FailureKind,
        message: String,
        external_execution_id: Option<String>,
    },
}

impl JobResult {
    pub fn failed(kind: FailureKind, message: impl Into<String>) -> Self {
        Self::Failed {
            kind,
            message: truncate_chars(&message.into(), MAX_FAILURE_MESSAGE_CHARS),
            external_execution_id: None,
        }
    }

    /// A continuing job's result with another summary (cut to CodePipeline's limit); a final
    /// result is left as it is.
    pub fn with_running_summary(self, summary: &str) -> Self {
        match self {
            Self::Continue {
                token,
                external_execution_id,
                ..
            } => Self::Continue {
                token,
                summary: truncate_chars(summary, MAX_SUMMARY_CHARS),
                external_execution_id,
            },
            other => other,
        }
    }

    pub fn status(&self) -> &'static str {
        match self {
            Self::Continue { .. } => "InProgress",
            Self::Succeeded { .. } => "Succeeded",
            Self::Failed { .. } => "Failed",
        }
    }
}

/// What recording a result with CodePipeline came to (`PutJobSuccessResult`,
/// `PutJobFailureResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recording {
    /// The job took this result.
    Recorded,
    /// The job already had a result (`InvalidJobStateException`): it is left as it is.
    AlreadyAnswered,
    /// CodePipeline refused the success result as invalid (why): a failure is recorded instead.
    Rejected(String),
}

/// DescribeExecution's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
    PendingRedrive,
    Other(String),
}

impl ExecutionStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "RUNNING" => Self::Running,
            "SUCCEEDED" => Self::Succeeded,
            "FAILED" => Self::Failed,
            "TIMED_OUT" => Self::TimedOut,
            "ABORTED" => Self::Aborted,
            "PENDING_REDRIVE" => Self::PendingRedrive,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Aborted => "ABORTED",
            Self::PendingRedrive => "PENDING_REDRIVE",
            Self::Other(s) => s,
        }
    }
}

/// The facts of an execution the decision needs (from DescribeExecution).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionView {
    pub arn: String,
    pub name: String,
    pub status: ExecutionStatus,
    pub started: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub output: Option<String>,
}

/// Truncates to at most `max` UTF-16 code units (so at most `max` characters), marking the cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    const MARK: &str = "... [truncated]";
    // Counted in UTF-16 code units, as AWS's (Java) validators count a string's length: a
    // character outside the Basic Multilingual Plane (an emoji) is two. This is never more
    // than `max` characters either.
    let units = |t: &str| t.encode_utf16().count();
    if units(s) <= max {
        return s.to_owned();
    }
    let take = |budget: usize| {
        let mut used = 0;
        s.chars()
            .take_while(|c| {
                used += c.len_utf16();
                used <= budget
            })
            .collect::<String>()
    };
    let mark_len = units(MARK);
    if max <= mark_len {
        return take(max);
    }
    let mut out = take(max - mark_len);
    out.push_str(MARK);
    out
}

/// The first invocation's answer: continue polling the execution just started.
pub fn started(
    execution_arn: &str,
    execution_name: &str,
    state_machine_name: &str,
) -> Result<JobResult, crate::token::TokenError> {
    let token = ContinuationToken::new(execution_arn, 0).encode()?;
    Ok(JobResult::Continue {
        token,
        summary: truncate_chars(
            &format!(
                "Started Step Functions execution {execution_name} of state machine {state_machine_name}"
            ),
            MAX_SUMMARY_CHARS,
        ),
        external_execution_id: truncate_chars(execution_arn, MAX_EXTERNAL_EXECUTION_ID_CHARS),
    })
}

/// The first invocation's answer when the start was not confirmed before the Lambda deadline.
/// The execution may have started (its name is derived from the job id), so the job continues
/// with that execution's ARN: the next poll finds it, or reports that it was never started.
/// Failing the job instead would let a retried stage start a second deployment while the first
/// one runs.
pub fn start_unconfirmed(execution_arn: &str, execution_name: &str, state_machine_name: &str) -> JobResult {
    match started(execution_arn, execution_name, state_machine_name) {
        Ok(JobResult::Continue {
            token,
            external_execution_id,
            ..
        }) => JobResult::Continue {
            token,
            summary: format!(
                "The start of execution {execution_name} was not confirmed before the Lambda deadline; \
                 checking it on the next poll"
            ),
            external_execution_id,
        },
        _ => out_of_time(),
    }
}

/// The answer when the job logic did not finish before the Lambda deadline (and the job cannot
/// continue with its execution).
pub fn out_of_time() -> JobResult {
    JobResult::failed(
        FailureKind::JobFailed,
        "the pipeline trigger did not finish before its Lambda deadline; retry the action or raise \
         the function's timeout",
    )
}

/// The answer when the job logic panicked (`panic` is the panic's text).
pub fn panicked(panic: &str) -> JobResult {
    JobResult::failed(
        FailureKind::JobFailed,
        format!("internal error in the pipeline trigger (panic: {panic}); see the function's logs"),
    )
}

/// A continuation's answer, from the execution's current state. `polls` counts this poll.
pub fn decide(view: &ExecutionView, polls: u32) -> Result<JobResult, crate::token::TokenError> {
    let external_execution_id = truncate_chars(&view.arn, MAX_EXTERNAL_EXECUTION_ID_CHARS);
    Ok(match &view.status {
        ExecutionStatus::Running => {
            let since = view
                .started
                .as_deref()
                .map(|s| format!(", started {s}"))
                .unwrap_or_default();
            JobResult::Continue {
                token: ContinuationToken::new(&view.arn, polls).encode()?,
                summary: truncate_chars(
                    &format!("Execution {} is RUNNING{since} (check {polls})", view.name),
                    MAX_SUMMARY_CHARS,
                ),
                external_execution_id,
            }
        }
        ExecutionStatus::Succeeded => {
            let vars = output_variables(view.output.as_deref());
            let mut summary = format!(
                "Execution {} SUCCEEDED; {} output variable(s) exported",
                view.name,
                vars.exported.len()
            );
            if !vars.skipped.is_empty() {
                summary.push_str(&format!("; not exported: {}", vars.skipped.join(", ")));
            }
            JobResult::Succeeded {
                summary: truncate_chars(&summary, MAX_SUMMARY_CHARS),
                external_execution_id,
                output_variables: vars.exported,
            }
        }
        other => JobResult::Failed {
            kind: FailureKind::JobFailed,
            message: failure_message(view, other.as_str()),
            external_execution_id: Some(external_execution_id),
        },
    })
}

/// A continuation's answer when describing the execution failed transiently and the bound is not
/// reached: continue with `token` (which counts the failures), saying what failed.
pub fn transient(token: &ContinuationToken, error: &str) -> Result<JobResult, crate::token::TokenError> {
    Ok(JobResult::Continue {
        token: token.encode()?,
        summary: truncate_chars(
            &format!(
                "Could not check execution {} (transient failure {} of at most {}: {error}); \
                 checking again",
                token.execution_arn,
                token.transient_failures,
                crate::token::MAX_TRANSIENT_FAILURES - 1
            ),
            MAX_SUMMARY_CHARS,
        ),
        external_execution_id: truncate_chars(&token.execution_arn, MAX_EXTERNAL_EXECUTION_ID_CHARS),
    })
}

/// `Execution <arn> ended with status <S>. Error: <e>. Cause: <c>`: the ARN and status always
/// survive; the cause is what gets truncated to fit the 5,000 characters.
fn failure_message(view: &ExecutionView, status: &str) -> String {
    let mut head = format!("Execution {} ended with status {status}", view.arn);
    if let Some(error) = view.error.as_deref().filter(|e| !e.is_empty()) {
        head.push_str(&format!(". Error: {}", truncate_chars(error, 500)));
    }
    let Some(cause) = view
        .cause
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(readable_cause)
    else {
        return truncate_chars(&head, MAX_FAILURE_MESSAGE_CHARS);
    };
    let prefix = ". Cause: ";
    let room = MAX_FAILURE_MESSAGE_CHARS.saturating_sub(head.chars().count() + prefix.len());
    if room < 20 {
        return truncate_chars(&head, MAX_FAILURE_MESSAGE_CHARS);
    }
    format!("{head}{prefix}{}", truncate_chars(&cause, room))
}

/// A failed Lambda task's cause is its error document (`{"errorType", "errorMessage", ...}`);
/// the message is what an operator reads (the type is already the execution's error). Any other
/// cause is kept as it is.
pub fn readable_cause(cause: &str) -> String {
    serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|v| v.get("errorMessage").and_then(Value::as_str).map(str::to_owned))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| cause.to_owned())
}

/// CodePipeline output variable names: `[A-Za-z0-9@\-_]+`.
pub fn valid_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'@' || b == b'-' || b == b'_')
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct OutputVariables {
    pub exported: BTreeMap<String, String>,
    /// Top-level keys not exported, each with the reason.
    pub skipped: Vec<String>,
}

/// The execution output's top-level scalars (strings, numbers, booleans) as output variables, in
/// key order, within CodePipeline's 122,880-byte budget (names plus values). Objects, arrays,
/// nulls, invalid names and what does not fit are listed as skipped.
pub fn output_variables(output: Option<&str>) -> OutputVariables {
    let mut vars = OutputVariables::default();
    let Some(Value::Object(map)) = output.and_then(|o| serde_json::from_str::<Value>(o).ok()) else {
        return vars;
    };
    let mut used = 0usize;
    let sorted: BTreeMap<_, _> = map.into_iter().collect();
    for (key, value) in sorted {
        let text = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null | Value::Array(_) | Value::Object(_) => {
                vars.skipped.push(format!("{key} (not a scalar)"));
                continue;
            }
        };
        if !valid_variable_name(&key) {
            vars.skipped.push(format!("{key} (invalid name)"));
            continue;
        }
        let size = key.len() + text.len();
        if used + size > MAX_OUTPUT_VARIABLES_BYTES {
            vars.skipped.push(format!(
                "{key} (over the {MAX_OUTPUT_VARIABLES_BYTES}-byte limit)"
            ));
            continue;
        }
        used += size;
        vars.exported.insert(key, text);
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_utf16_units_as_aws_does() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        let emoji = "\u{1F600}".repeat(3_000); // 3,000 characters, 6,000 UTF-16 units
        let cut = truncate_chars(&emoji, 5_000);
        assert!(
            cut.encode_utf16().count() <= 5_000,
            "{}",
            cut.encode_utf16().count()
        );
        assert!(cut.ends_with("... [truncated]"));
        assert_eq!(
            cut.chars().filter(|c| *c == '\u{1F600}').count(),
            (5_000 - 15) / 2
        );
        assert_eq!(truncate_chars("\u{1F600}\u{1F600}", 3), "\u{1F600}");
        let short = "\u{1F600}".repeat(10);
        assert_eq!(truncate_chars(&short, 20), short);
    }

    fn view(status: &str) -> ExecutionView {
        ExecutionView {
            arn: "arn:aws:states:us-east-1:1:execution:deploy:codepipeline-j1".into(),
            name: "codepipeline-j1".into(),
            status: ExecutionStatus::parse(status),
            started: Some("2026-11-22T00:00:00Z".into()),
            error: None,
            cause: None,
            output: None,
        }
    }

    #[test]
    fn running_continues_with_a_useful_summary() {
        let r = decide(&view("RUNNING"), 4).unwrap();
        let JobResult::Continue {
            token,
            summary,
            external_execution_id,
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(ContinuationToken::decode(&token).unwrap().polls, 4);
        assert_eq!(
            summary,
            "Execution codepipeline-j1 is RUNNING, started 2026-11-22T00:00:00Z (check 4)"
        );
        assert_eq!(external_execution_id, view("RUNNING").arn);
    }

    #[test]
    fn only_a_continuing_job_gets_the_running_summary() {
        let running = decide(&view("RUNNING"), 2).unwrap();
        let JobResult::Continue {
            token,
            external_execution_id,
            ..
        } = running.clone()
        else {
            panic!("{running:?}")
        };
        assert_eq!(
            running.with_running_summary("waiting for approval"),
            JobResult::Continue {
                token,
                summary: "waiting for approval".into(),
                external_execution_id,
            }
        );
        let JobResult::Continue { summary, .. } = decide(&view("RUNNING"), 2)
            .unwrap()
            .with_running_summary(&"x".repeat(3_000))
        else {
            panic!()
        };
        assert_eq!(summary.chars().count(), MAX_SUMMARY_CHARS);
        for status in ["SUCCEEDED", "FAILED"] {
            let ended = decide(&view(status), 2).unwrap();
            assert_eq!(ended.clone().with_running_summary("waiting"), ended);
        }
    }

    #[test]
    fn succeeded_exports_scalars() {
        let mut v = view("SUCCEEDED");
        v.output = Some(r#"{"stackName": "prod-app", "count": 3, "ok": true, "nested": {"a": 1}, "none": null, "bad key": "x"}"#.into());
        let JobResult::Succeeded {
            output_variables,
            summary,
            ..
        } = decide(&v, 2).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            output_variables,
            BTreeMap::from([
                ("count".to_string(), "3".to_string()),
                ("ok".to_string(), "true".to_string()),
                ("stackName".to_string(), "prod-app".to_string()),
            ])
        );
        assert!(
            summary.starts_with("Execution codepipeline-j1 SUCCEEDED; 3 output variable(s) exported"),
            "{summary}"
        );
        assert!(summary.contains("bad key (invalid name)"));
        assert!(summary.contains("nested (not a scalar)"));
    }

    #[test]
    fn succeeded_with_non_object_output() {
        for out in [None, Some("\"text\""), Some("[1,2]"), Some("not json")] {
            let mut v = view("SUCCEEDED");
            v.output = out.map(str::to_owned);
            let JobResult::Succeeded { output_variables, .. } = decide(&v, 1).unwrap() else {
                panic!()
            };
            assert!(output_variables.is_empty());
        }
    }

    #[test]
    fn output_variables_stay_within_budget() {
        let big = "v".repeat(60_000);
        let out = serde_json::json!({"a": big, "b": big, "c": big, "d": "small"}).to_string();
        let vars = output_variables(Some(&out));
        let used: usize = vars.exported.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(used <= MAX_OUTPUT_VARIABLES_BYTES);
        assert_eq!(vars.exported.keys().collect::<Vec<_>>(), ["a", "b", "d"]);
        assert_eq!(vars.skipped, ["c (over the 122880-byte limit)"]);
    }

    #[test]
    fn every_terminal_failure_status_fails_the_job() {
        for status in [
            "FAILED",
            "TIMED_OUT",
            "ABORTED",
            "PENDING_REDRIVE",
            "SOMETHING_NEW",
        ] {
            let mut v = view(status);
            v.error = Some("States.TaskFailed".into());
            v.cause = Some("the stack rolled back".into());
            let JobResult::Failed {
                kind,
                message,
                external_execution_id,
            } = decide(&v, 1).unwrap()
            else {
                panic!("{status}")
            };
            assert_eq!(kind, FailureKind::JobFailed);
            assert_eq!(
                message,
                format!(
                    "Execution {} ended with status {status}. Error: States.TaskFailed. Cause: the stack rolled back",
                    v.arn
                )
            );
            assert_eq!(external_execution_id.as_deref(), Some(v.arn.as_str()));
        }
    }

    #[test]
    fn lambda_error_documents_become_their_message() {
        let mut v = view("FAILED");
        v.error = Some("TemplateNotFound".into());
        v.cause = Some(
            r#"{"errorType":"TemplateNotFound","errorMessage":"template infra/x.yaml is not in the source artifact (it holds: a.yaml)"}"#.into(),
        );
        let JobResult::Failed { message, .. } = decide(&v, 1).unwrap() else {
            panic!()
        };
        assert!(message.ends_with(
            "Error: TemplateNotFound. Cause: template infra/x.yaml is not in the source artifact (it holds: a.yaml)"
        ), "{message}");
        assert_eq!(readable_cause("plain text"), "plain text");
        assert_eq!(readable_cause(r#"{"other": 1}"#), r#"{"other": 1}"#);
        assert_eq!(
            readable_cause(r#"{"errorMessage": ""}"#),
            r#"{"errorMessage": ""}"#
        );
    }

    #[test]
    fn failure_without_error_or_cause() {
        let JobResult::Failed { message, .. } = decide(&view("ABORTED"), 1).unwrap() else {
            panic!()
        };
        assert_eq!(
            message,
            format!("Execution {} ended with status ABORTED", view("x").arn)
        );
    }

    #[test]
    fn long_causes_are_truncated_keeping_arn_and_status() {
        let mut v = view("FAILED");
        v.error = Some("E".repeat(2_000));
        v.cause = Some("ü".repeat(20_000));
        let JobResult::Failed { message, .. } = decide(&v, 1).unwrap() else {
            panic!()
        };
        assert!(message.chars().count() <= MAX_FAILURE_MESSAGE_CHARS);
        assert!(message.starts_with(&format!(
            "Execution {} ended with status FAILED. Error: EEE",
            v.arn
        )));
        assert!(message.contains("Cause: üüü"));
        assert!(message.ends_with("... [truncated]"));
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("ééééé", 5), "ééééé");
        let t = truncate_chars(&"é".repeat(100), 20);
        assert_eq!(t.chars().count(), 20);
        assert!(t.ends_with("... [truncated]"));
        assert_eq!(truncate_chars("abcdef", 3), "abc");
    }

    #[test]
    fn started_result() {
        let JobResult::Continue { token, summary, .. } =
            started("arn:aws:states:r:1:execution:m:e", "e", "m").unwrap()
        else {
            panic!()
        };
        assert_eq!(summary, "Started Step Functions execution e of state machine m");
        assert_eq!(ContinuationToken::decode(&token).unwrap().polls, 0);
    }

    #[test]
    fn an_unconfirmed_start_continues_with_the_jobs_execution() {
        let arn = "arn:aws:states:r:1:execution:m:codepipeline-j1";
        let JobResult::Continue {
            token,
            summary,
            external_execution_id,
        } = start_unconfirmed(arn, "codepipeline-j1", "m")
        else {
            panic!()
        };
        assert_eq!(
            ContinuationToken::decode(&token).unwrap(),
            ContinuationToken::new(arn, 0)
        );
        assert_eq!(
            summary,
            "The start of execution codepipeline-j1 was not confirmed before the Lambda deadline; \
             checking it on the next poll"
        );
        assert_eq!(external_execution_id, arn);
        // An ARN no token can hold: the job fails as out of time.
        assert_eq!(start_unconfirmed(&"a".repeat(3000), "e", "m"), out_of_time());
    }

    #[test]
    fn out_of_time_and_panics_fail_the_job() {
        let JobResult::Failed {
            kind,
            message,
            external_execution_id: None,
        } = out_of_time()
        else {
            panic!()
        };
        assert_eq!(kind, FailureKind::JobFailed);
        assert!(
            message.contains("did not finish before its Lambda deadline"),
            "{message}"
        );
        assert_eq!(
            panicked("boom"),
            JobResult::failed(
                FailureKind::JobFailed,
                "internal error in the pipeline trigger (panic: boom); see the function's logs"
            )
        );
        let JobResult::Failed { message, .. } = panicked(&"p".repeat(10_000)) else {
            panic!()
        };
        assert_eq!(message.chars().count(), MAX_FAILURE_MESSAGE_CHARS);
    }

    #[test]
    fn variable_names() {
        assert!(valid_variable_name("Stack_Name-1@x"));
        assert!(!valid_variable_name(""));
        assert!(!valid_variable_name("a.b"));
        assert!(!valid_variable_name("ä"));
    }
}
