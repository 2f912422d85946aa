//! End to end: a CodePipeline job, through the pipeline trigger, starts the real deploy state
//! machine (statemachines/deploy.asl.json) executed by moto, whose Task states run the real
//! Rust deploy steps against moto's CloudFormation. Every test checks the stack's real state
//! afterwards, not only the workflow's status.

use std::collections::BTreeMap;
use std::time::Instant;

use aws_sdk_sfn::types::HistoryEventType;
use deploy_steps::metrics::{CHANGE_SET_VERDICTS, CLOUDFORMATION_WAIT_SECONDS, STEP_OUTCOMES};
use e2e::approvals::{Approvals, REVIEW_BUCKET, decide};
use e2e::emf::{self, Datum};
use e2e::pipeline::{ActionOutcome, ActionSpec, ActionStatus, InputArtifact, run_action};
use e2e::seed::{ARTIFACT_BUCKET, fixture_template, seed_pipeline_inputs, zip_files};
use e2e::{FunctionOptions, LocalStack};
use serde_json::{Value, json};

const STACK: &str = "e2e-app";

/// A fresh local stack per test: its functions' logs, hence their metrics, are this test's alone.
struct DeployWorld {
    stack: LocalStack,
    approvals: Approvals,
    /// The deploy state machine: every execution the trigger started in this test.
    state_machine: String,
    started: Instant,
}

impl DeployWorld {
    async fn start() -> Self {
        let started = Instant::now();
        let stack = LocalStack::start().await.expect("local stack");
        seed_pipeline_inputs(&stack).await.expect("seed");
        let (deploy, approvals) = e2e::seed::deploy_workflow_with_approvals(&stack, "deploy")
            .await
            .expect("deploy workflow");
        e2e::seed::serve_trigger(&stack, &deploy, FunctionOptions::default())
            .await
            .expect("serve the trigger");
        Self {
            stack,
            approvals,
            state_machine: deploy,
            started,
        }
    }

    /// The review id of the approval the workflow waits for, once its token is kept.
    async fn pending_review(&self) -> String {
        e2e::approvals::pending_review(&self.stack).await.unwrap()
    }

    async fn object(&self, bucket: &str, key: &str) -> String {
        let out = self
            .stack
            .s3()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        String::from_utf8(out.body.collect().await.unwrap().into_bytes().to_vec()).unwrap()
    }

    /// Every function log of the deploy family and the trigger, joined.
    fn all_logs(&self) -> String {
        let mut names: Vec<&str> = deploy_steps::Step::ALL
            .iter()
            .map(|s| s.function_name())
            .collect();
        names.extend([e2e::approvals::APPROVE_FUNCTION, "pipeline-trigger"]);
        names
            .iter()
            .map(|n| self.stack.function_log(n))
            .collect::<Vec<_>>()
            .join("\n")
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

/// The path one deployment took, as far as the deploy workflow's metrics are concerned.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// CreateStack, then the stack's status until created: one wait, no change set.
    Created,
    /// A CREATE change set (a REVIEW_IN_PROGRESS stack), judged safe and executed: two waits.
    CreatedThroughChangeSet,
    /// A safe UPDATE change set, executed: two waits (the change set, the update).
    Updated,
    /// An unsafe change set never executed (failed, rejected, timed out, refused): one wait.
    NotExecuted,
    /// An unsafe change set, approved and executed: two waits.
    ApprovedUpdate,
    /// An unsafe change set, then a new stack beside: two waits (the change set, the new stack).
    BlueGreen,
    /// CloudFormation created no change set (moto refuses one without changes): no wait.
    NoChanges,
    /// Stopped before any change set or stack operation (bad input, drift): nothing.
    Stopped,
}

impl Path {
    /// (Safe, Unsafe, NoChanges verdicts, finished CloudFormation waits).
    fn expected(self) -> (u32, u32, u32, usize) {
        match self {
            Path::Created => (0, 0, 0, 1),
            Path::CreatedThroughChangeSet | Path::Updated => (1, 0, 0, 2),
            Path::NotExecuted => (0, 1, 0, 1),
            Path::ApprovedUpdate | Path::BlueGreen => (0, 1, 0, 2),
            Path::NoChanges => (0, 0, 1, 0),
            Path::Stopped => (0, 0, 0, 0),
        }
    }
}

/// The step name (`DEPLOY_STEP`) of a function ARN or name, `deploy-prepare` -> `prepare`.
fn step_of(function: &str) -> String {
    let name = function.rsplit_once(":function:").map_or(function, |(_, n)| n);
    let name = name.split(':').next().unwrap_or(name);
    let step = deploy_steps::Step::ALL
        .into_iter()
        .find(|s| s.function_name() == name)
        .unwrap_or_else(|| panic!("not a deploy step: {function}"));
    step.name().to_owned()
}

type Outcomes = BTreeMap<(String, String), f64>;

impl DeployWorld {
    /// Every deploy function's EMF data (the steps' and the approver's).
    fn deploy_metrics(&self) -> Vec<Datum> {
        let mut names: Vec<&str> = deploy_steps::Step::ALL
            .iter()
            .map(|s| s.function_name())
            .collect();
        names.push(e2e::approvals::APPROVE_FUNCTION);
        names
            .iter()
            .flat_map(|n| self.stack.metrics(n).unwrap_or_else(|e| panic!("{e:#}")))
            .collect()
    }

