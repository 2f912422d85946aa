//! End to end: the real shipping state machine (statemachines/rds-log-shipping.asl.json) in
//! moto, its Distributed Map (ItemReader, ItemBatcher, ResultWriter, tolerated failures: moto's
//! gaps filled by tests/moto/extensions.py) running the real shipper binary over a fleet of 210
//! instances served by the RDS emulator, Aurora cluster members among them. Two runs with
//! appends in between: every byte of every file is in S3 exactly once; the execution's state
//! holds counts only; the lag index orders the next run. Then bad batches: each refused whole,
//! by name, with nothing shipped.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use e2e::emf;
use e2e::rds::{DbInstance, RdsEmulator};
use e2e::{FunctionOptions, LocalStack};
use rds_log_shipper::keys;
use serde_json::{Value, json};

const BUCKET: &str = "rds-fleet-archive";
const PREFIX: &str = "logs";
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:rds-log-shipper";

struct Fleet {
    stack: LocalStack,
    rds: Arc<RdsEmulator>,
    /// (instance, file) of every log file written.
    files: Vec<(String, String)>,
}

fn instance(id: &str, engine: &str, cluster: Option<&str>) -> DbInstance {
    DbInstance {
        id: id.into(),
        engine: engine.into(),
        cluster: cluster.map(str::to_owned),
        tags: vec![],
    }
}

/// The file a PostgreSQL instance of the test fleet writes to.
fn log_file(engine: &str) -> &'static str {
    instance("", engine, None).fleet_log_file()
}

impl Fleet {
    async fn start(size: usize) -> Fleet {
        let stack = LocalStack::start().await.expect("stack");
        let rds = stack.enable_rds().expect("rds emulator");
        let mut files = Vec::new();
        for i in 0..size {
            let member = DbInstance::of_fleet(i);
            files.push((member.id.clone(), member.fleet_log_file().to_owned()));
            rds.add_instance(member).unwrap();
        }
        // Not shipped: an engine whose log files the shipper does not know.
        rds.add_instance(instance("ledger-1", "qldb-like", None)).unwrap();
        stack
            .s3()
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .expect("bucket");
        let env = e2e::env(&[
            ("LOG_BUCKET", BUCKET),
            ("LOG_PREFIX", PREFIX),
            ("RDS_REQUESTS_PER_SECOND", "12"),
            ("RDS_BURST", "40"),
            ("MAP_CONCURRENCY", "4"),
            ("SCHEDULE_PERIOD_MINUTES", "5"),
            ("FULL_LISTING_MINUTES", "0"),
            ("DEADLINE_RESERVE_SECONDS", "1"),
        ]);
        stack
            .add_function(
                "rds-log-shipper",
                FunctionOptions {
                    env,
                    timeout: Duration::from_secs(300),
                    max_instances: 6,
                    ..FunctionOptions::default()
                },
            )
            .await
            .expect("shipper");
        Fleet { stack, rds, files }
    }

    fn append_all(&self, round: usize) {
        for (n, (id, file)) in self.files.iter().enumerate() {
            let path = self.rds.log_dir(id).join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            let lines = 1 + (n * 7 + round * 3) % 40;
            for l in 0..lines {
                let line = format!(
                    "2026-12-02 10:{:02}:00 UTC [{n}] round {round} line {l}: {}\n",
                    l % 60,
                    "x".repeat(n % 90)
                );
                std::io::Write::write_all(&mut f, line.as_bytes()).unwrap();
            }
        }
    }

    async fn execute(&self, arn: &str, name: &str) -> Value {
        let exec = self
            .stack
            .sfn()
            .start_execution()
            .state_machine_arn(arn)
            .name(name)
            .input("{}")
            .send()
            .await
            .unwrap();
        let (status, out) =
            e2e::seed::wait_for_execution_within(&self.stack, &exec.execution_arn, Duration::from_secs(300))
                .await
                .unwrap();
        assert_eq!(status, "SUCCEEDED", "{out:?}");
        let out = out.expect("the execution ended");
        assert!(
            out.len() < 2048,
            "the execution's state holds counts only: {} bytes: {out}",
            out.len()
        );
        serde_json::from_str(&out).unwrap()
    }

