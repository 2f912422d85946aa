//! The whole local AWS stack behind one loopback gateway, started and stopped by one call.
//!
//! Every endpoint is the gateway, `http://127.0.0.1:<port>`, except Step Functions', which is
//! [`LocalStack::sfn_endpoint`], `http://states.localhost:<port>`, reached through the gateway as
//! an HTTP proxy. The reason is `StartSyncExecution`: the SDK prepends its modelled host prefix
//! `sync-` to the endpoint's host even for a custom endpoint URL, and `sync-127.0.0.1` is no
//! host at all. `sync-states.localhost` is a name, and RFC 6761 reserves `*.localhost` for
//! loopback, but glibc does not resolve subdomains of `localhost`; so the functions get
//! `HTTP_PROXY=http://127.0.0.1:<port>` (which the SDK's HTTP client honours, with
//! `NO_PROXY=127.0.0.1,::1` so every other endpoint is reached directly) and the gateway serves
//! the proxied absolute-form requests itself, for loopback names only (see [`crate::gateway`]).
//! Nothing ever resolves `*.localhost`. Test code gets the same path from [`LocalStack::sfn_sync`].
//!
//! The gateway records every request it is sent in `calls.jsonl` in the stack's log directory
//! ([`crate::recorder`]; read back with [`LocalStack::calls`]) for the IAM least-privilege
//! check, which compares what each caller did with what its role allows. So that callers can be
//! told apart, each function gets its own access key id (`AKIALOCAL<11 digits>`, registered in
//! `callers.jsonl` with the function's name, binary and step); the harness's SDK config signs
//! with `test` (caller `harness`), moto's Step Functions engine with `ak` (`states-engine`), a
//! CodePipeline job's artifact credentials are registered when the job is invoked
//! ([`crate::pipeline::invoke_job`]), and tests may name more with [`LocalStack::register_caller`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;

use crate::codepipeline::{CodePipelineEmulator, RecordedCall};
use crate::gateway::{self, Gateway};
use crate::moto::Moto;
use crate::recorder::{self, Recorder};
use crate::runtime_host::{FunctionSpec, HostedFunction, last_env};
use crate::sfn::SfnEmulator;

pub const REGION: &str = "us-east-1";
/// moto's default account.
pub const ACCOUNT: &str = "123456789012";
/// The access key id of [`LocalStack::client_env`]; functions get their own instead.
pub const CLIENT_ACCESS_KEY_ID: &str = "AKIALOCALSTACKTEST";

/// The repository root (this crate lives in `<root>/tests`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where the workspace's binaries are: `$FUNCTION_BIN_DIR`, else next to the running executable
/// (`target/<profile>/`, also for test executables in `target/<profile>/deps/`).
pub fn binary_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FUNCTION_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// Options for one function served by the stack.
/// A function's environment from `(name, value)` pairs.
pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[derive(Debug, Clone)]
pub struct FunctionOptions {
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub max_instances: usize,
    pub rust_log: String,
}

impl Default for FunctionOptions {
    fn default() -> Self {
        Self {
            env: Vec::new(),
            timeout: Duration::from_secs(30),
            max_instances: 4,
            rust_log: "info".into(),
        }
    }
}

pub struct LocalStack {
    /// The gateway, `http://127.0.0.1:<port>`: every service's endpoint but Step Functions'.
    pub endpoint: String,
    pub sdk: aws_config::SdkConfig,
    gateway: Arc<Gateway>,
    server: tokio::task::JoinHandle<()>,
    moto: Moto,
    port: u16,
    log_dir: PathBuf,
    /// The secret key and session token handed to functions (Lambda always sets both): random,
    /// so a test can prove they are never logged.
    function_secret: String,
    function_session_token: String,
    /// How many function access key ids were handed out.
    function_keys: AtomicUsize,
}

