//! `bench-shipper --catch-up HOURS,MB` (`make bench-catchup`): a multi-day backlog of one
//! instance, `HOURS` hourly PostgreSQL files of about `MB` megabytes each (the last one still
//! being written), shipped twice under the emulator's throttle at the account's budget (300
//! burst, 12 requests/s, for the portion API and the whole-download endpoint each) with the
//! client limit set to the same budget: once by portions only (`COMPLETE_DOWNLOADS=false`), once
//! with whole downloads (the default). Runs are repeated until the instance is complete; it
//! prints and records the requests, wall time and peak RSS of each side.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use axum::body::Bytes;
use e2e::LocalStack;
use e2e::rds::{DbInstance, RdsEmulator, Throttle};
use e2e::runtime_host::{Outcome, peak_rss_kib};

use super::{BUCKET, append_log, record_section};

pub struct Side {
    pub name: &'static str,
    pub runs: u32,
    pub seconds: f64,
    pub portion_requests: u64,
    pub whole_requests: u64,
    pub all_requests: u64,
    pub throttled: u64,
    pub shipped_mb: f64,
    pub objects: u64,
    pub rss_mb: f64,
}

pub struct Backlog {
    pub files: u32,
    pub total_mb: f64,
    pub sides: Vec<Side>,
}

/// `HOURS,MB`.
pub fn parse(v: &str) -> anyhow::Result<(u32, u64)> {
    let (h, mb) = v.split_once(',').context("--catch-up HOURS,MB")?;
    Ok((h.trim().parse()?, mb.trim().parse()?))
}

/// Writes the backlog into `dir`: file `h` last written `hours - h` hours ago, the last one now.
fn write_backlog(dir: &Path, hours: u32, mb: u64) -> anyhow::Result<u64> {
    let mut total = 0;
    let start = SystemTime::now() - Duration::from_secs(u64::from(hours) * 3600);
    for h in 0..hours {
        let day = 20 + h / 24;
        let path = dir.join(format!("error/postgresql.log.2026-11-{day:02}-{:02}", h % 24));
        std::fs::create_dir_all(path.parent().context("parent")?)?;
        append_log(&path, mb * 1_000_000, u64::from(h) * 1_000_000)?;
        total += std::fs::metadata(&path)?.len();
        if h + 1 < hours {
            let written = start + Duration::from_secs(u64::from(h + 1) * 3600);
            std::fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(written)?;
        }
    }
    Ok(total)
}

fn counts(rds: &RdsEmulator) -> (u64, u64, u64, u64) {
    let (calls, throttled) = rds.calls();
    let get = |a: &str| calls.get(a).copied().unwrap_or(0);
    (
        get("DownloadDBLogFilePortion"),
        get("DownloadCompleteLogFile"),
        calls.values().sum(),
        throttled,
    )
}

