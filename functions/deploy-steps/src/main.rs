//! The binary of every deploy function: `DEPLOY_STEP` says which step it runs, or `approve`.

use deploy_steps::approval::UrlRequest;
use deploy_steps::config::{self, Function};
use deploy_steps::{Config, Request, Steps};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_common::init_tracing();
    let function =
        config::function_from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let config = Config::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let steps = &Steps::new(&lambda_common::sdk::load_config().await, config);
    match function {
        Function::Step(step) => {
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
                let deadline = lambda_common::clock::deadline(&event.context);
                steps.handle(Request::parse(step, event.payload)?, deadline).await
            }))
            .await
        }
        Function::Approve => {
            lambda_runtime::run(service_fn(move |event: LambdaEvent<UrlRequest>| async move {
                let deadline = lambda_common::clock::deadline(&event.context);
                Ok::<_, lambda_runtime::Error>(steps.approve(event.payload, deadline).await)
            }))
            .await
        }
    }
}
