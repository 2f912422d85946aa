//! The change-set gate, over every combination of the fields that can signal a removal or a
//! replacement: `Action`, `Replacement`, each detail's `RequiresRecreation` and `Evaluation`, and
//! `PolicyAction`. Each expectation is stated here in plain terms from the AWS API reference, not
//! recomputed the way `judge` computes it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a panic

use deploy_steps::changeset::{Change, Detail, Policy, ResourceChange, Target, Treatment, judge, verdict};

const ACTIONS: [Option<&str>; 7] = [
    None,
    Some("Add"),
    Some("Modify"),
    Some("Remove"),
    Some("Import"),
    Some("Dynamic"),
    Some("SyncWithActual"),
];
const REPLACEMENTS: [Option<&str>; 4] = [None, Some("True"), Some("False"), Some("Conditional")];
const POLICY_ACTIONS: [Option<&str>; 7] = [
    None,
    Some("Delete"),
    Some("Retain"),
    Some("Snapshot"),
    Some("ReplaceAndDelete"),
    Some("ReplaceAndRetain"),
    Some("ReplaceAndSnapshot"),
];

/// Detail lists: `(RequiresRecreation, Evaluation)` per detail.
fn detail_sets() -> Vec<Vec<(Option<&'static str>, Option<&'static str>)>> {
    let mut sets = vec![vec![]];
    for requires in [None, Some("Never"), Some("Conditionally"), Some("Always")] {
        for evaluation in [None, Some("Static"), Some("Dynamic")] {
            sets.push(vec![(requires, evaluation)]);
        }
    }
    // Several details: the most impactful one counts.
    sets.push(vec![
        (Some("Never"), Some("Static")),
        (Some("Always"), Some("Static")),
    ]);
    sets.push(vec![
        (Some("Never"), Some("Static")),
        (Some("Conditionally"), Some("Dynamic")),
    ]);
    sets.push(vec![
        (Some("Always"), Some("Dynamic")),
        (Some("Never"), Some("Static")),
    ]);
    sets
}

struct Case {
    action: Option<&'static str>,
    replacement: Option<&'static str>,
    details: Vec<(Option<&'static str>, Option<&'static str>)>,
    policy_action: Option<&'static str>,
}

impl Case {
    fn change(&self) -> ResourceChange {
        ResourceChange {
            action: self.action.map(str::to_owned),
            logical_resource_id: Some("Bucket".into()),
            resource_type: Some("AWS::S3::Bucket".into()),
            replacement: self.replacement.map(str::to_owned),
            policy_action: self.policy_action.map(str::to_owned),
            details: self
                .details
                .iter()
                .enumerate()
                .map(|(i, (requires, evaluation))| Detail {
                    evaluation: evaluation.map(str::to_owned),
                    change_source: Some("DirectModification".into()),
                    target: Some(Target {
                        attribute: Some("Properties".into()),
                        name: Some(format!("Property{i}")),
                        requires_recreation: requires.map(str::to_owned),
                        ..Target::default()
                    }),
                    ..Detail::default()
                })
                .collect(),
            ..ResourceChange::default()
        }
    }

    fn is(&self, actions: &[&str]) -> bool {
        self.action.is_some_and(|a| actions.contains(&a))
    }
    fn details_say(&self, requires: &str) -> bool {
        self.details.iter().any(|(r, _)| *r == Some(requires))
    }
    /// Something says the resource is recreated: `Replacement: True`, a detail with
    /// `RequiresRecreation: Always` (whatever its evaluation), or `PolicyAction: ReplaceAnd*`.
    fn says_always(&self) -> bool {
        self.replacement == Some("True")
            || self.details_say("Always")
            || self.policy_action.is_some_and(|p| p.starts_with("Replace"))
    }
    fn says_conditionally(&self) -> bool {
        self.replacement == Some("Conditional") || self.details_say("Conditionally")
    }
    /// `Remove`, or a `PolicyAction` that deletes (`Delete`, or `Snapshot`: a snapshot is taken
    /// before the resource is deleted).
    fn says_deleted(&self) -> bool {
        self.is(&["Remove"]) || matches!(self.policy_action, Some("Delete" | "Snapshot"))
    }
    /// Something positively says "not replaced": `Replacement: False`, or details that state a
    /// `RequiresRecreation`, all of them `Never`.
    fn says_not_replaced(&self) -> bool {
        self.replacement == Some("False") || self.details_say("Never")
    }
    /// `Replacement` and the details both speak, and say different things (AWS derives the one
    /// from the other, the most impactful detail counting).
    fn replacement_contradicts_details(&self) -> bool {
        let stated = self.details.iter().any(|(r, _)| r.is_some());
        let Some(r) = self.replacement.filter(|_| stated) else {
            return false;
        };
        let always_static = self
            .details
            .iter()
            .any(|(r, e)| *r == Some("Always") && *e != Some("Dynamic"));
        let conditional = self.details_say("Conditionally")
            || self
                .details
                .iter()
                .any(|(r, e)| *r == Some("Always") && *e == Some("Dynamic"));
        let derived = if always_static {
            "True"
        } else if conditional {
            "Conditional"
        } else {
            "False"
        };
        r != derived
    }