impl LocalStack {
    /// Starts the gateway and moto (with Step Functions execution on). Logs go to a fresh
    /// directory under `target/local-stack/`.
    pub async fn start() -> anyhow::Result<Self> {
        let root = repo_root();
        let log_dir = binary_dir()
            .parent()
            .map_or_else(|| root.join("target"), Path::to_path_buf)
            .join("local-stack")
            .join(uuid::Uuid::new_v4().to_string());
        std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let gateway = Arc::new(Gateway {
            functions: RwLock::new(HashMap::new()),
            codepipeline: CodePipelineEmulator::default(),
            sfn: SfnEmulator::default(),
            rds: RwLock::new(None),
            moto_url: RwLock::new(String::new()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            region: REGION.into(),
            account: ACCOUNT.into(),
            recorder: Recorder::new(&log_dir),
            endpoint: format!("http://127.0.0.1:{port}"),
            event_invoke: RwLock::new(HashMap::new()),
        });
        for (key, caller) in [
            (recorder::HARNESS_ACCESS_KEY_ID, recorder::HARNESS),
            (recorder::STATES_ENGINE_ACCESS_KEY_ID, recorder::STATES_ENGINE),
            (CLIENT_ACCESS_KEY_ID, recorder::CLIENT_ENV),
        ] {
            gateway.recorder.register(key, caller, None, &BTreeMap::new());
        }
        let app = gateway::router(gateway.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let moto = Moto::start(&root, port, &log_dir.join("moto.log")).await?;
        if let Ok(mut url) = gateway.moto_url.write() {
            url.clone_from(&moto.url);
        }
        let endpoint = format!("http://127.0.0.1:{port}");
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(lambda_common::sdk::http_client())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&endpoint)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                recorder::HARNESS_ACCESS_KEY_ID,
                "test",
                None,
                None,
                "local-stack",
            ))
            .load()
            .await;
        Ok(Self {
            endpoint,
            sdk,
            gateway,
            server,
            moto,
            port,
            log_dir,
            function_secret: uuid::Uuid::new_v4().simple().to_string(),
            function_session_token: format!(
                "IQoJb3JpZ2luX2VjE{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ),
            function_keys: AtomicUsize::new(0),
        })
    }

    /// The secret access key and session token the functions run with.
    pub fn function_secret(&self) -> &str {
        &self.function_secret
    }

    pub fn function_session_token(&self) -> &str {
        &self.function_session_token
    }

    /// Step Functions' endpoint, `http://states.localhost:<port>`: reachable only through the
    /// gateway as HTTP proxy ([`Self::proxy_url`]); see the module documentation for why.
    pub fn sfn_endpoint(&self) -> String {
        format!("http://states.localhost:{}", self.port)
    }

    /// The gateway as an HTTP forward proxy, `http://127.0.0.1:<port>` (`HTTP_PROXY`).
    pub fn proxy_url(&self) -> String {
        self.endpoint.clone()
    }

