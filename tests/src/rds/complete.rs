//! The RDS emulator's `DownloadCompleteLogFile`, the REST endpoint that streams a whole log file,
//! as the RDS user guide documents it ("Reading log file contents using REST"):
//! `GET /v19/downloadCompleteLogFile/{DBInstanceIdentifier}/{LogFileName}` (the name keeps its
//! `/`; `/v13/` is served too, as RDS does until 2027-03-01), the response the file's contents
//! as a stream (chunked here, 64 KiB at a time, of the file as long as it was when the request
//! came), `DBInstanceNotFound` (404) for an instance that does not exist. What the guide leaves
//! open is answered as RDS's query API answers: a missing file is 404 `DBLogFileNotFoundFault`,
//! throttling 400 `Throttling`, errors as RDS's XML `ErrorResponse`.
//!
//! Every request must carry a valid SigV4 signature for service `rds` in the stack's region
//! (header or presigned form), checked for real against the caller's secret
//! ([`RdsEmulator::set_secrets`], see `crate::sigv4`): unsigned or wrongly signed requests get
//! 403. The endpoint has its own throttle ([`RdsEmulator::set_complete_throttle`]: 300 burst and
//! 12/s by default, separate from the portion API's) and can be slowed
//! ([`RdsEmulator::set_complete_rate`]) to let a test's deadline fall mid-stream. Its requests
//! count in [`RdsEmulator::calls`] as `DownloadCompleteLogFile`, throttled ones included.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::{Bucket, RdsEmulator, Throttle, error};

/// The action name the emulator counts these requests under.
pub const ACTION: &str = "DownloadCompleteLogFile";
/// Bytes read from the file and sent at a time.
const FRAME: usize = 64 * 1024;

/// Who may sign: the secret of an access key id (`None`: no such key).
pub type Secrets = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The endpoint's own settings and counters.
pub(super) struct State {
    throttle: Option<Throttle>,
    bucket: Bucket,
    /// Bytes per second at most, when set.
    rate: Option<u64>,
    /// Bytes of files sent so far.
    sent: Arc<Mutex<u64>>,
    secrets: Option<Secrets>,
    region: String,
}

impl State {
    pub(super) fn new() -> Self {
        Self {
            throttle: Some(Throttle::default()),
            bucket: Bucket {
                tokens: Throttle::default().burst,
                last: Instant::now(),
            },
            rate: None,
            sent: Arc::new(Mutex::new(0)),
            secrets: None,
            region: crate::stack::REGION.to_owned(),
        }
    }
}

/// The instance and file a `downloadCompleteLogFile` path names, percent-decoded; `None` for
/// any other path.
pub fn target(path: &str) -> Option<(String, String)> {
    let rest = ["/v19/downloadCompleteLogFile/", "/v13/downloadCompleteLogFile/"]
        .iter()
        .find_map(|p| path.strip_prefix(p))?;
    let (instance, file) = rest.split_once('/')?;
    let decode = |s: &str| crate::recorder::percent_decode(s, false);
    (!instance.is_empty() && !file.is_empty()).then(|| (decode(instance), decode(file)))
}

fn answer((status, xml): super::Answer) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [("content-type", "text/xml")],
        xml,
    )
        .into_response()
}

impl RdsEmulator {
    /// Who may sign requests: `secrets` gives the secret access key of an access key id. Until
    /// set, every request is refused (403 `InvalidClientTokenId`).
    pub fn set_secrets(&self, secrets: Secrets) {
        if let Ok(mut c) = self.complete.lock() {
            c.secrets = Some(secrets);
        }
    }

    /// The endpoint's own throttle (`None`: off).
    pub fn set_complete_throttle(&self, throttle: Option<Throttle>) {
        if let Ok(mut c) = self.complete.lock() {
            c.throttle = throttle;
            c.bucket = Bucket {
                tokens: throttle.map_or(0.0, |t| t.burst),
                last: Instant::now(),
            };
        }
    }

    /// Sends files at most this many bytes a second (`None`: as fast as it can).
    pub fn set_complete_rate(&self, bytes_per_second: Option<u64>) {
        if let Ok(mut c) = self.complete.lock() {
            c.rate = bytes_per_second.filter(|r| *r > 0);
        }
    }

    /// Bytes of files sent by `DownloadCompleteLogFile` so far.
    pub fn complete_bytes(&self) -> u64 {
        self.complete
            .lock()
            .ok()
            .and_then(|c| c.sent.lock().ok().map(|s| *s))
            .unwrap_or(0)
    }

