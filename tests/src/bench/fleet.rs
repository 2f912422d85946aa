//! `bench-shipper --fleet N:K,...` (`make bench-fleet`): the real shipping state
//! machine (statemachines/rds-log-shipping.asl.json) in moto, its Distributed Map running the
//! release shipper over a fleet of `N` instances served by the RDS emulator (Aurora MySQL
//! cluster members, a writer and two readers each, are 30% of them), for `K` schedule
//! periods. Before
//! each period every instance appends a few lines, as a busy fleet does in five minutes; then one
//! scheduled execution runs, with the template's defaults: a budget of 8 requests/s (burst 20)
//! split over 4 Express children, a 5-minute period. The emulator throttles at the account's 12
//! requests/s (300 burst), so any request over it would show as a throttled answer.
//!
//! Per period it measures: the execution's wall time; RDS requests against the budget (8/s over
//! the 300 s period); throttled answers; instances shipped to their end; the lag of every
//! instance when the period ends, from ground truth (the checkpoint's bytes shipped against the
//! times the bench appended: the age of the oldest byte not yet in S3), median and maximum, in
//! seconds and in periods; instances starved (with bytes older than the bound the README states);
//! the largest state payload (the execution's output, every child's input and output, read back
//! from the ResultWriter's files); peak RSS of a shipper process (each serves one child at a
//! time). Periods run back to back, so lags in seconds are on the bench's own clock.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::LocalStack;
use e2e::rds::{DbInstance, RdsEmulator, Throttle};
use e2e::runtime_host::peak_rss_kib;
use futures_util::{StreamExt, stream};
use serde_json::Value;

use super::record_section;

const BUCKET: &str = "bench-fleet-logs";
const PREFIX: &str = "rds-logs";
const FUNCTION: &str = "rds-log-shipper";
/// The template's defaults.
const BUDGET: f64 = 8.0;
const BURST: f64 = 20.0;
const CHILDREN: usize = 4;
const PERIOD_S: f64 = 300.0;

/// One period's figures.
pub struct Period {
    pub wall_s: f64,
    pub requests: u64,
    pub throttled: u64,
    pub complete: u64,
    pub not_reached: u64,
    pub failed: u64,
    pub lag_median_s: f64,
    pub lag_max_s: f64,
    pub lag_max_periods: usize,
    pub starved: usize,
    pub largest_state: usize,
    pub rss_mb: f64,
}

pub struct FleetRun {
    pub instances: usize,
    pub bound_periods: usize,
    pub periods: Vec<Period>,
}

/// `1000:2,10000:10`: fleet sizes, each with its number of periods (else `periods`).
pub fn parse(v: &str, periods: usize) -> anyhow::Result<Vec<(usize, usize)>> {
    v.split(',')
        .map(|s| {
            let (n, k) = s.trim().split_once(':').unwrap_or((s.trim(), ""));
            let k = if k.is_empty() {
                periods
            } else {
                k.parse().context("--fleet N:PERIODS")?
            };
            Ok((n.parse().context("--fleet N[:PERIODS],...")?, k))
        })
        .collect()
}

/// An instance: its id and the one log file it writes.
struct Member {
    id: String,
    file: String,
    /// (period appended in, when, the file's size after it).
    appends: Vec<(usize, Instant, u64)>,
}

fn fleet(rds: &RdsEmulator, n: usize) -> anyhow::Result<Vec<Member>> {
    let mut members = Vec::with_capacity(n);
    for i in 0..n {
        let instance = DbInstance::of_fleet(i);
        members.push(Member {
            id: instance.id.clone(),
            file: instance.fleet_log_file().into(),
            appends: Vec::new(),
        });
        rds.add_instance(instance)?;
    }
    Ok(members)
}

