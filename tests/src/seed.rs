//! The world shared by the end-to-end tests, `make demo` and `make bench`: buckets, the sample's input file, a
//! source artifact and two small state machines (one succeeds, one fails like a rolled-back
//! deployment).

use anyhow::Context;

use crate::LocalStack;
use crate::pipeline::InputArtifact;
use crate::stack::repo_root;

pub const INPUT_BUCKET: &str = "pipeline-inputs";
pub const INPUT_KEY: &str = "deploy/prod.json";
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
    Ok(stack
        .sfn()
        .create_state_machine()
        .name(name)
        .definition(definition)
        .role_arn(stack.role_arn())
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
