//! The deploy state machine and the Rust steps must agree: every Choice compares a field the
//! steps really emit with a value they really produce, every Task keeps its output where the
//! next steps read it, every function placeholder names a real binary, every Task retries only
//! `errorType`s the steps raise and catches all of them, and the literals the Pass states write
//! (target modes, the no-changes `changeSetAction`) are the Rust values.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a panic

use deploy_steps::Step;
use deploy_steps::changeset::ChangeSetState;
use deploy_steps::drift::DriftState;
use deploy_steps::plan::OnUnsafe;
use deploy_steps::stack::{Completion, StackNext};
use deploy_steps::state::TargetMode;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn asl() -> Value {
    let path = format!(
        "{}/../../statemachines/deploy.asl.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn states(asl: &Value) -> &serde_json::Map<String, Value> {
    asl["States"].as_object().unwrap()
}

/// Every (Variable, operator, value) of a Choice rule, through And/Or/Not.
fn comparisons(rule: &Value, out: &mut Vec<(String, String, Value)>) {
    for key in ["And", "Or"] {
        if let Some(list) = rule.get(key).and_then(Value::as_array) {
            list.iter().for_each(|r| comparisons(r, out));
        }
    }
    if let Some(r) = rule.get("Not") {
        comparisons(r, out);
    }
    if let (Some(var), Some(obj)) = (rule.get("Variable").and_then(Value::as_str), rule.as_object()) {
        for (op, v) in obj {
            if op != "Variable" && op != "Next" {
                out.push((var.to_owned(), op.clone(), v.clone()));
            }
        }
    }
}

fn parses<T: DeserializeOwned>(v: &Value) -> bool {
    serde_json::from_value::<T>(v.clone()).is_ok()
}

#[test]
fn choices_compare_values_the_steps_produce() {
    let asl = asl();
    let mut all = Vec::new();
    for state in states(&asl).values() {
        if state["Type"] == "Choice" {
            for rule in state["Choices"].as_array().unwrap() {
                comparisons(rule, &mut all);
            }
        }
    }
    assert!(all.len() >= 12, "{all:?}");
    let pass_modes: Vec<Value> = states(&asl)
        .values()
        .filter_map(|s| s.get("Parameters").and_then(|p| p.get("mode")).cloned())
        .collect();
    for (var, op, value) in &all {
        let ok = match (var.as_str(), op.as_str()) {
            ("$.stack.next", "StringEquals") => parses::<StackNext>(value),
            ("$.changeSetStatus.state", "StringEquals") => parses::<ChangeSetState>(value),
            ("$.progress.state", "StringEquals") => parses::<Completion>(value),
            ("$.plan.onUnsafe", "StringEquals") => parses::<OnUnsafe>(value),
            ("$.target.mode", "StringEquals") => pass_modes.contains(value) && parses::<TargetMode>(value),
            ("$.changeSet.changeSetType", "StringEquals") => {
                ["CREATE", "UPDATE"].contains(&value.as_str().unwrap())
            }
            ("$.verdict.safe", "BooleanEquals") => value.is_boolean(),
            ("$.driftCheck.state", "StringEquals") => parses::<DriftState>(value),
            ("$.decision", "IsPresent")
            | ("$.decision.approved", "IsPresent" | "IsBoolean" | "BooleanEquals")
            | ("$.decision.cause", "IsPresent" | "IsString") => value.is_boolean(),
            (v, "BooleanEquals") if v.ends_with(".poll.exhausted") => value.is_boolean(),
            ("$.executed", "IsPresent") => value.is_boolean(),
            _ => false,
        };
        assert!(
            ok,
            "Choice on {var} {op} {value} does not match what the steps emit"
        );
    }
}

#[test]
fn tasks_use_the_steps_binaries_and_result_paths() {
    let asl = asl();
    let template =
        std::fs::read_to_string(format!("{}/../../template.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut used = std::collections::BTreeSet::new();
    for (name, state) in states(&asl) {
        if state["Type"] != "Task" {
            continue;
        }
        let resource = state["Resource"].as_str().unwrap();
        // A callback task invokes its function through the Lambda integration.
        let function = if resource == "arn:aws:states:::lambda:invoke.waitForTaskToken" {
            assert_eq!(
                state["Parameters"]["Payload"]["taskToken.$"], "$$.Task.Token",
                "{name}"
            );
            state["Parameters"]["FunctionName"].as_str().unwrap()
        } else {
            resource
        };
        let placeholder = function.trim_start_matches("${").trim_end_matches('}');
        let step = Step::ALL
            .into_iter()
            .find(|s| s.substitution() == placeholder)
            .unwrap_or_else(|| panic!("{name}: unknown function {resource}"));
        let result_path = step.result_path();
        // template.yaml runs the one binary as this step's function.
        let body = template_function(&template, step.substitution());
        assert!(
            body.contains("BuildProperties: { Binary: deploy-steps }"),
            "{name}: {body}"
        );
        assert!(
            body.contains(&format!("\n          DEPLOY_STEP: {}\n", step.name())),
            "{name}: the function behind {} does not run {}",
            step.substitution(),
            step.name()
        );
        assert_eq!(state["ResultPath"], result_path, "{name}");
        assert!(
            state.get("Retry").is_some() && state.get("Catch").is_some(),
            "{name} needs Retry and Catch"
        );
        used.insert(placeholder);
    }
    assert_eq!(used.len(), Step::ALL.len(), "every step is used");
}

#[test]
fn the_state_reads_what_the_steps_write() {
    use deploy_steps::state::State;
    // A state document as the workflow builds it, with each step's output at its ResultPath.
    let plan = serde_json::json!({
        "stackName": "prod-app", "blueGreenStackName": "prod-app-bg-1", "changeSetName": "deploy-1",
        "templatePath": "t.yaml", "template": {"body": "{}"}, "parameters": [], "capabilities": [],
        "tags": [], "policy": {}, "onUnsafe": "fail"
    });
    let poll = serde_json::json!({"attempt": 1, "waitSeconds": 5, "exhausted": false});
    let doc = serde_json::json!({
        "plan": plan,
        "target": {"stackName": "prod-app", "mode": "in-place"},
        "stack": {"next": "UPDATE_CHANGE_SET", "status": "UPDATE_COMPLETE", "reason": "r", "poll": poll},
        "created": {"stackName": "prod-app", "stackId": "id-1"},
        "changeSet": {"id": "cs", "name": "deploy-1", "stackName": "prod-app", "changeSetType": "UPDATE"},
        "changeSetStatus": {"state": "READY", "status": "CREATE_COMPLETE", "executionStatus": "AVAILABLE", "reason": "", "poll": poll},
        "executed": {"changeSetId": "cs", "stackId": "id-2"},
        "progress": {"state": "IN_PROGRESS", "stackName": "prod-app", "stackId": "id-2", "status": "UPDATE_IN_PROGRESS", "reason": "", "poll": poll},
    });
    let state: State = serde_json::from_value(doc.clone()).unwrap();
    assert!(
        state.stack.is_some()
            && state.change_set.is_some()
            && state.executed.is_some()
            && state.progress.is_some()
    );
    // Every key the document holds above is a ResultPath of some step, or the Pass state's target.
    for key in doc.as_object().unwrap().keys() {
        let path = format!("$.{key}");
        assert!(
            Step::ALL.iter().any(|s| s.result_path() == path) || key == "target",
            "{key} is written by no step"
        );
    }
}

/// A state document built from the steps' real outputs, serialised as the Lambda runtime does.
fn real_state_document() -> Value {
    use deploy_steps::changeset::{Policy, ResourceChange, verdict};
    use deploy_steps::drift::DriftResult;
    use deploy_steps::plan::{Plan, TemplateSource};
    use deploy_steps::poll::Poll;
    use deploy_steps::stack::check_existing;
    use deploy_steps::state::{
        ChangeSetRef, ChangeSetStatus, Created, Decision, Done, Executed, Progress, ReviewRef, StackResult,
        Target,
    };
    let to = |v: &dyn erased::Ser| v.value();
    let plan = Plan {
        stack_name: "prod-app".into(),
        blue_green_stack_name: "prod-app-bg-1".into(),
        change_set_name: "deploy-1".into(),
        template_path: "t.yaml".into(),
        template: TemplateSource::Body("{}".into()),
        parameters: vec![],
        capabilities: vec![],
        tags: vec![],
        role_arn: None,
        policy: Policy::default(),
        on_unsafe: OnUnsafe::Approve,
        approval_timeout_seconds: 60,
        drift: deploy_steps::plan::DriftMode::Warn,
    };
    let poll = Poll::default();
    let removed = ResourceChange {
        action: Some("Remove".into()),
        logical_resource_id: Some("Q".into()),
        resource_type: Some("AWS::SQS::Queue".into()),
        ..ResourceChange::default()
    };
    serde_json::json!({
        "plan": to(&plan),
        "target": to(&Target { stack_name: "prod-app".into(), mode: TargetMode::InPlace }),
        "stack": to(&StackResult { check: check_existing("prod-app", "UPDATE_COMPLETE"), poll }),
        "created": to(&Created { stack_name: "prod-app".into(), stack_id: "id".into(), started_at_ms: Some(1) }),
        "changeSet": to(&ChangeSetRef {
            id: "cs".into(), name: "deploy-1".into(), stack_name: "prod-app".into(), stack_id: None,
            change_set_type: "UPDATE".into(), no_changes: false, started_at_ms: Some(1),
        }),
        "changeSetStatus": to(&ChangeSetStatus {
            state: ChangeSetState::Ready, status: "CREATE_COMPLETE".into(),
            execution_status: Some("AVAILABLE".into()), reason: "r".into(), poll,
        }),
        "verdict": to(&verdict([("", &removed)], &Policy::default()).bounded()),
        "driftCheck": to(&DriftResult {
            state: DriftState::Done, checked: true, detection_id: Some("d-1".into()),
            stack_drift_status: Some("IN_SYNC".into()), drifted_count: 0, drifted: vec![],
            summary: "in sync".into(), poll,
        }),
        "review": to(&ReviewRef {
            review_id: "prod-app/deploy-1".into(), change_set_id: "cs".into(),
            fingerprint: "sha256:00".into(), offence_count: 1, changes: 1,
            headline: "1 unsafe change(s): Q (AWS::SQS::Queue) removed".into(), summary: "s".into(),
            json_uri: "s3://b/reviews/prod-app/deploy-1/review.json".into(),
            markdown_uri: "s3://b/reviews/prod-app/deploy-1/review.md".into(),
        }),
        "decision": to(&Decision {
            approved: true, decided_by: "arn:aws:iam::111111111111:user/alice".into(),
            reason: "r".into(), review_id: "prod-app/deploy-1".into(), change_set_id: "cs".into(),
            fingerprint: "sha256:00".into(), cause: Some("rejected by alice: r".into()),
        }),
        "executed": to(&Executed { change_set_id: "cs".into(), stack_id: Some("id".into()), started_at_ms: Some(2) }),
        "deleted": to(&Done { change_set_id: "cs".into() }),
        "progress": to(&Progress {
            state: Completion::Complete, stack_name: "prod-app".into(), stack_id: "id".into(),
            status: "UPDATE_COMPLETE".into(), reason: "r".into(), poll,
        }),
        "error": {"Error": "States.TaskFailed", "Cause": "{}"},
    })
}

mod erased {
    pub trait Ser {
        fn value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap()
        }
    }
}

fn resolve<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let rest = path.strip_prefix("$.")?;
    rest.split('.').try_fold(doc, |v, key| v.get(key))
}

/// Every JSONPath the definition reads: SecondsPath, ErrorPath, CausePath, Choice variables and
/// `.$` parameters (context paths `$$.` excepted).
fn read_paths(asl: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, state) in states(asl) {
        for key in ["SecondsPath", "ErrorPath", "CausePath", "TimeoutSecondsPath"] {
            if let Some(p) = state.get(key).and_then(Value::as_str) {
                out.push((name.clone(), p.to_owned()));
            }
        }
        if let Some(params) = state.get("Parameters").and_then(Value::as_object) {
            for (k, v) in params {
                if let (true, Some(p)) = (k.ends_with(".$"), v.as_str())
                    && p.starts_with("$.")
                {
                    out.push((name.clone(), p.to_owned()));
                }
            }
        }
        if let Some(choices) = state.get("Choices").and_then(Value::as_array) {
            let mut all = Vec::new();
            for rule in choices {
                comparisons(rule, &mut all);
            }
            out.extend(all.into_iter().map(|(var, _, _)| (name.clone(), var)));
        }
    }
    out
}

