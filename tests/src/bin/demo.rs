//! `make demo`: starts the local AWS stack, runs a CodePipeline action through the real
//! pipeline trigger against a state machine that succeeds, another that fails and an Express one
//! (with an output artifact), prints what a pipeline operator would see, and stops everything.

use std::process::ExitCode;

use e2e::approvals::{Approvals, decide, pending_review};
use e2e::pipeline::{ActionOutcome, ActionSpec, ActionStatus, InputArtifact, OutputArtifact, run_action};
use e2e::seed::{
    ARTIFACT_BUCKET, create_state_machine, create_state_machine_of_type, deploy_workflow_with_approvals,
    fixture_definition, fixture_template, put_object, seed_pipeline_inputs, serve_trigger, user_parameters,
    zip_files,
};
use e2e::{FunctionOptions, LocalStack};

/// Prints the metrics the functions published since the last call (CloudWatch EMF, as the
/// functions wrote them to their logs).
fn print_metrics(
    stack: &LocalStack,
    seen: &mut std::collections::BTreeMap<String, usize>,
) -> anyhow::Result<()> {
    let data = e2e::emf::since(stack.log_dir(), seen)?;
    println!(
        "\n--- Metrics published (CloudWatch EMF, namespace {}) ---",
        namespace(&data)
    );
    print!("{}", e2e::emf::table(&data));
    Ok(())
}

