use lambda_common::metrics::Metrics;
use lambda_runtime::{LambdaEvent, service_fn};
use pipeline_trigger::{Config, Event, Trigger, metrics};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_common::init_tracing();
    let trigger = &Trigger::new(&lambda_common::sdk::load_config().await, Config::from_env());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = lambda_common::clock::deadline(&event.context);
        let mut metrics = Metrics::from_env(metrics::SERVICE);
        let result = match Event::try_from(event) {
            Ok(event) => trigger.invoke(event, deadline, &mut metrics).await,
            Err(e) => Err(e),
        };
        metrics.flush();
        result
    }))
    .await
}
