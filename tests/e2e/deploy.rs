//! End to end: a CodePipeline job, through the pipeline trigger, starts the real deploy state
//! machine (statemachines/deploy.asl.json) executed by moto, whose Task states run the real
//! Rust deploy steps against moto's CloudFormation. Every test checks the stack's real state
//! afterwards, not only the workflow's status.

use std::collections::BTreeMap;

use e2e::pipeline::{ActionOutcome, ActionSpec, ActionStatus, InputArtifact, run_action};
use e2e::seed::{ARTIFACT_BUCKET, deploy_workflow, fixture_template, seed_pipeline_inputs, zip_files};
use e2e::{FunctionOptions, LocalStack};
use serde_json::{Value, json};

const STACK: &str = "e2e-app";

struct DeployWorld {
    stack: LocalStack,
}

impl DeployWorld {
    async fn start() -> Self {
        let stack = LocalStack::start().await.expect("local stack");
        seed_pipeline_inputs(&stack).await.expect("seed");
        let deploy = deploy_workflow(&stack, "deploy").await.expect("deploy workflow");
        e2e::seed::serve_trigger(&stack, &deploy, FunctionOptions::default())
            .await
            .expect("serve the trigger");
        Self { stack }
    }

    fn cfn(&self) -> aws_sdk_cloudformation::Client {
        aws_sdk_cloudformation::Client::new(&self.stack.sdk)
    }

    /// Zips `template` as the source artifact and runs the pipeline's deploy action on it.
    async fn deploy_template(&self, template: &str, options: Value) -> ActionOutcome {
        let key = format!("MyPipeline/SourceArti/{}", uuid::Uuid::new_v4().simple());
        let zip = zip_files(&[("README.md", b"app"), ("infra/app.yaml", template.as_bytes())]).unwrap();
        e2e::seed::put_object(&self.stack, ARTIFACT_BUCKET, &key, &zip)
            .await
            .unwrap();
        // moto's change sets never say whether a Modify replaces its resource (AWS always does):
        // the gate refuses that unless the deployment opts in, as these tests do by default.
        let mut input = json!({
            "environmentName": "e2e", "stackName": "app", "templatePath": "infra/app.yaml",
            "policy": {"unreportedReplacement": "allow"},
        });
        if let (Some(i), Some(o)) = (input.as_object_mut(), options.as_object()) {
            i.extend(o.clone());
        }
        let spec = ActionSpec::new(
            "pipeline-trigger",
            Some(json!({"input": input}).to_string()),
            Some(InputArtifact {
                bucket: ARTIFACT_BUCKET.into(),
                key,
                revision: "c0ffee".into(),
            }),
        );
        run_action(&self.stack, &spec).await.expect("action")
    }

    async fn deploy(&self, file: &str, options: Value) -> ActionOutcome {
        self.deploy_template(&fixture_template(file).unwrap(), options)
            .await
    }

    async fn status(&self, stack: &str) -> String {
        let out = self
            .cfn()
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .unwrap();
        out.stacks()[0].stack_status().unwrap().as_str().to_owned()
    }