/// A few lines (1 to 12, about 1.5 KB on average) to every instance's file.
fn append_all(rds: &RdsEmulator, members: &mut [Member], period: usize) -> anyhow::Result<()> {
    for (n, m) in members.iter_mut().enumerate() {
        let path = rds.log_dir(&m.id).join(&m.file);
        std::fs::create_dir_all(path.parent().context("parent")?)?;
        let mut text = String::new();
        for l in 0..1 + (n * 7 + period * 3) % 12 {
            text.push_str(&format!(
                "2026-12-02 10:{:02}:{:02} UTC [{n}] LOG:  period {period} line {l}: duration {}.{:03} ms statement: SELECT * FROM orders WHERE id = {}\n",
                period % 60,
                l % 60,
                n % 97,
                l % 1000,
                n * 7_919 % 1_000_003
            ));
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        m.appends.push((period, Instant::now(), f.metadata()?.len()));
    }
    Ok(())
}

/// Bytes shipped of each instance's file, from its checkpoint (0 when it has none).
async fn shipped(stack: &LocalStack, members: &[Member]) -> Vec<u64> {
    let s3 = stack.s3();
    let s3 = &s3;
    stream::iter(members)
        .map(|m| async move {
            let key = rds_log_shipper::keys::checkpoint_key(PREFIX, &m.id);
            let Ok(o) = s3.get_object().bucket(BUCKET).key(key).send().await else {
                return 0;
            };
            let Ok(body) = o.body.collect().await else {
                return 0;
            };
            let cp: Value = serde_json::from_slice(&body.into_bytes()).unwrap_or_default();
            cp["files"][&m.file]["shipped"].as_u64().unwrap_or(0)
        })
        .buffered(16)
        .collect()
        .await
}

/// Every instance's lag now: (seconds, periods) since its oldest byte not yet shipped.
fn lags(members: &[Member], shipped: &[u64], period: usize) -> Vec<(f64, usize)> {
    let now = Instant::now();
    members
        .iter()
        .zip(shipped)
        .map(|(m, &done)| {
            m.appends
                .iter()
                .find(|(_, _, size)| *size > done)
                .map_or((0.0, 0), |(p, at, _)| ((now - *at).as_secs_f64(), period + 1 - p))
        })
        .collect()
}

/// The largest JSON payload of the run: its output, each child's input and output.
async fn largest_state(stack: &LocalStack, output: &str) -> anyhow::Result<usize> {
    let out: Value = serde_json::from_str(output)?;
    let mut largest = output.len();
    let Some(key) = out["results"]["ResultWriterDetails"]["Key"].as_str() else {
        return Ok(largest);
    };
    let get = |key: String| async move {
        let o = stack.s3().get_object().bucket(BUCKET).key(key).send().await?;
        anyhow::Ok(serde_json::from_slice::<Value>(
            &o.body.collect().await?.into_bytes(),
        )?)
    };
    let manifest = get(key.to_owned()).await?;
    for status in ["SUCCEEDED", "FAILED"] {
        for file in manifest["ResultFiles"][status].as_array().into_iter().flatten() {
            let records = get(file["Key"].as_str().context("result file key")?.to_owned()).await?;
            for r in records.as_array().into_iter().flatten() {
                for field in ["Input", "Output"] {
                    largest = largest.max(r[field].as_str().map_or(0, str::len));
                }
            }
        }
    }
    Ok(largest)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The bound the README states: with `r` requests an instance, a period of P seconds visits
/// B·T/r instances (T = P − 30 s, at most 280 s), so a fleet of N is visited every
/// ⌈N·r / (B·T)⌉ periods; its lag is at most that plus the period in progress.
pub fn bound_periods(instances: usize, requests_per_instance: f64) -> usize {
    let child_s = (PERIOD_S - 30.0).min(280.0);
    let visited = BUDGET * child_s / requests_per_instance;
    (instances as f64 / visited).ceil() as usize + 1
}

async fn one_size(shipper: &Path, n: usize, periods: usize) -> anyhow::Result<FleetRun> {
    let stack = LocalStack::start().await?;
    let result = run_size(&stack, shipper, n, periods).await;
    stack.stop().await;
    result
}

async fn run_size(stack: &LocalStack, shipper: &Path, n: usize, periods: usize) -> anyhow::Result<FleetRun> {
    let rds = stack.enable_rds()?;
    rds.set_throttle(Some(Throttle::default()));
    stack.s3().create_bucket().bucket(BUCKET).send().await?;
    let mut members = fleet(&rds, n)?;
    let env = [
        ("LOG_BUCKET", BUCKET.to_owned()),
        ("LOG_PREFIX", PREFIX.to_owned()),
        ("RDS_REQUESTS_PER_SECOND", BUDGET.to_string()),
        ("RDS_BURST", BURST.to_string()),
        ("MAP_CONCURRENCY", CHILDREN.to_string()),
        ("SCHEDULE_PERIOD_MINUTES", (PERIOD_S / 60.0).to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let f = super::serve_shipper(stack, FUNCTION, shipper, env, CHILDREN + 2).await?;
    let definition =
        std::fs::read_to_string(e2e::stack::repo_root().join("statemachines/rds-log-shipping.asl.json"))?
            .replace(
                "${ShipperFunctionArn}",
                &format!("arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}"),
            );
    let arn = e2e::seed::create_state_machine(stack, "rds-log-shipping", definition).await?;
    let bound = bound_periods(n, 2.0);
    let mut out = Vec::new();
    for p in 0..periods {
        append_all(&rds, &mut members, p)?;
        let (calls, throttled) = rds.calls();
        let before = (calls.values().sum::<u64>(), throttled);
        let started = Instant::now();
        let exec = stack
            .sfn()
            .start_execution()
            .state_machine_arn(&arn)
            .name(format!("scheduled-{p}"))
            .input("{}")
            .send()
            .await?;
        let (status, output) =
            e2e::seed::wait_for_execution_within(stack, &exec.execution_arn, Duration::from_secs(600))
                .await?;
        let wall_s = started.elapsed().as_secs_f64();
        let output = output.unwrap_or_default();
        if status != "SUCCEEDED" {
            bail!("period {p}: the execution {status}: {output}");
        }
        let (calls, throttled) = rds.calls();
        let fleet: Value = serde_json::from_str::<Value>(&output)?["fleet"].clone();
        let done = shipped(stack, &members).await;
        let lag = lags(&members, &done, p);
        let count = |k: &str| fleet[k].as_u64().unwrap_or(0);
        let period = Period {
            wall_s,
            requests: calls.values().sum::<u64>() - before.0,
            throttled: throttled - before.1,
            complete: count("instancesComplete"),
            not_reached: count("instancesNotReached"),
            failed: count("instancesFailed"),
            lag_median_s: median(lag.iter().map(|l| l.0).collect()),
            lag_max_s: lag.iter().map(|l| l.0).fold(0.0, f64::max),
            lag_max_periods: lag.iter().map(|l| l.1).max().unwrap_or(0),
            starved: lag.iter().filter(|l| l.1 > bound).count(),
            largest_state: largest_state(stack, &output).await?,
            rss_mb: f
                .pids()
                .iter()
                .filter_map(|p| peak_rss_kib(*p))
                .max()
                .unwrap_or(0) as f64
                / 1024.0,
        };
        eprintln!(
            "{n} instances, period {}: {wall_s:.1} s, {} RDS requests ({} throttled), {} complete, {} not reached, {} failed; lag median {:.0} s, max {:.0} s ({} periods)",
            p + 1,
            period.requests,
            period.throttled,
            period.complete,
            period.not_reached,
            period.failed,
            period.lag_median_s,
            period.lag_max_s,
            period.lag_max_periods
        );
        out.push(period);
    }
    Ok(FleetRun {
        instances: n,
        bound_periods: bound,
        periods: out,
    })
}

pub async fn run(shipper: &Path, sizes: &[(usize, usize)]) -> anyhow::Result<Vec<FleetRun>> {
    let mut runs = Vec::new();
    for &(n, periods) in sizes {
        runs.push(one_size(shipper, n, periods).await?);
    }
    Ok(runs)
}

pub fn record(runs: &[FleetRun], out: Option<&Path>) -> anyhow::Result<()> {
    let budget = BUDGET * PERIOD_S;
    let mut report = format!(
        "### rds-log-shipper: the fleet (the real state machine in moto, release shipper; budget {BUDGET} requests/s, burst {BURST}, over {CHILDREN} Express children; 5-minute period; the emulator's account throttle 12/s, 300 burst; 30% Aurora cluster members; every instance appends 1 to 12 lines before each period)\n\n\
         | instances | period | wall time | RDS requests (budget {budget:.0} a period) | throttled | shipped to the end | not reached | failed | lag median | lag max | longest wait | starved (bound) | largest state payload | peak RSS per child |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in runs {
        for (i, p) in r.periods.iter().enumerate() {
            report.push_str(&format!(
                "| {} | {} | {:.1} s | {} ({:.0}%) | {} | {} | {} | {} | {:.0} s | {:.0} s | {} period(s) | {} ({} periods) | {:.1} KB | {:.1} MB |\n",
                r.instances,
                i + 1,
                p.wall_s,
                p.requests,
                100.0 * p.requests as f64 / budget,
                p.throttled,
                p.complete,
                p.not_reached,
                p.failed,
                p.lag_median_s,
                p.lag_max_s,
                p.lag_max_periods,
                p.starved,
                r.bound_periods,
                p.largest_state as f64 / 1024.0,
                p.rss_mb
            ));
        }
    }
    report.push_str(
        "\nLag is measured when the period's execution has ended, from ground truth: the checkpoint's bytes shipped against \
         the times the bench appended (the age of the oldest byte not yet in S3; 0 when caught up). Periods run back to back, \
         so seconds are on the bench's clock; 'longest wait' counts periods. Starved: instances whose oldest unshipped byte \
         was appended more periods ago than the README's bound, ⌈N·r / (B·T)⌉ + 1 with r = 2 requests an instance, B = 8/s, \
         T = 270 s. The largest state payload is the largest of the execution's output and every child's input and output \
         (Step Functions' limit: 256 KiB). Peak RSS is the VmHWM of the shipper processes, each serving one child at a time.\n",
    );
    println!("{report}");
    if let Some(out) = out {
        record_section(out, "rds-log-shipper-fleet", &report)?;
    }
    Ok(())
}
