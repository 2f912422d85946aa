//! `make stack`: runs the local AWS stack with every function until Ctrl-C, printing the
//! environment a shell needs to use it.

use std::time::Duration;

use e2e::{FunctionOptions, LocalStack};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let stack = LocalStack::start().await?;
    for name in ["pipeline-trigger"] {
        stack
            .add_function(
                name,
                FunctionOptions {
                    env: std::env::var("STATE_MACHINE_ARN")
                        .map(|a| vec![("STATE_MACHINE_ARN".to_owned(), a)])
                        .unwrap_or_default(),
                    timeout: Duration::from_secs(60),
                    ..FunctionOptions::default()
                },
            )
            .await?;
    }
    println!("Local AWS stack running. In another shell:");
    for (k, v) in stack.client_env() {
        println!("  export {k}={v}");
    }
    println!(
        "(HTTP_PROXY sends Step Functions' {} through the gateway, which serves only loopback \
         names and answers 403 for any other host: unset it for other HTTP traffic in that shell.)",
        stack.sfn_endpoint()
    );
    println!(
        "Recorded CodePipeline results: {}/_local/codepipeline/calls",
        stack.endpoint
    );
    println!("Logs: {}", stack.log_dir().display());
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    stack.stop().await;
    Ok(())
}
