//! `make bench` (RDS log shipper): throughput against the RDS emulator with and without its
//! throttle (next to the throttle's ceiling), API calls per MB, and peak RSS when shipping files
//! from 10 MB to 2 GB, and with part sizes of 5, 8 and 16 MiB. Records the table in BENCHMARKS.md.
//!
//! `--long-lines N` runs the long-line scenario instead: four rounds of appends and runs, with and
//! without N lines over 1 MB among the appends, and records RDS requests and MB transferred.
//!
//! `--catch-up HOURS,MB` runs the backlog catch-up comparison instead (`bench/catchup.rs`):
//! `HOURS` hourly files of `MB` megabytes shipped by portions only, then with whole downloads.
//!
//! `--fleet N[:K],... [--periods K]` runs the fleet benchmark instead (`bench/fleet.rs`): the
//! real shipping state machine in moto over a fleet of each size N, K schedule periods each (3).
//!
//! Usage: bench-shipper --shipper PATH [--sizes 10,100,1000,2000] [--long-lines N]
//! [--catch-up HOURS,MB] [--fleet N[:K],... [--periods K]] [--out BENCHMARKS.md]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use e2e::rds::{DbInstance, Throttle};
use e2e::runtime_host::{Outcome, peak_rss_kib};
use e2e::{FunctionOptions, LocalStack};

#[path = "../bench/catchup.rs"]
mod catchup;
#[path = "../bench/fleet.rs"]
mod fleet;

const BUCKET: &str = "bench-rds-logs";

/// Writes `mb` megabytes of PostgreSQL-like log lines.
fn write_log(path: &Path, mb: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(path.parent().context("parent")?)?;
    append_log(path, mb * 1_000_000, 0).map(|_| ())
}

/// Appends at least `bytes` bytes of PostgreSQL-like log lines, numbered from `n`; returns the
/// next number.
fn append_log(path: &Path, bytes: u64, mut n: u64) -> anyhow::Result<u64> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let mut f = std::io::BufWriter::new(file);
    let mut written = 0u64;
    while written < bytes {
        let line = format!(
            "2026-11-22 00:{:02}:{:02} UTC [{}] LOG:  duration: {}.{:03} ms  statement: SELECT * FROM orders WHERE id = {} AND status = 'open'\n",
            (n / 60) % 60,
            n % 60,
            10_000 + n % 5_000,
            n % 97,
            n % 1000,
            n * 7_919 % 1_000_003
        );
        f.write_all(line.as_bytes())?;
        written += line.len() as u64;
        n += 1;
    }
    f.flush()?;
    Ok(n)
}

struct Row {
    size_mb: u64,
    throttle: bool,
    part_mb: String,
    seconds: f64,
    mbps: f64,
    ceiling_mbps: Option<f64>,
    calls_per_mb: f64,
    objects: usize,
    compressed_mb: f64,
    rss_mb: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut shipper, mut sizes, mut out) = (None, vec![10u64, 100, 1000, 2000], None);
    let (mut long_lines, mut catch_up, mut fleet_sizes, mut periods) = (None, None, None, 3);
    while let Some(flag) = args.next() {
        let v = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--shipper" => shipper = Some(PathBuf::from(v)),
            "--sizes" => sizes = v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
            "--out" => out = Some(PathBuf::from(v)),
            "--long-lines" => long_lines = Some(v.parse::<u32>().context("--long-lines N")?),
            "--catch-up" => catch_up = Some(catchup::parse(&v)?),
            "--fleet" => fleet_sizes = Some(v),
            "--periods" => periods = v.parse::<usize>().context("--periods K")?,
            other => bail!("unknown argument {other}"),
        }
    }
    let shipper = shipper.context("--shipper PATH is required")?;
    if let Some(sizes) = fleet_sizes {
        // Each fleet on a local stack of its own.
        let runs = fleet::run(&shipper, &fleet::parse(&sizes, periods)?).await?;
        return fleet::record(&runs, out.as_deref());
    }
    let stack = LocalStack::start().await?;
    if let Some((hours, mb)) = catch_up {
        let result = catchup::run(&stack, &shipper, hours, mb).await;
        stack.stop().await;
        return catchup::record(&result?, out.as_deref());
    }
    if let Some(n) = long_lines {
        let result = long_lines::run(&stack, &shipper, n).await;
        stack.stop().await;
        return long_lines::record(&result?, out.as_deref());
    }
    let result = run(&stack, &shipper, &sizes).await;
    stack.stop().await;
    let rows = result?;
    let mut report = String::from(
        "### rds-log-shipper (release binary, x86_64; the emulator's throttle: 300 burst, 12 requests/s; client limit set to the same budget)\n\n\
         | file | throttle | part size | time | throughput | throttle's ceiling | API calls per MB | gzip objects | peak RSS |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        report.push_str(&format!(
            "| {} MB | {} | {} MiB | {:.1} s | {:.1} MB/s | {} | {:.2} | {} ({:.1} MB) | {:.1} MB |\n",
            r.size_mb,
            if r.throttle { "on" } else { "off" },
            r.part_mb,
            r.seconds,
            r.mbps,
            r.ceiling_mbps.map_or("not reached (burst)".into(), |c| format!(
                "{c:.1} MB/s ({:.0}% of it)",
                100.0 * r.mbps / c
            )),
            r.calls_per_mb,
            r.objects,
            r.compressed_mb,
            r.rss_mb
        ));
    }
    report.push_str(
        "\nTargets: with the throttle on, at least 90% of its ceiling; peak RSS at most 64 MB at every size. \
         The ceiling is the file's size over the least time the token bucket allows ((accepted requests - 300) / 12 s); \
         files that fit in the burst are not limited by it. Each run ships one file of one instance into moto's S3 \
         through the local gateway; RSS is the shipper process's VmHWM.\n\n\
         Memory: a chunk's compressed bytes go into one part buffer of the part size, reused for every part \
         of every chunk (S3 needs each part's length before the part is sent, and parts of at least 5 MiB), \
         so peak RSS is the process's baseline plus the smaller of the compressed chunk and the part size. \
         It follows the part size, not the file size; a file that compresses to less than one part never \
         fills the buffer, which is why the smallest file shows less.\n",
    );
    println!("{report}");
    if let Some(out) = out {
        record_section(&out, "rds-log-shipper", &report)?;
    }
    Ok(())
}