fn namespace(data: &[e2e::emf::Datum]) -> String {
    data.first()
        .map_or_else(|| "-".to_owned(), |d| d.namespace.clone())
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn print_outcome(title: &str, params: &str, outcome: &ActionOutcome) {
    println!("\n=== {title} ===");
    println!("UserParameters: {params}");
    println!("Invocations (each continuation is a new CodePipeline job):");
    for inv in &outcome.invocations {
        let Some(result) = &inv.result else {
            println!("  job {}…  NO RESULT (the action would hang)", short(&inv.job_id));
            continue;
        };
        let req = &result.request;
        let (state, text) = match result.operation.as_str() {
            "PutJobFailureResult" => (
                "Failed     ",
                format!(
                    "{}: {}",
                    req["failureDetails"]["type"].as_str().unwrap_or(""),
                    req["failureDetails"]["message"].as_str().unwrap_or("")
                ),
            ),
            _ if req.get("continuationToken").is_some() => (
                "In progress",
                req["executionDetails"]["summary"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            ),
            _ => (
                "Succeeded  ",
                req["executionDetails"]["summary"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            ),
        };
        println!("  job {}…  {state}  {text}", short(&inv.job_id));
    }
    println!(
        "Action status: {}",
        match &outcome.status {
            ActionStatus::Succeeded => "Succeeded".to_owned(),
            ActionStatus::Failed { failure_type, .. } => format!("Failed ({failure_type})"),
            ActionStatus::NoResult { .. } => "NO RESULT: the action would hang".to_owned(),
            ActionStatus::StillRunning => "still in progress".to_owned(),
        }
    );
    if let ActionStatus::Failed { message, .. } = &outcome.status {
        println!("Failure message: {message}");
    }
    if let Some(id) = &outcome.external_execution_id {
        println!("External execution id (linked from the console): {id}");
    }
    if !outcome.output_variables.is_empty() {
        println!("Output variables (#{{<namespace>.<name>}} in later actions):");
        for (k, v) in &outcome.output_variables {
            println!("  {k} = {v}");
        }
    }
}

async fn demo(stack: &LocalStack) -> anyhow::Result<bool> {
    println!("\n##### The pipeline trigger, with three small state machines #####");
    let artifact = seed_pipeline_inputs(stack).await?;
    let succeed = create_state_machine(
        stack,
        "deploy-succeeds",
        fixture_definition("wait-then-succeed.asl.json")?,
    )
    .await?;
    let fail = create_state_machine(
        stack,
        "deploy-fails",
        fixture_definition("wait-then-fail.asl.json")?,
    )
    .await?;
    serve_trigger(stack, &succeed, FunctionOptions::default()).await?;

    let params = user_parameters(None);
    let spec = ActionSpec::new("pipeline-trigger", Some(params.clone()), Some(artifact.clone()));
    let ok = run_action(stack, &spec).await?;
    print_outcome(
        "Action 1: deploy with the default state machine (succeeds)",
        &params,
        &ok,
    );

    let params = user_parameters(Some(&fail));
    let spec = ActionSpec::new("pipeline-trigger", Some(params.clone()), Some(artifact.clone()));
    let failed = run_action(stack, &spec).await?;
    print_outcome(
        "Action 2: deploy with a state machine that fails",
        &params,
        &failed,
    );

    let express = create_state_machine_of_type(
        stack,
        "deploy-express",
        fixture_definition("trigger-express-succeed.asl.json")?,
        aws_sdk_sfn::types::StateMachineType::Express,
    )
    .await?;
    let params = user_parameters(Some(&express));
    let mut spec = ActionSpec::new("pipeline-trigger", Some(params.clone()), Some(artifact));
    let key = "MyPipeline/DeployOutp/demo-express";
    spec.output_artifact = Some(OutputArtifact {
        name: "DeployOutput".into(),
        bucket: ARTIFACT_BUCKET.into(),
        key: key.into(),
        kms_key_id: None,
    });
    let express_run = run_action(stack, &spec).await?;
    print_outcome(
        "Action 3: an Express workflow (StartSyncExecution: one invocation) with an output artifact",
        &params,
        &express_run,
    );
    let artifact_zip = stack
        .s3()
        .get_object()
        .bucket(ARTIFACT_BUCKET)
        .key(key)
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    println!(
        "Output artifact s3://{ARTIFACT_BUCKET}/{key}: a {} B zip holding output.json",
        artifact_zip.len()
    );

    Ok(ok.status == ActionStatus::Succeeded
        && matches!(failed.status, ActionStatus::Failed { .. })
        && express_run.status == ActionStatus::Succeeded)
}

/// State transitions of an execution (what a Standard workflow bills), from its history.
async fn transitions(stack: &LocalStack, execution_arn: &str) -> anyhow::Result<usize> {
    let history = stack
        .sfn()
        .get_execution_history()
        .execution_arn(execution_arn)
        .max_results(1000)
        .send()
        .await?;
    Ok(history
        .events()
        .iter()
        .filter(|e| e.r#type().as_str().ends_with("StateEntered"))
        .count())
}

async fn stack_resources(cfn: &aws_sdk_cloudformation::Client, stack: &str) -> String {
    match cfn.describe_stack_resources().stack_name(stack).send().await {
        Ok(out) => {
            let mut names: Vec<&str> = out
                .stack_resources()
                .iter()
                .filter_map(|r| r.logical_resource_id())
                .collect();
            names.sort_unstable();
            format!("{} ({})", names.join(", "), names.len())
        }
        Err(_) => "(no such stack)".into(),
    }
}

/// Part two: the deploy workflow, the three paths of the original blog post and the no-op path.
async fn deploy_demo(stack: &LocalStack) -> anyhow::Result<bool> {
    println!("\n##### The deploy workflow (statemachines/deploy.asl.json) #####");
    let (deploy, approvals) = deploy_workflow_with_approvals(stack, "deploy").await?;
    stack.remove_function("pipeline-trigger").await;
    serve_trigger(stack, &deploy, FunctionOptions::default()).await?;
    let cfn = aws_sdk_cloudformation::Client::new(&stack.sdk);
    let runs = [
        ("Commit 1: a new stack (create path)", "v1.yaml", "Succeeded"),
        (
            "Commit 2: adds a bucket (safe update path)",
            "v2-add.yaml",
            "Succeeded",
        ),
        (
            "Commit 3: removes a bucket (unsafe: the change set is deleted, never executed)",
            "v3-remove.yaml",
            "Failed",
        ),
        (
            "Commit 4: no infrastructure change (no-op path)",
            "v2-add.yaml",
            "Succeeded",
        ),
    ];
    let mut all_as_expected = true;
    for (n, (title, template, expected)) in runs.into_iter().enumerate() {
        let (params, spec) = commit(stack, &format!("commit-{n}"), template, serde_json::json!({})).await?;
        let outcome = run_action(stack, &spec).await?;
        print_outcome(&format!("{title}, template {template}"), &params, &outcome);
        print_aftermath(stack, &cfn, &outcome).await?;
        let status = match outcome.status {
            ActionStatus::Succeeded => "Succeeded",
            ActionStatus::Failed { .. } => "Failed",
            _ => "other",
        };
        all_as_expected &= status == expected;
    }
    Ok(all_as_expected && approval_demo(stack, &cfn, &approvals).await?)
}

/// A commit of `template` as the source artifact `revision`, and the deploy action's
/// UserParameters and spec for it, with `options` added to the deployment input.
async fn commit(
    stack: &LocalStack,
    revision: &str,
    template: &str,
    options: serde_json::Value,
) -> anyhow::Result<(String, ActionSpec)> {
    let key = format!("MyPipeline/SourceArti/{revision}");
    let zip = zip_files(&[("infra/app.yaml", fixture_template(template)?.as_bytes())])?;
    put_object(stack, ARTIFACT_BUCKET, &key, &zip).await?;
    let mut input = serde_json::json!({
        "environmentName": "demo", "stackName": "app", "templatePath": "infra/app.yaml",
        // moto never says whether a Modify replaces its resource; AWS always does.
        "policy": {"unreportedReplacement": "allow"},
    });
    if let (Some(i), Some(o)) = (input.as_object_mut(), options.as_object()) {
        i.extend(o.clone());
    }
    let params = serde_json::json!({ "input": input }).to_string();
    let artifact = InputArtifact {
        bucket: ARTIFACT_BUCKET.into(),
        key,
        revision: revision.into(),
    };
    let spec = ActionSpec::new("pipeline-trigger", Some(params.clone()), Some(artifact));
    Ok((params, spec))
}

/// What an action left behind: its execution's state transitions and the stack's resources.
async fn print_aftermath(
    stack: &LocalStack,
    cfn: &aws_sdk_cloudformation::Client,
    outcome: &ActionOutcome,
) -> anyhow::Result<()> {
    if let Some(arn) = &outcome.external_execution_id {
        println!(
            "State transitions of this execution: {}",
            transitions(stack, arn).await?
        );
    }
    println!(
        "Stack demo-app resources afterwards: {}",
        stack_resources(cfn, "demo-app").await
    );
    Ok(())
}

/// Part three: the same unsafe commit with `onUnsafe: approve`: the review a person reads, their
/// approval, and the updated stack.
async fn approval_demo(
    stack: &LocalStack,
    cfn: &aws_sdk_cloudformation::Client,
    approvals: &Approvals,
) -> anyhow::Result<bool> {
    let options = serde_json::json!({"onUnsafe": "approve"});
    let (params, spec) = commit(stack, "commit-approve", "v3-remove.yaml", options).await?;
    let approver = async {
        let review_id = pending_review(stack).await?;
        let mut published = Vec::new();
        for _ in 0..10 {
            published.extend(approvals.received(stack).await?);
            if !published.is_empty() {
                break;
            }
        }
        for p in &published {
            println!(
                "\n--- Published to the approval topic. Subject: {} ---\n{}",
                p.subject, p.message
            );
        }
        // Let the trigger poll the waiting execution, as CodePipeline would.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let body = serde_json::json!({"reviewId": review_id, "decision": "approve",
            "reason": "the uploads bucket is retired"});
        println!("--- An approver (alice) decides through the approve function's URL ---");
        println!("  $ curl --aws-sigv4 \"aws:amz:$AWS_REGION:lambda\" … -d '{body}' \"$DEPLOY_APPROVE_URL\"");
        let (status, answer) = decide(stack, Some("arn:aws:iam::123456789012:user/alice"), &body).await?;
        println!("  → HTTP {status} {answer}");
        anyhow::Ok(status == 200 && !published.is_empty())
    };
    let (outcome, approved) = tokio::join!(run_action(stack, &spec), approver);
    let (outcome, approved) = (outcome?, approved?);
    print_outcome(
        "Commit 5: removes a bucket again, with onUnsafe approve (reviewed, approved, executed)",
        &params,
        &outcome,
    );
    print_aftermath(stack, cfn, &outcome).await?;
    Ok(approved && outcome.status == ActionStatus::Succeeded)
}

#[tokio::main]
async fn main() -> ExitCode {
    println!("Starting the local AWS stack (moto + Lambda runtime host + CodePipeline emulator)…");
    let stack = match LocalStack::start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("could not start the local AWS stack: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "Gateway: {}   logs: {}",
        stack.endpoint,
        stack.log_dir().display()
    );
    let mut seen = std::collections::BTreeMap::new();
    let result = match demo(&stack).await {
        Ok(true) => match print_metrics(&stack, &mut seen) {
            Ok(()) => deploy_demo(&stack).await,
            Err(e) => Err(e),
        },
        other => other,
    };
    let result = match result {
        Ok(true) => print_metrics(&stack, &mut seen).map(|()| true),
        other => other,
    };
    stack.stop().await;
    println!("\nLocal AWS stack stopped.");
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("the demo's actions did not end as expected");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
