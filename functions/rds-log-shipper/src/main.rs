use lambda_common::metrics::Metrics;
use lambda_runtime::{LambdaEvent, run, service_fn};
use rds_log_shipper::complete::CompleteDownloads;
use rds_log_shipper::{Config, Request, Shipper, report};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_common::init_tracing();
    let config = Config::from_env()?;
    let sdk = lambda_common::sdk::load_config().await;
    let mut shipper = Shipper::new(
        rds_log_shipper::rds::client(&sdk),
        lambda_common::sdk::s3_client(&sdk),
        config,
    );
    // Whole downloads (`catchup`) need the region and credentials to sign with.
    if let Some(complete) = CompleteDownloads::from_sdk(&sdk, |k| std::env::var(k).ok()) {
        shipper = shipper.with_complete_downloads(complete);
    }
    let shipper = &shipper;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = lambda_common::clock::deadline(&event.context);
        let request = Request::try_from(event.payload)?;
        let mut metrics = Metrics::from_env(report::SERVICE);
        let answer = shipper.handle(request, deadline, &mut metrics).await;
        metrics.flush();
        answer
    }))
    .await
}