    /// Ground truth: every step invocation in the histories of this test's executions, as
    /// (Outcome, Step) -> count; a Lambda task's failure carries the function's `errorType`.
    async fn executed_steps(&self) -> Outcomes {
        let sfn = self.stack.sfn();
        let executions = sfn
            .list_executions()
            .state_machine_arn(&self.state_machine)
            .max_results(1000)
            .send()
            .await
            .unwrap();
        let mut outcomes = Outcomes::new();
        for execution in executions.executions() {
            let mut events = Vec::new();
            let mut token = None;
            loop {
                let page = sfn
                    .get_execution_history()
                    .execution_arn(execution.execution_arn())
                    .max_results(1000)
                    .set_next_token(token)
                    .send()
                    .await
                    .unwrap();
                events.extend(page.events().iter().cloned());
                token = page.next_token().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
            count_invocations(&events, &mut outcomes);
        }
        outcomes
    }

    /// Asserts the deploy workflow's metrics against what this test's deployments did: the
    /// verdicts and waits of `paths`, the step outcomes of the executions' histories plus
    /// `approve` (the outcomes of the approve function's answers, `Success` or its errorType).
    async fn assert_deploy_metrics(&self, paths: &[Path], approve: &[&str]) -> Vec<Datum> {
        let elapsed = self.started.elapsed().as_secs_f64();
        let data = self.deploy_metrics();
        for d in &data {
            assert_eq!(d.dimensions["Service"], "DeployWorkflow", "{d:?}");
        }
        let (mut safe, mut unsafe_, mut none, mut waits) = (0, 0, 0, 0);
        for p in paths {
            let (s, u, n, w) = p.expected();
            (safe, unsafe_, none, waits) = (safe + s, unsafe_ + u, none + n, waits + w);
        }
        let verdicts = |v| emf::sum(&data, CHANGE_SET_VERDICTS, &[("Verdict", v)]);
        assert_eq!(
            (verdicts("Safe"), verdicts("Unsafe"), verdicts("NoChanges")),
            (f64::from(safe), f64::from(unsafe_), f64::from(none)),
            "verdicts (Safe, Unsafe, NoChanges) of {paths:?}"
        );
        assert_eq!(
            emf::sum(&data, CHANGE_SET_VERDICTS, &[]),
            f64::from(safe + unsafe_ + none)
        );
        let waited = emf::values(&data, CLOUDFORMATION_WAIT_SECONDS, &[]);
        assert_eq!(
            waited.len(),
            waits,
            "one sample per finished wait of {paths:?}: {waited:?}"
        );
        for w in &waited {
            assert!(
                (0.0..=elapsed).contains(w),
                "a wait of {w} s in a test of {elapsed} s"
            );
        }
        let mut expected = self.executed_steps().await;
        for outcome in approve {
            *expected
                .entry(((*outcome).to_owned(), "approve".to_owned()))
                .or_default() += 1.0;
        }
        let mut counted = Outcomes::new();
        for d in data
            .iter()
            .filter(|d| d.name == STEP_OUTCOMES && d.dimensions.len() == 3)
        {
            let key = (d.dimensions["Outcome"].clone(), d.dimensions["Step"].clone());
            *counted.entry(key).or_default() += d.values.iter().sum::<f64>();
        }
        assert_eq!(counted, expected, "StepOutcomes by (Outcome, Step)");
        let total: f64 = expected.values().sum();
        assert_eq!(
            emf::sum(&data, STEP_OUTCOMES, &[]),
            total,
            "StepOutcomes under Service"
        );
        data
    }
}

/// Counts the step invocations of one execution's history: a Lambda task's scheduling and its
/// end (its function's errorType on failure); the `.waitForTaskToken` task's function succeeded
/// once the task is submitted (what comes after is the token's answer, not the function's).
fn count_invocations(events: &[aws_sdk_sfn::types::HistoryEvent], outcomes: &mut Outcomes) {
    let mut running: Option<String> = None;
    let mut waiting: Option<String> = None;
    for e in events {
        match e.r#type() {
            HistoryEventType::LambdaFunctionScheduled => {
                let details = e.lambda_function_scheduled_event_details().unwrap();
                running = Some(step_of(details.resource()));
            }
            HistoryEventType::LambdaFunctionSucceeded => {
                let step = running.take().unwrap();
                *outcomes.entry(("Success".into(), step)).or_default() += 1.0;
            }
            HistoryEventType::LambdaFunctionFailed => {
                let step = running.take().unwrap();
                let details = e.lambda_function_failed_event_details().unwrap();
                let error = details.error().unwrap().to_owned();
                *outcomes.entry((error, step)).or_default() += 1.0;
            }
            HistoryEventType::TaskScheduled => {
                let details = e.task_scheduled_event_details().unwrap();
                let params: Value = serde_json::from_str(details.parameters()).unwrap();
                waiting = Some(step_of(params["FunctionName"].as_str().unwrap()));
            }
            HistoryEventType::TaskSubmitted => {
                let step = waiting.take().unwrap();
                *outcomes.entry(("Success".into(), step)).or_default() += 1.0;
            }
            HistoryEventType::TaskFailed => {
                if let Some(step) = waiting.take() {
                    let details = e.task_failed_event_details().unwrap();
                    let error = details.error().unwrap().to_owned();
                    *outcomes.entry((error, step)).or_default() += 1.0;
                }
            }
            other => assert!(
                !matches!(
                    other,
                    HistoryEventType::LambdaFunctionTimedOut | HistoryEventType::LambdaFunctionStartFailed
                ),
                "a step that recorded nothing: {e:?}"
            ),
        }
    }
}

/// The count of StepOutcomes under (Outcome, Step).
fn outcome(data: &[Datum], outcome: &str, step: &str) -> f64 {
    emf::sum(data, STEP_OUTCOMES, &[("Outcome", outcome), ("Step", step)])
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
    w.assert_deploy_metrics(&[Path::Created], &[]).await;
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
    w.assert_deploy_metrics(&[Path::Created, Path::Updated], &[])
        .await;
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
    w.assert_deploy_metrics(&[Path::Created, Path::NotExecuted], &[])
        .await;
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
    w.assert_deploy_metrics(&[Path::Created, Path::Updated, Path::NotExecuted], &[])
        .await;
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
    w.assert_deploy_metrics(&[Path::Created, Path::NoChanges], &[])
        .await;
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
    w.assert_deploy_metrics(&[Path::Created, Path::BlueGreen], &[])
        .await;
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
    w.assert_deploy_metrics(&[Path::CreatedThroughChangeSet], &[])
        .await;
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
    w.assert_deploy_metrics(&[Path::Created], &[]).await;
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
    let data = w.assert_deploy_metrics(&[Path::Stopped], &[]).await;
    assert_eq!(outcome(&data, "TemplateNotFound", "prepare"), 1.0);
    assert_eq!(
        emf::sum(&data, STEP_OUTCOMES, &[("Outcome", "TemplateNotFound")]),
        1.0
    );
    w.stack.stop().await;
}

const ALICE: &str = "arn:aws:iam::123456789012:user/alice";

/// What the approver saw and did while the workflow waited.
struct Waited {
    review_id: String,
    token: String,
    review: Value,
    markdown: String,
    decided: (u16, Value),
}

impl DeployWorld {
    /// Runs the unsafe v3 deployment with `onUnsafe: approve`; once the approval is pending
    /// (and the trigger has polled the waiting execution), `act` runs with the review id.
    async fn deploy_awaiting<F, Fut>(&self, options: Value, act: F) -> (ActionOutcome, Waited)
    where
        F: FnOnce(String, Value) -> Fut,
        Fut: std::future::Future<Output = (u16, Value)>,
    {
        let mut options = options;
        options["onUnsafe"] = json!("approve");
        let waiting = async {
            let review_id = self.pending_review().await;
            let pending: Value = serde_json::from_str(
                &self
                    .object(REVIEW_BUCKET, &format!("approvals/{review_id}.json"))
                    .await,
            )
            .unwrap();
            let review: Value = serde_json::from_str(
                &self
                    .object(REVIEW_BUCKET, &format!("reviews/{review_id}/review.json"))
                    .await,
            )
            .unwrap();
            let markdown = self
                .object(REVIEW_BUCKET, &format!("reviews/{review_id}/review.md"))
                .await;
            // The trigger polls every 0.5 s: let it see the waiting execution.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            let decided = act(review_id.clone(), review.clone()).await;
            Waited {
                review_id,
                token: pending["taskToken"].as_str().unwrap().to_owned(),
                review,
                markdown,
                decided,
            }
        };
        tokio::join!(self.deploy("v3-remove.yaml", options), waiting)
    }

