//! The binary of every deploy function: `DEPLOY_STEP` says which step it runs, or `approve`.
//! Each invocation's metrics are flushed once it ends, Ok or Err.

use deploy_steps::approval::UrlRequest;
use deploy_steps::config::{self, Function};
use deploy_steps::{Config, Request, Steps, steps};
use lambda_common::metrics::Metrics;
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
                let mut metrics = Metrics::from_env(deploy_steps::metrics::SERVICE);
                let result = match Request::parse(step, event.payload) {
                    Ok(request) => steps.handle(request, deadline, &mut metrics).await,
                    Err(e) => Err(steps::rejected(step, e, &mut metrics)),
                };
                metrics.flush();
                result
            }))
            .await
        }
        Function::Approve => {
            lambda_runtime::run(service_fn(move |event: LambdaEvent<UrlRequest>| async move {
                let deadline = lambda_common::clock::deadline(&event.context);
                let mut metrics = Metrics::from_env(deploy_steps::metrics::SERVICE);
                let response = steps.approve(event.payload, deadline, &mut metrics).await;
                metrics.flush();
                Ok::<_, lambda_runtime::Error>(response)
            }))
            .await
        }
    }
}
