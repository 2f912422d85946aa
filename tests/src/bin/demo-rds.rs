//! `make demo` (RDS log shipper): a real PostgreSQL server writes its logs, under pgbench load,
//! into the directory the RDS emulator serves for instance `demo-postgres`; the shipper runs
//! during and after the load; the shipped objects are listed and verified byte for byte.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use e2e::rds::DbInstance;
use e2e::{FunctionOptions, LocalStack};
use rds_log_shipper::keys;

const INSTANCE: &str = "demo-postgres";
const BUCKET: &str = "demo-rds-logs";
const PREFIX: &str = "rds-logs";

/// PostgreSQL's binaries: `$PG_BINDIR`, else Debian's `/usr/lib/postgresql/<version>/bin`.
fn bindir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("PG_BINDIR") {
        return Ok(PathBuf::from(d));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (apt-get install postgresql)")?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    found.sort();
    found.pop().context("no initdb under /usr/lib/postgresql")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a PostgreSQL program, as the `postgres` user when this runs as root (PostgreSQL
/// refuses to run as root).
fn pg(bin: &Path, program: &str, args: &[&str]) -> Command {
    let exe = bin.join(program);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(args);
    cmd
}

fn chown_to_postgres(path: &Path) -> anyhow::Result<()> {
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()?
            .success();
        anyhow::ensure!(ok, "chown {} failed", path.display());
    }
    Ok(())
}

async fn invoke(stack: &LocalStack) -> anyhow::Result<serde_json::Value> {
    let out = stack
        .lambda()
        .invoke()
        .function_name("rds-log-shipper")
        .payload(aws_smithy_types::Blob::new(r#"{"source": "aws.events"}"#))
        .send()
        .await?;
    let payload = out.payload().map(|p| p.as_ref().to_vec()).unwrap_or_default();
    Ok(serde_json::from_slice(&payload)?)
}

async fn demo(stack: &LocalStack, work: &Path) -> anyhow::Result<bool> {
    let bin = bindir()?;
    let rds = stack.enable_rds()?;
    let logs = rds.add_instance(DbInstance {
        id: INSTANCE.into(),
        engine: "postgres".into(),
        cluster: None,
        tags: vec![],
    })?;
    let log_dir = logs.join("error");
    std::fs::create_dir_all(&log_dir)?;
    chown_to_postgres(&logs)?;
    stack.s3().create_bucket().bucket(BUCKET).send().await?;
    stack
        .add_function(
            "rds-log-shipper",
            FunctionOptions {
                env: vec![
                    ("LOG_BUCKET".into(), BUCKET.into()),
                    ("LOG_PREFIX".into(), PREFIX.into()),
                    ("FULL_LISTING_MINUTES".into(), "0".into()),
                ],
                timeout: Duration::from_secs(120),
                max_instances: 1,
                ..FunctionOptions::default()
            },
        )
        .await?;

    let data = work.join("data");
    let socket = work.join("socket");
    std::fs::create_dir_all(&socket)?;
    chown_to_postgres(work)?;
    let port = e2e::moto::free_port()?.to_string();
    println!("\n##### The RDS log shipper, with a real PostgreSQL server #####\n");
    println!(
        "initdb and start PostgreSQL ({}) logging into the emulator's directory for {INSTANCE}",
        bin.display()
    );
    let quiet = |mut c: Command| -> anyhow::Result<()> {
        let out = c.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    quiet(pg(
        &bin,
        "initdb",
        &[
            "-D",
            data.to_str().context("path")?,
            "-U",
            "postgres",
            "--auth=trust",
        ],
    ))?;
    let options = format!(
        "-c port={port} -c listen_addresses='' -c unix_socket_directories='{}' -c logging_collector=on \
         -c log_directory='{}' -c log_filename='postgresql.log.%Y-%m-%d-%H%M%S' -c log_rotation_size=256kB \
         -c log_file_mode=0644 -c log_statement=all -c log_min_duration_statement=0",
        socket.display(),
        log_dir.display()
    );
    quiet(pg(
        &bin,
        "pg_ctl",
        &[
            "-D",
            data.to_str().context("path")?,
            "-o",
            &options,
            "-l",
            work.join("server.log").to_str().context("path")?,
            "-w",
            "start",
        ],
    ))?;
    let result = load_and_ship(stack, &bin, &socket, &port, &log_dir).await;
    let _ = quiet(pg(
        &bin,
        "pg_ctl",
        &[
            "-D",
            data.to_str().unwrap_or_default(),
            "-m",
            "fast",
            "-w",
            "stop",
        ],
    ));
    result
}

async fn load_and_ship(
    stack: &LocalStack,
    bin: &Path,
    socket: &Path,
    port: &str,
    log_dir: &Path,
) -> anyhow::Result<bool> {
    let host = socket.to_str().context("path")?;
    let status = pg(
        bin,
        "pgbench",
        &[
            "-h", host, "-p", port, "-U", "postgres", "-i", "-s", "2", "postgres",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()?;
    anyhow::ensure!(status.success(), "pgbench -i failed");
    println!("pgbench: 6 seconds of load, the shipper running every 2 seconds meanwhile");
    let mut load = pg(
        bin,
        "pgbench",
        &[
            "-h", host, "-p", port, "-U", "postgres", "-c", "4", "-T", "6", "postgres",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()?;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let s = invoke(stack).await?;
        let i = &s["instances"][0];
        println!(
            "  run during load: {} file(s), {} bytes, {} object(s)",
            i["files"], i["bytes"], i["objects"]
        );
    }
    load.wait()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..2 {
        let s = invoke(stack).await?;
        let i = &s["instances"][0];
        println!(
            "  run after load:  {} file(s), {} bytes, {} object(s)",
            i["files"], i["bytes"], i["objects"]
        );
    }
    verify(stack, log_dir).await
}

async fn verify(stack: &LocalStack, log_dir: &Path) -> anyhow::Result<bool> {
    let listed = stack
        .s3()
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(format!("{PREFIX}/"))
        .send()
        .await?;
    println!("\nObjects in s3://{BUCKET}/ (Athena-friendly keys):");
    for o in listed.contents() {
        println!(
            "  {:>9} B  {}",
            o.size().unwrap_or(0),
            o.key().unwrap_or_default()
        );
    }
    let date = keys::date_from_epoch_ms(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64,
    );
    let mut names: Vec<String> = std::fs::read_dir(log_dir)?
        .flatten()
        .map(|e| format!("error/{}", e.file_name().to_string_lossy()))
        .collect();
    names.sort();
    println!("\nVerification (decompressed objects, concatenated in key order, against each log file):");
    let mut all_ok = true;
    let mut total = 0_usize;
    for name in &names {
        let expected = std::fs::read(log_dir.join(name.trim_start_matches("error/")))?;
        let prefix = keys::file_prefix(PREFIX, INSTANCE, name, &date);
        let mut objects: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .filter(|k| k.starts_with(&prefix))
            .collect();
        objects.sort();
        let mut shipped = Vec::new();
        for key in &objects {
            let body = stack.s3().get_object().bucket(BUCKET).key(key).send().await?;
            let gz = body.body.collect().await?.into_bytes();
            flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut shipped)?;
        }
        let ok = shipped == expected;
        all_ok &= ok;
        total += shipped.len();
        println!(
            "  {name}: {} bytes on disk, {} shipped in {} object(s): {}",
            expected.len(),
            shipped.len(),
            objects.len(),
            if ok { "identical" } else { "DIFFERENT" }
        );
    }
    let data = stack.metrics("rds-log-shipper")?;
    println!("\n--- Metrics published by the shipper (CloudWatch EMF) ---");
    print!("{}", e2e::emf::table(&data));
    let reported = e2e::emf::sum(&data, "BytesShipped", &[]);
    println!("BytesShipped reported: {reported} bytes; in S3: {total} bytes");
    Ok(all_ok && !names.is_empty() && reported == total as f64)
}

#[tokio::main]
async fn main() -> ExitCode {
    let stack = match LocalStack::start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("could not start the local AWS stack: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let work = std::env::temp_dir().join(format!("demo-postgres-{}", uuid::Uuid::new_v4().simple()));
    let result = match std::fs::create_dir_all(&work) {
        Ok(()) => demo(&stack, &work).await,
        Err(e) => Err(e.into()),
    };
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&work);
    match result {
        Ok(true) => {
            println!("\nEvery log file is in S3, byte for byte. Local AWS stack and PostgreSQL stopped.");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("some shipped files differ from the logs");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("RDS demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
