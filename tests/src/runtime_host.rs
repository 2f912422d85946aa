//! A Lambda Runtime API host: runs the real function binaries as Lambda would and turns Lambda
//! Invoke calls into invocations of them.
//!
//! Each instance (process) of a function gets its own Runtime API endpoint
//! (`AWS_LAMBDA_RUNTIME_API`) on a loopback port, so the host knows which instance holds which
//! invocation. A function's instances share one queue of invocations: an instance takes the next
//! one with `GET /2018-06-01/runtime/invocation/next` and answers with `.../response` or
//! `.../error`, as on Lambda. When the invocations waiting outnumber the idle instances, another
//! instance is started, up to the function's concurrency. Instances' stdout and stderr go to one
//! log file per function.
//!
//! An instance that exits on its own is reported as Lambda reports it, at once (not as a
//! timeout): the invocation it was running fails with `Runtime.ExitError` (`RequestId: <id>
//! Error: Runtime exited with error: exit status <n>`); one that exits during its init (before it
//! ever asked for work, and without posting `/runtime/init/error`) fails the queued invocation
//! it was started for the same way. A timed-out invocation's instance is killed (Lambda resets
//! its sandbox), and only that instance.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

/// The value of `name` in an environment list: the last one set, as a process given the list
/// sees it.
pub fn last_env<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// How a function is run.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub max_instances: usize,
}

/// What an invocation produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler's response payload.
    Response(Bytes),
    /// The handler's error (`{"errorType", "errorMessage"}`), reported as `Unhandled`.
    Error(Bytes),
}

struct Pending {
    request_id: String,
    payload: Bytes,
    deadline_ms: u64,
    reply: oneshot::Sender<Outcome>,
}

struct FunctionState {
    spec: FunctionSpec,
    arn: String,
    log_path: PathBuf,
    queue_tx: mpsc::UnboundedSender<Pending>,
    queue_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    /// Request id -> where its outcome goes, and the instance running it.
    in_flight: Mutex<HashMap<String, (oneshot::Sender<Outcome>, usize)>>,
    /// Instance ids handed out.
    next_instance: AtomicUsize,
    idle: AtomicUsize,
    /// Invocations sent to the queue and not yet taken by an instance.
    queued: AtomicUsize,
    instances: Mutex<Vec<Instance>>,
    timings: Mutex<Vec<InstanceTiming>>,
    /// When an instance first asked for work: the end of the first instance's init.
    first_poll: Mutex<Option<Instant>>,
}