/// Ships instance `id` with `shipper` until complete; one side of the comparison.
async fn ship(
    stack: &LocalStack,
    rds: &RdsEmulator,
    shipper: &Path,
    (name, id, whole): (&'static str, &str, bool),
) -> anyhow::Result<Side> {
    let function = format!("shipper-{id}");
    let env = e2e::env(&[
        ("LOG_BUCKET", BUCKET),
        ("INSTANCES", id),
        ("RDS_REQUESTS_PER_SECOND", "12"),
        ("RDS_BURST", "300"),
        ("FULL_LISTING_MINUTES", "0"),
        ("COMPLETE_DOWNLOADS", if whole { "true" } else { "false" }),
    ]);
    let f = super::serve_shipper(stack, &function, shipper, env, 1).await?;
    // Each side starts with full token buckets, as after a quiet spell.
    rds.set_throttle(Some(Throttle::default()));
    rds.set_complete_throttle(Some(Throttle::default()));
    let before = counts(rds);
    let (started, mut runs, mut shipped, mut objects) = (Instant::now(), 0, 0u64, 0u64);
    loop {
        runs += 1;
        let payload = Bytes::from(format!(r#"{{"action": "ship", "instance": "{id}"}}"#));
        let summary = match f.invoke(payload).await? {
            Outcome::Response(b) => serde_json::from_slice::<serde_json::Value>(&b)?,
            Outcome::Error(b) => bail!("shipper failed: {}", String::from_utf8_lossy(&b)),
        };
        shipped += summary["bytes"].as_u64().unwrap_or(0);
        objects += summary["objects"].as_u64().unwrap_or(0);
        if summary["complete"] == true {
            break;
        }
        anyhow::ensure!(runs < 20, "not complete after {runs} runs: {summary}");
    }
    let seconds = started.elapsed().as_secs_f64();
    let rss_kib = f.pids().first().and_then(|p| peak_rss_kib(*p)).unwrap_or(0);
    stack.remove_function(&function).await;
    let after = counts(rds);
    let side = Side {
        name,
        runs,
        seconds,
        portion_requests: after.0 - before.0,
        whole_requests: after.1 - before.1,
        all_requests: after.2 - before.2,
        throttled: after.3 - before.3,
        shipped_mb: shipped as f64 / 1_000_000.0,
        objects,
        rss_mb: rss_kib as f64 / 1024.0,
    };
    eprintln!(
        "{name}: {:.1} MB in {seconds:.1} s over {runs} run(s): {} portion and {} whole requests ({} throttled)",
        side.shipped_mb, side.portion_requests, side.whole_requests, side.throttled
    );
    Ok(side)
}

pub async fn run(stack: &LocalStack, shipper: &Path, hours: u32, mb: u64) -> anyhow::Result<Backlog> {
    let rds = stack.enable_rds()?;
    stack.s3().create_bucket().bucket(BUCKET).send().await?;
    let mut sides = Vec::new();
    let mut total = 0;
    // Both instances serve the same files: the second one's log directory is the first's.
    let first = super::postgres_instance(&rds, "backlog-portions")?;
    eprintln!("writing {hours} files of {mb} MB");
    total += write_backlog(&first, hours, mb)?;
    let second = rds.log_dir("backlog-whole");
    std::os::unix::fs::symlink(&first, &second)?;
    rds.add_instance(DbInstance {
        id: "backlog-whole".into(),
        engine: "postgres".into(),
        cluster: None,
        tags: vec![],
    })?;
    for (name, id, whole) in [
        ("portions only", "backlog-portions", false),
        ("whole downloads", "backlog-whole", true),
    ] {
        let side = ship(stack, &rds, shipper, (name, id, whole)).await?;
        anyhow::ensure!(
            (side.shipped_mb * 1_000_000.0).round() as u64 == total,
            "{name}: shipped {} MB of {total} bytes",
            side.shipped_mb
        );
        sides.push(side);
    }
    Ok(Backlog {
        files: hours,
        total_mb: total as f64 / 1_000_000.0,
        sides,
    })
}

pub fn record(b: &Backlog, out: Option<&Path>) -> anyhow::Result<()> {
    let mut report = format!(
        "### rds-log-shipper: backlog catch-up ({} hourly PostgreSQL files, {:.0} MB, one instance; the last file still being written; the emulator's throttles at the account budget, 300 burst and 12 requests/s each; client limit the same)\n\n\
         | shipped by | runs | wall time | throughput | DownloadDBLogFilePortion | DownloadCompleteLogFile | all RDS requests | throttled answers | objects | peak RSS |\n|---|---|---|---|---|---|---|---|---|---|\n",
        b.files, b.total_mb
    );
    for s in &b.sides {
        report.push_str(&format!(
            "| {} | {} | {:.1} s | {:.1} MB/s | {} | {} | {} | {} | {} | {:.1} MB |\n",
            s.name,
            s.runs,
            s.seconds,
            s.shipped_mb / s.seconds,
            s.portion_requests,
            s.whole_requests,
            s.all_requests,
            s.throttled,
            s.objects,
            s.rss_mb
        ));
    }
    if let [portions, whole] = b.sides.as_slice() {
        report.push_str(&format!(
            "\nWhole downloads: {:.1}x fewer RDS requests and {:.1}x less wall time for the same {:.0} MB \
             (on both sides the bytes shipped add up to the files' size; byte-for-byte exactness is the end-to-end scenario's to check). \
             The portion side is bound by the request budget (about 0.9 MB per request at 12 requests/s); \
             the whole side by compressing and uploading.\n",
            portions.all_requests as f64 / whole.all_requests.max(1) as f64,
            portions.seconds / whole.seconds.max(0.001),
            b.total_mb
        ));
    }
    println!("{report}");
    if let Some(out) = out {
        record_section(out, "rds-log-shipper-catch-up", &report)?;
    }
    Ok(())
}