    async fn at_v2(&self) -> BTreeMap<String, String> {
        assert_succeeded(&self.deploy("v1.yaml", json!({})).await);
        assert_succeeded(&self.deploy("v2-add.yaml", json!({})).await);
        self.resources(STACK).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_unsafe_change_set_runs_once_approved_and_names_its_approver() {
    let w = DeployWorld::start().await;
    let before = w.at_v2().await;
    let s = &w.stack;
    let (out, waited) = w
        .deploy_awaiting(json!({}), |review_id, review| async move {
            let body = json!({"reviewId": review_id, "decision": "approve",
                "reason": "uploads move to the data stack", "fingerprint": review["fingerprint"]});
            decide(s, Some(ALICE), &body).await.unwrap()
        })
        .await;
    assert_eq!(waited.decided.0, 200, "{:?}", waited.decided);
    assert_eq!(waited.decided.1["decidedBy"], ALICE);
    assert_succeeded(&out);
    let v = vars(&out);
    assert_eq!(v["outcome"], "UPDATED");
    assert_eq!(v["approvedBy"], ALICE);
    assert_eq!(v["approvalReason"], "uploads move to the data stack");
    assert!(
        v["unsafeChanges"].contains("Uploads (AWS::S3::Bucket): removed"),
        "{v:?}"
    );
    // The pipeline said what it waited for.
    let md_uri = format!("s3://{REVIEW_BUCKET}/reviews/{}/review.md", waited.review_id);
    let waiting = format!(
        "waiting for approval of 1 unsafe change(s): Uploads (AWS::S3::Bucket) removed; review: {md_uri}"
    );
    assert!(out.summaries.contains(&waiting), "{:#?}", out.summaries);
    // The review, and the message published with it.
    assert_eq!(waited.review["offenceCount"], 1, "{}", waited.review);
    assert!(waited.markdown.contains("Uploads"), "{}", waited.markdown);
    let published = w.approvals.received(&w.stack).await.unwrap();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].subject, "Approve 1 unsafe change(s) to e2e-app?");
    assert!(
        published[0]
            .message
            .contains(&format!("\"reviewId\":\"{}\"", waited.review_id))
    );
    assert!(published[0].message.contains("Uploads"));
    // The token never left its object: not in the message, the review, or any log.
    assert!(!published[0].message.contains(&waited.token));
    assert!(!waited.markdown.contains(&waited.token));
    assert!(!w.all_logs().contains(&waited.token), "the task token was logged");
    // Applied: the bucket's resource is gone, the others are the same ones.
    assert_eq!(w.status(STACK).await, "UPDATE_COMPLETE");
    let after = w.resources(STACK).await;
    assert_eq!(keys(&after), ["Assets", "Reports"]);
    assert_eq!(after["Assets"], before["Assets"]);
    // A decision is taken once.
    let again = json!({"reviewId": waited.review_id, "decision": "approve"});
    let (status, body) = decide(&w.stack, Some(ALICE), &again).await.unwrap();
    assert_eq!(
        (status, body["errorType"].as_str()),
        (404, Some("ApprovalNotPending")),
        "{body}"
    );
    let data = w
        .assert_deploy_metrics(
            &[Path::Created, Path::Updated, Path::ApprovedUpdate],
            &["Success", "ApprovalNotPending"],
        )
        .await;
    assert_eq!(outcome(&data, "Success", "request-approval"), 1.0);
    w.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_change_set_is_deleted_and_the_failure_names_who_rejected_it_and_why() {
    let w = DeployWorld::start().await;
    let before = w.at_v2().await;
    let s = &w.stack;
    let (out, waited) = w
        .deploy_awaiting(json!({}), |review_id, _| async move {
            // Nobody decides without an IAM identity, or rejects without a reason.
            let anonymous = json!({"reviewId": review_id, "decision": "approve"});
            let (status, body) = decide(s, None, &anonymous).await.unwrap();
            assert_eq!(
                (status, body["errorType"].as_str()),
                (403, Some("NotAuthenticated"))
            );
            let no_reason = json!({"reviewId": review_id, "decision": "reject"});
            let (status, body) = decide(s, Some(ALICE), &no_reason).await.unwrap();
            assert_eq!(
                (status, body["errorType"].as_str()),
                (400, Some("InvalidDecision"))
            );
            let body = json!({"reviewId": review_id, "decision": "reject", "reason": "uploads still in use"});
            decide(s, Some(ALICE), &body).await.unwrap()
        })
        .await;
    assert_eq!(waited.decided.0, 200, "{:?}", waited.decided);
    let Some((failure_type, message)) = out.status.failure() else {
        panic!("{out:#?}")
    };
    assert_eq!(failure_type, "JobFailed");
    assert!(message.contains("Error: ChangeSetRejected."), "{message}");
    assert!(
        message.contains(ALICE) && message.contains("uploads still in use"),
        "{message}"
    );
    assert_eq!(w.resources(STACK).await, before);
    assert!(w.bucket_exists(&before["Uploads"]).await);
    assert!(w.executable_change_sets(STACK).await.is_empty());
    let data = w
        .assert_deploy_metrics(
            &[Path::Created, Path::Updated, Path::NotExecuted],
            &["NotAuthenticated", "InvalidDecision", "Success"],
        )
        .await;
    assert_eq!(outcome(&data, "NotAuthenticated", "approve"), 1.0);
    w.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_that_times_out_deletes_the_change_set() {
    let w = DeployWorld::start().await;
    let before = w.at_v2().await;
    let s = &w.stack;
    let (out, waited) = w
        .deploy_awaiting(json!({"approvalTimeoutSeconds": 3}), |review_id, _| async move {
            // Decide only after the wait ran out.
            tokio::time::sleep(std::time::Duration::from_secs(4)).await;
            let late = json!({"reviewId": review_id, "decision": "approve"});
            decide(s, Some(ALICE), &late).await.unwrap()
        })
        .await;
    let Some((failure_type, message)) = out.status.failure() else {
        panic!("{out:#?}")
    };
    assert_eq!(failure_type, "JobFailed");
    assert!(message.contains("Error: ApprovalTimedOut."), "{message}");
    assert_ne!(
        waited.decided.0, 200,
        "a late approval was accepted: {:?}",
        waited.decided
    );
    assert_eq!(w.resources(STACK).await, before);
    assert!(w.executable_change_sets(STACK).await.is_empty());
    let late = waited.decided.1["errorType"].as_str().unwrap();
    w.assert_deploy_metrics(&[Path::Created, Path::Updated, Path::NotExecuted], &[late])
        .await;
    w.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_set_replaced_after_its_review_is_never_executed() {
    let w = DeployWorld::start().await;
    let before = w.at_v2().await;
    let (s, cfn) = (&w.stack, w.cfn());
    let (out, waited) = w
        .deploy_awaiting(json!({}), |review_id, review| async move {
            // Between review and approval, someone swaps the change set for another of the same
            // name (here one that would put the stack back to v1: Reports removed instead).
            let id = review["changeSetId"].as_str().unwrap().to_owned();
            let name = review["changeSetName"].as_str().unwrap().to_owned();
            cfn.delete_change_set().change_set_name(&id).send().await.unwrap();
            cfn.create_change_set()
                .stack_name(STACK)
                .change_set_name(&name)
                .change_set_type(aws_sdk_cloudformation::types::ChangeSetType::Update)
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
            let body = json!({"reviewId": review_id, "decision": "approve", "reason": "as reviewed"});
            decide(s, Some(ALICE), &body).await.unwrap()
        })
        .await;
    assert_eq!(waited.decided.0, 200, "{:?}", waited.decided);
    let Some((_, message)) = out.status.failure() else {
        panic!("{out:#?}")
    };
    assert!(message.contains("Error: ChangeSetChanged."), "{message}");
    assert!(
        message.contains("not the change set that was approved"),
        "{message}"
    );
    // Neither the reviewed change nor the substitute ran.
    assert_eq!(w.resources(STACK).await, before);
    assert!(w.bucket_exists(&before["Uploads"]).await);
    let data = w
        .assert_deploy_metrics(&[Path::Created, Path::Updated, Path::NotExecuted], &["Success"])
        .await;
    assert_eq!(outcome(&data, "ChangeSetChanged", "execute-change-set"), 1.0);
    w.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_block_fails_closed_when_drift_cannot_be_detected() {
    // moto has no drift detection: `warn` (every other test) goes on saying so; `block` refuses.
    let w = DeployWorld::start().await;
    let before = w.at_v2().await;
    let out = w.deploy("v3-remove.yaml", json!({"drift": "block"})).await;
    let Some((failure_type, message)) = out.status.failure() else {
        panic!("{out:#?}")
    };
    assert_eq!(failure_type, "JobFailed");
    assert!(message.contains("Error: StackDrifted."), "{message}");
    assert!(message.contains("drift could not be detected"), "{message}");
    assert_eq!(w.resources(STACK).await, before);
    assert!(w.executable_change_sets(STACK).await.is_empty());
    // Under warn, the update's outputs say drift went unchecked.
    let ok = w.deploy("v2-add.yaml", json!({})).await;
    assert_succeeded(&ok);
    assert_eq!(vars(&ok)["outcome"], "NO_CHANGES");
    assert!(
        vars(&ok)["drift"].contains("going on without a drift check (drift: warn)"),
        "{ok:#?}"
    );
    w.assert_deploy_metrics(
        &[Path::Created, Path::Updated, Path::Stopped, Path::NoChanges],
        &[],
    )
    .await;
    w.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_sent_with_the_token_but_not_through_the_approver_executes_nothing() {
    // Step Functions shows the task token in the execution's history: whoever reads it can send
    // a decision. Only an approval the approve function recorded is executed.
    let w = DeployWorld::start().await;
    let before = w.at_v2().await;
    let s = &w.stack;
    let (out, waited) = w
        .deploy_awaiting(json!({}), |review_id, review| async move {
            let body = s
                .s3()
                .get_object()
                .bucket(REVIEW_BUCKET)
                .key(format!("approvals/{review_id}.json"))
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes();
            let pending: Value = serde_json::from_slice(&body).unwrap();
            let forged = json!({"approved": true, "decidedBy": ALICE, "reason": "looks fine",
                "reviewId": review_id, "changeSetId": review["changeSetId"], "fingerprint": review["fingerprint"]});
            s.sfn()
                .send_task_success()
                .task_token(pending["taskToken"].as_str().unwrap())
                .output(forged.to_string())
                .send()
                .await
                .unwrap();
            (200, forged)
        })
        .await;
    assert_eq!(waited.decided.0, 200);
    let Some((_, message)) = out.status.failure() else {
        panic!("{out:#?}")
    };
    assert!(message.contains("Error: ApprovalNotVerified."), "{message}");
    assert!(
        message.contains("was not recorded by the approve function"),
        "{message}"
    );
    assert_eq!(w.resources(STACK).await, before);
    assert!(w.bucket_exists(&before["Uploads"]).await);
    assert!(w.executable_change_sets(STACK).await.is_empty());
    let data = w
        .assert_deploy_metrics(&[Path::Created, Path::Updated, Path::NotExecuted], &[])
        .await;
    assert_eq!(outcome(&data, "ApprovalNotVerified", "execute-change-set"), 1.0);
    w.stack.stop().await;
}
