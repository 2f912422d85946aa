//! The inspection and status decisions over change sets in the shape DescribeChangeSet returns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a panic

use deploy_steps::changeset::{
    ChangeSetPage, ChangeSetState, NO_CHANGES, Policy, SAFE, Treatment, UNSAFE, change_set_state,
    nested_change_sets, verdict,
};

fn page(name: &str) -> ChangeSetPage {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn judge_pages(pages: &[(&str, ChangeSetPage)], policy: &Policy) -> deploy_steps::changeset::Verdict {
    verdict(
        pages.iter().flat_map(|(path, p)| {
            p.changes
                .iter()
                .filter_map(move |c| c.resource_change.as_ref().map(|rc| (*path, rc)))
        }),
        policy,
    )
}

#[test]
fn every_page_is_inspected() {
    let first = page("page1-safe.json");
    assert_eq!(first.next_token.as_deref(), Some("page-2"));
    let only_first = judge_pages(&[("", first.clone())], &Policy::default());
    assert!(only_first.safe, "{only_first:?}");
    assert_eq!(only_first.change_set_action, SAFE);

    let both = judge_pages(
        &[("", first), ("", page("page2-unsafe.json"))],
        &Policy::default(),
    );
    assert!(!both.safe);
    assert_eq!(both.change_set_action, UNSAFE);
    assert_eq!(both.changes, 4);
    let found: Vec<(&str, &str, &str)> = both
        .offences
        .iter()
        .map(|o| {
            (
                o.logical_resource_id.as_str(),
                o.resource_type.as_str(),
                o.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("OrdersTable", "AWS::DynamoDB::Table", "removed"),
            ("Bucket", "AWS::S3::Bucket", "replaced (Replacement: True)"),
        ]
    );
    assert_eq!(
        both.summary,
        "2 of 4 change(s) would remove or replace resources: OrdersTable (AWS::DynamoDB::Table): removed; \
         Bucket (AWS::S3::Bucket): replaced (Replacement: True)"
    );
}

#[test]
fn removals_are_detected_by_cloudformations_word_for_them() {
    // The sample tested Action == "Delete"; CloudFormation says "Remove".
    let v = judge_pages(&[("", page("page2-unsafe.json"))], &Policy::default());
    assert!(v.offences.iter().any(|o| o.action == "Remove"));
}

#[test]
fn conditional_and_dynamic_follow_the_policy() {
    let p = page("conditional-and-dynamic.json");
    let strict = judge_pages(&[("", p.clone())], &Policy::default());
    assert_eq!(strict.offences.len(), 3, "{strict:?}");
    assert_eq!(
        strict.offences[1].reason,
        "may be replaced (Replacement: Conditional, because of RoleName)"
    );
    assert!(strict.offences[2].reason.starts_with("dynamic change"));

    let cdk_metadata_allowed = Policy {
        allow_replacement: vec!["AWS::CDK::Metadata".into()],
        ..Policy::default()
    };
    let v = judge_pages(&[("", p.clone())], &cdk_metadata_allowed);
    assert_eq!(
        v.offences
            .iter()
            .map(|o| o.logical_resource_id.as_str())
            .collect::<Vec<_>>(),
        ["ServiceRole", "Custom"]
    );

    let lenient = Policy {
        conditional_replacement: Treatment::Allow,
        dynamic: Treatment::Allow,
        ..Policy::default()
    };
    assert!(judge_pages(&[("", p)], &lenient).safe);
}

#[test]
fn allowances_by_logical_id_or_type() {
    let p = page("page2-unsafe.json");
    let policy = Policy {
        allow_removal: vec!["OrdersTable".into()],
        allow_replacement: vec!["AWS::S3::Bucket".into()],
        ..Policy::default()
    };
    let v = judge_pages(&[("", p.clone())], &policy);
    assert!(v.safe, "{v:?}");
    // Allowing removal does not allow replacement.
    let only_removal = Policy {
        allow_removal: vec!["AWS::S3::Bucket".into(), "OrdersTable".into()],
        ..Policy::default()
    };
    assert_eq!(judge_pages(&[("", p)], &only_removal).offences.len(), 1);
}

#[test]
fn nested_change_sets_are_followed_and_named_by_path() {
    let parent = page("nested-parent.json");
    let nested = nested_change_sets(&parent, "");
    assert_eq!(nested.len(), 1);
    assert_eq!(nested[0].0, "NetworkStack/");
    assert!(nested[0].1.contains("deploy-nested-NetworkStack-1XYZ"));
    let v = judge_pages(
        &[("", parent), ("NetworkStack/", page("nested-child.json"))],
        &Policy::default(),
    );
    assert!(!v.safe);
    assert_eq!(v.offences[0].logical_resource_id, "NetworkStack/Vpc");
    assert_eq!(v.offences[0].reason, "removed");
}

#[test]
fn policy_actions_alone_are_flagged() {
    use deploy_steps::changeset::{ResourceChange, judge};
    let rc = ResourceChange {
        action: Some("Modify".into()),
        logical_resource_id: Some("Db".into()),
        resource_type: Some("AWS::RDS::DBInstance".into()),
        replacement: Some("False".into()),
        policy_action: Some("ReplaceAndSnapshot".into()),
        ..ResourceChange::default()
    };
    let found = judge(&rc, &Policy::default(), "");
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].reason,
        "replaced (PolicyAction ReplaceAndSnapshot), and the change's fields disagree: \
         PolicyAction says ReplaceAndSnapshot but Replacement says False"
    );
    let retain = ResourceChange {
        policy_action: Some("Retain".into()),
        ..rc
    };
    assert!(judge(&retain, &Policy::default(), "").is_empty());
}

