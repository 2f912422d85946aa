//! Handler tests: the real step handlers and SDK clients, every call answered by
//! aws-smithy-mocks; change sets come from the same DescribeChangeSet-shaped fixtures as the
//! pure tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a panic

use aws_sdk_cloudformation::operation::create_change_set::{CreateChangeSetError, CreateChangeSetOutput};
use aws_sdk_cloudformation::operation::delete_change_set::DeleteChangeSetOutput;
use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;
use aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;
use aws_sdk_cloudformation::operation::describe_stacks::{DescribeStacksError, DescribeStacksOutput};
use aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput;
use aws_sdk_cloudformation::operation::get_template_summary::GetTemplateSummaryOutput;
use aws_sdk_cloudformation::types::{
    Change, ChangeAction, ChangeSetStatus, ChangeType, ExecutionStatus, ParameterDeclaration, Replacement,
    ResourceChange, ResourceStatus, Stack, StackEvent, StackStatus,
};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use deploy_steps::changeset::ChangeSetPage;
use deploy_steps::metrics::{CHANGE_SET_VERDICTS, CLOUDFORMATION_WAIT_SECONDS};
use deploy_steps::poll::PollConfig;
use deploy_steps::{Config, Request, Step, StepError, Steps};
use lambda_common::ErrorType;
use lambda_common::metrics::Metrics;
use serde_json::{Value, json};

mod support;

const CS: &str = "arn:aws:cloudformation:us-east-1:111111111111:changeSet/deploy-codepipeline-1/aaaa1111-2222-3333-4444-555566667777";

fn steps(cfn: &[&Rule], s3: &[&Rule], template_bucket: Option<&str>) -> Steps {
    Steps {
        cfn: mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, cfn.iter().copied()),
        s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, s3.iter().copied()),
        sns: mock_client!(aws_sdk_sns, RuleMode::MatchAny, [].iter().copied()),
        sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [].iter().copied()),
        config: Config {
            poll: PollConfig {
                initial_seconds: 5,
                max_seconds: 20,
                max_attempts: 3,
            },
            template_bucket: template_bucket.map(str::to_owned),
            default_role_arn: Some("arn:aws:iam::111111111111:role/cfn-deployer".into()),
            region: "us-east-1".into(),
            ..Config::default()
        },
    }
}

fn plan() -> Value {
    json!({
        "stackName": "prod-app", "blueGreenStackName": "prod-app-bg-12345678",
        "changeSetName": "deploy-codepipeline-1", "templatePath": "infra/app.yaml",
        "template": {"body": "Resources: {}"}, "parameters": [], "capabilities": [], "tags": [],
        "policy": {"conditionalReplacement": "block", "dynamic": "block", "allowReplacement": [], "allowRemoval": []},
        "onUnsafe": "fail"
    })
}

fn state(extra: Value) -> Value {
    let mut s = json!({"environmentName": "prod", "plan": plan(), "target": {"stackName": "prod-app", "mode": "in-place"}});
    if let (Some(o), Some(e)) = (s.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    s
}

fn with_change_set() -> Value {
    state(
        json!({"changeSet": {"id": CS, "name": "deploy-codepipeline-1", "stackName": "prod-app", "changeSetType": "UPDATE"}}),
    )
}

/// A DescribeChangeSet output built from a fixture file.
fn fixture_output(name: &str) -> DescribeChangeSetOutput {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let page: ChangeSetPage = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    DescribeChangeSetOutput::builder()
        .set_change_set_id(page.change_set_id)
        .set_change_set_name(page.change_set_name)
        .set_stack_name(page.stack_name)
        .set_status(page.status.map(|s| ChangeSetStatus::from(s.as_str())))
        .set_status_reason(page.status_reason)
        .set_execution_status(page.execution_status.map(|s| ExecutionStatus::from(s.as_str())))
        .set_next_token(page.next_token)
        .set_changes(Some(
            page.changes
                .into_iter()
                .map(|c| {
                    let rc = c.resource_change.unwrap_or_default();
                    Change::builder()
                        .r#type(ChangeType::Resource)
                        .resource_change(
                            ResourceChange::builder()
                                .set_action(rc.action.map(|a| ChangeAction::from(a.as_str())))
                                .set_logical_resource_id(rc.logical_resource_id)
                                .set_physical_resource_id(rc.physical_resource_id)
                                .set_resource_type(rc.resource_type)
                                .set_replacement(rc.replacement.map(|r| Replacement::from(r.as_str())))
                                .set_policy_action(
                                    rc.policy_action.map(|p| {
                                        aws_sdk_cloudformation::types::PolicyAction::from(p.as_str())
                                    }),
                                )
                                .set_change_set_id(rc.change_set_id)
                                .build(),
                        )
                        .build()
                })
                .collect(),
        ))
        .build()
}

fn describe_change_set(fixture: &'static str, match_name: &'static str, token: Option<&'static str>) -> Rule {
    mock!(aws_sdk_cloudformation::Client::describe_change_set)
        .match_requests(move |r| {
            r.change_set_name().is_some_and(|n| n.contains(match_name)) && r.next_token() == token
        })
        .then_output(move || fixture_output(fixture))
}

fn stack(status: StackStatus) -> Rule {
    mock!(aws_sdk_cloudformation::Client::describe_stacks).then_output(move || {
        DescribeStacksOutput::builder()
            .stacks(
                Stack::builder()
                    .stack_name("prod-app")
                    .stack_id("arn:aws:cloudformation:us-east-1:111111111111:stack/prod-app/1")
                    .stack_status(status.clone())
                    .creation_time(aws_smithy_types::DateTime::from_secs(0))
                    .build(),
            )
            .build()
    })
}

/// One invocation as the runtime makes it: the payload parsed as the step's request, the step,
/// its response as JSON, and the invocation's metrics. Every invocation records exactly one
/// outcome, under the step's name: `Success` or its error's `errorType`.
async fn run_metered(steps: &Steps, step: Step, payload: Value) -> (Result<Value, StepError>, Metrics) {
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
    (result.map(|r| serde_json::to_value(r).unwrap()), m)
}

async fn run(steps: &Steps, step: Step, payload: Value) -> Result<Value, StepError> {
    run_metered(steps, step, payload).await.0
}

// ---- check stack ----

#[tokio::test]
async fn only_does_not_exist_means_absent() {
    let absent = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_error(|| {
        DescribeStacksError::generic(
            ErrorMetadata::builder()
                .code("ValidationError")
                .message("Stack with id prod-app does not exist")
                .build(),
        )
    });
    let s = steps(&[&absent], &[], None);
    let out = run(&s, Step::CheckStack, state(json!({}))).await.unwrap();
    assert_eq!(out["next"], "CREATE_STACK");

    let denied = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_error(|| {
        DescribeStacksError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("not authorized to perform: cloudformation:DescribeStacks")
                .build(),
        )
    });
    let s = steps(&[&denied], &[], None);
    let err = run(&s, Step::CheckStack, state(json!({}))).await.unwrap_err();
    assert_eq!(err.error_type(), "AccessDenied");
    assert!(err.to_string().contains("not authorized"), "{err}");
}