#[test]
fn every_path_the_definition_reads_exists_in_the_steps_real_output() {
    let asl = asl();
    let doc = real_state_document();
    let paths = read_paths(&asl);
    assert!(paths.len() >= 30, "{}", paths.len());
    for (state, path) in paths {
        if path == "$" {
            continue;
        }
        assert!(
            resolve(&doc, &path).is_some(),
            "state \"{state}\" reads {path}, which no step writes"
        );
    }
    // And the wait times are numbers, the causes strings.
    for p in [
        "$.stack.poll.waitSeconds",
        "$.changeSetStatus.poll.waitSeconds",
        "$.progress.poll.waitSeconds",
        "$.driftCheck.poll.waitSeconds",
        "$.plan.approvalTimeoutSeconds",
    ] {
        assert!(resolve(&doc, p).unwrap().is_u64(), "{p}");
    }
    for p in [
        "$.stack.reason",
        "$.changeSetStatus.reason",
        "$.progress.reason",
        "$.verdict.summary",
        "$.driftCheck.summary",
        "$.decision.decidedBy",
        "$.review.summary",
    ] {
        assert!(resolve(&doc, p).unwrap().is_string(), "{p}");
    }
}

#[test]
fn the_no_changes_outcome_says_what_the_steps_call_it() {
    use deploy_steps::changeset::{NO_CHANGES, SAFE, UNSAFE};
    let asl = asl();
    let mut no_changes_outcomes = 0;
    for (name, state) in states(&asl) {
        let Some(params) = state.get("Parameters") else {
            continue;
        };
        // A literal changeSetAction (not one read from the verdict) is one of the Rust values.
        if let Some(action) = params.get("changeSetAction") {
            let action = action.as_str().unwrap();
            assert!(
                [SAFE, UNSAFE, NO_CHANGES].contains(&action),
                "{name}: changeSetAction {action} is no value of deploy_steps::changeset"
            );
        }
        if params.get("outcome") == Some(&Value::from("NO_CHANGES")) {
            assert_eq!(params["changeSetAction"], NO_CHANGES, "{name}");
            no_changes_outcomes += 1;
        }
    }
    assert_eq!(no_changes_outcomes, 1);
}