    /// Logical id -> physical id of the stack's resources.
    async fn resources(&self, stack: &str) -> BTreeMap<String, String> {
        let out = self
            .cfn()
            .describe_stack_resources()
            .stack_name(stack)
            .send()
            .await
            .unwrap();
        out.stack_resources()
            .iter()
            .map(|r| {
                (
                    r.logical_resource_id().unwrap_or_default().to_owned(),
                    r.physical_resource_id().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    async fn bucket_exists(&self, name: &str) -> bool {
        self.stack.s3().head_bucket().bucket(name).send().await.is_ok()
    }

    /// Change sets of the stack that could still be executed.
    async fn executable_change_sets(&self, stack: &str) -> Vec<String> {
        let out = self
            .cfn()
            .list_change_sets()
            .stack_name(stack)
            .send()
            .await
            .unwrap();
        out.summaries()
            .iter()
            .filter(|s| s.execution_status().map(|e| e.as_str()) == Some("AVAILABLE"))
            .filter_map(|s| s.change_set_name().map(str::to_owned))
            .collect()
    }
}

fn keys(m: &BTreeMap<String, String>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

fn vars(outcome: &ActionOutcome) -> BTreeMap<&str, &str> {
    outcome
        .output_variables
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn assert_succeeded(outcome: &ActionOutcome) {
    assert_eq!(outcome.status, ActionStatus::Succeeded, "{outcome:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_path_creates_the_stack() {
    let w = DeployWorld::start().await;
    let out = w.deploy("v1.yaml", json!({})).await;
    assert_succeeded(&out);
    assert_eq!(vars(&out)["outcome"], "CREATED");
    assert_eq!(vars(&out)["stackName"], STACK);
    assert_eq!(w.status(STACK).await, "CREATE_COMPLETE");
    let res = w.resources(STACK).await;
    assert_eq!(keys(&res), ["Assets", "Uploads"]);
    for bucket in res.values() {
        assert!(w.bucket_exists(bucket).await, "{bucket}");
    }
    // The template's environmentName parameter was filled from the input, as the sample does.
    let stack = w.cfn().describe_stacks().stack_name(STACK).send().await.unwrap();
    let params: Vec<(&str, &str)> = stack.stacks()[0]
        .parameters()
        .iter()
        .map(|p| (p.parameter_key().unwrap(), p.parameter_value().unwrap()))
        .collect();
    assert_eq!(params, [("environmentName", "e2e")]);
    w.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_update_path_executes_the_change_set() {
    let w = DeployWorld::start().await;
    assert_succeeded(&w.deploy("v1.yaml", json!({})).await);
    let before = w.resources(STACK).await;

    let out = w.deploy("v2-add.yaml", json!({})).await;
    assert_succeeded(&out);
    let v = vars(&out);
    assert_eq!(v["outcome"], "UPDATED");
    assert_eq!(v["changeSetAction"], "CAN-SAFELY-UPDATE-EXISTING-STACK");
    assert_eq!(w.status(STACK).await, "UPDATE_COMPLETE");
    let after = w.resources(STACK).await;
    assert_eq!(keys(&after), ["Assets", "Reports", "Uploads"]);
    // The existing resources are the same ones; the new bucket exists.
    assert_eq!(after["Assets"], before["Assets"]);
    assert_eq!(after["Uploads"], before["Uploads"]);
    assert!(w.bucket_exists(&after["Reports"]).await);
    w.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modify_that_does_not_say_whether_it_replaces_is_refused_by_default() {
    let w = DeployWorld::start().await;
    assert_succeeded(&w.deploy("v1.yaml", json!({})).await);
    let before = w.resources(STACK).await;

    // The default policy: moto's Modify changes carry no Replacement and no details.
    let out = w.deploy("v2-add.yaml", json!({"policy": {}})).await;
    let Some((failure_type, message)) = out.status.failure() else {
        panic!("{out:#?}")
    };
    assert_eq!(failure_type, "JobFailed");
    assert!(message.contains("Error: UnsafeChangeSet."), "{message}");
    assert!(
        message.contains("Uploads (AWS::S3::Bucket): replacement not reported"),
        "{message}"
    );
    assert_eq!(
        w.resources(STACK).await,
        before,
        "the change set was never executed"
    );
    assert_eq!(w.status(STACK).await, "CREATE_COMPLETE");
    assert!(w.executable_change_sets(STACK).await.is_empty());
    w.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_path_deletes_the_change_set_and_leaves_the_stack_untouched() {
    let w = DeployWorld::start().await;
    assert_succeeded(&w.deploy("v1.yaml", json!({})).await);
    assert_succeeded(&w.deploy("v2-add.yaml", json!({})).await);
    let before = w.resources(STACK).await;
    let status_before = w.status(STACK).await;

    let out = w.deploy("v3-remove.yaml", json!({})).await;
    let Some((failure_type, message)) = out.status.failure() else {
        panic!("{out:#?}")
    };
    assert_eq!(failure_type, "JobFailed");
    assert!(
        message.contains("ended with status FAILED. Error: UnsafeChangeSet."),
        "{message}"
    );
    assert!(
        message.contains("Uploads (AWS::S3::Bucket): removed"),
        "{message}"
    );

    // Never executed: same resources, the removed bucket still exists, no change set left.
    let after = w.resources(STACK).await;
    assert_eq!(after, before);
    assert!(w.bucket_exists(&after["Uploads"]).await);
    assert_eq!(w.status(STACK).await, status_before);
    assert!(w.executable_change_sets(STACK).await.is_empty());
    w.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_op_path_succeeds_without_touching_the_stack() {
    let w = DeployWorld::start().await;
    assert_succeeded(&w.deploy("v1.yaml", json!({})).await);
    let before = w.resources(STACK).await;

    let out = w.deploy("v1.yaml", json!({})).await;
    assert_succeeded(&out);
    assert_eq!(vars(&out)["outcome"], "NO_CHANGES");
    assert_eq!(vars(&out)["changeSetAction"], "NO-CHANGES");
    assert_eq!(w.resources(STACK).await, before);
    assert_eq!(w.status(STACK).await, "CREATE_COMPLETE");
    assert!(w.executable_change_sets(STACK).await.is_empty());
    w.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_path_deploys_a_new_stack_beside_the_old_one() {
    let w = DeployWorld::start().await;
    assert_succeeded(&w.deploy("v1.yaml", json!({})).await);
    let before = w.resources(STACK).await;

    let out = w
        .deploy("v3-remove.yaml", json!({"onUnsafe": "blue-green"}))
        .await;
    assert_succeeded(&out);
    let v = vars(&out);
    assert_eq!(v["outcome"], "BLUE_GREEN");
    assert_eq!(v["stackName"], STACK);
    assert_eq!(v["changeSetAction"], "RESOURCES-BEING-DELETED-OR-REPLACED");
    assert!(v["unsafeChanges"].contains("Uploads (AWS::S3::Bucket): removed"));
    let new_stack = v["newStackName"];
    assert!(new_stack.starts_with("e2e-app-bg-"), "{new_stack}");

    assert_eq!(w.status(new_stack).await, "CREATE_COMPLETE");
    let green = w.resources(new_stack).await;
    assert_eq!(keys(&green), ["Assets", "Reports"]);
    for bucket in green.values() {
        assert!(w.bucket_exists(bucket).await);
    }
    // The original stack is untouched and its change set is gone.
    assert_eq!(w.resources(STACK).await, before);
    assert!(w.bucket_exists(&before["Uploads"]).await);
    assert_eq!(w.status(STACK).await, "CREATE_COMPLETE");
    assert!(w.executable_change_sets(STACK).await.is_empty());
    w.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_in_progress_stack_is_created_through_a_create_change_set() {
    let w = DeployWorld::start().await;
    // A CREATE change set that was never executed leaves the stack in REVIEW_IN_PROGRESS.
    w.cfn()
        .create_change_set()
        .stack_name(STACK)
        .change_set_name("abandoned")
        .change_set_type(aws_sdk_cloudformation::types::ChangeSetType::Create)
        .template_body(fixture_template("v1.yaml").unwrap())
        .parameters(
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key("environmentName")
                .parameter_value("e2e")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(w.status(STACK).await, "REVIEW_IN_PROGRESS");

    let out = w.deploy("v1.yaml", json!({})).await;
    assert_succeeded(&out);
    assert_eq!(vars(&out)["outcome"], "CREATED");
    // Looked up by the id the workflow reports: moto records a second stack of the same name for
    // a CREATE change set on a REVIEW_IN_PROGRESS stack (AWS reuses the stack); the id is right
    // on both.
    let id = vars(&out)["stackId"].to_owned();
    assert_eq!(w.status(&id).await, "CREATE_COMPLETE");
    assert_eq!(keys(&w.resources(&id).await), ["Assets", "Uploads"]);
    w.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_over_51200_bytes_goes_through_s3() {
    let w = DeployWorld::start().await;
    let padding = "x".repeat(60_000);
    let template = format!(
        "{}Metadata:\n  Padding: {padding}\n",
        fixture_template("v1.yaml").unwrap()
    );
    assert!(template.len() > 51_200);
    let out = w.deploy_template(&template, json!({})).await;
    assert_succeeded(&out);
    assert_eq!(w.status(STACK).await, "CREATE_COMPLETE");
    let staged = w
        .stack
        .s3()
        .list_objects_v2()
        .bucket(e2e::seed::TEMPLATE_BUCKET)
        .send()
        .await
        .unwrap();
    assert_eq!(staged.contents().len(), 1, "the template was staged once");
    assert!(
        staged.contents()[0]
            .key()
            .unwrap()
            .starts_with("templates/e2e-app/")
    );
    w.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_template_fails_the_pipeline_with_what_the_artifact_holds() {
    let w = DeployWorld::start().await;
    let out = w
        .deploy("v1.yaml", json!({"templatePath": "infra/missing.yaml"}))
        .await;
    let ActionStatus::Failed { message, .. } = &out.status else {
        panic!("{out:#?}")
    };
    assert!(message.contains("Error: TemplateNotFound"), "{message}");
    assert!(
        message.ends_with(
            "Error: TemplateNotFound. Cause: template infra/missing.yaml is not in the source artifact \
             (it holds: README.md, infra/app.yaml)"
        ),
        "{message}"
    );
    let missing = w.cfn().describe_stacks().stack_name(STACK).send().await;
    assert!(missing.is_err(), "no stack may be created");
    w.stack.stop().await;
}