#[tokio::test]
async fn unusable_and_busy_stacks() {
    let s = steps(&[&stack(StackStatus::RollbackComplete)], &[], None);
    let out = run(&s, Step::CheckStack, state(json!({}))).await.unwrap();
    assert_eq!(out["next"], "FAIL");
    assert!(out["reason"].as_str().unwrap().contains("ROLLBACK_COMPLETE"));

    let s = steps(&[&stack(StackStatus::UpdateInProgress)], &[], None);
    let first = run(&s, Step::CheckStack, state(json!({}))).await.unwrap();
    assert_eq!(first["next"], "WAIT");
    assert_eq!(
        first["poll"],
        json!({"attempt": 1, "waitSeconds": 5, "exhausted": false})
    );
    let mut next = state(json!({}));
    next["stack"] = first;
    let second = run(&s, Step::CheckStack, next.clone()).await.unwrap();
    assert_eq!(
        second["poll"],
        json!({"attempt": 2, "waitSeconds": 10, "exhausted": false})
    );
    next["stack"] = second;
    let third = run(&s, Step::CheckStack, next).await.unwrap();
    assert_eq!(third["poll"]["exhausted"], true);
    assert!(
        third["reason"]
            .as_str()
            .unwrap()
            .contains("still UPDATE_IN_PROGRESS after 3 checks")
    );

    let s = steps(&[&stack(StackStatus::ReviewInProgress)], &[], None);
    assert_eq!(
        run(&s, Step::CheckStack, state(json!({}))).await.unwrap()["next"],
        "CREATE_CHANGE_SET"
    );
    let s = steps(&[&stack(StackStatus::UpdateRollbackComplete)], &[], None);
    assert_eq!(
        run(&s, Step::CheckStack, state(json!({}))).await.unwrap()["next"],
        "UPDATE_CHANGE_SET"
    );
}

// ---- change sets ----

#[tokio::test]
async fn create_change_set_is_an_update_with_nested_stacks() {
    let create = mock!(aws_sdk_cloudformation::Client::create_change_set)
        .match_requests(|r| {
            r.change_set_type() == Some(&aws_sdk_cloudformation::types::ChangeSetType::Update)
                && r.include_nested_stacks() == Some(true)
                && r.change_set_name() == Some("deploy-codepipeline-1")
                && r.stack_name() == Some("prod-app")
        })
        .then_output(|| {
            CreateChangeSetOutput::builder()
                .id(CS)
                .stack_id("stack-id")
                .build()
        });
    let s = steps(&[&create], &[], None);
    let mut st = state(json!({}));
    st["stack"] = json!({"next": "UPDATE_CHANGE_SET", "status": "UPDATE_COMPLETE", "reason": "", "poll": {"attempt": 0, "waitSeconds": 0, "exhausted": false}});
    let out = run(&s, Step::CreateChangeSet, st).await.unwrap();
    assert_eq!(out["id"], CS);
    assert_eq!(out["changeSetType"], "UPDATE");
    assert_eq!(create.num_calls(), 1);
}

