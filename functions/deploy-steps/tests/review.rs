//! Reviews rendered from change sets in the shape DescribeChangeSet (with IncludePropertyValues)
//! returns: property values, nested stacks, masking, size bounds, the fingerprint, the subject.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a panic

use deploy_steps::changeset::{ChangeSetPage, Policy, ResourceChange, nested_change_sets, verdict};
use deploy_steps::drift::{DriftedResource, PropertyDifference};
use deploy_steps::plan::Parameter;
use deploy_steps::review::{
    MASK, MAX_MESSAGE_BYTES, Review, ReviewInput, ReviewedChange, bounded_markdown, build, fingerprint,
    markdown, subject,
};

fn page(name: &str) -> ChangeSetPage {
    let path = format!("{}/tests/fixtures/review/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The page's changes with the root's path.
fn changes(page: &ChangeSetPage, path: &str) -> Vec<(String, ResourceChange)> {
    page.changes
        .iter()
        .map(|c| (path.to_owned(), c.to_judge()))
        .collect()
}

fn given(pairs: &[(&str, &str)]) -> Vec<Parameter> {
    pairs
        .iter()
        .map(|(k, v)| Parameter {
            key: (*k).into(),
            value: Some((*v).into()),
            use_previous_value: false,
        })
        .collect()
}

/// The review of `page` with `changes`, under the default policy.
fn review_of(page: &ChangeSetPage, changes: &[(String, ResourceChange)], given: &[Parameter]) -> Review {
    review_with(page, changes, given, &[], None)
}

fn review_with(
    page: &ChangeSetPage,
    changes: &[(String, ResourceChange)],
    given: &[Parameter],
    drifted: &[DriftedResource],
    drift_summary: Option<&str>,
) -> Review {
    let stack = page.stack_name.as_deref().unwrap();
    let name = page.change_set_name.as_deref().unwrap();
    build(&ReviewInput {
        review_id: &format!("{stack}/{name}"),
        stack_name: stack,
        stack_id: page.stack_id.as_deref(),
        change_set_id: page.change_set_id.as_deref().unwrap(),
        change_set_name: name,
        changes,
        parameters: &page.parameters,
        given_parameters: given,
        policy: &Policy::default(),
        drifted,
        drift_summary,
    })
}

fn by_resource<'a>(review: &'a Review, resource: &str) -> &'a ReviewedChange {
    review.changes.iter().find(|c| c.resource == resource).unwrap()
}

fn properties(change: &ReviewedChange) -> Vec<(&str, Option<&str>, Option<&str>)> {
    change
        .properties
        .iter()
        .map(|p| (p.path.as_str(), p.before.as_deref(), p.after.as_deref()))
        .collect()
}

/// The Markdown's lines from the one that starts with `start` up to the next blank line.
fn section<'a>(md: &'a str, start: &str) -> Vec<&'a str> {
    let from = md
        .lines()
        .position(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("{start}\n{md}"));
    md.lines().skip(from).take_while(|l| !l.is_empty()).collect()
}

