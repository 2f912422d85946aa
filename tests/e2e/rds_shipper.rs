//! End to end: the real shipper binary, invoked through the Lambda Invoke API, ships log files
//! served by the RDS log API emulator into moto's S3. A seeded random scenario interleaves runs
//! with appends, multi-line bursts over 1 MB, hourly rotations, deletions, short portions,
//! throttling, deadline cut-offs and crashes between upload and checkpoint, and the catch-up
//! path (`rds_shipper_whole.rs`: backlogs of rotated files downloaded whole, crashes between a
//! whole download's upload and its commit, deadlines mid-download, the endpoint throttled, a
//! binary file); afterwards the decompressed objects of every file concatenate to exactly that
//! file's bytes.
//!
//! Every run's metrics (its EMF lines, captured from the function's log) are checked against
//! the same ground truth: the bytes and objects in S3, the emulator's throttled answers, the
//! bytes of files the emulator deleted before they were shipped, instances made to fail.
//!
//! `RDS_SHIPPER_SEEDS=1,2,3…` runs more seeds (`make test-long`); the default is one fixed seed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod rds_shipper_whole;

use e2e::emf;
use e2e::rds::{DbInstance, RdsEmulator, Throttle};
use e2e::stack::binary_dir;
use e2e::{FunctionOptions, LocalStack};
use rds_log_shipper::checkpoint::{Checkpoint, Pending};
use rds_log_shipper::keys;
use rds_log_shipper::rotation::rotation_stem;
use serde_json::Value;

const BUCKET: &str = "rds-log-archive";
const PREFIX: &str = "logs";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn log_lines(rng: &mut Rng, count: usize, width: usize) -> String {
    let mut s = String::new();
    for _ in 0..count {
        let pid = rng.below(90_000) + 1000;
        let body: String = (0..width).map(|_| (b'a' + rng.below(26) as u8) as char).collect();
        s.push_str(&format!(
            "2026-11-22 00:00:00 UTC [{pid}] LOG:  statement: SELECT '{body}'\n"
        ));
    }
    s
}

struct World {
    stack: LocalStack,
    rds: Arc<RdsEmulator>,
    /// Final content of deleted files, by (instance, file).
    deleted: BTreeMap<(String, String), Vec<u8>>,
    date: String,
    /// Bytes and objects of chunks the test removed from S3 after the shipper reported them
    /// (a crash simulated before the upload): shipped twice, in S3 once.
    removed: (u64, u64),
    /// Files renamed by rotation: (instance, new name) -> the name they had.
    renamed: BTreeMap<(String, String), String>,
    /// Rotation families whose files all shift names at once, SQL Server style: (instance, stem).
    shifted: BTreeSet<(String, String)>,
    /// Files written for whole downloads so far (`rds_shipper_whole`), and the runs that stopped
    /// at their deadline in the middle of one.
    backlog: u32,
    mid_download_stops: u32,
}

/// The line MySQL writes at the top of every general log file: the same in every file.
const GENERAL_HEADER: &str =
    "/rdsdbbin/mysql/bin/mysqld, Version: 8.0.39 (Source distribution). started with:\n";

impl World {
    async fn start() -> World {
        let stack = LocalStack::start().await.expect("stack");
        let rds = stack.enable_rds().expect("rds emulator");
        rds.add_instance(DbInstance {
            id: "pg-main".into(),
            engine: "postgres".into(),
            cluster: None,
            tags: vec![("logs".into(), "ship".into())],
        })
        .unwrap();
        rds.add_instance(DbInstance {
            id: "aurora-1".into(),
            engine: "aurora-mysql".into(),
            cluster: Some("orders".into()),
            tags: vec![("logs".into(), "ship".into())],
        })
        .unwrap();
        stack
            .s3()
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .expect("bucket");
        let env = |extra: &[(&str, &str)]| {
            let mut env: Vec<(String, String)> = e2e::env(&[
                ("LOG_BUCKET", BUCKET),
                ("LOG_PREFIX", PREFIX),
                ("INSTANCE_TAG", "logs=ship"),
                ("RDS_REQUESTS_PER_SECOND", "12"),
                ("RDS_BURST", "50"),
                ("PART_SIZE_MB", "5"),
                // 1 MiB chunks: files of the scenario span several chunks, so chunk after chunk
                // of one file in one run, and runs cut between chunks, are covered.
                ("MAX_CHUNK_MB", "1"),
                ("FULL_LISTING_MINUTES", "0"),
                ("DEADLINE_RESERVE_SECONDS", "1"),
            ]);
            env.extend(e2e::env(extra));
            env
        };
        stack
            .add_function(
                "rds-log-shipper",
                FunctionOptions {
                    env: env(&[]),
                    timeout: Duration::from_secs(120),
                    max_instances: 1,
                    ..FunctionOptions::default()
                },
            )
            .await
            .expect("shipper");
        // The same binary with a 3-second timeout and a slow request rate: runs that end at
        // their deadline.
        stack
            .add_function_binary(
                "rds-log-shipper-short",
                binary_dir().join("rds-log-shipper"),
                FunctionOptions {
                    env: env(&[("RDS_REQUESTS_PER_SECOND", "3"), ("RDS_BURST", "2")]),
                    timeout: Duration::from_secs(3),
                    max_instances: 1,
                    ..FunctionOptions::default()
                },
            )
            .await
            .expect("short shipper");
        let date = keys::date_from_epoch_ms(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64,
        );
        World {
            stack,
            rds,
            deleted: BTreeMap::new(),
            removed: (0, 0),
            renamed: BTreeMap::new(),
            shifted: BTreeSet::new(),
            backlog: 0,
            mid_download_stops: 0,
            date,
        }
    }