/// Serves the shipper binary `shipper` as function `name` with `env` (15-minute timeout, up to
/// `instances` instances, warnings logged only), as the benchmarks run it.
async fn serve_shipper(
    stack: &LocalStack,
    name: &str,
    shipper: &Path,
    env: Vec<(String, String)>,
    instances: usize,
) -> anyhow::Result<std::sync::Arc<e2e::runtime_host::HostedFunction>> {
    let options = FunctionOptions {
        env,
        timeout: Duration::from_secs(900),
        max_instances: instances,
        rust_log: "warn".into(),
    };
    stack
        .add_function_binary(name, shipper.to_path_buf(), options)
        .await?;
    stack.function(name).context("function")
}

/// Writes `report` into `out` between the markers of section `name` (appended if absent).
/// A PostgreSQL instance `id` served by the emulator; its log directory.
fn postgres_instance(rds: &e2e::rds::RdsEmulator, id: &str) -> anyhow::Result<std::path::PathBuf> {
    rds.add_instance(DbInstance {
        id: id.to_owned(),
        engine: "postgres".into(),
        cluster: None,
        tags: vec![],
    })
    .map_err(Into::into)
}

fn record_section(out: &Path, name: &str, report: &str) -> anyhow::Result<()> {
    let (begin, end) = (
        format!("<!-- bench:{name}:begin -->"),
        format!("<!-- bench:{name}:end -->"),
    );
    let current = std::fs::read_to_string(out).unwrap_or_else(|_| "# Benchmarks\n".into());
    let section = format!("{begin}\n{report}{end}");
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if e > b => format!("{}{section}{}", &current[..b], &current[e + end.len()..]),
        _ => format!("{}\n\n{section}\n", current.trim_end()),
    };
    std::fs::write(out, updated)?;
    println!("recorded in {}", out.display());
    Ok(())
}

/// Lines over 1 MB: what they cost in RDS requests and bytes transferred.
mod long_lines {
    use super::*;

    /// Rounds of appends, each followed by a run.
    const ROUNDS: u32 = 4;
    /// What each round appends, long lines aside.
    const ROUND_BYTES: u64 = 15_000_000;
    /// A long line's length: RDS cuts it at 1 MB.
    const LONG_LINE_BYTES: usize = 2_000_000;

    pub struct Variant {
        pub long_lines: u32,
        pub file_mb: f64,
        pub portion_requests: u64,
        pub rds_requests: u64,
        pub transferred_mb: f64,
        pub shipped_mb: f64,
        pub lost_mb: f64,
    }

