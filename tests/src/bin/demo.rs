//! `make demo`: starts the local AWS stack, runs a CodePipeline action through the real
//! pipeline trigger against a state machine that succeeds and another that fails, prints what a
//! pipeline operator would see, and stops everything.

use std::process::ExitCode;

use e2e::pipeline::{ActionOutcome, ActionSpec, ActionStatus, run_action};
use e2e::seed::{create_state_machine, fixture_definition, seed_pipeline_inputs, user_parameters};
use e2e::{FunctionOptions, LocalStack};

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
    stack
        .add_function(
            "pipeline-trigger",
            FunctionOptions {
                env: vec![("STATE_MACHINE_ARN".into(), succeed.clone())],
                ..FunctionOptions::default()
            },
        )
        .await?;

    let params = user_parameters(None);
    let spec = ActionSpec::new("pipeline-trigger", Some(params.clone()), Some(artifact.clone()));
    let ok = run_action(stack, &spec).await?;
    print_outcome(
        "Action 1: deploy with the default state machine (succeeds)",
        &params,
        &ok,
    );

    let params = user_parameters(Some(&fail));
    let spec = ActionSpec::new("pipeline-trigger", Some(params.clone()), Some(artifact));
    let failed = run_action(stack, &spec).await?;
    print_outcome(
        "Action 2: deploy with a state machine that fails",
        &params,
        &failed,
    );

    Ok(ok.status == ActionStatus::Succeeded && matches!(failed.status, ActionStatus::Failed { .. }))
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
    let result = demo(&stack).await;
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
