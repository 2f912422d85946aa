//! A stand-in for a bad build of a function (see `LocalStack::add_stand_in`): it takes one
//! invocation from the Lambda Runtime API, then exits with status 2 without answering it, as a
//! process that dies mid-invocation would. It never prints the event (it may hold credentials).

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").unwrap_or_default();
    let next = format!("http://{api}/2018-06-01/runtime/invocation/next");
    match reqwest::get(&next).await {
        Ok(response) => {
            let id = response
                .headers()
                .get("lambda-runtime-aws-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_owned();
            eprintln!("crash-mid-invocation: took invocation {id}; exiting without answering it");
        }
        Err(e) => eprintln!("crash-mid-invocation: no invocation from {next}: {e}"),
    }
    std::process::exit(2);
}
