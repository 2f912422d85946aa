//! The world shared by the end-to-end tests, `make demo` and `make bench`: buckets, the sample's input file, a
//! source artifact and two small state machines (one succeeds, one fails like a rolled-back
//! deployment).

use std::io::Write;

use anyhow::Context;

use crate::pipeline::InputArtifact;
use crate::stack::repo_root;
use crate::stack::{ACCOUNT, REGION};
use crate::{FunctionOptions, LocalStack};

pub const INPUT_BUCKET: &str = "pipeline-inputs";
pub const INPUT_KEY: &str = "deploy/prod.json";
/// The prefix the trigger may read input files under (template parameter `InputPrefix`).
pub const INPUT_PREFIX: &str = "deploy/";
/// The prefix of the stacks the deploy workflow manages here (`ManagedStackPrefix`): the tests'
/// inputs name environment `e2e`.
pub const MANAGED_STACK_PREFIX: &str = "e2e-";
/// The CloudFormation service role the deploy steps pass (`CloudFormationRoleArn`).
pub const CLOUDFORMATION_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/e2e-cloudformation";
pub const ARTIFACT_BUCKET: &str = "codepipeline-artifacts";
pub const ARTIFACT_KEY: &str = "MyPipeline/SourceArti/abc123";

/// Reads a state machine definition from `tests/fixtures/statemachines/`.
pub fn fixture_definition(file: &str) -> anyhow::Result<String> {
    let path = repo_root().join("tests/fixtures/statemachines").join(file);
    std::fs::read_to_string(&path).with_context(|| path.display().to_string())
}

pub async fn create_state_machine(
    stack: &LocalStack,
    name: &str,
    definition: String,
) -> anyhow::Result<String> {
    create_state_machine_of_type(
        stack,
        name,
        definition,
        aws_sdk_sfn::types::StateMachineType::Standard,
    )
    .await
}

/// Creates a state machine of the given type (the gateway remembers it, as Step Functions does).
pub async fn create_state_machine_of_type(
    stack: &LocalStack,
    name: &str,
    definition: String,
    kind: aws_sdk_sfn::types::StateMachineType,
) -> anyhow::Result<String> {
    Ok(stack
        .sfn()
        .create_state_machine()
        .name(name)
        .definition(definition)
        .role_arn(stack.role_arn())
        .r#type(kind)
        .send()
        .await
        .with_context(|| format!("CreateStateMachine {name}"))?
        .state_machine_arn)
}

pub async fn put_object(stack: &LocalStack, bucket: &str, key: &str, body: &[u8]) -> anyhow::Result<()> {
    stack
        .s3()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await
        .with_context(|| format!("PutObject s3://{bucket}/{key}"))?;
    Ok(())
}

/// Waits (up to 30 s) for an execution to end; returns its status and output.
pub async fn wait_for_execution(
    stack: &LocalStack,
    execution_arn: &str,
) -> anyhow::Result<(String, Option<String>)> {
    wait_for_execution_within(stack, execution_arn, std::time::Duration::from_secs(30)).await
}