    /// The environment a function (or any SDK client) needs to use this stack. Besides the
    /// credentials and `AWS_ENDPOINT_URL`: `AWS_ENDPOINT_URL_SFN` ([`Self::sfn_endpoint`]),
    /// `HTTP_PROXY` (the gateway) and `NO_PROXY=127.0.0.1,::1`, so that only Step Functions
    /// requests (`states.localhost`, `sync-states.localhost`) go through the proxy.
    pub fn client_env(&self) -> Vec<(String, String)> {
        let sfn_endpoint = self.sfn_endpoint();
        [
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ENDPOINT_URL", &self.endpoint),
            ("AWS_ENDPOINT_URL_SFN", &sfn_endpoint),
            ("HTTP_PROXY", &self.endpoint),
            ("NO_PROXY", "127.0.0.1,::1"),
            ("AWS_ACCESS_KEY_ID", CLIENT_ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", &self.function_secret),
            ("AWS_SESSION_TOKEN", &self.function_session_token),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Serves the workspace binary `name` as the Lambda function `name`.
    pub async fn add_function(&self, name: &str, options: FunctionOptions) -> anyhow::Result<()> {
        let binary = binary_dir().join(name);
        anyhow::ensure!(
            binary.is_file(),
            "{} is not built: run `cargo test --workspace --no-run` (make test and make demo do)",
            binary.display()
        );
        self.add_function_binary(name, binary, options).await
    }

    /// Serves `binary` (a workspace binary or a release `bootstrap`) as the Lambda function `name`,
    /// with an access key id of its own (a new one each time), registered as caller `name`.
    pub async fn add_function_binary(
        &self,
        name: &str,
        binary: PathBuf,
        options: FunctionOptions,
    ) -> anyhow::Result<()> {
        self.serve_function(name, binary, None, options).await
    }

    /// Serves `binary` as function `name`, registered as running `deployed_as` (else itself).
    async fn serve_function(
        &self,
        name: &str,
        binary: PathBuf,
        deployed_as: Option<&str>,
        options: FunctionOptions,
    ) -> anyhow::Result<()> {
        let n = self.function_keys.fetch_add(1, Ordering::Relaxed) + 1;
        let key = format!("AKIALOCAL{n:011}");
        // Every reader of a function's environment takes a variable's last value.
        let mut env = self.client_env();
        env.push(("AWS_ACCESS_KEY_ID".into(), key));
        env.push(("RUST_LOG".into(), options.rust_log.clone()));
        env.extend(options.env);
        let registered = deployed_as.map_or_else(|| binary.clone(), PathBuf::from);
        self.register_function(name, &registered, &env);
        let spec = FunctionSpec {
            name: name.to_owned(),
            binary,
            env,
            timeout: options.timeout,
            max_instances: options.max_instances,
        };
        let hosted = HostedFunction::start(spec, REGION, ACCOUNT, &self.log_dir).await?;
        self.gateway
            .functions
            .write()
            .map_err(|_| anyhow::anyhow!("function table poisoned"))?
            .insert(name.to_owned(), Arc::new(hosted));
        Ok(())
    }

    /// Registers the access key id a function runs with (the last `AWS_ACCESS_KEY_ID` of `env`,
    /// as the process sees it) as caller `name`.
    fn register_function(&self, name: &str, binary: &Path, env: &[(String, String)]) {
        let Some(key) = last_env(env, "AWS_ACCESS_KEY_ID") else {
            return;
        };
        // The function's own configuration (what the template would set), not the stack's
        // client environment: an IAM check reads the parameters the tests used from it.
        let recorded: BTreeMap<String, String> = env
            .iter()
            .filter(|(k, _)| !recorder::is_stack_env(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let binary = binary.file_name().and_then(|b| b.to_str());
        self.gateway.recorder.register(key, name, binary, &recorded);
    }

    /// Serves `binary` as the Lambda function `name`, registered for the IAM check as running the
    /// workspace binary `deployed_as`: a stand-in for a bad build of that function (one that
    /// crashes), so that what Lambda does on its behalf (delivering its failure record to its
    /// destination) is checked against that function's role.
    pub async fn add_stand_in(
        &self,
        name: &str,
        binary: PathBuf,
        deployed_as: &str,
        options: FunctionOptions,
    ) -> anyhow::Result<()> {
        self.serve_function(name, binary, Some(deployed_as), options)
            .await
    }

    /// Gives function `name` an event-invoke configuration: its asynchronous invocations are
    /// retried and their failure record delivered as Lambda does ([`crate::lambda_async`]).
    pub fn set_event_invoke_config(&self, name: &str, config: crate::lambda_async::EventInvokeConfig) {
        if let Ok(mut configs) = self.gateway.event_invoke.write() {
            configs.insert(name.to_owned(), config);
        }
    }

    /// Records a `template.yaml` parameter this test deploys with, for the IAM check (the
    /// parameters a function's environment carries are read from `callers.jsonl`).
    pub fn bind_parameter(&self, name: &str, value: &str) {
        self.gateway.recorder.bind_parameter(name, value);
    }

    /// Records, for the IAM check, that the `template.yaml` resource `logical` is the resource
    /// named (or with the ARN) `value` in this test.
    pub fn bind_resource(&self, logical: &str, value: &str) {
        self.gateway.recorder.bind_resource(logical, value);
    }

    /// Declares, for the IAM check, that `caller`'s `action` on resources under
    /// `resource_prefix` is meant to be refused in AWS (moto enforces no IAM, so the test sees
    /// another answer); the check fails if the template allows it.
    pub fn expect_denied(&self, caller: &str, action: &str, resource_prefix: &str, why: &str) {
        self.gateway
            .recorder
            .expect_denied(caller, action, resource_prefix, why);
    }

    /// Names the requests signed with `access_key_id` as `caller`'s in `calls.jsonl`.
    pub fn register_caller(&self, access_key_id: &str, caller: &str) {
        self.gateway
            .recorder
            .register(access_key_id, caller, None, &BTreeMap::new());
    }

    /// Every request recorded so far (`calls.jsonl`), in order; see [`crate::recorder::Call`].
    pub fn calls(&self) -> Vec<serde_json::Value> {
        self.gateway.recorder.calls()
    }

    /// Turns on the RDS log API emulator; its log files live under the stack's log directory. It
    /// checks `DownloadCompleteLogFile` signatures with the stack's credentials.
    pub fn enable_rds(&self) -> anyhow::Result<Arc<crate::rds::RdsEmulator>> {
        let rds = Arc::new(crate::rds::RdsEmulator::new(&self.log_dir.join("rds"))?);
        // Who can sign its `DownloadCompleteLogFile` requests: the harness (`test`/`test`), and
        // the functions and the client environment (their keys, the stack's function secret).
        let secret = self.function_secret.clone();
        rds.set_secrets(Arc::new(move |key: &str| {
            if key == recorder::HARNESS_ACCESS_KEY_ID {
                Some("test".to_owned())
            } else if key == CLIENT_ACCESS_KEY_ID || key.starts_with("AKIALOCAL") {
                Some(secret.clone())
            } else {
                None
            }
        }));
        *self
            .gateway
            .rds
            .write()
            .map_err(|_| anyhow::anyhow!("rds slot poisoned"))? = Some(rds.clone());
        Ok(rds)
    }

    pub fn function(&self, name: &str) -> Option<Arc<HostedFunction>> {
        self.gateway.functions.read().ok()?.get(name).cloned()
    }

    /// Stops one function's instances and forgets it.
    pub async fn remove_function(&self, name: &str) {
        let removed = self
            .gateway
            .functions
            .write()
            .ok()
            .and_then(|mut f| f.remove(name));
        if let Some(f) = removed {
            f.stop().await;
        }
    }

    /// Everything the function has logged so far (all instances).
    pub fn function_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The CloudWatch EMF metrics function `name` has written to its log so far.
    pub fn metrics(&self, name: &str) -> anyhow::Result<Vec<crate::emf::Datum>> {
        crate::emf::parse(&self.function_log(name))
            .with_context(|| format!("the EMF lines of function {name}"))
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// A Step Functions client at the gateway's address: every operation but
    /// `StartSyncExecution` (its `sync-127.0.0.1` host does not resolve; use [`Self::sfn_sync`]).
    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.sdk)
    }

    /// A Step Functions client the way the functions reach Step Functions: endpoint
    /// [`Self::sfn_endpoint`] through the gateway as HTTP proxy, so `StartSyncExecution`
    /// (`sync-states.localhost`) works too.
    pub fn sfn_sync(&self) -> anyhow::Result<aws_sdk_sfn::Client> {
        use aws_smithy_http_client::{ConnectorBuilder, proxy::ProxyConfig, tls};
        let proxy = ProxyConfig::http(self.proxy_url())
            .map_err(|e| anyhow::anyhow!("proxy {}: {e}", self.proxy_url()))?
            .no_proxy("127.0.0.1,::1");
        let http_client = aws_smithy_http_client::Builder::new().build_with_connector_fn(
            move |settings, runtime_components| {
                let mut builder = ConnectorBuilder::default()
                    .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring));
                builder.set_connector_settings(settings.cloned());
                if let Some(components) = runtime_components {
                    builder.set_sleep_impl(components.sleep_impl());
                }
                builder.set_proxy_config(Some(proxy.clone()));
                builder.build()
            },
        );
        let conf = aws_sdk_sfn::config::Builder::from(&self.sdk)
            .endpoint_url(self.sfn_endpoint())
            .http_client(http_client)
            .build();
        Ok(aws_sdk_sfn::Client::from_conf(conf))
    }

    /// The next `count` requests of the Step Functions operation `operation` (e.g.
    /// `"DescribeExecution"`, from any client) are answered `400 ThrottlingException` ("Rate
    /// exceeded") instead of reaching moto. The SDK's standard retry makes up to 3 attempts per
    /// call: inject 3 for one failed call.
    pub fn throttle_sfn(&self, operation: &str, count: usize) {
        self.gateway.sfn.throttle(operation, count);
    }

    /// How many `ThrottlingException`s were injected into `operation` so far.
    pub fn sfn_throttled(&self, operation: &str) -> usize {
        self.gateway.sfn.throttled(operation)
    }

    /// The Step Functions emulator (state machine types, `StartSyncExecution`'s time limit).
    pub fn sfn_emulator(&self) -> &SfnEmulator {
        &self.gateway.sfn
    }

    pub fn lambda(&self) -> aws_sdk_lambda::Client {
        aws_sdk_lambda::Client::new(&self.sdk)
    }

    /// Every call the CodePipeline emulator received, in order.
    pub fn codepipeline_calls(&self) -> Vec<RecordedCall> {
        self.gateway.codepipeline.calls()
    }

    /// The ARN of a role for state machines (moto does not check it).
    pub fn role_arn(&self) -> String {
        format!("arn:aws:iam::{ACCOUNT}:role/local-stack-states")
    }

    /// Stops the functions, moto and the gateway. (Dropping the stack also kills the processes.)
    pub async fn stop(mut self) {
        let functions: Vec<_> = self
            .gateway
            .functions
            .write()
            .map(|mut f| f.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        for f in functions {
            f.stop().await;
        }
        self.moto.stop().await;
        self.server.abort();
    }
}
