#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    deploy_steps::serve(deploy_steps::Step::ExecuteChangeSet).await
}