    /// The same appends without, then with, `n` long lines (spread over the rounds, one in the
    /// middle of a round's appends), each variant on its own instance and file.
    pub async fn run(stack: &LocalStack, shipper: &Path, n: u32) -> anyhow::Result<Vec<Variant>> {
        let rds = stack.enable_rds()?;
        rds.set_throttle(None);
        stack.s3().create_bucket().bucket(BUCKET).send().await?;
        let mut variants = Vec::new();
        for long_lines in [0, n] {
            let id = format!("bench-long-lines-{long_lines}");
            let dir = super::postgres_instance(&rds, &id)?;
            let path = dir.join("error/postgresql.log.2026-11-22-00");
            std::fs::create_dir_all(path.parent().context("parent")?)?;
            let function = format!("shipper-{id}");
            let env = e2e::env(&[
                ("LOG_BUCKET", BUCKET),
                ("INSTANCES", id.as_str()),
                ("FULL_LISTING_MINUTES", "0"),
            ]);
            let f = serve_shipper(stack, &function, shipper, env, 1).await?;
            let (calls_before, _) = rds.calls();
            let bytes_before = rds.portion_bytes();
            let (mut shipped, mut lost, mut line) = (0u64, 0u64, 0u64);
            for round in 0..ROUNDS {
                line = append_log(&path, ROUND_BYTES / 2, line)?;
                // The long lines go into the first rounds, one each (more than one a round
                // when there are more long lines than rounds).
                let here = (0..long_lines).filter(|i| i % ROUNDS == round).count();
                for _ in 0..here {
                    let mut long = String::from("2026-11-22 00:00:00 UTC [1] LOG:  statement: SELECT '");
                    long.push_str(&"x".repeat(LONG_LINE_BYTES - long.len() - 3));
                    long.push_str("';\n");
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open(&path)?
                        .write_all(long.as_bytes())?;
                }
                line = append_log(&path, ROUND_BYTES / 2, line)?;
                let outcome = f
                    .invoke(Bytes::from(format!(
                        r#"{{"action": "ship", "instance": "{id}"}}"#
                    )))
                    .await?;
                let summary = match outcome {
                    Outcome::Response(b) => serde_json::from_slice::<serde_json::Value>(&b)?,
                    Outcome::Error(b) => bail!("shipper failed: {}", String::from_utf8_lossy(&b)),
                };
                anyhow::ensure!(summary["complete"] == true, "not complete: {summary}");
                shipped += summary["bytes"].as_u64().unwrap_or(0);
                lost += summary["bytesLost"].as_u64().unwrap_or(0);
            }
            stack.remove_function(&function).await;
            let (calls_after, _) = rds.calls();
            let delta = |action: &str| {
                calls_after.get(action).copied().unwrap_or(0) - calls_before.get(action).copied().unwrap_or(0)
            };
            let all = calls_after.values().sum::<u64>() - calls_before.values().sum::<u64>();
            let file_len = std::fs::metadata(&path)?.len();
            let mb = |b: u64| b as f64 / 1_000_000.0;
            variants.push(Variant {
                long_lines,
                file_mb: mb(file_len),
                portion_requests: delta("DownloadDBLogFilePortion"),
                rds_requests: all,
                transferred_mb: mb(rds.portion_bytes() - bytes_before),
                shipped_mb: mb(shipped),
                lost_mb: mb(lost),
            });
            eprintln!("{id}: {} portion requests", delta("DownloadDBLogFilePortion"));
        }
        Ok(variants)
    }

    pub fn record(variants: &[Variant], out: Option<&Path>) -> anyhow::Result<()> {
        let mut report = format!(
            "### rds-log-shipper: lines over 1 MB ({ROUNDS} rounds of {} MB appended to one file, each followed by a run; long lines of {} MB; the emulator's throttle off)\n\n\
             | long lines | file | DownloadDBLogFilePortion requests | all RDS requests | MB transferred | MB transferred / file | MB shipped | MB reported lost |\n|---|---|---|---|---|---|---|---|\n",
            ROUND_BYTES / 1_000_000,
            LONG_LINE_BYTES / 1_000_000
        );
        for v in variants {
            report.push_str(&format!(
                "| {} | {:.1} MB | {} | {} | {:.1} | {:.2} | {:.1} | {:.1} |\n",
                v.long_lines,
                v.file_mb,
                v.portion_requests,
                v.rds_requests,
                v.transferred_mb,
                v.transferred_mb / v.file_mb,
                v.shipped_mb,
                v.lost_mb
            ));
        }
        if let [without, with] = variants {
            let n = f64::from(with.long_lines.max(1));
            report.push_str(&format!(
                "\nPer long line: {:.1} more portion requests and {:.1} MB more transferred. \
                 Targets: at most 3 requests per line over 1 MB; at most twice the file's size transferred.\n",
                (with.portion_requests as f64 - without.portion_requests as f64) / n,
                (with.transferred_mb - without.transferred_mb) / n
            ));
        }
        println!("{report}");
        if let Some(out) = out {
            record_section(out, "rds-log-shipper-long-lines", &report)?;
        }
        Ok(())
    }
}