    fn path(&self, instance: &str, file: &str) -> PathBuf {
        self.rds.log_dir(instance).join(file)
    }

    fn append(&self, instance: &str, file: &str, text: &str) {
        let path = self.path(instance, file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    }

    async fn invoke(&self, function: &str) -> Value {
        let out = self
            .stack
            .lambda()
            .invoke()
            .function_name(function)
            .payload(aws_smithy_types::Blob::new(
                r#"{"source": "aws.events", "detail-type": "Scheduled Event"}"#,
            ))
            .send()
            .await
            .expect("invoke");
        let payload =
            String::from_utf8_lossy(out.payload().map(|p| p.as_ref()).unwrap_or_default()).into_owned();
        if out.function_error().is_some() {
            // A run cut by its Lambda timeout: like a crash, whatever it left must be resumable.
            return serde_json::json!({"crashed": payload});
        }
        serde_json::from_str(&payload).unwrap_or(Value::Null)
    }

    async fn checkpoint(&self, instance: &str) -> Option<Checkpoint> {
        let out = self
            .stack
            .s3()
            .get_object()
            .bucket(BUCKET)
            .key(keys::checkpoint_key(PREFIX, instance))
            .send()
            .await
            .ok()?;
        serde_json::from_slice(&out.body.collect().await.ok()?.into_bytes()).ok()
    }

    async fn put_checkpoint(&self, cp: &Checkpoint) {
        self.stack
            .s3()
            .put_object()
            .bucket(BUCKET)
            .key(keys::checkpoint_key(PREFIX, &cp.instance))
            .body(serde_json::to_vec(cp).unwrap().into())
            .send()
            .await
            .unwrap();
    }

    /// A run that crashed between uploading a chunk and committing it (and, when
    /// `before_upload`, before the upload too): the checkpoint as it was before the run, with
    /// the chunk recorded as pending.
    async fn simulate_crash(&mut self, instance: &str, before_upload: bool) {
        let Some(before) = self.checkpoint(instance).await else {
            return;
        };
        self.invoke("rds-log-shipper").await;
        let Some(after) = self.checkpoint(instance).await else {
            return;
        };
        // The run kept all it committed except, for each file that advanced by exactly one chunk
        // within its generation, that chunk: recorded as pending (write-ahead) when it crashed,
        // after the upload or before it.
        let mut crashed = after.clone();
        for (name, was) in &before.files {
            let Some(now) = after.files.get(name) else {
                continue;
            };
            if now.generation != was.generation || now.shipped <= was.shipped {
                continue;
            }
            let key = keys::chunk_key(PREFIX, instance, name, was.generation, &self.date, was.shipped);
            let keys_now = self.chunk_keys(instance, name).await;
            let generation_prefix = &key[..key.rfind('-').unwrap()];
            if !keys_now.contains(&key)
                || keys_now
                    .iter()
                    .any(|k| k.starts_with(generation_prefix) && k > &key)
            {
                continue;
            }
            if before_upload {
                self.removed.0 += now.shipped - was.shipped;
                self.removed.1 += 1;
                self.stack
                    .s3()
                    .delete_object()
                    .bucket(BUCKET)
                    .key(&key)
                    .send()
                    .await
                    .unwrap();
            }
            if let Some(f) = crashed.files.get_mut(name) {
                f.marker = was.marker.clone();
                f.shipped = was.shipped;
                f.pending = Some(Pending {
                    key,
                    start: was.shipped,
                    end: now.shipped,
                    end_marker: now.marker.clone(),
                    // The crashed run's deadline has passed.
                    until: 0,
                });
            }
        }
        self.put_checkpoint(&crashed).await;
    }

    /// Every generation of a file, decompressed and concatenated in key order.
    async fn shipped(&self, instance: &str, file: &str) -> BTreeMap<String, Vec<u8>> {
        let mut by_generation: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (key, data) in self.chunks(instance, file).await {
            let generation = key.rsplit('/').next().unwrap()[..5].to_owned();
            by_generation.entry(generation).or_default().extend(data);
        }
        by_generation
    }

    /// Each chunk object of a file, decompressed, in key order.
    async fn chunks(&self, instance: &str, file: &str) -> Vec<(String, Vec<u8>)> {
        let mut chunks = Vec::new();
        for key in self.chunk_keys(instance, file).await {
            let body = self
                .stack
                .s3()
                .get_object()
                .bucket(BUCKET)
                .key(&key)
                .send()
                .await
                .unwrap();
            let gz = body.body.collect().await.unwrap().into_bytes();
            let mut data = Vec::new();
            flate2::read::MultiGzDecoder::new(&gz[..])
                .read_to_end(&mut data)
                .unwrap();
            chunks.push((key, data));
        }
        chunks
    }

    /// The keys of a file's chunk objects, in order.
    async fn chunk_keys(&self, instance: &str, file: &str) -> Vec<String> {
        let prefix = keys::file_prefix(PREFIX, instance, file, &self.date);
        let mut keys_found = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .stack
                .s3()
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(&prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .unwrap();
            keys_found.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            token = out.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        keys_found.sort();
        keys_found
    }

    /// Every chunk object in the archive: (their count, their decompressed bytes). Each is also
    /// saved as it is in S3 under the stack's log dir, `archive/<key>`, for tests/athena.
    async fn archive(&self) -> (u64, u64) {
        let (mut objects, mut bytes) = (0, 0);
        let mut token = None;
        loop {
            let out = self
                .stack
                .s3()
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(format!("{PREFIX}/instance="))
                .set_continuation_token(token.take())
                .send()
                .await
                .unwrap();
            for key in out.contents().iter().filter_map(|o| o.key()) {
                let body = self
                    .stack
                    .s3()
                    .get_object()
                    .bucket(BUCKET)
                    .key(key)
                    .send()
                    .await
                    .unwrap();
                let gz = body.body.collect().await.unwrap().into_bytes();
                let saved = self.stack.log_dir().join("archive").join(key);
                std::fs::create_dir_all(saved.parent().unwrap()).unwrap();
                std::fs::write(&saved, &gz).unwrap();
                let mut data = Vec::new();
                flate2::read::MultiGzDecoder::new(&gz[..])
                    .read_to_end(&mut data)
                    .unwrap();
                objects += 1;
                bytes += data.len() as u64;
            }
            token = out.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return (objects, bytes);
            }
        }
    }

    /// The decompressed bytes in S3 of one file (every generation).
    async fn bytes_in_s3(&self, instance: &str, file: &str) -> u64 {
        self.chunks(instance, file)
            .await
            .iter()
            .map(|(_, d)| d.len() as u64)
            .sum()
    }

    /// The EMF data function `name` wrote after its first `from` data.
    fn metrics_since(&self, name: &str, from: usize) -> Vec<emf::Datum> {
        self.stack.metrics(name).expect("well-formed EMF")[from..].to_vec()
    }

    fn files(&self, instance: &str) -> Vec<String> {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let base = self.rds.log_dir(instance);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }

    /// Runs until nothing is left, then checks every byte.
    async fn settle_and_verify(&self) {
        self.rds.set_throttle(Some(Throttle::default()));
        self.rds.set_short_portions(None);
        for _ in 0..3 {
            self.invoke("rds-log-shipper").await;
        }
        let (mut checked, mut largest_file, mut largest_chunk, mut continued) = (0, 0, 0, 0);
        for instance in ["pg-main", "aurora-1"] {
            for file in self.files(instance) {
                for (_, data) in self.chunks(instance, &file).await {
                    largest_chunk = largest_chunk.max(data.len());
                }
                if self
                    .shifted
                    .contains(&(instance.to_owned(), rotation_stem(&file).to_owned()))
                {
                    continue; // checked as a family below
                }
                let expected = std::fs::read(self.path(instance, &file)).unwrap();
                largest_file = largest_file.max(expected.len());
                let shipped = self.shipped(instance, &file).await;
                let mut latest = shipped.values().last().cloned().unwrap_or_default();
                if let Some(source) = self.renamed.get(&(instance.to_owned(), file.clone())) {
                    // A file renamed by rotation: the part of it shipped under its earlier name
                    // (one generation of that name, the one it began as) is not shipped again.
                    let earlier = self.shipped(instance, source).await;
                    if let Some(prefix) = earlier
                        .values()
                        .filter(|g| !g.is_empty() && expected.starts_with(g))
                        .max_by_key(|g| g.len())
                    {
                        latest = [prefix.clone(), latest].concat();
                        continued += 1;
                    }
                }
                assert_eq!(latest.len(), expected.len(), "{instance}/{file}: byte count");
                assert!(latest == expected, "{instance}/{file}: content differs");
                checked += 1;
            }
        }
        for ((instance, file), expected) in &self.deleted {
            for (_, data) in self.chunks(instance, file).await {
                largest_chunk = largest_chunk.max(data.len());
            }
            largest_file = largest_file.max(expected.len());
            let shipped = self.shipped(instance, file).await;
            let latest = shipped.values().last().cloned().unwrap_or_default();
            assert!(
                latest == *expected,
                "deleted {instance}/{file}: {} of {} bytes",
                latest.len(),
                expected.len()
            );
            checked += 1;
        }
        // Families whose files were renamed: every line written is in S3 exactly once, whatever
        // name and generation it was shipped under.
        let families: BTreeSet<(String, String)> = self
            .renamed
            .keys()
            .map(|(i, f)| (i.clone(), rotation_stem(f).to_owned()))
            .chain(self.shifted.iter().cloned())
            .collect();
        for (instance, stem) in &families {
            let members: Vec<String> = self
                .files(instance)
                .into_iter()
                .filter(|f| rotation_stem(f) == stem)
                .collect();
            let mut on_disk: Vec<Vec<u8>> = Vec::new();
            let mut in_s3: Vec<Vec<u8>> = Vec::new();
            for file in &members {
                let content = std::fs::read(self.path(instance, file)).unwrap();
                on_disk.extend(content.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec));
                for (_, data) in self.chunks(instance, file).await {
                    in_s3.extend(data.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec));
                }
            }
            on_disk.sort();
            in_s3.sort();
            assert_eq!(
                in_s3.len(),
                on_disk.len(),
                "{instance}/{stem}*: lines in S3 and on disk"
            );
            assert!(in_s3 == on_disk, "{instance}/{stem}*: lines differ");
            checked += 1;
        }
        assert!(checked >= 3, "{checked}");
        assert!(
            continued > 0,
            "no renamed file continued one shipped under its earlier name"
        );
        // With 1 MiB chunks, a chunk ends within one portion (at most 1 MB) past 1 MiB.
        assert!(
            largest_file > 3 << 20 && largest_chunk < 2 << 20,
            // (step 7 appends more than 4 MB to one file, kept or deleted)
            "files up to {largest_file} bytes, chunks up to {largest_chunk}: the chunk limit was not exercised"
        );
    }
}

