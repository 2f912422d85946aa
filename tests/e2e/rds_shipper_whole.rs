//! The catch-up path of the RDS shipper end to end (files downloaded whole with
//! `DownloadCompleteLogFile`): the scenario's steps that make a backlog, crash a run between a
//! whole download's upload and its commit, stop a run at its deadline mid-download, throttle the
//! endpoint, and ship a binary file; and the emulated endpoint's refusals.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_smithy_runtime_api::client::identity::Identity;
use e2e::rds::{DbInstance, Throttle};
use e2e::recorder::{HARNESS, HARNESS_ACCESS_KEY_ID};
use rds_log_shipper::checkpoint::{Checkpoint, Pending, UNMARKED};

use super::{Rng, World, log_lines};

/// The rotated PostgreSQL files of a day before the scenario's: superseded by its files.
pub fn backlog_name(n: u32) -> String {
    format!("error/postgresql.log.2026-11-21-{:02}", n % 24)
}

/// Sets a file's last-written time `ago` in the past (RDS's `LastWritten` is the emulator's mtime).
pub fn backdate(path: &std::path::Path, ago: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

impl World {
    /// Writes `count` rotated files of a past hour to pg-main, of up to about 2.5 MB (several
    /// 1 MiB chunks), last written 10 to 50 minutes ago (superseded and quiet) or 2 hours ago
    /// (quiet): nothing of them shipped, they are downloaded whole. Returns their names.
    pub fn backlog(&mut self, rng: &mut Rng, count: u32) -> Vec<String> {
        let mut names = Vec::new();
        for _ in 0..count {
            let name = backlog_name(self.backlog);
            self.backlog += 1;
            let lines = rng.below(2_500) as usize + 1;
            self.append("pg-main", &name, &log_lines(rng, lines, 900));
            let minutes = if rng.below(3) == 0 {
                120
            } else {
                10 + rng.below(40)
            };
            backdate(&self.path("pg-main", &name), Duration::from_secs(minutes * 60));
            names.push(name);
        }
        names
    }

    /// A run that crashed after writing ahead the last chunk of a whole download (and, when
    /// `before_upload`, before uploading it): the checkpoint as the run left it, that chunk
    /// recorded as pending again, its object removed when it never reached S3.
    pub async fn simulate_crash_whole(&mut self, instance: &str, before_upload: bool) -> usize {
        let before = self
            .checkpoint(instance)
            .await
            .unwrap_or_else(|| Checkpoint::new(instance));
        self.invoke("rds-log-shipper").await;
        let Some(after) = self.checkpoint(instance).await else {
            return 0;
        };
        let mut crashed = after.clone();
        let mut count = 0;
        for (name, now) in &after.files {
            let was = before.files.get(name).filter(|w| w.generation == now.generation);
            if now.marker != UNMARKED
                || now.pending.is_some()
                || was.is_some_and(|w| w.shipped >= now.shipped)
            {
                continue;
            }
            let generation = format!("/g{:04}-", now.generation);
            let keys_now = self.chunk_keys(instance, name).await;
            let Some(key) = keys_now.iter().filter(|k| k.contains(&generation)).max().cloned() else {
                continue;
            };
            let start: u64 = key
                .rsplit('-')
                .next()
                .unwrap()
                .trim_end_matches(".log.gz")
                .parse()
                .unwrap();
            if was.is_some_and(|w| start < w.shipped) {
                continue; // the chunk is an earlier run's
            }
            if before_upload {
                self.removed.0 += now.shipped - start;
                self.removed.1 += 1;
                self.stack
                    .s3()
                    .delete_object()
                    .bucket(super::BUCKET)
                    .key(&key)
                    .send()
                    .await
                    .unwrap();
            }
            let f = crashed.files.get_mut(name).unwrap();
            f.marker = if start == 0 { "0".into() } else { UNMARKED.into() };
            f.pending = Some(Pending {
                key,
                start,
                end: now.shipped,
                end_marker: UNMARKED.into(),
                // The crashed run's deadline has passed.
                until: 0,
            });
            f.shipped = start;
            count += 1;
        }
        self.put_checkpoint(&crashed).await;
        count
    }

    /// A run that reaches its deadline in the middle of a whole download (the endpoint slowed to
    /// 400 KB/s, a 3-second function): it stops at its deadline with part of the file committed,
    /// no RDS marker kept; the next run downloads the file whole again past those bytes.
    pub async fn deadline_mid_download(&mut self, rng: &mut Rng) {
        self.invoke("rds-log-shipper").await; // nothing else left for the short run
        let name = backlog_name(self.backlog);
        self.backlog += 1;
        self.append("pg-main", &name, &log_lines(rng, 3_500, 900));
        backdate(&self.path("pg-main", &name), Duration::from_secs(20 * 60));
        self.rds.set_complete_rate(Some(400_000));
        let summary = self.invoke("rds-log-shipper-short").await;
        self.rds.set_complete_rate(None);
        assert_eq!(summary["stoppedAtDeadline"], true, "{summary}");
        let cp = self.checkpoint("pg-main").await.unwrap();
        let size = std::fs::metadata(self.path("pg-main", &name)).unwrap().len();
        let entry = &cp.files[&name];
        assert!(
            entry.marker == UNMARKED && entry.shipped > 0 && entry.shipped < size,
            "{name}: stopped mid-download: {entry:?} of {size} bytes"
        );
        self.mid_download_stops += 1;
    }

    /// A SQL Server trace file (the emulator serves `.trc` only whole): skipped by the portion
    /// path while it is written, then, once quiet (two hours), downloaded whole.
    pub async fn binary_trace(&mut self, rng: &mut Rng) {
        let name = format!("log/trace_{}.trc", self.backlog);
        self.backlog += 1;
        let n = rng.below(400) as usize + 1;
        self.append("aurora-1", &name, &log_lines(rng, n, 60));
        self.invoke("rds-log-shipper").await;
        assert_eq!(
            self.bytes_in_s3("aurora-1", &name).await,
            0,
            "{name} is skipped while written"
        );
        backdate(&self.path("aurora-1", &name), Duration::from_secs(2 * 3600));
    }
}

/// A GET of `path` on the stack's gateway, signed for rds as `access_key_id` with `secret`
/// (`None`: unsigned).
async fn get(stack: &e2e::LocalStack, path: &str, signer: Option<(&str, &str)>) -> reqwest::Response {
    let url = format!("{}{path}", stack.endpoint);
    let mut request = reqwest::Client::new().get(&url);
    if let Some((key, secret)) = signer {
        let identity: Identity = aws_sdk_s3::config::Credentials::new(key, secret, None, None, "t").into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(e2e::stack::REGION)
            .name("rds")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable =
            SignableRequest::new("GET", url.as_str(), std::iter::empty(), SignableBody::Bytes(&[])).unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
    }
    request.send().await.unwrap()
}

async fn code_of(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    let code = body
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map_or(body.clone(), |(c, _)| c.to_owned());
    (status, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_file_endpoint_streams_signed_requests_and_refuses_the_others() {
    let stack = e2e::LocalStack::start().await.unwrap();
    let rds = stack.enable_rds().unwrap();
    let dir = rds
        .add_instance(DbInstance {
            id: "db1".into(),
            engine: "sqlserver-se".into(),
            cluster: None,
            tags: vec![],
        })
        .unwrap();
    std::fs::create_dir_all(dir.join("log")).unwrap();
    let content: Vec<u8> = (0..300_000u32)
        .map(|i| b"0123456789\n"[(i % 11) as usize])
        .collect();
    std::fs::write(dir.join("log/ERROR.6"), &content).unwrap();
    let path = "/v19/downloadCompleteLogFile/db1/log/ERROR.6";
    let harness = Some((HARNESS_ACCESS_KEY_ID, "test"));
    // A key the emulator does not know, used by this test itself (not a role's request).
    stack.register_caller("AKIANOBODY", HARNESS);

    // Signed: the whole file, streamed in chunks (no length announced).
    let r = get(&stack, path, harness).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers().get("transfer-encoding").map(|v| v.to_str().unwrap()),
        Some("chunked")
    );
    assert!(r.bytes().await.unwrap() == content);
    let r = get(&stack, "/v13/downloadCompleteLogFile/db1/log/ERROR.6", harness).await;
    assert_eq!(
        r.status().as_u16(),
        200,
        "the old path is served until 2027-03-01"
    );
    assert_eq!(rds.complete_bytes(), 2 * content.len() as u64);

    // Refused: unsigned, signed with the wrong secret, by a key nobody issued.
    assert_eq!(
        code_of(get(&stack, path, None).await).await,
        (403, "MissingAuthenticationToken".into())
    );
    assert_eq!(
        code_of(get(&stack, path, Some((HARNESS_ACCESS_KEY_ID, "not-the-secret"))).await).await,
        (403, "SignatureDoesNotMatch".into())
    );
    assert_eq!(
        code_of(get(&stack, path, Some(("AKIANOBODY", "x"))).await).await,
        (403, "InvalidClientTokenId".into())
    );
    // Missing: the file, the instance.
    let missing_file = "/v19/downloadCompleteLogFile/db1/log/ERROR.9";
    assert_eq!(
        code_of(get(&stack, missing_file, harness).await).await,
        (404, "DBLogFileNotFoundFault".into())
    );
    let missing_db = "/v19/downloadCompleteLogFile/db9/log/ERROR.6";
    assert_eq!(
        code_of(get(&stack, missing_db, harness).await).await,
        (404, "DBInstanceNotFound".into())
    );

    // Its own throttle: the portion API's is untouched.
    rds.set_complete_throttle(Some(Throttle {
        burst: 1.0,
        per_second: 0.001,
    }));
    assert_eq!(get(&stack, path, harness).await.status().as_u16(), 200);
    assert_eq!(
        code_of(get(&stack, path, harness).await).await,
        (400, "Throttling".into())
    );
    let (calls, throttled) = rds.calls();
    assert_eq!((calls["DownloadCompleteLogFile"], throttled), (6, 1), "{calls:?}");
    // The recorder saw them, as rds requests, the unsigned one without a caller.
    let recorded: Vec<_> = stack
        .calls()
        .into_iter()
        .filter(|c| {
            c["path"]
                .as_str()
                .is_some_and(|p| p.contains("downloadCompleteLogFile"))
        })
        .collect();
    assert_eq!(recorded.len(), 9);
    assert!(
        recorded
            .iter()
            .filter(|c| c["access_key_id"].is_null())
            .all(|c| c["status"] == 403)
    );
    assert!(
        recorded
            .iter()
            .filter(|c| !c["access_key_id"].is_null())
            .all(|c| c["service"] == "rds")
    );
    stack.stop().await;
}