#[tokio::test]
async fn an_unchanged_template_is_no_changes_not_a_failure() {
    let refused = mock!(aws_sdk_cloudformation::Client::create_change_set).then_error(|| {
        CreateChangeSetError::generic(
            ErrorMetadata::builder()
                .code("ValidationError")
                .message("No updates are to be performed.")
                .build(),
        )
    });
    let s = steps(&[&refused], &[], None);
    let mut st = state(json!({}));
    st["stack"] = json!({"next": "UPDATE_CHANGE_SET", "status": "UPDATE_COMPLETE", "reason": "", "poll": {"attempt": 0, "waitSeconds": 0, "exhausted": false}});
    let created = run(&s, Step::CreateChangeSet, st.clone()).await.unwrap();
    assert_eq!(created["noChanges"], true);
    st["changeSet"] = created;
    let status = run(&s, Step::ChangeSetStatus, st.clone()).await.unwrap();
    assert_eq!(status["state"], "NO_CHANGES");
    // Nothing to delete: no call is made.
    let delete = mock!(aws_sdk_cloudformation::Client::delete_change_set)
        .then_output(|| DeleteChangeSetOutput::builder().build());
    let s = steps(&[&delete], &[], None);
    run(&s, Step::DeleteChangeSet, st).await.unwrap();
    assert_eq!(delete.num_calls(), 0);
}

#[tokio::test]
async fn change_set_status_decisions() {
    for (fixture, expected) in [
        ("page1-safe.json", "READY"),
        ("no-changes.json", "NO_CHANGES"),
        ("failed.json", "FAILED"),
        ("obsolete.json", "FAILED"),
    ] {
        let rule = mock!(aws_sdk_cloudformation::Client::describe_change_set)
            .then_output(move || fixture_output(fixture));
        let s = steps(&[&rule], &[], None);
        let out = run(&s, Step::ChangeSetStatus, with_change_set()).await.unwrap();
        assert_eq!(out["state"], expected, "{fixture}");
        if fixture == "failed.json" {
            assert!(
                out["reason"]
                    .as_str()
                    .unwrap()
                    .contains("Unresolved resource dependencies [MissingThing]")
            );
        }
    }
}

#[tokio::test]
async fn inspection_reads_every_page_and_every_nested_change_set() {
    let page1 = describe_change_set("page1-safe.json", "deploy-codepipeline-1", None);
    let page2 = describe_change_set("nested-parent.json", "deploy-codepipeline-1", Some("page-2"));
    let nested = describe_change_set("nested-child.json", "deploy-nested-NetworkStack-1XYZ", None);
    let s = steps(&[&page1, &page2, &nested], &[], None);
    let verdict = run(&s, Step::InspectChangeSet, with_change_set()).await.unwrap();
    assert_eq!(verdict["changeSetAction"], "RESOURCES-BEING-DELETED-OR-REPLACED");
    assert_eq!(verdict["safe"], false);
    assert_eq!(verdict["changes"], 4);
    assert_eq!(verdict["offences"][0]["logicalResourceId"], "NetworkStack/Vpc");
    assert_eq!(
        (page1.num_calls(), page2.num_calls(), nested.num_calls()),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn the_execute_step_never_executes_an_unsafe_change_set() {
    let page1 = describe_change_set("page1-safe.json", "deploy-codepipeline-1", None);
    let page2 = describe_change_set("page2-unsafe.json", "deploy-codepipeline-1", Some("page-2"));
    let execute = mock!(aws_sdk_cloudformation::Client::execute_change_set)
        .then_output(|| ExecuteChangeSetOutput::builder().build());
    let s = steps(&[&page1, &page2, &execute], &[], None);
    // Even when the state says the change set is safe, the step judges it again.
    let mut st = with_change_set();
    st["verdict"] = json!({"changeSetAction": "CAN-SAFELY-UPDATE-EXISTING-STACK", "safe": true});
    let err = run(&s, Step::ExecuteChangeSet, st).await.unwrap_err();
    assert_eq!(err.error_type(), "UnsafeChangeSet");
    assert!(
        err.to_string()
            .contains("OrdersTable (AWS::DynamoDB::Table): removed"),
        "{err}"
    );
    assert_eq!(execute.num_calls(), 0);
}

#[tokio::test]
async fn only_an_available_change_set_is_executed() {
    let obsolete = describe_change_set("obsolete.json", "deploy-codepipeline-1", None);
    let execute = mock!(aws_sdk_cloudformation::Client::execute_change_set)
        .then_output(|| ExecuteChangeSetOutput::builder().build());
    let s = steps(&[&obsolete, &execute], &[], None);
    let err = run(&s, Step::ExecuteChangeSet, with_change_set())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "ChangeSetNotExecutable");
    assert_eq!(execute.num_calls(), 0);

    let safe = mock!(aws_sdk_cloudformation::Client::describe_change_set)
        .then_output(|| fixture_output("outputs-only.json"));
    let execute = mock!(aws_sdk_cloudformation::Client::execute_change_set)
        .match_requests(|r| r.change_set_name() == Some(CS))
        .then_output(|| ExecuteChangeSetOutput::builder().build());
    let s = steps(&[&safe, &execute], &[], None);
    run(&s, Step::ExecuteChangeSet, with_change_set()).await.unwrap();
    assert_eq!(execute.num_calls(), 1);
}

// ---- waiting for the stack ----

#[tokio::test]
async fn a_rolled_back_update_fails_with_the_failed_resources() {
    let events = mock!(aws_sdk_cloudformation::Client::describe_stack_events).then_output(|| {
        let ev = |logical: &str, rtype: &str, status: ResourceStatus, reason: &str| {
            StackEvent::builder()
                .stack_id("id")
                .event_id(format!("{logical}-{}", status.as_str()))
                .stack_name("prod-app")
                .logical_resource_id(logical)
                .resource_type(rtype)
                .resource_status(status)
                .resource_status_reason(reason)
                .timestamp(aws_smithy_types::DateTime::from_secs(0))
                .build()
        };
        // Newest first, as DescribeStackEvents returns them.
        DescribeStackEventsOutput::builder()
            .stack_events(ev(
                "prod-app",
                "AWS::CloudFormation::Stack",
                ResourceStatus::UpdateRollbackComplete,
                "",
            ))
            .stack_events(ev(
                "Queue",
                "AWS::SQS::Queue",
                ResourceStatus::UpdateFailed,
                "Resource handler returned message: queue name already exists",
            ))
            .stack_events(ev(
                "prod-app",
                "AWS::CloudFormation::Stack",
                ResourceStatus::UpdateInProgress,
                "User Initiated",
            ))
            .stack_events(ev(
                "Old",
                "AWS::SQS::Queue",
                ResourceStatus::CreateFailed,
                "an older failure",
            ))
            .build()
    });
    let s = steps(&[&stack(StackStatus::UpdateRollbackComplete), &events], &[], None);
    let out = run(&s, Step::StackStatus, with_change_set()).await.unwrap();
    assert_eq!(out["state"], "FAILED");
    assert_eq!(
        out["reason"],
        "stack prod-app ended UPDATE_ROLLBACK_COMPLETE; failed resources: Queue (AWS::SQS::Queue) UPDATE_FAILED: \
         Resource handler returned message: queue name already exists"
    );
}

#[tokio::test]
async fn waiting_for_the_stack_is_bounded() {
    let s = steps(&[&stack(StackStatus::UpdateInProgress)], &[], None);
    let mut st = with_change_set();
    let mut last = Value::Null;
    for _ in 0..3 {
        last = run(&s, Step::StackStatus, st.clone()).await.unwrap();
        st["progress"] = last.clone();
    }
    assert_eq!(last["state"], "IN_PROGRESS");
    assert_eq!(last["poll"]["exhausted"], true);
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("still UPDATE_IN_PROGRESS after 3 checks")
    );
}

