//! The binary of the nine deploy-step functions: `DEPLOY_STEP` says which step it runs.

use deploy_steps::{Config, Request, Steps, config};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_common::init_tracing();
    let step =
        config::step_from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let config = Config::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let steps = &Steps::new(&lambda_common::sdk::load_config().await, config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = lambda_common::clock::deadline(&event.context);
        steps.handle(Request::parse(step, event.payload)?, deadline).await
    }))
    .await
}
