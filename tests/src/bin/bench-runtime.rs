//! `make bench` (pipeline trigger): bootstrap zip sizes, cold start, warm invoke latency and
//! peak RSS of the release bootstrap, run through the Lambda Runtime API host against the local
//! stack. Prints a table next to the targets and records it in BENCHMARKS.md.
//!
//! Usage: bench-runtime --bootstrap PATH --zip-arm64 PATH --zip-x86-64 PATH [--cold-runs N]
//!        [--warm-invocations N] [--out BENCHMARKS.md]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use e2e::pipeline::{ActionSpec, job_event};
use e2e::runtime_host::{Outcome, peak_rss_kib};
use e2e::seed::{create_state_machine, seed_pipeline_inputs, user_parameters};
use e2e::{FunctionOptions, LocalStack};

struct Args {
    bootstrap: PathBuf,
    zip_arm64: PathBuf,
    zip_x86_64: PathBuf,
    cold_runs: usize,
    warm_invocations: usize,
    out: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut a = Args {
        bootstrap: PathBuf::new(),
        zip_arm64: PathBuf::new(),
        zip_x86_64: PathBuf::new(),
        cold_runs: 20,
        warm_invocations: 300,
        out: None,
    };
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bootstrap" => a.bootstrap = value.into(),
            "--zip-arm64" => a.zip_arm64 = value.into(),
            "--zip-x86-64" => a.zip_x86_64 = value.into(),
            "--cold-runs" => a.cold_runs = value.parse()?,
            "--warm-invocations" => a.warm_invocations = value.parse()?,
            "--out" => a.out = Some(value.into()),
            other => bail!("unknown argument {other}"),
        }
    }
    for p in [&a.bootstrap, &a.zip_arm64, &a.zip_x86_64] {
        anyhow::ensure!(p.is_file(), "{} does not exist (run `make bench`)", p.display());
    }
    Ok(a)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn invoke(
    stack: &LocalStack,
    function: &str,
    spec: &ActionSpec,
    token: &str,
) -> anyhow::Result<Duration> {
    let f = stack.function(function).context("function not served")?;
    let job_id = uuid::Uuid::new_v4().to_string();
    let event = job_event(&job_id, spec, Some(token));
    let started = Instant::now();
    let outcome = f.invoke(Bytes::from(event.to_string())).await?;
    let elapsed = started.elapsed();
    if let Outcome::Error(body) = outcome {
        bail!("invocation failed: {}", String::from_utf8_lossy(&body));
    }
    let answered = stack
        .codepipeline_calls()
        .iter()
        .any(|c| c.job_id.as_deref() == Some(job_id.as_str()) && c.error.is_none());
    anyhow::ensure!(answered, "the job got no result");
    Ok(elapsed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let stack = LocalStack::start().await?;
    let result = run(&stack, &args).await;
    stack.stop().await;
    let report = result?;
    println!("{report}");
    if let Some(out) = &args.out {
        write_section(out, &report)?;
        println!("recorded in {}", out.display());
    }
    Ok(())
}

async fn run(stack: &LocalStack, args: &Args) -> anyhow::Result<String> {
    let artifact = seed_pipeline_inputs(stack).await?;
    let definition =
        r#"{"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 3600, "End": true}}}"#;
    let sm = create_state_machine(stack, "bench-long-running", definition.to_owned()).await?;
    let exec = stack
        .sfn()
        .start_execution()
        .state_machine_arn(&sm)
        .name("bench-execution")
        .input("{}")
        .send()
        .await?
        .execution_arn;
    let token = serde_json::json!({"executionArn": exec, "polls": 1}).to_string();
    let spec = ActionSpec::new("bench", Some(user_parameters(None)), Some(artifact));
    let options = FunctionOptions {
        max_instances: 1,
        timeout: Duration::from_secs(30),
        ..FunctionOptions::default()
    };

    // Cold starts: a fresh process each time; process start -> first response (one continuation:
    // DescribeExecution + PutJobSuccessResult against the local stack).
    let mut cold = Vec::new();
    let mut init = Vec::new();
    for i in 0..args.cold_runs {
        let name = format!("trigger-cold-{i}");
        stack
            .add_function_binary(&name, args.bootstrap.clone(), options.clone())
            .await?;
        let total = invoke(stack, &name, &spec, &token).await?;
        let f = stack.function(&name).context("function")?;
        if let (Some(t), Some(first)) = (f.timings().first().copied(), f.first_poll()) {
            init.push(first.saturating_duration_since(t.started));
        }
        cold.push(total);
        stack.remove_function(&name).await;
    }
    cold.sort();
    init.sort();

    // Warm invocations on one instance.
    stack
        .add_function_binary("trigger-warm", args.bootstrap.clone(), options.clone())
        .await?;
    invoke(stack, "trigger-warm", &spec, &token).await?;
    let mut warm = Vec::with_capacity(args.warm_invocations);
    for _ in 0..args.warm_invocations {
        warm.push(invoke(stack, "trigger-warm", &spec, &token).await?);
    }
    warm.sort();
    let pid = stack
        .function("trigger-warm")
        .and_then(|f| f.pids().first().copied())
        .context("warm instance pid")?;
    let rss = peak_rss_kib(pid).context("reading VmHWM")?;

    let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mb = |b: u64| format!("{:.2} MB", b as f64 / 1_000_000.0);
    let (arm, x86) = (size(&args.zip_arm64), size(&args.zip_x86_64));
    let mean = warm.iter().sum::<Duration>() / warm.len().max(1) as u32;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let rows = [
        (
            "bootstrap.zip, arm64 (deployed)",
            mb(arm),
            "<= 4 MB".to_owned(),
            arm <= 4_000_000,
        ),
        (
            "bootstrap.zip, x86_64",
            mb(x86),
            "<= 4 MB".to_owned(),
            x86 <= 4_000_000,
        ),
        (
            "cold start, process start -> first response (median)",
            ms(percentile(&cold, 0.5)),
            "<= 50 ms".to_owned(),
            percentile(&cold, 0.5) <= Duration::from_millis(50),
        ),
        (
            "cold start, p90",
            ms(percentile(&cold, 0.9)),
            "<= 50 ms".into(),
            percentile(&cold, 0.9) <= Duration::from_millis(50),
        ),
        (
            "  of which init (process start -> first /next, median)",
            ms(percentile(&init, 0.5)),
            "-".into(),
            true,
        ),
        (
            "warm invoke latency, median",
            ms(percentile(&warm, 0.5)),
            "-".into(),
            true,
        ),
        (
            "warm invoke latency, p99",
            ms(percentile(&warm, 0.99)),
            "-".into(),
            true,
        ),
        ("warm invoke latency, mean", ms(mean), "-".into(), true),
        (
            "peak RSS (VmHWM) after the warm runs",
            format!("{:.1} MB", rss as f64 / 1024.0),
            "<= 30 MB".into(),
            rss <= 30 * 1024,
        ),
    ];
    let mut report = String::new();
    report.push_str(&format!(
        "### pipeline-trigger (release bootstrap, x86_64 run on {cpu}, {} cold runs, {} warm invocations)\n\n",
        cold.len(),
        warm.len()
    ));
    report.push_str("| measure | this build | target | met |\n|---|---|---|---|\n");
    for (name, value, target, met) in rows {
        report.push_str(&format!(
            "| {name} | {value} | {target} | {} |\n",
            if target == "-" {
                ""
            } else if met {
                "yes"
            } else {
                "no"
            }
        ));
    }
    report.push_str(
        "\nEach invocation is one continuation poll: DescribeExecution (moto) and PutJobSuccessResult \
         (the local CodePipeline emulator) over loopback HTTP, so the latencies include the local \
         stack's own response time.\n",
    );
    Ok(report)
}

/// Replaces (or appends) the pipeline-trigger section of BENCHMARKS.md.
fn write_section(path: &PathBuf, report: &str) -> anyhow::Result<()> {
    const BEGIN: &str = "<!-- bench:pipeline-trigger:begin -->";
    const END: &str = "<!-- bench:pipeline-trigger:end -->";
    let current = std::fs::read_to_string(path)
        .unwrap_or_else(|_| "# Benchmarks\n\nProduced by `make bench`.\n".into());
    let section = format!("{BEGIN}\n{report}{END}");
    let updated = match (current.find(BEGIN), current.find(END)) {
        (Some(b), Some(e)) if e > b => format!("{}{section}{}", &current[..b], &current[e + END.len()..]),
        _ => format!("{}\n{section}\n", current.trim_end()),
    };
    std::fs::write(path, updated)?;
    Ok(())
}
