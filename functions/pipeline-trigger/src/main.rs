use lambda_runtime::{LambdaEvent, service_fn};
use pipeline_trigger::{Config, Request, Trigger};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_common::init_tracing();
    let trigger = &Trigger::new(&lambda_common::sdk::load_config().await, Config::from_env());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = lambda_common::clock::deadline(&event.context);
        trigger.handle(Request::try_from(event)?, deadline).await
    }))
    .await
}