    fn describe(&self) -> String {
        format!(
            "Action {:?}, Replacement {:?}, details {:?}, PolicyAction {:?}",
            self.action, self.replacement, self.details, self.policy_action
        )
    }
}

fn every_case() -> Vec<Case> {
    let mut cases = Vec::new();
    for action in ACTIONS {
        for replacement in REPLACEMENTS {
            for details in detail_sets() {
                for policy_action in POLICY_ACTIONS {
                    cases.push(Case {
                        action,
                        replacement,
                        details: details.clone(),
                        policy_action,
                    });
                }
            }
        }
    }
    cases
}

fn safe(case: &Case, policy: &Policy) -> bool {
    judge(&case.change(), policy, "").is_empty()
}

fn lenient() -> Policy {
    Policy {
        conditional_replacement: Treatment::Allow,
        dynamic: Treatment::Allow,
        unreported_replacement: Treatment::Allow,
        ..Policy::default()
    }
}

#[test]
fn the_table_covers_every_combination() {
    assert_eq!(every_case().len(), 7 * 4 * 16 * 7);
}

#[test]
fn default_policy_passes_only_changes_that_say_they_replace_nothing() {
    for case in every_case() {
        let quiet = !case.says_always() && !case.says_conditionally() && !case.says_deleted();
        let expected = match case.action {
            Some("Add" | "Import") => quiet,
            // AWS always sends Replacement for a Modify: one that says nothing is refused.
            Some("Modify") => quiet && case.says_not_replaced(),
            // Remove, Dynamic, actions this code does not know, and no action at all.
            _ => false,
        };
        assert_eq!(
            safe(&case, &Policy::default()),
            expected,
            "{}: {:?}",
            case.describe(),
            judge(&case.change(), &Policy::default(), "")
        );
    }
}

#[test]
fn the_most_lenient_policy_still_refuses_replacement_deletion_and_contradiction() {
    for case in every_case() {
        let expected = match case.action {
            Some("Add" | "Import") => {
                !case.says_always() && !case.says_conditionally() && !case.says_deleted()
            }
            Some("Modify" | "Dynamic") => {
                !case.says_always() && !case.says_deleted() && !case.replacement_contradicts_details()
            }
            _ => false,
        };
        assert_eq!(
            safe(&case, &lenient()),
            expected,
            "{}: {:?}",
            case.describe(),
            judge(&case.change(), &lenient(), "")
        );
    }
}

#[test]
fn allowing_replacement_never_allows_removal_or_dynamic_changes() {
    let policy = Policy {
        allow_replacement: vec!["AWS::S3::Bucket".into()],
        ..Policy::default()
    };
    for case in every_case() {
        let expected = case.is(&["Add", "Import", "Modify"]) && !case.says_deleted();
        assert_eq!(safe(&case, &policy), expected, "{}", case.describe());
    }
}

#[test]
fn allowing_removal_never_allows_replacement() {
    let policy = Policy {
        allow_removal: vec!["Bucket".into()],
        ..Policy::default()
    };
    for case in every_case() {
        let replaces_nothing = !case.says_always() && !case.says_conditionally();
        let expected = match case.action {
            Some("Add" | "Import" | "Remove") => replaces_nothing,
            // PolicyAction Delete or Snapshot on a Modify contradicts it; deleting is allowed here.
            Some("Modify") => replaces_nothing && case.says_not_replaced(),
            _ => false,
        };
        assert_eq!(safe(&case, &policy), expected, "{}", case.describe());
    }
}

#[test]
fn contradictions_are_named_in_the_verdict() {
    for case in every_case() {
        if !case.is(&["Modify"]) {
            continue;
        }
        let replace_policy = case.policy_action.is_some_and(|p| p.starts_with("Replace"));
        // PolicyAction ReplaceAnd* where everything else says "not replaced".
        let replaced_by_policy_alone = replace_policy
            && case.says_not_replaced()
            && !case.says_conditionally()
            && case.replacement != Some("True")
            && !case.details_say("Always");
        let contradicts =
            case.replacement_contradicts_details() || replaced_by_policy_alone || case.says_deleted();
        let offences = judge(&case.change(), &Policy::default(), "");
        if offences.is_empty() {
            assert!(!contradicts, "{}", case.describe());
            continue;
        }
        assert_eq!(offences.len(), 1, "{}", case.describe());
        assert_eq!(
            offences[0].reason.contains("the change's fields disagree"),
            contradicts,
            "{}: {}",
            case.describe(),
            offences[0].reason
        );
    }
}

fn one(change: ResourceChange, policy: &Policy) -> String {
    let v = verdict([("", &change)], policy);
    assert!(!v.safe, "{change:?}");
    assert_eq!(v.offences.len(), 1);
    v.offences[0].reason.clone()
}