    /// Counts the request; `false` when the endpoint's throttle refuses it (counted as throttled).
    fn admit(&self) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        *inner.calls.entry(ACTION.to_owned()).or_default() += 1;
        let Ok(mut c) = self.complete.lock() else {
            return false;
        };
        let Some(t) = c.throttle else {
            return true;
        };
        let now = Instant::now();
        let elapsed = now.duration_since(c.bucket.last).as_secs_f64();
        c.bucket.tokens = (c.bucket.tokens + elapsed * t.per_second).min(t.burst);
        c.bucket.last = now;
        if c.bucket.tokens < 1.0 {
            inner.throttled += 1;
            return false;
        }
        c.bucket.tokens -= 1.0;
        true
    }

    /// Serves one `DownloadCompleteLogFile` request (see the module's documentation).
    pub fn download_complete(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let Some((instance, file)) = target(uri.path()) else {
            return answer(error(404, "UnknownOperation", "no such endpoint"));
        };
        let (secrets, region) = match self.complete.lock() {
            Ok(c) => (c.secrets.clone(), c.region.clone()),
            Err(_) => return answer(error(500, "InternalFailure", "emulator state poisoned")),
        };
        let secret_for = |key: &str| secrets.as_ref().and_then(|s| s(key));
        let scope = (region.as_str(), "rds");
        if let Err(r) =
            crate::sigv4::verify(method, uri, headers, body, scope, SystemTime::now(), &secret_for)
        {
            return answer(error(403, r.code, &r.message));
        }
        if method != Method::GET {
            return answer(error(405, "MethodNotAllowed", "only GET downloads a log file"));
        }
        if !self.admit() {
            return answer(error(400, "Throttling", "Rate exceeded"));
        }
        let failing = match self.inner.lock() {
            Ok(inner) => {
                if !inner.instances.iter().any(|i| i.id == instance) {
                    let message = format!("DBInstance {instance} not found.");
                    return answer(error(404, "DBInstanceNotFound", &message));
                }
                inner.failing.get(&instance).cloned()
            }
            Err(_) => return answer(error(500, "InternalFailure", "emulator state poisoned")),
        };
        if let Some(code) = failing {
            return answer(error(
                400,
                &code,
                "the DB instance is not in a state that serves its logs",
            ));
        }
        let path = self.log_dir(&instance).join(&file);
        let opened = (!file.contains(".."))
            .then(|| std::fs::File::open(&path))
            .and_then(Result::ok);
        let Some((f, len)) =
            opened.and_then(|f| f.metadata().ok().filter(|m| m.is_file()).map(|m| (f, m.len())))
        else {
            let message = format!("DBLog File: {file}, is not found on the DB instance");
            return answer(error(404, "DBLogFileNotFoundFault", &message));
        };
        let (rate, sent) = match self.complete.lock() {
            Ok(c) => (c.rate, c.sent.clone()),
            Err(_) => return answer(error(500, "InternalFailure", "emulator state poisoned")),
        };
        let stream = futures_util::stream::unfold((f.take(len), sent), move |(mut f, sent)| async move {
            let mut buf = vec![0; FRAME];
            let n = match f.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => return Some((Err(e), (f, sent))),
            };
            buf.truncate(n);
            if let Some(rate) = rate {
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
            }
            if let Ok(mut s) = sent.lock() {
                *s += n as u64;
            }
            Some((Ok(axum::body::Bytes::from(buf)), (f, sent)))
        });
        (
            StatusCode::OK,
            [("content-type", "application/octet-stream")],
            Body::from_stream(stream),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_instance_and_the_file_with_its_slashes() {
        assert_eq!(
            target("/v19/downloadCompleteLogFile/db1/error/postgresql.log.2026-11-22-00"),
            Some(("db1".into(), "error/postgresql.log.2026-11-22-00".into()))
        );
        assert_eq!(
            target("/v13/downloadCompleteLogFile/sample-sql/log/ERROR.6"),
            Some(("sample-sql".into(), "log/ERROR.6".into()))
        );
        assert_eq!(
            target("/v19/downloadCompleteLogFile/db1/trace/a%20b.trc"),
            Some(("db1".into(), "trace/a b.trc".into()))
        );
        for other in [
            "/",
            "/v19/downloadCompleteLogFile/db1",
            "/v19/downloadCompleteLogFile//x",
            "/v12/downloadCompleteLogFile/a/b",
        ] {
            assert_eq!(target(other), None, "{other}");
        }
    }
}
