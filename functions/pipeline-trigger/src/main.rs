use lambda_runtime::{LambdaEvent, run, service_fn};
use pipeline_trigger::{Config, Trigger};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_common::init_tracing();
    let sdk = lambda_common::sdk::load_config().await;
    let trigger = Trigger {
        s3: lambda_common::sdk::s3_client(&sdk),
        sfn: aws_sdk_sfn::Client::new(&sdk),
        codepipeline: aws_sdk_codepipeline::Client::new(&sdk),
        config: Config::from_lookup(|k| std::env::var(k).ok()),
    };
    let trigger = &trigger;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        trigger
            .handle(event)
            .await
            .map_err(|e| lambda_common::diagnostic(&e))
    }))
    .await
}
