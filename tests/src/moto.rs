//! The moto server process: S3, CloudFormation and Step Functions (executing real ASL).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

pub struct Moto {
    child: Child,
    pub url: String,
}

/// A free loopback port (bound and released; the caller binds it next).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The Python that runs moto: the repo's venv's (`make setup`), or `$MOTO_PYTHON`.
pub fn moto_python_path(repo_root: &Path) -> PathBuf {
    std::env::var_os("MOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root.join(".venv/bin/python"))
}

impl Moto {
    /// Starts moto (`tests/moto/server.py`: moto's server with the local stack's Distributed Map
    /// extensions) on a free loopback port. `lambda_port` is where its Step Functions engine
    /// sends Lambda invocations (`http://localhost:$MOTO_PORT`): the gateway.
    pub async fn start(repo_root: &Path, lambda_port: u16, log: &Path) -> anyhow::Result<Self> {
        let server = moto_python_path(repo_root);
        if !server.is_file() {
            bail!(
                "{} not found: run `make setup` (or set MOTO_PYTHON)",
                server.display()
            );
        }
        let script = repo_root.join("tests/moto/server.py");
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
            let child = Command::new(&server)
                .arg(&script)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_PORT", lambda_port.to_string())
                .stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", server.display()))?;
            let mut moto = Self {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            match moto.wait_ready(Duration::from_secs(60)).await {
                Ok(()) => {
                    moto.configure().await?;
                    return Ok(moto);
                }
                Err(e) => {
                    last_err = Some(e);
                    moto.stop().await;
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("moto did not start")))
    }

    async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                bail!("moto_server exited with {status}");
            }
            if let Ok(r) = client
                .get(format!("{}/moto-api/data.json", self.url))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("moto_server did not answer within {limit:?}")
    }

    /// Turns on real execution of state machines.
    async fn configure(&self) -> anyhow::Result<()> {
        let r = reqwest::Client::new()
            .post(format!("{}/moto-api/config", self.url))
            .json(&serde_json::json!({"stepfunctions": {"execute_state_machine": true}}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("moto config refused: {}", r.status());
        }
        Ok(())
    }

    pub async fn stop(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