/// One instance: its process is owned by a watcher task, which reports an exit it did not ask
/// for ([`instance_exited`]).
struct Instance {
    id: usize,
    pid: Option<u32>,
    /// Cleared by the watcher when the process has exited.
    alive: Arc<AtomicBool>,
    /// Asks the watcher to kill the process.
    kill: Option<oneshot::Sender<()>>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Instance {
    fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

/// What the Runtime API endpoint of one instance knows about it.
#[derive(Debug, Clone)]
struct InstanceTag {
    id: usize,
    /// Set once the instance asked for work (its init is over).
    polled: Arc<AtomicBool>,
    /// Set when it posted `/runtime/init/error` (its queued invocation failed with that).
    init_error: Arc<AtomicBool>,
}

/// When an instance (process) was started.
#[derive(Debug, Clone, Copy)]
pub struct InstanceTiming {
    pub pid: u32,
    pub started: Instant,
}

/// A running function: its Runtime API endpoint and instances.
pub struct HostedFunction {
    state: Arc<FunctionState>,
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl HostedFunction {
    /// Starts the function's Runtime API endpoint; instances start on demand.
    pub async fn start(
        spec: FunctionSpec,
        region: &str,
        account: &str,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        if !spec.binary.is_file() {
            bail!("function binary {} does not exist", spec.binary.display());
        }
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let state = Arc::new(FunctionState {
            arn: format!("arn:aws:lambda:{region}:{account}:function:{}", spec.name),
            log_path: log_dir.join(format!("{}.log", spec.name)),
            spec,
            queue_tx,
            queue_rx: tokio::sync::Mutex::new(queue_rx),
            in_flight: Mutex::new(HashMap::new()),
            next_instance: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            instances: Mutex::new(Vec::new()),
            timings: Mutex::new(Vec::new()),
            first_poll: Mutex::new(None),
        });
        Ok(Self { state })
    }

    pub fn name(&self) -> &str {
        &self.state.spec.name
    }

    /// The function's ARN (unqualified).
    pub fn arn(&self) -> &str {
        &self.state.arn
    }

    /// The value of `name` in the function's environment (the last one set).
    pub fn env_var(&self, name: &str) -> Option<&str> {
        last_env(&self.state.spec.env, name)
    }

    pub fn log_path(&self) -> &Path {
        &self.state.log_path
    }

    /// The pids of the running instances.
    pub fn pids(&self) -> Vec<u32> {
        self.state
            .instances
            .lock()
            .map(|i| {
                i.iter()
                    .filter(|x| x.alive.load(Ordering::SeqCst))
                    .filter_map(|x| x.pid)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// When the first instance first asked for work.
    pub fn first_poll(&self) -> Option<Instant> {
        self.state.first_poll.lock().ok().and_then(|p| *p)
    }

    pub fn timings(&self) -> Vec<InstanceTiming> {
        self.state.timings.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Invokes the function and waits for its outcome (or its timeout).
    pub async fn invoke(&self, payload: Bytes) -> anyhow::Result<Outcome> {
        let state = &self.state;
        let request_id = uuid::Uuid::new_v4().to_string();
        let deadline_ms = epoch_ms() + state.spec.timeout.as_millis() as u64;
        let (reply, answer) = oneshot::channel();
        // A new instance when the invocations waiting outnumber the idle instances, as Lambda
        // starts a sandbox for every invocation no free one takes (comparing with idle == 0
        // alone, invocations arriving together all saw one idle instance and queued behind it).
        let waiting = state.queued.fetch_add(1, Ordering::SeqCst) + 1;
        let sent = if waiting > state.idle.load(Ordering::SeqCst) {
            self.spawn_instance_if_allowed()
        } else {
            Ok(())
        }
        .and_then(|()| {
            let pending = Pending {
                request_id: request_id.clone(),
                payload,
                deadline_ms,
                reply,
            };
            let stopped = |_| anyhow::anyhow!("function {} is stopped", state.spec.name);
            state.queue_tx.send(pending).map_err(stopped)
        });
        if let Err(e) = sent {
            // Never queued: not waiting either.
            state.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(e);
        }
        match tokio::time::timeout(state.spec.timeout, answer).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Ok(Outcome::Error(error_body(
                "Runtime.ExitError",
                "the function's runtime exited before answering",
            ))),
            Err(_) => {
                let holder = state
                    .in_flight
                    .lock()
                    .ok()
                    .and_then(|mut in_flight| in_flight.remove(&request_id))
                    .map(|(_, instance)| instance);
                // Lambda resets the sandbox of a timed-out invocation: the instance must not go
                // on making calls.
                if let Some(instance) = holder {
                    self.kill_instance(instance);
                }
                Ok(Outcome::Error(error_body(
                    "Sandbox.Timedout",
                    &format!(
                        "Task timed out after {:.2} seconds",
                        state.spec.timeout.as_secs_f64()
                    ),
                )))
            }
        }
    }

    fn kill_instance(&self, id: usize) {
        if let Ok(mut instances) = self.state.instances.lock() {
            for i in instances.iter_mut().filter(|i| i.id == id) {
                i.kill();
            }
        }
    }

    fn spawn_instance_if_allowed(&self) -> anyhow::Result<()> {
        let state = &self.state;
        let mut instances = state
            .instances
            .lock()
            .map_err(|_| anyhow::anyhow!("instance list poisoned"))?;
        // Forget instances that exited (crashed, or the runtime gave up).
        instances.retain(|i| i.alive.load(Ordering::SeqCst));
        if instances.len() >= state.spec.max_instances.max(1) {
            return Ok(());
        }
        let id = state.next_instance.fetch_add(1, Ordering::SeqCst);
        let tag = InstanceTag {
            id,
            polled: Arc::default(),
            init_error: Arc::default(),
        };
        let (runtime_api, server) = serve_runtime_api(state.clone(), tag.clone())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&state.log_path)
            .with_context(|| format!("opening {}", state.log_path.display()))?;
        let mut cmd = Command::new(&state.spec.binary);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", &state.spec.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", state.spec.name),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("local/{id}"))
            .env(
                "AWS_LAMBDA_FUNCTION_TIMEOUT",
                state.spec.timeout.as_secs().to_string(),
            )
            .envs(state.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                server.abort();
                return Err(e).with_context(|| format!("starting {}", state.spec.binary.display()));
            }
        };
        let started = Instant::now();
        let pid = child.id();
        if let Some(pid) = pid
            && let Ok(mut t) = state.timings.lock()
        {
            t.push(InstanceTiming { pid, started });
        }
        let alive = Arc::new(AtomicBool::new(true));
        let (kill, killed) = oneshot::channel::<()>();
        let watched = (state.clone(), alive.clone());
        let watcher = tokio::spawn(async move {
            let (state, alive) = watched;
            let (status, asked) = tokio::select! {
                status = child.wait() => (status, false),
                _ = killed => {
                    let _ = child.start_kill();
                    (child.wait().await, true)
                }
            };
            alive.store(false, Ordering::SeqCst);
            server.abort();
            if !asked {
                instance_exited(&state, &tag, status.ok());
            }
        });
        instances.push(Instance {
            id,
            pid,
            alive,
            kill: Some(kill),
            watcher,
        });
        Ok(())
    }

    /// Stops every instance (and its endpoint).
    pub async fn stop(&self) {
        let instances: Vec<Instance> = self
            .state
            .instances
            .lock()
            .map(|mut i| i.drain(..).collect())
            .unwrap_or_default();
        for mut instance in instances {
            instance.kill();
            let _ = instance.watcher.await;
        }
    }
}

/// Starts one instance's Runtime API endpoint: its address and server task.
fn serve_runtime_api(
    state: Arc<FunctionState>,
    tag: InstanceTag,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?.to_string();
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .layer(Extension(tag))
        .with_state(state);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((address, server))
}

/// How Lambda words a runtime's exit: `exit status 101`, `signal: killed`, ...
fn exit_text(status: Option<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Some(s) if s.code().is_some() => format!("exit status {}", s.code().unwrap_or_default()),
        Some(s) => match s.signal() {
            Some(9) => "signal: killed".to_owned(),
            Some(6) => "signal: aborted".to_owned(),
            Some(n) => format!("signal: {n}"),
            None => "exit status unknown".to_owned(),
        },
        None => "exit status unknown".to_owned(),
    }
}

/// An instance exited on its own: the invocation it held fails with `Runtime.ExitError`, as on
/// Lambda; one that never asked for work (it died during its init, without posting an init error)
/// fails the queued invocation it was started for.
fn instance_exited(state: &FunctionState, tag: &InstanceTag, status: Option<std::process::ExitStatus>) {
    let exit = exit_text(status);
    let held: Vec<(String, oneshot::Sender<Outcome>)> = state
        .in_flight
        .lock()
        .map(|mut in_flight| {
            let ids: Vec<String> = in_flight
                .iter()
                .filter(|(_, (_, instance))| *instance == tag.id)
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| in_flight.remove(&id).map(|(tx, _)| (id, tx)))
                .collect()
        })
        .unwrap_or_default();
    let fail = |request_id: &str, reply: oneshot::Sender<Outcome>| {
        let message = format!("RequestId: {request_id} Error: Runtime exited with error: {exit}");
        let _ = reply.send(Outcome::Error(error_body("Runtime.ExitError", &message)));
    };
    if !held.is_empty() {
        for (id, reply) in held {
            fail(&id, reply);
        }
        return;
    }
    if tag.polled.load(Ordering::SeqCst) || tag.init_error.load(Ordering::SeqCst) {
        return;
    }
    // Died during init: the queued invocation it was started for fails (unless an instance
    // waiting for work holds the queue, which then serves it).
    if let Ok(mut rx) = state.queue_rx.try_lock()
        && let Ok(pending) = rx.try_recv()
    {
        state.queued.fetch_sub(1, Ordering::SeqCst);
        fail(&pending.request_id, pending.reply);
    }
}