// ---- prepare ----

fn artifact(files: &[(&str, &str)]) -> Vec<u8> {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    for (name, body) in files {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(body.as_bytes()).unwrap();
    }
    w.finish().unwrap();
    buf.into_inner()
}

fn prepare_input(extra: Value) -> Value {
    let mut input = json!({
        "environmentName": "prod", "stackName": "app", "templatePath": "infra/app.yaml",
        "revisionS3Bucket": "artifacts", "revisionS3Key": "p/Source/abc"
    });
    if let (Some(o), Some(e)) = (input.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    json!({"input": input, "executionName": "codepipeline-11111111-abcd-1111-abcd-111111abcdef"})
}

fn get_artifact(template: String) -> Rule {
    mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.bucket() == Some("artifacts") && r.key() == Some("p/Source/abc"))
        .then_output(move || {
            GetObjectOutput::builder()
                .body(ByteStream::from(artifact(&[("infra/app.yaml", &template)])))
                .build()
        })
}

fn summary(params: &'static [&'static str]) -> Rule {
    mock!(aws_sdk_cloudformation::Client::get_template_summary).then_output(move || {
        GetTemplateSummaryOutput::builder()
            .set_parameters(Some(
                params
                    .iter()
                    .map(|p| ParameterDeclaration::builder().parameter_key(*p).build())
                    .collect(),
            ))
            .build()
    })
}

#[tokio::test]
async fn prepare_plans_the_deployment() {
    let s3 = get_artifact("Parameters: {environmentName: {Type: String}}\nResources: {}\n".into());
    let cfn = summary(&["environmentName"]);
    let s = steps(&[&cfn], &[&s3], None);
    let plan = run(&s, Step::Prepare, prepare_input(json!({}))).await.unwrap();
    assert_eq!(plan["stackName"], "prod-app");
    assert_eq!(
        plan["changeSetName"],
        "deploy-codepipeline-11111111-abcd-1111-abcd-111111abcdef"
    );
    assert_eq!(plan["blueGreenStackName"], "prod-app-bg-11abcdef");
    assert_eq!(
        plan["parameters"],
        json!([{"key": "environmentName", "value": "prod"}])
    );
    // No roleArn in the input: the configured service role.
    assert_eq!(plan["roleArn"], "arn:aws:iam::111111111111:role/cfn-deployer");
    assert!(plan["template"]["body"].as_str().unwrap().contains("Resources"));
}