async fn run(stack: &LocalStack, shipper: &Path, sizes: &[u64]) -> anyhow::Result<Vec<Row>> {
    let rds = stack.enable_rds()?;
    stack.s3().create_bucket().bucket(BUCKET).send().await?;
    // (file MB, emulator throttle on, part size MiB): every size with the default 8 MiB parts
    // and the throttle on; the first size of at least 100 MB without the throttle; and the
    // first size of at least 1 GB with 5 MiB (S3's minimum) and 16 MiB parts, to show what
    // memory follows.
    let mut cases: Vec<(u64, bool, u64)> = sizes.iter().map(|s| (*s, true, 8)).collect();
    let at_least = |mb: u64| {
        sizes
            .iter()
            .copied()
            .find(|s| *s >= mb)
            .or(sizes.iter().copied().max())
    };
    if let Some(mid) = at_least(100) {
        cases.push((mid, false, 8));
    }
    if let Some(large) = at_least(1000) {
        cases.extend([(large, true, 5), (large, true, 16)]);
    }
    let mut rows = Vec::new();
    for (size_mb, throttle, part_mb) in cases {
        let id = format!(
            "bench-{size_mb}mb-{}-{part_mb}mib",
            if throttle { "throttled" } else { "free" }
        );
        let dir = postgres_instance(&rds, &id)?;
        write_log(&dir.join("error/postgresql.log.2026-11-22-00"), size_mb)?;
        rds.set_throttle(throttle.then(Throttle::default));
        let function = format!("shipper-{id}");
        let part_mb = part_mb.to_string();
        let env = e2e::env(&[
            ("LOG_BUCKET", BUCKET),
            ("INSTANCES", id.as_str()),
            ("RDS_REQUESTS_PER_SECOND", "12"),
            ("RDS_BURST", "300"),
            ("FULL_LISTING_MINUTES", "0"),
            ("PART_SIZE_MB", part_mb.as_str()),
        ]);
        let f = serve_shipper(stack, &function, shipper, env, 1).await?;
        let (calls_before, throttled_before) = rds.calls();
        let before: u64 = calls_before.values().sum();
        let started = Instant::now();
        let outcome = f
            .invoke(Bytes::from(format!(
                r#"{{"action": "ship", "instance": "{id}"}}"#
            )))
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        let summary = match outcome {
            Outcome::Response(b) => serde_json::from_slice::<serde_json::Value>(&b)?,
            Outcome::Error(b) => bail!("shipper failed: {}", String::from_utf8_lossy(&b)),
        };
        let bytes = summary["bytes"].as_u64().unwrap_or(0);
        anyhow::ensure!(summary["complete"] == true, "not complete: {summary}");
        let (calls_after, throttled_after) = rds.calls();
        let calls = calls_after.values().sum::<u64>() - before;
        let throttled = throttled_after - throttled_before;
        let (objects, compressed) = stored(stack, &id).await?;
        let rss_kib = f.pids().first().and_then(|p| peak_rss_kib(*p)).unwrap_or(0);
        stack.remove_function(&function).await;
        let mb = bytes as f64 / 1_000_000.0;
        // Only accepted requests take a token; answers of `Throttling` do not.
        let accepted = calls - throttled;
        let ceiling = if throttle && accepted > 300 {
            Some(mb / ((accepted - 300) as f64 / 12.0))
        } else {
            None
        };
        eprintln!(
            "{id}: {mb:.1} MB in {seconds:.1} s, {calls} calls ({throttled} throttled), {objects} objects of {:.1} MB, peak RSS {} KiB",
            compressed as f64 / 1_000_000.0,
            rss_kib
        );
        rows.push(Row {
            size_mb,
            throttle,
            part_mb,
            seconds,
            mbps: mb / seconds,
            ceiling_mbps: ceiling,
            calls_per_mb: calls as f64 / mb.max(0.001),
            objects,
            compressed_mb: compressed as f64 / 1_000_000.0,
            rss_mb: rss_kib as f64 / 1024.0,
        });
    }
    Ok(rows)
}

/// The instance's gzip objects in S3: how many, and their total size.
async fn stored(stack: &LocalStack, instance: &str) -> anyhow::Result<(usize, u64)> {
    let (mut objects, mut bytes, mut token) = (0, 0u64, None);
    loop {
        let page = stack
            .s3()
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(format!("rds-logs/instance={instance}/"))
            .set_continuation_token(token)
            .send()
            .await?;
        for o in page.contents() {
            objects += 1;
            bytes += u64::try_from(o.size().unwrap_or(0)).unwrap_or(0);
        }
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return Ok((objects, bytes));
        }
    }
}