    /// The decompressed chunks of one file, concatenated in key order.
    async fn shipped(&self, instance: &str, file: &str) -> Vec<u8> {
        let prefix = format!("{PREFIX}/instance={instance}/log_type={}/", keys::log_type(file));
        let s3 = self.stack.s3();
        let list = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(&prefix)
            .send()
            .await
            .unwrap();
        let mut keys: Vec<String> = list
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort_by_key(|k| k.rsplit('/').next().map(str::to_owned));
        let mut data = Vec::new();
        for key in keys {
            let body = s3.get_object().bucket(BUCKET).key(&key).send().await.unwrap();
            let gz = body.body.collect().await.unwrap().into_bytes();
            flate2::read::MultiGzDecoder::new(&gz[..])
                .read_to_end(&mut data)
                .unwrap();
        }
        data
    }

    async fn verify_every_byte_once(&self) {
        for (id, file) in &self.files {
            let expected = std::fs::read(self.rds.log_dir(id).join(file)).unwrap();
            let shipped = self.shipped(id, file).await;
            assert!(
                shipped == expected,
                "{id}/{file}: {} bytes shipped, {} in the file",
                shipped.len(),
                expected.len()
            );
        }
    }

    async fn invoke(&self, payload: Value) -> Result<Value, Value> {
        let out = self
            .stack
            .lambda()
            .invoke()
            .function_name("rds-log-shipper")
            .payload(aws_smithy_types::Blob::new(payload.to_string()))
            .send()
            .await
            .expect("invoke");
        let body: Value =
            serde_json::from_slice(out.payload().map(|p| p.as_ref()).unwrap_or_default()).unwrap();
        if out.function_error().is_some() {
            Err(body)
        } else {
            Ok(body)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_distributed_map_ships_a_fleet_exactly_once() {
    let fleet = Fleet::start(210).await;
    fleet.rds.fail_instance("pg-9", Some("InvalidDBInstanceState"));
    fleet.append_all(0);
    let path = e2e::stack::repo_root().join("statemachines/rds-log-shipping.asl.json");
    let definition = std::fs::read_to_string(path)
        .unwrap()
        .replace("${ShipperFunctionArn}", FUNCTION_ARN);
    let arn = e2e::seed::create_state_machine(&fleet.stack, "rds-log-shipping", definition)
        .await
        .unwrap();

    let out = fleet.execute(&arn, "scheduled-1").await;
    // The 4 children ran at once, each in an instance of its own (the select's instance took
    // one): the local Lambda starts an instance for every invocation no idle one takes.
    let instances = fleet.stack.function("rds-log-shipper").unwrap().pids().len();
    assert!(
        instances >= 4,
        "{instances} shipper instances for 4 concurrent children"
    );
    let selected = &out["selected"];
    assert_eq!(selected["instances"], 210, "{out}");
    assert_eq!(selected["skippedUnknownEngine"], 1, "{out}");
    assert_eq!(selected["concurrency"], 4);
    assert_eq!(selected["batchSize"], 53);
    assert_eq!(
        selected["requestsPerSecond"], 3.0,
        "12 requests/s split over 4 children"
    );
    assert_eq!(
        selected["manifest"],
        json!({"bucket": BUCKET, "key": "logs/_fleet/scheduled-1/instances.json"})
    );
    let fleet_out = &out["fleet"];
    assert_eq!(fleet_out["instances"], 210, "{out}");
    assert_eq!(fleet_out["batches"], 4, "{out}");
    assert_eq!(fleet_out["batchesFailed"], 0, "{out}");
    assert_eq!(
        fleet_out["instancesFailed"], 1,
        "the one instance made to fail: {out}"
    );
    assert_eq!(fleet_out["instancesComplete"], 209, "{out}");
    assert_eq!(fleet_out["instancesUnreported"], 0, "{out}");
    assert_eq!(fleet_out["fleetMaxLagSeconds"], 0.0, "{out}");
    let results_key = out["results"]["ResultWriterDetails"]["Key"].as_str().unwrap();
    assert!(
        results_key.starts_with("logs/_fleet/scheduled-1/results/"),
        "{results_key}"
    );
    let data = fleet.stack.metrics("rds-log-shipper").unwrap();
    assert_eq!(emf::sum(&data, "InstancesFailed", &[]), 1.0);
    assert_eq!(emf::values(&data, "FleetMaxLagSeconds", &[]), [0.0]);
    assert_eq!(
        emf::select(&data, "LagSeconds", &[]).len(),
        209,
        "one sample per instance listed"
    );

    // The failed instance recovers; every file grows; the next run ships what is new, and the
    // instance never shipped goes first (the lag index).
    fleet.rds.fail_instance("pg-9", None);
    fleet.append_all(1);
    let index: Value = {
        let o = fleet
            .stack
            .s3()
            .get_object()
            .bucket(BUCKET)
            .key("logs/_state/fleet-lag.json")
            .send()
            .await
            .unwrap();
        serde_json::from_slice(&o.body.collect().await.unwrap().into_bytes()).unwrap()
    };
    assert_eq!(
        index["instances"].as_object().unwrap().len(),
        209,
        "every instance measured"
    );
    assert!(
        index["instances"].get("pg-9").is_none(),
        "the failed one was not measured"
    );
    let out = fleet.execute(&arn, "scheduled-2").await;
    assert_eq!(out["fleet"]["instancesComplete"], 210, "{out}");
    let manifest = fleet
        .stack
        .s3()
        .get_object()
        .bucket(BUCKET)
        .key("logs/_fleet/scheduled-2/instances.json")
        .send()
        .await
        .unwrap();
    let manifest: Value =
        serde_json::from_slice(&manifest.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(
        manifest[0],
        json!({"instance": "pg-9"}),
        "the never-measured instance first"
    );
    assert_eq!(manifest.as_array().unwrap().len(), 210);
    fleet.verify_every_byte_once().await;

    bad_batches_are_refused_whole(&fleet).await;
    fleet.stack.stop().await;
}

/// A batch naming an instance the manifest does not hold, a malformed manifest, a manifest
/// outside the shipper's prefix, a rate above the budget: each refused by name before anything
/// is shipped.
async fn bad_batches_are_refused_whole(fleet: &Fleet) {
    let s3 = fleet.stack.s3();
    let manifest = |key: &str| json!({"bucket": BUCKET, "key": key});
    let batch = |items: Value, manifest: Value, rate: f64| {
        json!({"Items": items, "BatchInput": {"action": "ship-batch", "manifest": manifest,
               "requestsPerSecond": rate, "burst": 5, "deadlineMs": 4_102_444_800_000_i64}})
    };
    fleet
        .rds
        .add_instance(instance("pg-new", "postgres", None))
        .unwrap();
    fleet.append_all_for("pg-new");
    let good = manifest("logs/_fleet/scheduled-2/instances.json");
    let cases = [
        (
            batch(
                json!([{"instance": "pg-5"}, {"instance": "pg-new"}]),
                good.clone(),
                3.0,
            ),
            "InstanceNotSelected",
            "the batch names pg-new, which the selection manifest logs/_fleet/scheduled-2/instances.json does not hold",
        ),
        (
            batch(
                json!([{"instance": "pg-new"}]),
                manifest("logs/_fleet/bad/instances.json"),
                3.0,
            ),
            "InvalidManifest",
            "the selection manifest logs/_fleet/bad/instances.json is malformed",
        ),
        (
            batch(
                json!([{"instance": "pg-new"}]),
                manifest("logs/_state/fleet-lag.json"),
                3.0,
            ),
            "InvalidRequest",
            "`BatchInput.manifest` must name an object under s3://rds-fleet-archive/logs/_fleet/",
        ),
        (
            batch(json!([{"instance": "pg-new"}]), good.clone(), 13.0),
            "InvalidRequest",
            "`BatchInput.requestsPerSecond` 13 exceeds the budget of 12",
        ),
        (
            json!({"Items": [{"instance": "pg-new"}], "BatchInput": {"action": "ship-batch"}}),
            "InvalidRequest",
            "`BatchInput.deadlineMs` is required",
        ),
    ];
    s3.put_object()
        .bucket(BUCKET)
        .key("logs/_fleet/bad/instances.json")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"[\"pg-new\"]"))
        .send()
        .await
        .unwrap();
    for (payload, error_type, message) in cases {
        let err = fleet.invoke(payload.clone()).await.expect_err("refused");
        assert_eq!(err["errorType"], error_type, "{payload}: {err}");
        assert!(
            err["errorMessage"].as_str().unwrap().contains(message),
            "{payload}: {err}"
        );
    }
    assert!(
        fleet.shipped("pg-new", log_file("postgres")).await.is_empty(),
        "nothing of pg-new shipped"
    );
    let checkpoint = s3
        .head_object()
        .bucket(BUCKET)
        .key(keys::checkpoint_key(PREFIX, "pg-new"))
        .send()
        .await;
    assert!(checkpoint.is_err(), "no checkpoint for pg-new");
}

impl Fleet {
    fn append_all_for(&self, id: &str) {
        let path = self.rds.log_dir(id).join(log_file("postgres"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "2026-12-02 10:00:00 UTC new instance\n").unwrap();
    }
}