#[tokio::test]
async fn large_templates_need_a_staging_bucket() {
    let big = format!("Resources: {{}}\nMetadata: {{Padding: {}}}\n", "x".repeat(60_000));
    let s3 = get_artifact(big.clone());
    let s = steps(&[&summary(&[])], &[&s3], None);
    let err = run(&s, Step::Prepare, prepare_input(json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidTemplate");
    assert!(err.to_string().contains("no TEMPLATE_BUCKET"), "{err}");

    let put = mock!(aws_sdk_s3::Client::put_object)
        .match_requests(|r| {
            r.bucket() == Some("staging")
                && r.key()
                    == Some("templates/prod-app/codepipeline-11111111-abcd-1111-abcd-111111abcdef/app.yaml")
        })
        .then_output(|| aws_sdk_s3::operation::put_object::PutObjectOutput::builder().build());
    let cfn = mock!(aws_sdk_cloudformation::Client::get_template_summary)
        .match_requests(|r| {
            r.template_url()
                == Some("https://staging.s3.us-east-1.amazonaws.com/templates/prod-app/codepipeline-11111111-abcd-1111-abcd-111111abcdef/app.yaml")
                && r.template_body().is_none()
        })
        .then_output(|| GetTemplateSummaryOutput::builder().build());
    let s3 = get_artifact(big);
    let s = steps(&[&cfn], &[&s3, &put], Some("staging"));
    let plan = run(&s, Step::Prepare, prepare_input(json!({}))).await.unwrap();
    assert!(
        plan["template"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://staging.s3.")
    );
    assert_eq!(put.num_calls(), 1);
}

#[tokio::test]
async fn bad_input_is_a_typed_error() {
    let s = steps(&[], &[], None);
    let err = run(
        &s,
        Step::Prepare,
        json!({"input": {"stackName": "x"}, "executionName": "e"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type(), "InvalidDeploymentInput");
    let err = run(&s, Step::CheckStack, json!({"no": "plan"}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidStepInput");
}

#[tokio::test]
async fn a_retried_execute_step_does_not_fail_a_running_update() {
    let executing = mock!(aws_sdk_cloudformation::Client::describe_change_set)
        .then_output(|| fixture_output("executing.json"));
    let execute = mock!(aws_sdk_cloudformation::Client::execute_change_set)
        .then_output(|| ExecuteChangeSetOutput::builder().build());
    let s = steps(&[&executing, &execute], &[], None);
    let out = run(&s, Step::ExecuteChangeSet, with_change_set()).await.unwrap();
    assert_eq!(out["changeSetId"], CS);
    assert_eq!(execute.num_calls(), 0, "executed once, by the first attempt");
}

#[tokio::test]
async fn a_retried_create_stack_step_carries_on_with_the_stack_it_created() {
    let exists = mock!(aws_sdk_cloudformation::Client::create_stack).then_error(|| {
        aws_sdk_cloudformation::operation::create_stack::CreateStackError::AlreadyExistsException(
            aws_sdk_cloudformation::types::error::AlreadyExistsException::builder()
                .message("Stack [prod-app] already exists")
                .build(),
        )
    });
    let s = steps(&[&exists, &stack(StackStatus::CreateInProgress)], &[], None);
    let out = run(&s, Step::CreateStack, state(json!({}))).await.unwrap();
    assert_eq!(
        out["stackId"],
        "arn:aws:cloudformation:us-east-1:111111111111:stack/prod-app/1"
    );
}

#[tokio::test]
async fn only_the_configured_service_role_may_be_passed() {
    let s3 = get_artifact("Resources: {}\n".into());
    let s = steps(&[&summary(&[])], &[&s3], None);
    let err = run(
        &s,
        Step::Prepare,
        prepare_input(json!({"roleArn": "arn:aws:iam::111111111111:role/admin"})),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type(), "InvalidDeploymentInput");
    assert!(
        err.to_string().contains("the only role its steps may pass"),
        "{err}"
    );
}

#[tokio::test]
async fn a_step_input_that_does_not_parse_names_the_field_before_any_call() {
    // No rule: any AWS call would fail the test with another error.
    let s = steps(&[], &[], None);
    for step in Step::ALL.into_iter().filter(|s| *s != Step::Prepare) {
        let err = run(&s, step, json!({"no": "plan"})).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidStepInput", "{step:?}");
        // The request-approval step's input is the state beside the task token.
        let missing = if step == Step::RequestApproval {
            "state"
        } else {
            "plan"
        };
        assert!(
            err.to_string().contains(&format!("missing field `{missing}`")),
            "{err}"
        );
    }
    let err = Request::parse(Step::Prepare, json!({"input": {}})).unwrap_err();
    assert_eq!(err.error_type(), "InvalidStepInput");
    assert!(err.to_string().contains("missing field `executionName`"), "{err}");
    // The target's mode is one of the two the state machine writes.
    let mut st = state(json!({}));
    st["target"]["mode"] = json!("sideways");
    let err = Request::parse(Step::StackStatus, st).unwrap_err();
    assert_eq!(err.error_type(), "InvalidStepInput");
    assert!(err.to_string().contains("unknown variant `sideways`"), "{err}");
}

#[tokio::test]
async fn a_state_without_the_field_a_step_needs_is_a_step_input_error() {
    let s = steps(&[], &[], None);
    let err = run(&s, Step::InspectChangeSet, state(json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidStepInput");
    assert!(
        err.to_string()
            .starts_with("the step's input lacks changeSet (the created change set)"),
        "{err}"
    );
    let err = run(&s, Step::CreateChangeSet, state(json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidStepInput");
    assert!(err.to_string().contains("stack.next = nothing"), "{err}");
}

#[tokio::test]
async fn a_service_answer_without_what_it_promises_is_an_unexpected_response() {
    let no_id = mock!(aws_sdk_cloudformation::Client::create_change_set)
        .then_output(|| CreateChangeSetOutput::builder().build());
    let s = steps(&[&no_id], &[], None);
    let mut st = state(json!({}));
    st["stack"] = json!({"next": "UPDATE_CHANGE_SET", "status": "UPDATE_COMPLETE", "reason": "", "poll": {"attempt": 0, "waitSeconds": 0, "exhausted": false}});
    let err = run(&s, Step::CreateChangeSet, st).await.unwrap_err();
    assert_eq!(err.error_type(), "UnexpectedResponse");
    assert_eq!(
        err.to_string(),
        "unexpected answer from CloudFormation CreateChangeSet: no change set Id"
    );

    let no_stack = mock!(aws_sdk_cloudformation::Client::describe_stacks)
        .then_output(|| DescribeStacksOutput::builder().build());
    let s = steps(&[&no_stack], &[], None);
    let err = run(&s, Step::StackStatus, with_change_set()).await.unwrap_err();
    assert_eq!(err.error_type(), "UnexpectedResponse");
    assert!(!err.to_string().contains("input"), "{err}");
}

// ---- metrics ----

fn now_ms() -> u64 {
    lambda_common::clock::now_ms()
}

fn describe_status(status: ChangeSetStatus, execution: Option<ExecutionStatus>) -> Rule {
    mock!(aws_sdk_cloudformation::Client::describe_change_set).then_output(move || {
        DescribeChangeSetOutput::builder()
            .change_set_id(CS)
            .change_set_name("deploy-codepipeline-1")
            .stack_name("prod-app")
            .status(status.clone())
            .set_execution_status(execution.clone())
            .build()
    })
}

#[tokio::test]
async fn the_inspect_step_counts_its_verdict_once() {
    // Unsafe: a nested change set removes a resource.
    let page1 = describe_change_set("page1-safe.json", "deploy-codepipeline-1", None);
    let page2 = describe_change_set("nested-parent.json", "deploy-codepipeline-1", Some("page-2"));
    let nested = describe_change_set("nested-child.json", "deploy-nested-NetworkStack-1XYZ", None);
    let s = steps(&[&page1, &page2, &nested], &[], None);
    let (verdict, m) = run_metered(&s, Step::InspectChangeSet, with_change_set()).await;
    assert_eq!(verdict.unwrap()["safe"], false);
    assert_eq!(
        support::values(&m, CHANGE_SET_VERDICTS, &[("Verdict", "Unsafe")]),
        [1.0]
    );
    assert_eq!(
        support::sum(&m, CHANGE_SET_VERDICTS, &[]),
        1.0,
        "rolled up under Service"
    );
    assert!(support::values(&m, CHANGE_SET_VERDICTS, &[("Verdict", "Safe")]).is_empty());
    assert!(support::values(&m, CLOUDFORMATION_WAIT_SECONDS, &[]).is_empty());

    // Safe: only outputs change.
    let safe = mock!(aws_sdk_cloudformation::Client::describe_change_set)
        .then_output(|| fixture_output("outputs-only.json"));
    let s = steps(&[&safe], &[], None);
    let (verdict, m) = run_metered(&s, Step::InspectChangeSet, with_change_set()).await;
    assert_eq!(verdict.unwrap()["safe"], true);
    assert_eq!(
        support::values(&m, CHANGE_SET_VERDICTS, &[("Verdict", "Safe")]),
        [1.0]
    );
    assert!(support::values(&m, CHANGE_SET_VERDICTS, &[("Verdict", "Unsafe")]).is_empty());

    // A failed inspection decides nothing: only its outcome is counted.
    let throttled = mock!(aws_sdk_cloudformation::Client::describe_change_set).then_error(|| {
        aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetError::generic(
            ErrorMetadata::builder()
                .code("Throttling")
                .message("Rate exceeded")
                .build(),
        )
    });
    let s = steps(&[&throttled], &[], None);
    let (err, m) = run_metered(&s, Step::InspectChangeSet, with_change_set()).await;
    assert_eq!(err.unwrap_err().error_type(), "Throttled");
    assert_eq!(
        support::outcomes(&m),
        [("Throttled".to_owned(), "inspect-change-set".to_owned(), 1.0)]
    );
    assert!(support::values(&m, CHANGE_SET_VERDICTS, &[("Verdict", "Safe")]).is_empty());
}

#[tokio::test]
async fn a_change_set_without_changes_is_counted_no_changes_and_waited_for_by_nobody() {
    let refused = mock!(aws_sdk_cloudformation::Client::create_change_set).then_error(|| {
        CreateChangeSetError::generic(
            ErrorMetadata::builder()
                .code("ValidationError")
                .message("No updates are to be performed.")
                .build(),
        )
    });
    let s = steps(&[&refused], &[], None);
    let mut st = state(json!({}));
    st["stack"] = json!({"next": "UPDATE_CHANGE_SET", "status": "UPDATE_COMPLETE", "reason": "", "poll": {"attempt": 0, "waitSeconds": 0, "exhausted": false}});
    let (created, m) = run_metered(&s, Step::CreateChangeSet, st.clone()).await;
    let created = created.unwrap();
    assert!(
        created.get("startedAtMs").is_none(),
        "nothing was started: {created}"
    );
    assert!(support::values(&m, CHANGE_SET_VERDICTS, &[("Verdict", "NoChanges")]).is_empty());
    st["changeSet"] = created;
    let (status, m) = run_metered(&s, Step::ChangeSetStatus, st).await;
    assert_eq!(status.unwrap()["state"], "NO_CHANGES");
    assert_eq!(
        support::values(&m, CHANGE_SET_VERDICTS, &[("Verdict", "NoChanges")]),
        [1.0]
    );
    assert!(support::values(&m, CLOUDFORMATION_WAIT_SECONDS, &[]).is_empty());

    // CloudFormation's own way: a FAILED change set saying nothing changes, waited for.
    let rule = mock!(aws_sdk_cloudformation::Client::describe_change_set)
        .then_output(|| fixture_output("no-changes.json"));
    let s = steps(&[&rule], &[], None);
    let mut st = with_change_set();
    st["changeSet"]["startedAtMs"] = json!(now_ms() - 4_000);
    let (status, m) = run_metered(&s, Step::ChangeSetStatus, st).await;
    assert_eq!(status.unwrap()["state"], "NO_CHANGES");
    assert_eq!(
        support::values(&m, CHANGE_SET_VERDICTS, &[("Verdict", "NoChanges")]),
        [1.0]
    );
    let waited = support::values(&m, CLOUDFORMATION_WAIT_SECONDS, &[]);
    assert!(
        matches!(waited[..], [w] if (4.0..10.0).contains(&w)),
        "{waited:?}"
    );
}

#[tokio::test]
async fn the_change_set_wait_is_sampled_once_when_it_ends() {
    let started = now_ms();
    let create = mock!(aws_sdk_cloudformation::Client::create_change_set).then_output(|| {
        CreateChangeSetOutput::builder()
            .id(CS)
            .stack_id("stack-id")
            .build()
    });
    let s = steps(&[&create], &[], None);
    let mut st = state(json!({}));
    st["stack"] = json!({"next": "UPDATE_CHANGE_SET", "status": "UPDATE_COMPLETE", "reason": "", "poll": {"attempt": 0, "waitSeconds": 0, "exhausted": false}});
    let (created, m) = run_metered(&s, Step::CreateChangeSet, st.clone()).await;
    let created = created.unwrap();
    let at = created["startedAtMs"].as_u64().unwrap();
    assert!((started..=now_ms()).contains(&at), "{created}");
    assert!(support::values(&m, CLOUDFORMATION_WAIT_SECONDS, &[]).is_empty());

    // As if created 30 s ago: still pending (no sample), then ready (one sample, ~30 s).
    st["changeSet"] = created;
    st["changeSet"]["startedAtMs"] = json!(at - 30_000);
    let pending = describe_status(ChangeSetStatus::CreateInProgress, None);
    let s = steps(&[&pending], &[], None);
    let (status, m) = run_metered(&s, Step::ChangeSetStatus, st.clone()).await;
    let status = status.unwrap();
    assert_eq!(status["state"], "PENDING");
    assert!(support::values(&m, CLOUDFORMATION_WAIT_SECONDS, &[]).is_empty());
    st["changeSetStatus"] = status;
    let ready = describe_status(ChangeSetStatus::CreateComplete, Some(ExecutionStatus::Available));
    let s = steps(&[&ready], &[], None);
    let (status, m) = run_metered(&s, Step::ChangeSetStatus, st.clone()).await;
    assert_eq!(status.unwrap()["state"], "READY");
    let waited = support::values(&m, CLOUDFORMATION_WAIT_SECONDS, &[]);
    assert!(
        matches!(waited[..], [w] if (30.0..40.0).contains(&w)),
        "{waited:?}"
    );
    assert!(support::values(&m, CHANGE_SET_VERDICTS, &[("Verdict", "NoChanges")]).is_empty());
    let unit = m.documents(0).iter().find_map(|d| {
        let defs = d["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array()?.clone();
        defs.into_iter()
            .find(|x| x["Name"] == CLOUDFORMATION_WAIT_SECONDS)
    });
    assert_eq!(unit.unwrap()["Unit"], "Seconds");

    // A failed change set ends the wait too.
    let failed = mock!(aws_sdk_cloudformation::Client::describe_change_set)
        .then_output(|| fixture_output("failed.json"));
    let s = steps(&[&failed], &[], None);
    let (status, m) = run_metered(&s, Step::ChangeSetStatus, st).await;
    assert_eq!(status.unwrap()["state"], "FAILED");
    assert_eq!(support::values(&m, CLOUDFORMATION_WAIT_SECONDS, &[]).len(), 1);
}

#[tokio::test]
async fn the_stack_wait_is_sampled_from_the_operation_the_workflow_started() {
    // Created by this workflow 20 s ago; complete now.
    let create = mock!(aws_sdk_cloudformation::Client::create_stack).then_output(|| {
        aws_sdk_cloudformation::operation::create_stack::CreateStackOutput::builder()
            .stack_id("arn:aws:cloudformation:us-east-1:111111111111:stack/prod-app/1")
            .build()
    });
    let s = steps(&[&create], &[], None);
    let (created, _) = run_metered(&s, Step::CreateStack, state(json!({}))).await;
    let mut created = created.unwrap();
    let at = created["startedAtMs"].as_u64().unwrap();
    assert!(at <= now_ms());
    created["startedAtMs"] = json!(at - 20_000);
    let mut st = state(json!({"created": created}));
    let s = steps(&[&stack(StackStatus::CreateComplete)], &[], None);
    let (progress, m) = run_metered(&s, Step::StackStatus, st.clone()).await;
    assert_eq!(progress.unwrap()["state"], "COMPLETE");
    let waited = support::values(&m, CLOUDFORMATION_WAIT_SECONDS, &[]);
    assert!(
        matches!(waited[..], [w] if (20.0..30.0).contains(&w)),
        "{waited:?}"
    );

    // An update: the wait runs from the execution, not from the stack's creation.
    let executed = mock!(aws_sdk_cloudformation::Client::describe_change_set)
        .then_output(|| fixture_output("outputs-only.json"));
    let execute = mock!(aws_sdk_cloudformation::Client::execute_change_set)
        .then_output(|| ExecuteChangeSetOutput::builder().build());
    let s = steps(&[&executed, &execute], &[], None);
    let (out, m) = run_metered(&s, Step::ExecuteChangeSet, with_change_set()).await;
    let mut out = out.unwrap();
    assert!(support::values(&m, CLOUDFORMATION_WAIT_SECONDS, &[]).is_empty());
    out["startedAtMs"] = json!(out["startedAtMs"].as_u64().unwrap() - 5_000);
    st["executed"] = out;
    let s = steps(&[&stack(StackStatus::UpdateComplete)], &[], None);
    let (_, m) = run_metered(&s, Step::StackStatus, st.clone()).await;
    let waited = support::values(&m, CLOUDFORMATION_WAIT_SECONDS, &[]);
    assert!(
        matches!(waited[..], [w] if (5.0..15.0).contains(&w)),
        "{waited:?}"
    );

    // In progress: no sample until the poll gives up.
    let s = steps(&[&stack(StackStatus::UpdateInProgress)], &[], None);
    let mut samples = Vec::new();
    for _ in 0..3 {
        let (progress, m) = run_metered(&s, Step::StackStatus, st.clone()).await;
        samples.push(support::values(&m, CLOUDFORMATION_WAIT_SECONDS, &[]).len());
        st["progress"] = progress.unwrap();
    }
    assert_eq!(st["progress"]["poll"]["exhausted"], true);
    assert_eq!(samples, [0, 0, 1]);

    // A state without a recorded start (an execution started before this version): no sample.
    let s = steps(&[&stack(StackStatus::UpdateComplete)], &[], None);
    let (_, m) = run_metered(&s, Step::StackStatus, with_change_set()).await;
    assert!(support::values(&m, CLOUDFORMATION_WAIT_SECONDS, &[]).is_empty());
}

#[tokio::test]
async fn every_outcome_is_counted_under_its_error_type() {
    // An error the step returns.
    let page1 = describe_change_set("page1-safe.json", "deploy-codepipeline-1", None);
    let page2 = describe_change_set("page2-unsafe.json", "deploy-codepipeline-1", Some("page-2"));
    let s = steps(&[&page1, &page2], &[], None);
    let (err, m) = run_metered(&s, Step::ExecuteChangeSet, with_change_set()).await;
    assert_eq!(err.unwrap_err().error_type(), "UnsafeChangeSet");
    assert_eq!(
        support::values(
            &m,
            "StepOutcomes",
            &[("Outcome", "UnsafeChangeSet"), ("Step", "execute-change-set")]
        ),
        [1.0]
    );
    assert_eq!(
        support::values(&m, "StepOutcomes", &[("Outcome", "UnsafeChangeSet")]),
        [1.0]
    );
    assert_eq!(support::values(&m, "StepOutcomes", &[]), [1.0]);
    // A payload that is not the step's request: counted before any call.
    let s = steps(&[], &[], None);
    let (err, m) = run_metered(&s, Step::StackStatus, json!({"plan": 1})).await;
    assert_eq!(err.unwrap_err().error_type(), "InvalidStepInput");
    assert_eq!(
        support::outcomes(&m),
        [("InvalidStepInput".to_owned(), "stack-status".to_owned(), 1.0)]
    );
}