async fn scenario(seed: u64) {
    let mut w = World::start().await;
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut hour = 0;
    let pg = |h: u32| format!("error/postgresql.log.2026-11-22-{h:02}");
    w.append("pg-main", &pg(hour), &log_lines(&mut rng, 500, 60));
    w.append("aurora-1", "error/mysql-error.log", &log_lines(&mut rng, 200, 40));
    w.append(
        "aurora-1",
        "slowquery/mysql-slowquery.log",
        &log_lines(&mut rng, 50, 200),
    );
    // Every fault at least once, in a seeded order.
    let mut schedule: Vec<u64> = vec![
        0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 0, 2, 4, 10, 10, 11, 12, 11, 12, 11, 13, 14, 13, 14, 13, 15, 15, 16,
        17, 18, 19, 20, 4,
    ];
    for i in (1..schedule.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        schedule.swap(i, j);
    }
    for (step, op) in schedule.into_iter().enumerate() {
        match op {
            0 | 1 => {
                let n = rng.below(3000) as usize + 1;
                w.append("pg-main", &pg(hour), &log_lines(&mut rng, n, 60));
            }
            2 => {
                // Twelve 100 KB lines: RDS cuts the portion at 1 MB; fewer lines must be re-read.
                w.append(
                    "aurora-1",
                    "slowquery/mysql-slowquery.log",
                    &log_lines(&mut rng, 12, 100_000),
                );
            }
            3 => {
                hour += 1;
                w.append("pg-main", &pg(hour), &log_lines(&mut rng, 300, 60));
            }
            4 if w.files("pg-main").len() > 1 => {
                // RDS deletes rotated files, never the one being written.
                let oldest = w.files("pg-main").into_iter().next().unwrap();
                let content = std::fs::read(w.path("pg-main", &oldest)).unwrap();
                // It must be fully shipped before RDS deletes it: the rotated file was complete.
                w.invoke("rds-log-shipper").await;
                let deleted = w.rds.delete_file("pg-main", &oldest).unwrap();
                assert_eq!(deleted, content);
                w.deleted.insert(("pg-main".into(), oldest), content);
            }
            5 => w.rds.set_short_portions(Some(rng.below(4) + 2)),
            6 => w.rds.set_throttle(Some(Throttle {
                burst: 2.0,
                per_second: 3.0,
            })),
            7 => {
                // More than a 3-second run at 3 requests/s can read: it must stop at its deadline,
                // checkpointed, and the next run continue.
                w.append("pg-main", &pg(hour), &log_lines(&mut rng, 8000, 500));
                let summary = w.invoke("rds-log-shipper-short").await;
                assert_eq!(summary["stoppedAtDeadline"], true, "{summary}");
            }
            8 | 9 => {
                // 8: the chunk reached S3 but the checkpoint was not committed; 9: it never did.
                w.append("aurora-1", "error/mysql-error.log", &log_lines(&mut rng, 100, 40));
                w.simulate_crash("aurora-1", op == 9).await;
            }
            11 | 12 => {
                // 11: MySQL's hourly rotation renames the active general log to `.log.<n>` and
                // starts a new one, which begins with the same header line; 12: it grows.
                let active = "general/mysql-general.log";
                if op == 11 && w.path("aurora-1", active).exists() {
                    let rotated = format!("{active}.{}", w.renamed.len());
                    std::fs::rename(w.path("aurora-1", active), w.path("aurora-1", &rotated)).unwrap();
                    w.renamed.insert(("aurora-1".into(), rotated), active.into());
                }
                let n = rng.below(300) as usize + 1;
                let mut text = if w.path("aurora-1", active).exists() {
                    String::new()
                } else {
                    GENERAL_HEADER.to_owned()
                };
                text.push_str(&log_lines(&mut rng, n, 70));
                w.append("aurora-1", active, &text);
            }
            13 | 14 => {
                // 13: SQL Server starts a new error log at each restart and shifts the others:
                // ERROR.n -> ERROR.n+1, ..., ERROR -> ERROR.1; 14: the current one grows.
                let base = "log/ERROR";
                if op == 13 && w.path("aurora-1", base).exists() {
                    let mut n = 1;
                    while w.path("aurora-1", &format!("{base}.{n}")).exists() {
                        n += 1;
                    }
                    for k in (1..n).rev() {
                        std::fs::rename(
                            w.path("aurora-1", &format!("{base}.{k}")),
                            w.path("aurora-1", &format!("{base}.{}", k + 1)),
                        )
                        .unwrap();
                    }
                    std::fs::rename(w.path("aurora-1", base), w.path("aurora-1", &format!("{base}.1")))
                        .unwrap();
                    w.shifted.insert(("aurora-1".into(), base.into()));
                }
                let n = rng.below(200) as usize + 1;
                w.append("aurora-1", base, &log_lines(&mut rng, n, 50));
            }
            10 => {
                // MySQL renames its active slow log to `.log.<hour>` every hour and reuses that
                // name the next day: a file replaced under its name, even by a larger one, is a
                // new file to ship from its beginning (the first time, the file is created).
                let name = "slowquery/mysql-slowquery.log.7";
                let old = std::fs::metadata(w.path("aurora-1", name)).map_or(0, |m| m.len() as usize);
                let mut text = log_lines(&mut rng, 50, 80);
                while text.len() <= old {
                    text.push_str(&log_lines(&mut rng, 50, 80));
                }
                let path = w.path("aurora-1", name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            }
            15 => {
                // A backlog: rotated files nothing of which is shipped, downloaded whole.
                let n = rng.below(3) as u32 + 1;
                w.backlog(&mut rng, n);
            }
            16 => w.deadline_mid_download(&mut rng).await,
            17 => {
                // The whole-download endpoint's own throttle: its answers back off and retry.
                w.rds.set_complete_throttle(Some(Throttle {
                    burst: 1.0,
                    per_second: 0.5,
                }));
                w.backlog(&mut rng, 3);
            }
            18 | 19 => {
                // 18: a whole download's last chunk reached S3 but was not committed; 19: never did.
                w.backlog(&mut rng, 1);
                let crashed = w.simulate_crash_whole("pg-main", op == 19).await;
                assert!(crashed > 0, "no whole download to crash");
            }
            20 => w.binary_trace(&mut rng).await,
            _ => {
                let n = rng.below(200) as usize + 1;
                w.append("aurora-1", "error/mysql-error.log", &log_lines(&mut rng, n, 40));
            }
        }
        w.invoke("rds-log-shipper").await;
        if step == 0 {
            let objects = w
                .stack
                .s3()
                .list_objects_v2()
                .bucket(BUCKET)
                .prefix(format!("{PREFIX}/instance="))
                .send()
                .await
                .unwrap();
            assert!(objects.key_count().unwrap_or(0) > 0, "the first runs ship data");
        }
        w.rds.set_throttle(Some(Throttle::default()));
        w.rds.set_complete_throttle(Some(Throttle::default()));
    }
    w.settle_and_verify().await;
    let (calls, throttled) = w.rds.calls();
    eprintln!(
        "seed {seed}: RDS calls {calls:?}, throttled {throttled}, {} MB downloaded whole",
        w.rds.complete_bytes() / 1_000_000
    );
    assert!(throttled > 0, "the scenario throttled no request");
    assert!(
        calls.get("DownloadCompleteLogFile").is_some_and(|n| *n > 0),
        "{calls:?}"
    );
    assert_eq!(w.mid_download_stops, 1, "a run stopped mid-download");
    verify_metrics(&w, throttled).await;
    w.stack.stop().await;
}

/// The scenario's metrics against its ground truth: what S3 holds, what the emulator throttled,
/// and nothing lost (every file deleted was shipped first; no line was over 1 MB).
async fn verify_metrics(w: &World, throttled: u64) {
    let mut data = w.metrics_since("rds-log-shipper", 0);
    let settled = data.clone();
    data.extend(w.metrics_since("rds-log-shipper-short", 0));
    let (objects, bytes) = w.archive().await;
    let (removed_bytes, removed_objects) = w.removed;
    assert_eq!(
        emf::sum(&data, "BytesShipped", &[]) as u64,
        bytes + removed_bytes,
        "BytesShipped: the bytes in S3 (and the chunks the test removed after they were reported)"
    );
    assert_eq!(
        emf::sum(&data, "ObjectsWritten", &[]) as u64,
        objects + removed_objects,
        "ObjectsWritten: the chunk objects in S3"
    );
    assert_eq!(
        emf::sum(&data, "BytesLost", &[]),
        0.0,
        "nothing deleted unshipped"
    );
    assert_eq!(emf::sum(&data, "Anomalies", &[("Kind", "file_lost")]), 0.0);
    assert_eq!(
        emf::sum(&data, "ThrottledRequests", &[]) as u64,
        throttled,
        "ThrottledRequests: every throttling answer of the emulator, retried ones included"
    );
    assert_eq!(emf::sum(&data, "InstancesFailed", &[]), 0.0);
    // Every file that got bytes is counted by the runs that shipped them: at least the files
    // in S3, at most one per run per file.
    let files_shipped = emf::sum(&data, "FilesShipped", &[]);
    assert!(
        files_shipped >= (w.files("pg-main").len() + w.deleted.len()) as f64,
        "{files_shipped}"
    );
    // Settled: the last run left nothing listed unshipped.
    let last_lags: BTreeMap<String, f64> = emf::select(&settled, "LagSeconds", &[])
        .iter()
        .map(|d| {
            (
                d.properties["DBInstanceIdentifier"].as_str().unwrap().to_owned(),
                d.values[0],
            )
        })
        .collect();
    assert_eq!(
        last_lags,
        BTreeMap::from([("aurora-1".to_owned(), 0.0), ("pg-main".to_owned(), 0.0)])
    );
    assert_eq!(
        emf::values(&settled, "FleetMaxLagSeconds", &[]).last(),
        Some(&0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_is_shipped_exactly_once() {
    let seeds: Vec<u64> = std::env::var("RDS_SHIPPER_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| vec![42]);
    for seed in seeds {
        scenario(seed).await;
    }
}

/// A file RDS deletes (retention) before all of it was shipped: the bytes its last listing held
/// beyond those shipped are reported lost, exactly, once. Along the way: the lag of a run left
/// behind by its deadline, within known bounds, and of a run caught up; a failed instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_deleted_before_they_were_shipped_are_lost_exactly_once() {
    let w = World::start().await;
    // pg-main only, 4 seconds at 3 requests/s: a 12 MB file takes several runs.
    w.stack
        .add_function_binary(
            "rds-log-shipper-pg-slow",
            binary_dir().join("rds-log-shipper"),
            FunctionOptions {
                env: e2e::env(&[
                    ("LOG_BUCKET", BUCKET),
                    ("LOG_PREFIX", PREFIX),
                    ("INSTANCES", "pg-main"),
                    ("RDS_REQUESTS_PER_SECOND", "3"),
                    ("RDS_BURST", "2"),
                    // The big file is rotated and quiet: it would be downloaded whole in one
                    // run. This test is about what portions leave behind.
                    ("COMPLETE_DOWNLOADS", "false"),
                    ("PART_SIZE_MB", "5"),
                    ("MAX_CHUNK_MB", "1"),
                    ("FULL_LISTING_MINUTES", "0"),
                    ("DEADLINE_RESERVE_SECONDS", "1"),
                ]),
                timeout: Duration::from_secs(4),
                max_instances: 1,
                ..FunctionOptions::default()
            },
        )
        .await
        .expect("slow shipper");
    let mut rng = Rng(5);
    let (big, small) = (
        "error/postgresql.log.2026-11-22-10",
        "error/postgresql.log.2026-11-22-11",
    );
    w.append("pg-main", big, &log_lines(&mut rng, 24_000, 500));
    w.append("pg-main", small, &log_lines(&mut rng, 100, 60));
    // Written ten minutes ago, as far as RDS's LastWritten says.
    let written = std::time::SystemTime::now() - Duration::from_secs(600);
    for f in [big, small] {
        std::fs::File::options()
            .append(true)
            .open(w.path("pg-main", f))
            .unwrap()
            .set_modified(written)
            .unwrap();
    }
    let set_at = std::time::Instant::now();
    // Runs cut by their deadline until part of the big file, not all, is shipped.
    let mut partly = None;
    for _ in 0..10 {
        let from = w.stack.metrics("rds-log-shipper-pg-slow").unwrap().len();
        let summary = w.invoke("rds-log-shipper-pg-slow").await;
        assert_eq!(summary["stoppedAtDeadline"], true, "{summary}");
        let data = w.metrics_since("rds-log-shipper-pg-slow", from);
        // Left behind: the oldest file listed with bytes not shipped was last written 600 s
        // before the test set it, which is at most `set_at.elapsed()` ago.
        let lag = emf::values(&data, "LagSeconds", &[]);
        assert_eq!(lag.len(), 1, "{data:?}");
        assert!(
            lag[0] >= 600.0 && lag[0] <= 600.0 + set_at.elapsed().as_secs_f64() + 1.0,
            "lag {} after {:?}",
            lag[0],
            set_at.elapsed()
        );
        assert_eq!(emf::values(&data, "FleetMaxLagSeconds", &[]), lag);
        let cp = w.checkpoint("pg-main").await;
        let entry = cp.as_ref().and_then(|cp| cp.files.get(big));
        if let Some(e) = entry
            && e.shipped > 0
        {
            partly = Some(e.clone());
            break;
        }
    }
    let entry = partly.expect("a run shipped part of the big file");
    let listed = entry.listed.expect("the last listing is recorded");
    assert!(entry.shipped < listed.size, "{entry:?}");
    assert!(
        !w.checkpoint("pg-main").await.unwrap().files.contains_key(small),
        "the small file is not started yet"
    );
    // RDS deletes the big file; the next complete run reports what it lost.
    let content = w.rds.delete_file("pg-main", big).unwrap();
    assert_eq!(
        content.len() as u64,
        listed.size,
        "nothing written since it was listed"
    );
    let in_s3 = w.bytes_in_s3("pg-main", big).await;
    assert_eq!(in_s3, entry.shipped);
    let lost = content.len() as u64 - in_s3;
    assert!(lost > 0);
    let from = w.stack.metrics("rds-log-shipper").unwrap().len();
    let summary = w.invoke("rds-log-shipper").await;
    let data = w.metrics_since("rds-log-shipper", from);
    let pg = summary["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance"] == "pg-main")
        .unwrap()
        .clone();
    assert_eq!(pg["bytesLost"], lost, "{summary}");
    assert_eq!(pg["lost"][0]["file"], big, "{summary}");
    assert_eq!(emf::sum(&data, "BytesLost", &[]), lost as f64);
    assert_eq!(emf::sum(&data, "Anomalies", &[("Kind", "file_lost")]), 1.0);
    // The same run shipped the small file whole, and nothing else: caught up.
    let small_len = std::fs::metadata(w.path("pg-main", small)).unwrap().len();
    assert_eq!(w.bytes_in_s3("pg-main", small).await, small_len);
    assert_eq!(emf::sum(&data, "BytesShipped", &[]), small_len as f64);
    assert_eq!(emf::sum(&data, "FilesShipped", &[]), 1.0);
    assert_eq!(
        emf::sum(&data, "ObjectsWritten", &[]),
        w.chunk_keys("pg-main", small).await.len() as f64
    );
    assert_eq!(
        emf::values(&data, "LagSeconds", &[]),
        [0.0, 0.0],
        "both instances"
    );
    assert_eq!(emf::values(&data, "FleetMaxLagSeconds", &[]), [0.0]);
    assert_eq!(emf::sum(&data, "InstancesFailed", &[]), 0.0);
    // Reported once: the checkpoint that forgot the file was the report.
    let from = w.stack.metrics("rds-log-shipper").unwrap().len();
    w.invoke("rds-log-shipper").await;
    let data = w.metrics_since("rds-log-shipper", from);
    assert_eq!(emf::sum(&data, "BytesLost", &[]), 0.0);
    assert_eq!(emf::sum(&data, "Anomalies", &[("Kind", "file_lost")]), 0.0);
    // An instance whose log calls RDS refuses fails this run; the other is shipped.
    w.rds.fail_instance("aurora-1", Some("InvalidDBInstanceState"));
    let from = w.stack.metrics("rds-log-shipper").unwrap().len();
    let summary = w.invoke("rds-log-shipper").await;
    let data = w.metrics_since("rds-log-shipper", from);
    assert_eq!(summary["instancesFailed"], 1, "{summary}");
    assert_eq!(emf::sum(&data, "InstancesFailed", &[]), 1.0);
    w.rds.fail_instance("aurora-1", None);
    // Ground truth across every run of the test.
    let mut all = w.metrics_since("rds-log-shipper", 0);
    all.extend(w.metrics_since("rds-log-shipper-pg-slow", 0));
    let (objects, bytes) = w.archive().await;
    assert_eq!(emf::sum(&all, "BytesShipped", &[]) as u64, bytes);
    assert_eq!(emf::sum(&all, "ObjectsWritten", &[]) as u64, objects);
    assert_eq!(emf::sum(&all, "BytesLost", &[]) as u64, lost);
    assert_eq!(emf::sum(&all, "ThrottledRequests", &[]) as u64, w.rds.calls().1);
    assert_eq!(w.rds.deleted(), [("pg-main".into(), big.into(), listed.size)]);
    w.stack.stop().await;
}

/// A file whose compressed chunk spans several multipart parts, then continues in a second chunk:
/// the part buffer is reused from part to part and from chunk to chunk without mixing bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_is_shipped_through_multipart_parts_and_chunks() {
    let w = World::start().await;
    w.stack
        .add_function_binary(
            "rds-log-shipper-large",
            binary_dir().join("rds-log-shipper"),
            FunctionOptions {
                env: e2e::env(&[
                    ("LOG_BUCKET", BUCKET),
                    ("LOG_PREFIX", PREFIX),
                    ("INSTANCES", "pg-main"),
                    ("RDS_BURST", "300"),
                    ("PART_SIZE_MB", "5"),
                    ("MAX_CHUNK_MB", "24"),
                ]),
                timeout: Duration::from_secs(120),
                max_instances: 1,
                ..FunctionOptions::default()
            },
        )
        .await
        .expect("large shipper");
    // Random letters compress to about 60%: the 24 MiB chunk needs at least three 5 MiB parts.
    let file = "error/postgresql.log.2026-11-22-05";
    let mut rng = Rng(99);
    while std::fs::metadata(w.path("pg-main", file)).map_or(0, |m| m.len()) < 28_000_000 {
        w.append("pg-main", file, &log_lines(&mut rng, 5_000, 400));
    }
    let summary = w.invoke("rds-log-shipper-large").await;
    let instance = &summary["instances"][0];
    assert_eq!(instance["complete"], true, "{summary}");
    assert_eq!(instance["objects"], 2, "{summary}");
    let prefix = keys::file_prefix(PREFIX, "pg-main", file, &w.date);
    let listed = w
        .stack
        .s3()
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(&prefix)
        .send()
        .await
        .unwrap();
    let etags: Vec<String> = listed
        .contents()
        .iter()
        .map(|o| o.e_tag().unwrap_or_default().trim_matches('"').to_owned())
        .collect();
    assert_eq!(etags.len(), 2, "{etags:?}");
    let parts: u32 = etags[0]
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1);
    assert!(
        parts >= 3,
        "the first chunk is a multipart upload of 3 parts or more: {etags:?}"
    );
    assert!(
        !etags[1].contains('-'),
        "the second chunk is a single PUT: {etags:?}"
    );
    let expected = std::fs::read(w.path("pg-main", file)).unwrap();
    let shipped = w.shipped("pg-main", file).await;
    let got = shipped.values().last().unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == &expected, "content differs");
    w.stack.stop().await;
}
