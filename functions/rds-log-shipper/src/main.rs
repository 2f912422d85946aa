use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{LambdaEvent, run, service_fn};
use rds_log_shipper::ship::{Config, Request, Shipper};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_common::init_tracing();
    let config = Config::from_lookup(|k| std::env::var(k).ok())?;
    let sdk = lambda_common::sdk::load_config().await;
    // Throttling is expected under a shared budget: more retries, with backoff, than the default.
    let rds_conf = aws_sdk_rds::config::Builder::from(&sdk)
        .retry_config(aws_sdk_rds::config::retry::RetryConfig::standard().with_max_attempts(8))
        .build();
    let shipper = Shipper::new(
        aws_sdk_rds::Client::from_conf(rds_conf),
        lambda_common::sdk::s3_client(&sdk),
        config,
    );
    let shipper = &shipper;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let request: Request = serde_json::from_value(event.payload).unwrap_or_default();
        let left = Duration::from_millis(
            event.context.deadline.saturating_sub(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            ),
        );
        let deadline = (event.context.deadline > 0).then(|| Instant::now() + left);
        shipper
            .run(request, deadline)
            .await
            .map_err(|e| lambda_common::diagnostic(&e))
    }))
    .await
}