#[test]
fn unknown_actions_are_refused() {
    use deploy_steps::changeset::{ResourceChange, judge};
    let rc = ResourceChange {
        action: Some("SyncWithActual".into()),
        ..ResourceChange::default()
    };
    assert_eq!(judge(&rc, &Policy::default(), "").len(), 1);
}

#[test]
fn status_decisions() {
    let state = |name: &str| {
        let p = page(name);
        change_set_state(
            p.status.as_deref().unwrap(),
            p.execution_status.as_deref(),
            p.status_reason.as_deref(),
        )
    };
    assert_eq!(state("page1-safe.json"), ChangeSetState::Ready);
    assert_eq!(state("no-changes.json"), ChangeSetState::NoChanges);
    assert_eq!(state("failed.json"), ChangeSetState::Failed);
    assert_eq!(state("obsolete.json"), ChangeSetState::Failed);
    // No resource changes is not "no changes": outputs may change.
    assert_eq!(state("outputs-only.json"), ChangeSetState::Ready);
    assert_eq!(
        change_set_state("CREATE_IN_PROGRESS", Some("UNAVAILABLE"), None),
        ChangeSetState::Pending
    );
    assert_eq!(
        change_set_state("CREATE_PENDING", None, None),
        ChangeSetState::Pending
    );
    assert_eq!(
        change_set_state("CREATE_COMPLETE", Some("UNAVAILABLE"), None),
        ChangeSetState::Pending
    );
    assert_eq!(
        change_set_state("CREATE_COMPLETE", Some("EXECUTE_COMPLETE"), None),
        ChangeSetState::Failed
    );
    assert_eq!(
        change_set_state(
            "FAILED",
            Some("UNAVAILABLE"),
            Some("No updates are to be performed.")
        ),
        ChangeSetState::NoChanges
    );
    assert_eq!(NO_CHANGES, "NO-CHANGES");
}

#[test]
fn policies_parse_strictly() {
    let p: Policy =
        serde_json::from_str(r#"{"conditionalReplacement": "allow", "allowRemoval": ["LogGroup"]}"#).unwrap();
    assert_eq!(p.conditional_replacement, Treatment::Allow);
    assert_eq!(p.dynamic, Treatment::Block);
    assert!(serde_json::from_str::<Policy>(r#"{"conditional": "allow"}"#).is_err());
    assert!(serde_json::from_str::<Policy>(r#"{"dynamic": "maybe"}"#).is_err());
}

#[test]
fn a_huge_verdict_is_bounded_for_the_state_machine() {
    use deploy_steps::changeset::{MAX_OFFENCES_IN_STATE, MAX_SUMMARY_CHARS, ResourceChange};
    let removed: Vec<ResourceChange> = (0..2_000)
        .map(|i| ResourceChange {
            action: Some("Remove".into()),
            logical_resource_id: Some(format!("Queue{i:04}WithAFairlyLongLogicalId")),
            resource_type: Some("AWS::SQS::Queue".into()),
            ..ResourceChange::default()
        })
        .collect();
    let full = verdict(removed.iter().map(|rc| ("", rc)), &Policy::default());
    assert_eq!(full.offence_count, 2_000);
    let b = full.bounded();
    assert_eq!(b.offence_count, 2_000);
    assert_eq!(b.offences.len(), MAX_OFFENCES_IN_STATE);
    assert!(
        b.summary.chars().count() <= MAX_SUMMARY_CHARS,
        "{}",
        b.summary.len()
    );
    assert!(
        b.summary
            .starts_with("2000 of 2000 change(s) would remove or replace resources: Queue0000")
    );
    assert!(
        b.summary.ends_with(" more"),
        "{}",
        &b.summary[b.summary.len() - 40..]
    );
    assert!(serde_json::to_string(&b).unwrap().len() < 20_000);
}

#[test]
fn nested_stack_changes_without_a_nested_change_set_are_not_trusted() {
    use deploy_steps::changeset::{ResourceChange, judge};
    let rc = ResourceChange {
        action: Some("Modify".into()),
        logical_resource_id: Some("Network".into()),
        resource_type: Some("AWS::CloudFormation::Stack".into()),
        replacement: Some("False".into()),
        ..ResourceChange::default()
    };
    let found = judge(&rc, &Policy::default(), "");
    assert_eq!(found.len(), 1);
    assert!(found[0].reason.contains("could not be inspected"));
    let with_id = ResourceChange {
        change_set_id: Some("arn:nested".into()),
        ..rc
    };
    assert!(judge(&with_id, &Policy::default(), "").is_empty());
}