/// The peak resident set size (VmHWM) of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn error_body(error_type: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string())
}

/// Counts an instance as idle while it waits for work, however the wait ends (hyper drops the
/// handler when the instance disconnects).
struct IdleGuard<'a>(&'a AtomicUsize);

impl<'a> IdleGuard<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn next(State(state): State<Arc<FunctionState>>, Extension(tag): Extension<InstanceTag>) -> Response {
    tag.polled.store(true, Ordering::SeqCst);
    if let Ok(mut first) = state.first_poll.lock() {
        first.get_or_insert_with(Instant::now);
    }
    let pending = {
        let _idle = IdleGuard::new(&state.idle);
        let mut rx = state.queue_rx.lock().await;
        rx.recv().await
    };
    let Some(pending) = pending else {
        return StatusCode::GONE.into_response();
    };
    state.queued.fetch_sub(1, Ordering::SeqCst);
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put("lambda-runtime-aws-request-id", &pending.request_id);
    put("lambda-runtime-deadline-ms", &pending.deadline_ms.to_string());
    put("lambda-runtime-invoked-function-arn", &state.arn);
    put(
        "lambda-runtime-trace-id",
        &format!(
            "Root=1-{:08x}-{}",
            epoch_ms() / 1000,
            &pending.request_id.replace('-', "")[..24]
        ),
    );
    put("content-type", "application/json");
    if let Ok(mut in_flight) = state.in_flight.lock() {
        in_flight.insert(pending.request_id, (pending.reply, tag.id));
    }
    (StatusCode::OK, headers, pending.payload).into_response()
}

fn complete(state: &FunctionState, id: &str, outcome: Outcome) -> StatusCode {
    let reply = state.in_flight.lock().ok().and_then(|mut m| m.remove(id));
    match reply {
        Some((tx, _)) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn response(
    State(state): State<Arc<FunctionState>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    complete(&state, &id, Outcome::Response(body))
}

async fn invocation_error(
    State(state): State<Arc<FunctionState>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    complete(&state, &id, Outcome::Error(body))
}

async fn init_error(
    State(state): State<Arc<FunctionState>>,
    Extension(tag): Extension<InstanceTag>,
    body: Bytes,
) -> StatusCode {
    tag.init_error.store(true, Ordering::SeqCst);
    // The instance could not initialise: the queued invocations fail with its error, as Lambda
    // reports init errors. (If another instance is waiting for work it holds the queue and will
    // serve them instead.)
    if let Ok(mut rx) = state.queue_rx.try_lock() {
        while let Ok(pending) = rx.try_recv() {
            state.queued.fetch_sub(1, Ordering::SeqCst);
            let _ = pending.reply.send(Outcome::Error(body.clone()));
        }
    }
    StatusCode::ACCEPTED
}