/// [`wait_for_execution`] with another limit (a fleet's run takes minutes).
pub async fn wait_for_execution_within(
    stack: &LocalStack,
    execution_arn: &str,
    limit: std::time::Duration,
) -> anyhow::Result<(String, Option<String>)> {
    let sfn = stack.sfn();
    for _ in 0..limit.as_millis() / 100 {
        let d = sfn
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await?;
        if d.status().as_str() != "RUNNING" {
            let detail = d
                .output()
                .map(str::to_owned)
                .or_else(|| Some(format!("error {:?}, cause {:?}", d.error(), d.cause())));
            return Ok((d.status().as_str().to_owned(), detail));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("execution {execution_arn} still running after {limit:?}")
}

/// Creates the buckets, the sample's input file and a source artifact.
pub async fn seed_pipeline_inputs(stack: &LocalStack) -> anyhow::Result<InputArtifact> {
    for bucket in [INPUT_BUCKET, ARTIFACT_BUCKET] {
        stack
            .s3()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .with_context(|| format!("CreateBucket {bucket}"))?;
    }
    put_object(
        stack,
        INPUT_BUCKET,
        INPUT_KEY,
        br#"{"environmentName": "prod", "stackName": "sample-lambda-app", "templatePath": "infra/lambda-template.yaml"}"#,
    )
    .await?;
    put_object(stack, ARTIFACT_BUCKET, ARTIFACT_KEY, b"source zip").await?;
    for (parameter, value) in [
        ("InputBucketName", INPUT_BUCKET),
        ("InputPrefix", INPUT_PREFIX),
        ("ArtifactBucketName", ARTIFACT_BUCKET),
    ] {
        stack.bind_parameter(parameter, value);
    }
    Ok(InputArtifact {
        bucket: ARTIFACT_BUCKET.into(),
        key: ARTIFACT_KEY.into(),
        revision: "0f1e2d3c4b5a".into(),
    })
}

/// The sample's UserParameters, optionally naming the state machine.
pub fn user_parameters(state_machine_arn: Option<&str>) -> String {
    let mut p = serde_json::json!({"s3Bucket": INPUT_BUCKET, "stateMachineFile": INPUT_KEY});
    if let Some(arn) = state_machine_arn {
        p["stateMachineArn"] = serde_json::json!(arn);
    }
    p.to_string()
}

use deploy_steps::Step as DeployStep;

/// Bucket where the prepare step stages templates over 51,200 bytes.
pub const TEMPLATE_BUCKET: &str = "deploy-templates";

/// `statemachines/deploy.asl.json` with its `DefinitionSubstitutions` applied, as SAM would.
pub fn deploy_definition() -> anyhow::Result<String> {
    let path = repo_root().join("statemachines/deploy.asl.json");
    let mut def = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    for step in DeployStep::ALL {
        def = def.replace(
            &format!("${{{}}}", step.substitution()),
            &format!(
                "arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}",
                step.function_name()
            ),
        );
    }
    anyhow::ensure!(
        !def.contains("${"),
        "unsubstituted placeholder left in the deploy definition"
    );
    Ok(def)
}

/// Serves the pipeline trigger with `state_machine_arn` as its default state machine.
pub async fn serve_trigger(
    stack: &LocalStack,
    state_machine_arn: &str,
    options: FunctionOptions,
) -> anyhow::Result<()> {
    let mut options = options;
    options
        .env
        .push(("STATE_MACHINE_ARN".into(), state_machine_arn.to_owned()));
    stack.add_function("pipeline-trigger", options).await
}

/// Serves the deploy steps (short, bounded polling for local runs), creates the template
/// staging bucket and the deploy state machine; returns its ARN.
pub async fn deploy_workflow(stack: &LocalStack, name: &str) -> anyhow::Result<String> {
    Ok(deploy_workflow_with_approvals(stack, name).await?.0)
}

/// [`deploy_workflow`], with the approval path's bucket, topic and inbox, and the approve
/// function (`deploy-approve`).
pub async fn deploy_workflow_with_approvals(
    stack: &LocalStack,
    name: &str,
) -> anyhow::Result<(String, crate::approvals::Approvals)> {
    stack
        .s3()
        .create_bucket()
        .bucket(TEMPLATE_BUCKET)
        .send()
        .await
        .context("CreateBucket (template staging)")?;
    let approvals = crate::approvals::Approvals::create(stack).await?;
    stack.bind_parameter("ManagedStackPrefix", MANAGED_STACK_PREFIX);
    stack.bind_parameter("CloudFormationRoleArn", CLOUDFORMATION_ROLE_ARN);
    // By design the execute step may not list the review bucket (its keys name the pending
    // approvals): S3 answers a missing decision 403, not 404, and the step treats both alike.
    stack.expect_denied(
        "deploy-execute-change-set",
        "s3:ListBucket",
        &format!("arn:aws:s3:::{}", crate::approvals::REVIEW_BUCKET),
        "the execute step may not list the review bucket; a missing decision is a 403 to it",
    );
    let env = |step: &str| -> Vec<(String, String)> {
        [
            ("DEPLOY_STEP", step),
            ("POLL_INITIAL_SECONDS", "1"),
            ("POLL_MAX_SECONDS", "2"),
            ("POLL_MAX_ATTEMPTS", "10"),
            ("TEMPLATE_BUCKET", TEMPLATE_BUCKET),
            ("REVIEW_BUCKET", crate::approvals::REVIEW_BUCKET),
            ("APPROVAL_TOPIC_ARN", approvals.topic_arn.as_str()),
            ("CLOUDFORMATION_ROLE_ARN", CLOUDFORMATION_ROLE_ARN),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    // One binary serves every function, as in template.yaml: DEPLOY_STEP picks the step.
    let functions = DeployStep::ALL
        .map(|s| (s.function_name(), s.name()))
        .into_iter()
        .chain([(crate::approvals::APPROVE_FUNCTION, deploy_steps::config::APPROVE)]);
    for (function, step) in functions {
        stack
            .add_function_binary(
                function,
                crate::stack::binary_dir().join("deploy-steps"),
                FunctionOptions {
                    env: env(step),
                    max_instances: 2,
                    ..FunctionOptions::default()
                },
            )
            .await?;
    }
    let arn = create_state_machine(stack, name, deploy_definition()?).await?;
    // The template's own deploy workflow and approval topic, as the IAM check resolves them.
    stack.bind_resource("DeployStateMachine", &arn);
    stack.bind_resource("ApprovalTopic", &approvals.topic_arn);
    Ok((arn, approvals))
}

/// A zip of the given files, as a CodePipeline source artifact.
pub fn zip_files(files: &[(&str, &[u8])]) -> anyhow::Result<Vec<u8>> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, body) in files {
        w.start_file(*name, opts)?;
        w.write_all(body)?;
    }
    w.finish()?;
    Ok(buf.into_inner())
}

/// Reads a CloudFormation template from `tests/fixtures/templates/`.
pub fn fixture_template(file: &str) -> anyhow::Result<String> {
    let path = repo_root().join("tests/fixtures/templates").join(file);
    std::fs::read_to_string(&path).with_context(|| path.display().to_string())
}