fn modify(replacement: Option<&str>, requires: &str, evaluation: &str) -> ResourceChange {
    ResourceChange {
        action: Some("Modify".into()),
        logical_resource_id: Some("Uploads".into()),
        resource_type: Some("AWS::S3::Bucket".into()),
        replacement: replacement.map(str::to_owned),
        details: vec![Detail {
            evaluation: Some(evaluation.into()),
            change_source: Some("DirectModification".into()),
            target: Some(Target {
                attribute: Some("Properties".into()),
                name: Some("BucketName".into()),
                requires_recreation: Some(requires.into()),
                ..Target::default()
            }),
            ..Detail::default()
        }],
        ..ResourceChange::default()
    }
}

/// The two change sets that passed the gate before it failed closed.
#[test]
fn the_reported_fail_open_cases_are_unsafe_with_their_reason() {
    assert_eq!(
        one(modify(Some("False"), "Always", "Static"), &Policy::default()),
        "replaced (RequiresRecreation: Always for BucketName), and the change's fields disagree: \
         Replacement says False but the details say RequiresRecreation: Always for BucketName"
    );
    assert_eq!(
        one(modify(None, "Always", "Static"), &lenient()),
        "replaced (RequiresRecreation: Always for BucketName)"
    );
    // Always, evaluated at execution: AWS reports Conditional; allowing conditional
    // replacements does not let a property that always recreates pass.
    assert_eq!(
        one(modify(Some("Conditional"), "Always", "Dynamic"), &lenient()),
        "may be replaced (RequiresRecreation: Always for BucketName, evaluated at execution)"
    );
    assert_eq!(
        one(modify(None, "Conditionally", "Static"), &Policy::default()),
        "may be replaced (RequiresRecreation: Conditionally for BucketName)"
    );
}

#[test]
fn unrecognised_values_are_refused() {
    let mut change = modify(Some("Maybe"), "Never", "Static");
    assert_eq!(
        one(change.clone(), &lenient()),
        "unrecognised Replacement: Maybe: refused until reviewed"
    );
    change.replacement = Some("False".into());
    change.details[0].target.as_mut().unwrap().requires_recreation = Some("Sometimes".into());
    assert!(one(change.clone(), &lenient()).starts_with("unrecognised RequiresRecreation: Sometimes"));
    change.details[0].target.as_mut().unwrap().requires_recreation = Some("Never".into());
    change.details[0].evaluation = Some("Eventually".into());
    assert!(one(change.clone(), &lenient()).starts_with("unrecognised Evaluation: Eventually"));
    change.details[0].evaluation = Some("Static".into());
    change.policy_action = Some("Shred".into());
    assert!(one(change.clone(), &lenient()).starts_with("unrecognised PolicyAction: Shred"));
    change.policy_action = None;
    assert!(verdict([("", &change)], &Policy::default()).safe);
}

#[test]
fn a_modify_that_says_nothing_is_refused_unless_the_deployment_opts_in() {
    let moto_shaped = ResourceChange {
        action: Some("Modify".into()),
        logical_resource_id: Some("Assets".into()),
        resource_type: Some("AWS::S3::Bucket".into()),
        ..ResourceChange::default()
    };
    assert_eq!(
        one(moto_shaped.clone(), &Policy::default()),
        "replacement not reported (no Replacement, RequiresRecreation or PolicyAction): refused until reviewed"
    );
    let opted_in = Policy {
        unreported_replacement: Treatment::Allow,
        ..Policy::default()
    };
    assert!(verdict([("", &moto_shaped)], &opted_in).safe);
    let parsed: Policy = serde_json::from_str(r#"{"unreportedReplacement": "allow"}"#).unwrap();
    assert_eq!(parsed, opted_in);
}

#[test]
fn a_change_that_is_not_a_resource_change_is_refused() {
    let without = Change {
        kind: Some("Resource".into()),
        resource_change: None,
    };
    assert_eq!(
        one(without.to_judge(), &lenient()),
        "unknown action (a change of Type Resource without a ResourceChange): refused until reviewed"
    );
    let other_type = Change {
        kind: Some("Hook".into()),
        resource_change: Some(ResourceChange {
            action: Some("Add".into()),
            ..ResourceChange::default()
        }),
    };
    assert_eq!(
        one(other_type.to_judge(), &lenient()),
        "unknown action Add (in a change of Type Hook): refused until reviewed"
    );
    let plain = Change {
        kind: Some("Resource".into()),
        resource_change: Some(ResourceChange {
            action: Some("Add".into()),
            ..ResourceChange::default()
        }),
    };
    assert!(verdict([("", &plain.to_judge())], &Policy::default()).safe);
}

#[test]
fn a_snapshot_policy_action_is_a_deletion() {
    let mut change = modify(Some("False"), "Never", "Static");
    change.policy_action = Some("Snapshot".into());
    assert_eq!(
        one(change.clone(), &lenient()),
        "deleted (PolicyAction Snapshot), and the change's fields disagree: PolicyAction says Snapshot \
         but Action says Modify"
    );
    change.policy_action = Some("Retain".into());
    assert!(verdict([("", &change)], &Policy::default()).safe);
}