#[test]
fn the_target_modes_are_the_steps_target_modes() {
    let asl = asl();
    let mut modes = Vec::new();
    for (name, state) in states(&asl) {
        if state["Type"] == "Pass" && state["ResultPath"] == "$.target" {
            let mode: TargetMode = serde_json::from_value(state["Parameters"]["mode"].clone())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            modes.push(mode);
        }
    }
    modes.sort_by_key(|m| format!("{m:?}"));
    assert_eq!(modes, [TargetMode::BlueGreen, TargetMode::InPlace]);
}

#[test]
fn every_task_catches_every_step_error_and_retries_only_real_ones() {
    use deploy_steps::StepError;
    let asl = asl();
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["ErrorEquals"].as_array().unwrap().iter())
            .map(|e| e.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(StepError::ERROR_TYPES.contains(&"UnexpectedResponse"));
    for (name, state) in states(&asl) {
        if state["Type"] != "Task" {
            continue;
        }
        let retried = names(&state["Retry"]);
        for error in &retried {
            assert!(
                error.starts_with("Lambda.")
                    || error.starts_with("States.")
                    || StepError::ERROR_TYPES.contains(&error.as_str()),
                "{name} retries {error}, which no step raises"
            );
        }
        assert!(
            retried.iter().any(|e| e == "Throttled"),
            "{name} must retry Throttled"
        );
        let caught = names(&state["Catch"]);
        for error in StepError::ERROR_TYPES {
            assert!(
                caught.iter().any(|c| c == "States.ALL" || c == error),
                "{name} does not catch {error}"
            );
        }
    }
}

/// The lines of the template's resource that `substitution` (a `DefinitionSubstitutions` key,
/// `PrepareFunctionArn: !GetAtt DeployPrepareFunction.Arn`) points at, joined with newlines.
fn template_function(template: &str, substitution: &str) -> String {
    let line = template
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{substitution}: !GetAtt ")))
        .unwrap_or_else(|| panic!("template.yaml substitutes no {substitution}"));
    let logical = line
        .split("!GetAtt ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(".Arn");
    let mut lines = template.lines().skip_while(|l| *l != format!("  {logical}:"));
    assert!(lines.next().is_some(), "template.yaml has no resource {logical}");
    // The resource ends at the next line indented by fewer than four spaces.
    let body: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .collect();
    format!("\n{}\n", body.join("\n"))
}