#[test]
fn a_modify_shows_what_differs_from_its_contexts_and_its_targets() {
    let p = page("values.json");
    let all = changes(&p, "");
    let review = review_of(&p, &all, &given(&[("Env", "prod"), ("BucketSuffix", "v2")]));
    assert_eq!(
        (
            review.version,
            review.change_count,
            review.offence_count,
            review.safe
        ),
        (1, 6, 2, false)
    );
    assert_eq!(review.review_id, "prod-app/deploy-42");
    assert_eq!(review.stack_id.as_deref(), p.stack_id.as_deref());

    let bucket = by_resource(&review, "Bucket");
    assert_eq!(
        properties(bucket),
        [
            (
                "Properties.BucketName",
                Some(r#""prod-app-old-bucket""#),
                Some(r#""prod-app-bucket-v2""#)
            ),
            ("Properties.Tags[0].Value", Some(r#""blue""#), Some(r#""green""#)),
        ]
    );
    let offence = bucket.offence.as_ref().unwrap();
    assert_eq!(offence.reason, "replaced (Replacement: True)");
    assert_eq!(offence.kinds, ["replacement", "destructive-policy-action"]);
    let target = bucket.change.details[0].target.as_ref().unwrap();
    assert_eq!(target.after_value.as_deref(), Some(r#""prod-app-bucket-v2""#));

    let md = markdown(&review);
    assert_eq!(
        section(&md, "1. Bucket"),
        [
            "1. Bucket (AWS::S3::Bucket): Modify",
            "   physical id: prod-app-old-bucket",
            "   replacement: True, policy action: ReplaceAndDelete",
            "   UNSAFE: replaced (Replacement: True)",
            "   details:",
            r#"   - BucketName: "prod-app-old-bucket" → "prod-app-bucket-v2" (requires recreation: Always, from ParameterReference BucketSuffix)"#,
            r#"   - /Properties/Tags/0/Value: "blue" → "green" (requires recreation: Never)"#,
            "   properties:",
            r#"   - Properties.BucketName: "prod-app-old-bucket" → "prod-app-bucket-v2""#,
            r#"   - Properties.Tags[0].Value: "blue" → "green""#,
        ]
    );
    assert_eq!(
        section(&md, "2. Handler"),
        [
            "2. Handler (AWS::Lambda::Function): Modify",
            "   physical id: prod-app-handler",
            "   replacement: False, policy action: -",
            "   details:",
            "   - MemorySize: \"128\" → \"256\" (requires recreation: Never)",
            "   properties:",
            "   - Properties.MemorySize: 128 → 256",
            r#"   - Properties.Environment.Variables.LOG_LEVEL: "info" → "debug""#,
        ]
    );
}

#[test]
fn an_add_shows_every_property_after_a_remove_every_property_before() {
    let p = page("values.json");
    let all = changes(&p, "");
    let review = review_of(&p, &all, &[]);
    let queue = by_resource(&review, "Queue");
    assert!(queue.offence.is_none());
    assert_eq!(
        properties(queue),
        [
            ("Properties.QueueName", None, Some(r#""prod-app-jobs""#)),
            ("Properties.VisibilityTimeout", None, Some("60"))
        ]
    );
    let table = by_resource(&review, "OrdersTable");
    assert_eq!(
        table.offence.as_ref().unwrap().kinds,
        ["removal", "destructive-policy-action"]
    );
    assert_eq!(
        properties(table),
        [
            ("Properties.TableName", Some(r#""prod-orders""#), None),
            ("Properties.BillingMode", Some(r#""PAY_PER_REQUEST""#), None)
        ]
    );
    let md = markdown(&review);
    assert!(
        md.contains("\n   - Properties.QueueName: \"prod-app-jobs\"\n"),
        "{md}"
    );
    assert!(
        md.contains("\n   - Properties.TableName: \"prod-orders\"\n"),
        "{md}"
    );
    // The unsafe changes come first, each with its reason.
    assert!(md.contains("\n## Unsafe changes (2)\n\n- #1 Bucket"), "{md}");
    assert_eq!(
        section(&md, "- #1 Bucket"),
        [
            "- #1 Bucket (AWS::S3::Bucket, Modify):",
            "  replaced (Replacement: True)",
            "  kinds: replacement, destructive-policy-action",
            "- #4 OrdersTable (AWS::DynamoDB::Table, Remove):",
            "  removed",
            "  kinds: removal, destructive-policy-action",
        ]
    );
    assert!(md.find("## Unsafe changes").unwrap() < md.find("## All changes (6)").unwrap());
    assert!(md.find("## All changes").unwrap() < md.find("## Parameters (2)").unwrap());
    assert!(md.find("## Parameters").unwrap() < md.find("## Drift").unwrap());
}

#[test]
fn without_values_or_with_a_context_that_is_not_json_the_review_says_so() {
    let p = page("values.json");
    let review = review_of(&p, &changes(&p, ""), &[]);
    let role = by_resource(&review, "Role");
    assert!(!role.values_available && role.properties.is_empty());
    let md = markdown(&review);
    assert!(
        section(&md, "5. Role").contains(&"   property values not available"),
        "{md}"
    );

    let topic = by_resource(&review, "Topic");
    assert!(topic.values_available);
    assert_eq!(
        topic.change.after_context.as_deref(),
        Some(r#"{"Properties":{"DisplayName":"new","Subscript"#)
    );
    assert_eq!(topic.change.before_context, None);
    let lines = section(&md, "6. Topic");
    assert!(
        lines.contains(&r#"   - Properties.DisplayName: "old" → (after not valid JSON)"#),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&r#"   after (not valid JSON): {"Properties":{"DisplayName":"new","Subscript"#),
        "{lines:#?}"
    );
}

/// Every change of the root and its nested change sets, as the inspect step gathers them.
fn nested() -> (ChangeSetPage, Vec<(String, ResourceChange)>) {
    let root = page("nested-root.json");
    let mut all = changes(&root, "");
    let mut queue = nested_change_sets(&root, "");
    while let Some((path, id)) = queue.pop() {
        let child = ["nested-network.json", "nested-subnets.json"]
            .into_iter()
            .map(page)
            .find(|p| p.change_set_id.as_deref() == Some(id.as_str()))
            .unwrap();
        all.extend(changes(&child, &path));
        queue.extend(nested_change_sets(&child, &path));
    }
    (root, all)
}

#[test]
fn nested_changes_are_named_by_their_path_as_the_verdict_names_them() {
    let (root, all) = nested();
    let review = review_of(&root, &all, &[]);
    let resources: Vec<&str> = review.changes.iter().map(|c| c.resource.as_str()).collect();
    assert_eq!(
        resources,
        [
            "Network",
            "Network/Subnets",
            "Network/Vpc",
            "Network/Subnets/Subnet"
        ]
    );
    let v = verdict(all.iter().map(|(p, c)| (p.as_str(), c)), &Policy::default());
    let offending: Vec<&str> = review
        .changes
        .iter()
        .filter(|c| c.offence.is_some())
        .map(|c| c.resource.as_str())
        .collect();
    let named: Vec<&str> = v
        .offences
        .iter()
        .map(|o| o.logical_resource_id.as_str())
        .collect();
    assert_eq!(offending, named);
    assert_eq!(named, ["Network/Subnets/Subnet"]);
    assert_eq!(review.summary, v.summary);
    let md = markdown(&review);
    assert!(
        md.contains(
            "\n- #4 Network/Subnets/Subnet (AWS::EC2::Subnet, Modify):\n  replaced (Replacement: True)\n"
        ),
        "{md}"
    );
    assert!(
        md.contains(r#"   - Properties.CidrBlock: "10.0.0.0/24" → "10.0.1.0/24""#),
        "{md}"
    );
}

const SECRETS: [&str; 10] = [
    "NoEcho-Sekr1t-Value-42",
    // The beginning of the NoEcho value, where a target's value was cut short.
    "NoEcho-Sekr",
    // The NoEcho parameter's previous value: unknown here, masked as the property it sets.
    "Old-Pass-Value-77",
    "Literal-Passw0rd",
    "Target-Secret",
    "Env-Token",
    "Drift-Passw0rd",
    "Sekr1t",
    "Passw0rd",
    "Token-After",
];

fn secret_review() -> (Review, String) {
    let p = page("secrets.json");
    let drifted = [DriftedResource {
        logical_resource_id: "Database".into(),
        resource_type: "AWS::RDS::DBInstance".into(),
        physical_resource_id: Some("prod-db-1".into()),
        status: "MODIFIED".into(),
        differences: vec![
            PropertyDifference {
                property_path: "/Properties/MasterUserPassword".into(),
                difference_type: "NOT_EQUAL".into(),
                expected_value: Some("Drift-Passw0rd-Expected".into()),
                actual_value: Some("Drift-Passw0rd-Actual".into()),
            },
            PropertyDifference {
                property_path: "/Properties/Description".into(),
                difference_type: "NOT_EQUAL".into(),
                expected_value: Some("db".into()),
                actual_value: Some("db NoEcho-Sekr1t-Value-42".into()),
            },
        ],
    }];
    let given = given(&[("DbPassword", "NoEcho-Sekr1t-Value-42"), ("Env", "prod")]);
    let review = review_with(&p, &changes(&p, ""), &given, &drifted, Some("1 resource drifted"));
    let md = markdown(&review);
    (review, md)
}

#[test]
fn no_secret_reaches_the_json_or_the_markdown() {
    let (review, md) = secret_review();
    let json = serde_json::to_string_pretty(&review).unwrap();
    for secret in SECRETS {
        assert!(!json.contains(secret), "{secret} in the JSON:\n{json}");
        assert!(!md.contains(secret), "{secret} in the Markdown:\n{md}");
    }
    // What is not secret is still shown.
    assert!(md.contains("- DbPassword: **** (NoEcho)\n- Env: prod\n"), "{md}");
    let api = by_resource(&review, "Api");
    assert_eq!(
        properties(api),
        [
            (
                r#"Properties.Description"#,
                Some(r#""api""#),
                Some(r#""api for ****""#)
            ),
            ("Properties.Environment", Some(MASK), Some(MASK)),
        ]
    );
    let cut_short = api.change.details[1].target.as_ref().unwrap();
    assert_eq!(cut_short.after_value.as_deref(), Some(r#""api for ****""#));
    let db = by_resource(&review, "Database");
    assert_eq!(
        properties(db),
        [
            ("Properties.AllocatedStorage", Some(r#""20""#), Some(r#""50""#)),
            ("Properties.MasterUserPassword", Some(MASK), Some(MASK)),
        ]
    );
    assert!(
        md.contains("   - MasterUserPassword: **** → **** (requires recreation: Never)\n"),
        "{md}"
    );
    assert!(
        md.contains("   - SecretString: **** → **** (requires recreation: Never)\n"),
        "{md}"
    );
    assert!(
        md.contains("  - /Properties/MasterUserPassword (NOT_EQUAL): expected ****, actual ****\n"),
        "{md}"
    );
    assert!(
        md.contains(r#"  - /Properties/Description (NOT_EQUAL): expected "db", actual "db ****""#),
        "{md}"
    );
    let service = by_resource(&review, "Service");
    let after = service.change.details[0]
        .target
        .as_ref()
        .unwrap()
        .after_value
        .as_deref();
    assert_eq!(
        after,
        Some(MASK),
        "cut short, not JSON, and names a token: withheld"
    );
    let before = service.change.details[0]
        .target
        .as_ref()
        .unwrap()
        .before_value
        .as_deref();
    assert!(
        before.unwrap().contains(r#"{"Name":"API_TOKEN","Value":"****"}"#),
        "{before:?}"
    );
}

#[test]
fn a_no_echo_value_not_given_withholds_every_property_value() {
    let p = page("secrets.json");
    let previous = [Parameter {
        key: "DbPassword".into(),
        value: None,
        use_previous_value: true,
    }];
    let review = review_of(&p, &changes(&p, ""), &previous);
    assert_eq!(review.notes.len(), 1, "{:?}", review.notes);
    assert!(review.notes[0].contains("DbPassword"));
    for c in &review.changes {
        assert!(
            c.properties
                .iter()
                .all(|p| p.before.as_deref().unwrap_or(MASK) == MASK),
            "{c:?}"
        );
        assert!(
            c.properties
                .iter()
                .all(|p| p.after.as_deref().unwrap_or(MASK) == MASK),
            "{c:?}"
        );
    }
    // Which properties change is still shown.
    assert!(
        by_resource(&review, "Database")
            .properties
            .iter()
            .any(|p| p.path == "Properties.AllocatedStorage")
    );
}

#[test]
fn the_review_round_trips_as_json() {
    let (review, _) = secret_review();
    let json = serde_json::to_string(&review).unwrap();
    assert_eq!(serde_json::from_str::<Review>(&json).unwrap(), review);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    for field in [
        "version",
        "reviewId",
        "stackName",
        "stackId",
        "changeSetId",
        "changeSetName",
        "fingerprint",
        "safe",
        "changeCount",
        "offenceCount",
        "summary",
        "changes",
        "parameters",
        "drift",
    ] {
        assert!(value.get(field).is_some(), "{field} missing: {json}");
    }
}

/// 3,000 unsafe changes, each with contexts and target values.
fn large() -> Vec<(String, ResourceChange)> {
    (0..3_000)
        .map(|i| {
            let json = serde_json::json!({
                "Action": "Modify", "LogicalResourceId": format!("Bucket{i}"), "PhysicalResourceId": format!("bucket-{i}"),
                "ResourceType": "AWS::S3::Bucket", "Replacement": "True", "Scope": ["Properties"],
                "Details": [{"Evaluation": "Static", "ChangeSource": "DirectModification", "Target": {
                    "Attribute": "Properties", "Name": "BucketName", "Path": "/Properties/BucketName", "RequiresRecreation": "Always",
                    "BeforeValue": format!("old-{i}"), "AfterValue": format!("new-{i}")}}],
                "BeforeContext": serde_json::json!({"Properties": {"BucketName": format!("old-{i}"), "Note": "x".repeat(300)}}).to_string(),
                "AfterContext": serde_json::json!({"Properties": {"BucketName": format!("new-{i}"), "Note": "y".repeat(300)}}).to_string(),
            });
            (if i % 2 == 0 { String::new() } else { "Storage/".into() }, serde_json::from_value(json).unwrap())
        })
        .collect()
}

#[test]
fn a_very_large_review_is_cut_to_fit_an_sns_message() {
    let p = page("values.json");
    let all = large();
    let review = review_of(&p, &all, &[]);
    assert_eq!((review.change_count, review.offence_count), (3_000, 3_000));
    assert!(
        review.summary.chars().count() <= 4_000,
        "{}",
        review.summary.len()
    );
    let md = markdown(&review);
    assert!(md.len() > MAX_MESSAGE_BYTES, "{}", md.len());
    // A value over 200 characters is cut.
    assert!(md.contains(&format!("\"{}…", "x".repeat(199))), "values are cut");
    assert!(!md.contains(&"x".repeat(201)));
    let uri = "s3://deploy-reviews/prod-app/deploy-42.md";
    let bounded = bounded_markdown(&md, MAX_MESSAGE_BYTES, uri);
    assert!(bounded.len() <= MAX_MESSAGE_BYTES, "{}", bounded.len());
    assert!(bounded.len() > MAX_MESSAGE_BYTES - 1_000, "{}", bounded.len());
    let (shown, note) = bounded.rsplit_once("\n… Cut short: ").unwrap();
    assert!(md.starts_with(shown));
    assert!(
        note.contains(&format!(
            "of {} lines ({} of {} bytes)",
            md.lines().count(),
            shown.len(),
            md.len()
        )),
        "{note}"
    );
    assert!(note.trim_end().ends_with(uri), "{note}");
    assert!(shown.starts_with("# Change set review: prod-app/deploy-42\n"));
    assert!(shown.contains("## Unsafe changes (3000)\n"));
    // The unchanged one fits as it is.
    assert_eq!(bounded_markdown(&md, md.len(), uri), md);
}

#[test]
fn the_fingerprint_changes_with_any_field_or_the_order() {
    let p = page("values.json");
    let all = changes(&p, "");
    let id = p.change_set_id.as_deref().unwrap();
    let base = fingerprint(id, &all);
    assert!(base.starts_with("sha256:") && base.len() == 7 + 64, "{base}");
    assert!(
        base[7..]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{base}"
    );
    assert_eq!(fingerprint(id, &changes(&page("values.json"), "")), base);
    assert_eq!(review_of(&p, &all, &[]).fingerprint, base);

    let mut value = all.clone();
    let after = value[1].1.after_context.as_mut().unwrap();
    *after = after.replace("\"debug\"", "\"trace\"");
    let mut replacement = all.clone();
    replacement[1].1.replacement = Some("Conditional".into());
    let mut target = all.clone();
    target[0].1.details[0].target.as_mut().unwrap().after_value = Some("prod-app-bucket-v3".into());
    let mut order = all.clone();
    order.swap(2, 3);
    let mut path = all.clone();
    path[2].0 = "Nested/".into();
    let variants = [
        ("a property value", value),
        ("a Replacement", replacement),
        ("a target value", target),
        ("the order", order),
        ("a path", path),
    ];
    for (what, changed) in variants {
        assert_ne!(fingerprint(id, &changed), base, "{what}");
    }
    assert_ne!(fingerprint("another-id", &all), base);
}

#[test]
fn the_subject_is_at_most_100_printable_ascii_characters() {
    let p = page("values.json");
    let review = review_of(&p, &changes(&p, ""), &[]);
    assert_eq!(subject(&review), "Approve 2 unsafe change(s) to prod-app?");
    let long = ChangeSetPage {
        stack_name: Some(format!("prod-{}", "a".repeat(123))),
        ..p.clone()
    };
    let s = subject(&review_of(&long, &large(), &[]));
    assert!(
        s.len() <= 100 && s.chars().all(|c| c == ' ' || c.is_ascii_graphic()),
        "{s}"
    );
    assert!(
        s.starts_with("Approve 3000 unsafe change(s) to prod-aaa") && s.ends_with("...?"),
        "{s}"
    );
}
