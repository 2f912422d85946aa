//! An emulator of the RDS log API over the real awsQuery protocol (form-encoded requests, XML
//! answers): `DescribeDBInstances`, `DescribeDBClusters`, `DescribeDBLogFiles` and
//! `DownloadDBLogFilePortion`, serving log files from a directory (`<root>/<instance>/<file>`)
//! that a test can append to, rotate and delete while the shipper runs.
//!
//! It behaves as RDS documents and as RDS is seen to behave: portions of at most 1 MB and
//! 10,000 lines; marker "0" reads from the start and no marker reads the tail; markers are
//! opaque; `AdditionalDataPending`; a portion over 1 MB is cut and ends with the truncation
//! notice while its marker moves past every requested line; occasional short portions
//! (`AdditionalDataPending` false before the end); `DBLogFileNotFoundFault`; the binary-file
//! error; files deleted as retention deletes them ([`RdsEmulator::delete_file`], recorded);
//! instances whose log calls fail ([`RdsEmulator::fail_instance`]); and a token bucket (300
//! burst, 12/s by default) answering `Throttling` like RDS. The REST endpoint that streams a
//! whole file, `DownloadCompleteLogFile` (SigV4 checked, its own throttle), is in [`complete`].

pub mod complete;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, UNIX_EPOCH};

pub const MAX_PORTION_BYTES: usize = 1_048_576;
pub const MAX_LINES: usize = 10_000;
pub const TRUNCATION_SUFFIX: &str = " [Your log message was truncated]";
const NS: &str = "http://rds.amazonaws.com/doc/2014-10-31/";

#[derive(Debug, Clone)]
pub struct DbInstance {
    pub id: String,
    pub engine: String,
    pub cluster: Option<String>,
    pub tags: Vec<(String, String)>,
}

impl DbInstance {
    /// Instance `i` of a test fleet: three in ten are members of an Aurora MySQL cluster (a
    /// writer and two readers per cluster), two MySQL, five PostgreSQL.
    pub fn of_fleet(i: usize) -> DbInstance {
        let (id, engine, cluster) = match i % 10 {
            0..=2 => (
                format!("orders-{}-{}", i / 10, i % 10),
                "aurora-mysql",
                Some(format!("orders-{}", i / 10)),
            ),
            3 | 4 => (format!("mysql-{i}"), "mysql", None),
            _ => (format!("pg-{i}"), "postgres", None),
        };
        DbInstance {
            id,
            engine: engine.into(),
            cluster,
            tags: vec![],
        }
    }

    /// The log file a test fleet's instance writes to, by its engine.
    pub fn fleet_log_file(&self) -> &'static str {
        if self.engine.contains("postgres") {
            "error/postgresql.log.2026-12-02-10"
        } else {
            "error/mysql-error.log"
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    pub burst: f64,
    pub per_second: f64,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            burst: 300.0,
            per_second: 12.0,
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Inner {
    instances: Vec<DbInstance>,
    throttle: Option<Throttle>,
    bucket: Bucket,
    /// Every n-th download returns a short portion.
    short_every: Option<u64>,
    downloads: u64,
    calls: BTreeMap<String, u64>,
    throttled: u64,
    /// Bytes of `LogFileData` served by `DownloadDBLogFilePortion`.
    portion_bytes: u64,
    /// Files deleted through [`RdsEmulator::delete_file`]: (instance, file, bytes it held).
    deleted: Vec<(String, String, u64)>,
    /// Instances whose log calls fail, with the error code they answer.
    failing: BTreeMap<String, String>,
}

pub struct RdsEmulator {
    root: PathBuf,
    inner: Mutex<Inner>,
    /// `DownloadCompleteLogFile`'s own throttle, pace, counters and signers.
    complete: Mutex<complete::State>,
}

/// An awsQuery answer: status and XML body.
pub type Answer = (u16, String);

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#xD;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push_str(&format!("&#x{:X};", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    (
        status,
        format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            xml_escape(message),
            uuid::Uuid::new_v4()
        ),
    )
}

fn ok(action: &str, result: &str) -> Answer {
    (
        200,
        format!(
            "<{action}Response xmlns=\"{NS}\"><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
            uuid::Uuid::new_v4()
        ),
    )
}

/// Decodes `application/x-www-form-urlencoded`.
pub fn parse_form(body: &[u8]) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len() + 1
                && let Some(h) = std::str::from_utf8(bytes.get(i + 1..i + 3).unwrap_or(b"zz"))
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(h);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn paginate<T: Clone>(items: &[T], params: &BTreeMap<String, String>) -> (Vec<T>, Option<String>) {
    let max = params
        .get("MaxRecords")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let start = params
        .get("Marker")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(0);
    let page: Vec<T> = items.iter().skip(start).take(max).cloned().collect();
    let next = (start + page.len() < items.len()).then(|| (start + page.len()).to_string());
    (page, next)
}

fn is_char_boundary(bytes: &[u8], i: usize) -> bool {
    i >= bytes.len() || (bytes[i] as i8) >= -0x40
}

/// Reads `len` bytes from `start` (fewer at the end of the file).
fn read_range(path: &Path, start: usize, len: usize) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(start as u64))?;
    let mut buf = Vec::new();
    f.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads from `start` up to `lines` lines. Keeps at most a little over 1 MB of them in memory
/// (more would be cut from the portion anyway) and returns the kept bytes with the length of
/// all the lines read.
fn read_lines_window(path: &Path, start: usize, lines: usize) -> std::io::Result<(Vec<u8>, usize)> {
    use std::io::{BufRead, BufReader, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(start as u64))?;
    let mut reader = BufReader::with_capacity(1 << 20, f);
    let mut kept = Vec::new();
    let mut total = 0;
    let mut count = 0;
    while count < lines {
        let (consumed, newline) = {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            }
        };
        if kept.len() <= MAX_PORTION_BYTES {
            let buf = reader.fill_buf()?;
            let room = (MAX_PORTION_BYTES + 1).saturating_sub(kept.len()).min(consumed);
            kept.extend_from_slice(&buf[..room]);
        }
        reader.consume(consumed);
        total += consumed;
        if newline {
            count += 1;
        }
    }
    Ok((kept, total))
}

fn marker_offset(marker: &str) -> Option<usize> {
    marker.rsplit_once(':').and_then(|(_, o)| o.parse().ok())
}

impl RdsEmulator {
    pub fn new(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(Self {
            root: root.to_path_buf(),
            inner: Mutex::new(Inner {
                instances: Vec::new(),
                throttle: Some(Throttle::default()),
                bucket: Bucket {
                    tokens: Throttle::default().burst,
                    last: Instant::now(),
                },
                short_every: None,
                downloads: 0,
                calls: BTreeMap::new(),
                throttled: 0,
                portion_bytes: 0,
                deleted: Vec::new(),
                failing: BTreeMap::new(),
            }),
            complete: Mutex::new(complete::State::new()),
        })
    }

    /// Adds an instance; its log files live in [`Self::log_dir`].
    pub fn add_instance(&self, instance: DbInstance) -> std::io::Result<PathBuf> {
        let dir = self.log_dir(&instance.id);
        std::fs::create_dir_all(&dir)?;
        if let Ok(mut i) = self.inner.lock() {
            i.instances.push(instance);
        }
        Ok(dir)
    }

    pub fn log_dir(&self, instance: &str) -> PathBuf {
        self.root.join(instance)
    }

    /// `None` turns the throttle off.
    pub fn set_throttle(&self, throttle: Option<Throttle>) {
        if let Ok(mut i) = self.inner.lock() {
            i.throttle = throttle;
            i.bucket = Bucket {
                tokens: throttle.map_or(0.0, |t| t.burst),
                last: Instant::now(),
            };
        }
    }

    /// Every `n`-th download answers with a short portion (`None`: never).
    pub fn set_short_portions(&self, every: Option<u64>) {
        if let Ok(mut i) = self.inner.lock() {
            i.short_every = every.filter(|n| *n > 0);
        }
    }

    /// Deletes a log file as RDS does (retention, rotation): it is no longer listed nor
    /// readable. Returns the bytes it held, and keeps a record of it ([`Self::deleted`]).
    pub fn delete_file(&self, instance: &str, file: &str) -> std::io::Result<Vec<u8>> {
        let path = self.log_dir(instance).join(file);
        let content = std::fs::read(&path)?;
        std::fs::remove_file(&path)?;
        if let Ok(mut i) = self.inner.lock() {
            i.deleted
                .push((instance.to_owned(), file.to_owned(), content.len() as u64));
        }
        Ok(content)
    }

    /// The files deleted so far: (instance, file, bytes it held).
    pub fn deleted(&self) -> Vec<(String, String, u64)> {
        self.inner.lock().map(|i| i.deleted.clone()).unwrap_or_default()
    }

    /// Every `DescribeDBLogFiles` and `DownloadDBLogFilePortion` of `instance` answers with the
    /// 400 error `code` (`None`: served again), as an instance in a state RDS refuses does.
    pub fn fail_instance(&self, instance: &str, code: Option<&str>) {
        if let Ok(mut i) = self.inner.lock() {
            match code {
                Some(c) => i.failing.insert(instance.to_owned(), c.to_owned()),
                None => i.failing.remove(instance),
            };
        }
    }

    /// Calls per action, and how many were throttled.
    pub fn calls(&self) -> (BTreeMap<String, u64>, u64) {
        self.inner
            .lock()
            .map(|i| (i.calls.clone(), i.throttled))
            .unwrap_or_default()
    }

    /// Bytes of log data served by `DownloadDBLogFilePortion` so far.
    pub fn portion_bytes(&self) -> u64 {
        self.inner.lock().map(|i| i.portion_bytes).unwrap_or_default()
    }

    fn served(&self, bytes: usize) {
        if let Ok(mut i) = self.inner.lock() {
            i.portion_bytes += bytes as u64;
        }
    }

    /// Handles one awsQuery request body.
    pub fn handle(&self, body: &[u8]) -> Answer {
        let params = parse_form(body);
        let action = params.get("Action").cloned().unwrap_or_default();
        let Ok(mut inner) = self.inner.lock() else {
            return error(500, "InternalFailure", "emulator state poisoned");
        };
        *inner.calls.entry(action.clone()).or_default() += 1;
        if let Some(t) = inner.throttle {
            let now = Instant::now();
            let elapsed = now.duration_since(inner.bucket.last).as_secs_f64();
            inner.bucket.tokens = (inner.bucket.tokens + elapsed * t.per_second).min(t.burst);
            inner.bucket.last = now;
            if inner.bucket.tokens < 1.0 {
                inner.throttled += 1;
                return error(400, "Throttling", "Rate exceeded");
            }
            inner.bucket.tokens -= 1.0;
        }
        let failing = params
            .get("DBInstanceIdentifier")
            .and_then(|id| inner.failing.get(id));
        if let Some(code) = failing
            && matches!(action.as_str(), "DescribeDBLogFiles" | "DownloadDBLogFilePortion")
        {
            return error(
                400,
                code,
                "the DB instance is not in a state that serves its logs",
            );
        }
        match action.as_str() {
            "DescribeDBInstances" => self.describe_instances(&inner, &params),
            "DescribeDBClusters" => self.describe_clusters(&inner, &params),
            "DescribeDBLogFiles" => self.describe_log_files(&inner, &params),
            "DownloadDBLogFilePortion" => {
                inner.downloads += 1;
                let short = inner.short_every.is_some_and(|n| inner.downloads % n == 0);
                drop(inner);
                self.download(&params, short)
            }
            other => error(
                400,
                "InvalidAction",
                &format!("the RDS emulator does not implement {other}"),
            ),
        }
    }

    fn instance<'a>(&self, inner: &'a Inner, id: Option<&String>) -> Result<&'a DbInstance, Answer> {
        let id = id.ok_or_else(|| error(400, "MissingParameter", "DBInstanceIdentifier is required"))?;
        inner
            .instances
            .iter()
            .find(|i| &i.id == id)
            .ok_or_else(|| error(404, "DBInstanceNotFound", &format!("DBInstance {id} not found.")))
    }

    fn describe_instances(&self, inner: &Inner, params: &BTreeMap<String, String>) -> Answer {
        let selected: Vec<DbInstance> = match params.get("DBInstanceIdentifier") {
            Some(id) => match self.instance(inner, Some(id)) {
                Ok(i) => vec![i.clone()],
                Err(e) => return e,
            },
            None => inner.instances.clone(),
        };
        let (page, next) = paginate(&selected, params);
        let mut xml = String::from("<DBInstances>");
        for i in page {
            xml.push_str(&format!(
                "<DBInstance><DBInstanceIdentifier>{id}</DBInstanceIdentifier><Engine>{engine}</Engine><DBInstanceStatus>available</DBInstanceStatus><DBInstanceArn>arn:aws:rds:us-east-1:123456789012:db:{id}</DBInstanceArn>{cluster}<TagList>{tags}</TagList></DBInstance>",
                id = xml_escape(&i.id),
                engine = xml_escape(&i.engine),
                cluster = i
                    .cluster
                    .as_ref()
                    .map(|c| format!("<DBClusterIdentifier>{}</DBClusterIdentifier>", xml_escape(c)))
                    .unwrap_or_default(),
                tags = i
                    .tags
                    .iter()
                    .map(|(k, v)| format!("<Tag><Key>{}</Key><Value>{}</Value></Tag>", xml_escape(k), xml_escape(v)))
                    .collect::<String>(),
            ));
        }
        xml.push_str("</DBInstances>");
        if let Some(m) = next {
            xml.push_str(&format!("<Marker>{m}</Marker>"));
        }
        ok("DescribeDBInstances", &xml)
    }

    fn describe_clusters(&self, inner: &Inner, params: &BTreeMap<String, String>) -> Answer {
        let mut clusters: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in &inner.instances {
            if let Some(c) = &i.cluster {
                clusters.entry(c.clone()).or_default().push(i.id.clone());
            }
        }
        if let Some(wanted) = params.get("DBClusterIdentifier") {
            if !clusters.contains_key(wanted) {
                return error(
                    404,
                    "DBClusterNotFoundFault",
                    &format!("DBCluster {wanted} not found."),
                );
            }
            clusters.retain(|k, _| k == wanted);
        }
        let list: Vec<(String, Vec<String>)> = clusters.into_iter().collect();
        let (page, next) = paginate(&list, params);
        let mut xml = String::from("<DBClusters>");
        for (id, members) in page {
            xml.push_str(&format!(
                "<DBCluster><DBClusterIdentifier>{}</DBClusterIdentifier><DBClusterMembers>",
                xml_escape(&id)
            ));
            for (n, m) in members.iter().enumerate() {
                xml.push_str(&format!(
                    "<DBClusterMember><DBInstanceIdentifier>{}</DBInstanceIdentifier><IsClusterWriter>{}</IsClusterWriter></DBClusterMember>",
                    xml_escape(m),
                    n == 0
                ));
            }
            xml.push_str("</DBClusterMembers></DBCluster>");
        }
        xml.push_str("</DBClusters>");
        if let Some(m) = next {
            xml.push_str(&format!("<Marker>{m}</Marker>"));
        }
        ok("DescribeDBClusters", &xml)
    }

    fn files(&self, instance: &str) -> Vec<(String, u64, i64)> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, u64, i64)>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else if let Ok(meta) = e.metadata() {
                    let name = path
                        .strip_prefix(base)
                        .map(|p| p.to_string_lossy().replace('\\', "/"))
                        .unwrap_or_default();
                    let written = meta
                        .modified()
                        .ok()
                        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_millis() as i64);
                    out.push((name, meta.len(), written));
                }
            }
        }
        let base = self.log_dir(instance);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }

    fn describe_log_files(&self, inner: &Inner, params: &BTreeMap<String, String>) -> Answer {
        let instance = match self.instance(inner, params.get("DBInstanceIdentifier")) {
            Ok(i) => i.id.clone(),
            Err(e) => return e,
        };
        let since = params
            .get("FileLastWritten")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        let min_size = params
            .get("FileSize")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let contains = params.get("FilenameContains").cloned().unwrap_or_default();
        let files: Vec<(String, u64, i64)> = self
            .files(&instance)
            .into_iter()
            .filter(|(n, s, w)| *w >= since && *s >= min_size && n.contains(&contains))
            .collect();
        let (page, next) = paginate(&files, params);
        let mut xml = String::from("<DescribeDBLogFiles>");
        for (name, size, written) in page {
            xml.push_str(&format!(
                "<DescribeDBLogFilesDetails><LogFileName>{}</LogFileName><LastWritten>{written}</LastWritten><Size>{size}</Size></DescribeDBLogFilesDetails>",
                xml_escape(&name)
            ));
        }
        xml.push_str("</DescribeDBLogFiles>");
        if let Some(m) = next {
            xml.push_str(&format!("<Marker>{m}</Marker>"));
        }
        ok("DescribeDBLogFiles", &xml)
    }

    fn download(&self, params: &BTreeMap<String, String>, short: bool) -> Answer {
        let instance = {
            let Ok(inner) = self.inner.lock() else {
                return error(500, "InternalFailure", "emulator state poisoned");
            };
            match self.instance(&inner, params.get("DBInstanceIdentifier")) {
                Ok(i) => i.id.clone(),
                Err(e) => return e,
            }
        };
        let Some(name) = params.get("LogFileName") else {
            return error(400, "MissingParameter", "LogFileName is required");
        };
        let path = self.log_dir(&instance).join(name);
        let not_found = || {
            error(
                404,
                "DBLogFileNotFoundFault",
                &format!("DBLog File: {name}, is not found on the DB instance"),
            )
        };
        if name.contains("..") || !path.is_file() {
            return not_found();
        }
        // Only the part of the file a portion can cover is read: from the marker, as many lines
        // as asked, stopping once well past 1 MB (the rest of those lines is skipped by length).
        let Ok(file_len) = std::fs::metadata(&path).map(|m| m.len() as usize) else {
            return not_found();
        };
        let head = match read_range(&path, 0, 8192) {
            Ok(h) => h,
            Err(_) => return not_found(),
        };
        if name.ends_with(".trc") || name.ends_with(".xel") || head.contains(&0) {
            return error(
                400,
                "InvalidParameterValue",
                "This file contains binary data and should be downloaded instead of viewed.",
            );
        }
        let lines = params
            .get("NumberOfLines")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(MAX_LINES)
            .clamp(1, MAX_LINES);
        let start = match params.get("Marker").map(String::as_str) {
            // No marker: the tail, the most recent `lines` lines that fit in a portion.
            None => {
                let from = file_len.saturating_sub(MAX_PORTION_BYTES / 2);
                let Ok(tail) = read_range(&path, from, file_len - from) else {
                    return not_found();
                };
                let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
                let mut ends = body.iter().enumerate().rev().filter(|(_, b)| **b == b'\n');
                match ends.nth(lines.saturating_sub(1)) {
                    Some((i, _)) => from + i + 1,
                    None => from,
                }
            }
            Some("0") => 0,
            Some(m) => match marker_offset(m) {
                Some(o) => o.min(file_len),
                None => return error(400, "InvalidParameterValue", &format!("Invalid marker: {m}")),
            },
        };
        let Ok((kept, total)) = read_lines_window(&path, start, lines) else {
            return not_found();
        };
        let mut end = start + total;
        let text = if total > MAX_PORTION_BYTES {
            // RDS cuts the portion at 1 MB and appends its notice, yet moves the marker past every
            // line it was asked for: a client must re-read with fewer lines.
            let mut cut = MAX_PORTION_BYTES - TRUNCATION_SUFFIX.len();
            while cut > 0 && !is_char_boundary(&kept, cut) {
                cut -= 1;
            }
            let mut t = String::from_utf8_lossy(&kept[..cut]).into_owned();
            t.push_str(TRUNCATION_SUFFIX);
            t
        } else if short && total > 1 {
            // A short portion: half the data, and no word that more is pending.
            let mut cut = total / 2;
            while cut > 0 && !is_char_boundary(&kept, cut) {
                cut -= 1;
            }
            end = start + cut;
            self.served(cut);
            return ok(
                "DownloadDBLogFilePortion",
                &format!(
                    "<LogFileData>{}</LogFileData><Marker>{}:{end}</Marker><AdditionalDataPending>false</AdditionalDataPending>",
                    xml_escape(&String::from_utf8_lossy(&kept[..cut])),
                    file_len % 97,
                ),
            );
        } else {
            String::from_utf8_lossy(&kept).into_owned()
        };
        self.served(text.len());
        ok(
            "DownloadDBLogFilePortion",
            &format!(
                "<LogFileData>{}</LogFileData><Marker>{}:{end}</Marker><AdditionalDataPending>{}</AdditionalDataPending>",
                xml_escape(&text),
                file_len % 97,
                end < file_len
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emulator() -> (RdsEmulator, PathBuf) {
        let root = std::env::temp_dir().join(format!("rds-emu-{}", uuid::Uuid::new_v4()));
        let e = RdsEmulator::new(&root).unwrap();
        let dir = e
            .add_instance(DbInstance {
                id: "db1".into(),
                engine: "postgres".into(),
                cluster: Some("c1".into()),
                tags: vec![("team".into(), "data".into())],
            })
            .unwrap();
        (e, dir)
    }

    fn field(xml: &str, tag: &str) -> Option<String> {
        let open = format!("<{tag}>");
        let start = xml.find(&open)? + open.len();
        let end = xml[start..].find(&format!("</{tag}>"))? + start;
        Some(xml[start..end].to_owned())
    }

    #[test]
    fn portions_markers_and_pending() {
        let (e, dir) = emulator();
        std::fs::create_dir_all(dir.join("error")).unwrap();
        std::fs::write(dir.join("error/postgresql.log"), "one\ntwo\nthree\n").unwrap();
        let (s, xml) = e.handle(b"Action=DownloadDBLogFilePortion&DBInstanceIdentifier=db1&LogFileName=error%2Fpostgresql.log&Marker=0&NumberOfLines=2");
        assert_eq!(s, 200, "{xml}");
        assert_eq!(field(&xml, "LogFileData").unwrap(), "one\ntwo\n");
        assert_eq!(field(&xml, "AdditionalDataPending").unwrap(), "true");
        let marker = field(&xml, "Marker").unwrap();
        let body = format!(
            "Action=DownloadDBLogFilePortion&DBInstanceIdentifier=db1&LogFileName=error/postgresql.log&Marker={marker}"
        );
        let (_, xml) = e.handle(body.as_bytes());
        assert_eq!(field(&xml, "LogFileData").unwrap(), "three\n");
        assert_eq!(field(&xml, "AdditionalDataPending").unwrap(), "false");
        // No marker: the tail.
        let (_, xml) = e.handle(b"Action=DownloadDBLogFilePortion&DBInstanceIdentifier=db1&LogFileName=error/postgresql.log&NumberOfLines=1");
        assert_eq!(field(&xml, "LogFileData").unwrap(), "three\n");
    }

    #[test]
    fn truncation_short_portions_faults_and_throttling() {
        let (e, dir) = emulator();
        let big = format!("{}\n{}\n", "a".repeat(700_000), "b".repeat(700_000));
        std::fs::write(dir.join("big.log"), &big).unwrap();
        let (_, xml) = e
            .handle(b"Action=DownloadDBLogFilePortion&DBInstanceIdentifier=db1&LogFileName=big.log&Marker=0");
        let data = field(&xml, "LogFileData").unwrap();
        assert!(data.ends_with(TRUNCATION_SUFFIX));
        assert_eq!(data.len(), MAX_PORTION_BYTES);
        assert!(
            field(&xml, "Marker")
                .unwrap()
                .ends_with(&format!(":{}", big.len())),
            "the marker moved past both lines"
        );
        let (_, xml) = e.handle(b"Action=DownloadDBLogFilePortion&DBInstanceIdentifier=db1&LogFileName=big.log&Marker=0&NumberOfLines=1");
        assert_eq!(field(&xml, "LogFileData").unwrap().len(), 700_001);

        e.set_short_portions(Some(1));
        std::fs::write(dir.join("s.log"), "12345678\n").unwrap();
        let (_, xml) =
            e.handle(b"Action=DownloadDBLogFilePortion&DBInstanceIdentifier=db1&LogFileName=s.log&Marker=0");
        assert_eq!(field(&xml, "LogFileData").unwrap(), "1234");
        assert_eq!(field(&xml, "AdditionalDataPending").unwrap(), "false");
        e.set_short_portions(None);

        let (s, xml) = e.handle(
            b"Action=DownloadDBLogFilePortion&DBInstanceIdentifier=db1&LogFileName=gone.log&Marker=0",
        );
        assert_eq!(s, 404);
        assert_eq!(field(&xml, "Code").unwrap(), "DBLogFileNotFoundFault");
        std::fs::write(dir.join("t.trc"), "x").unwrap();
        let (s, xml) =
            e.handle(b"Action=DownloadDBLogFilePortion&DBInstanceIdentifier=db1&LogFileName=t.trc&Marker=0");
        assert_eq!(
            (s, field(&xml, "Code").unwrap()),
            (400, "InvalidParameterValue".into())
        );

        e.set_throttle(Some(Throttle {
            burst: 2.0,
            per_second: 0.001,
        }));
        assert_eq!(e.handle(b"Action=DescribeDBInstances").0, 200);
        assert_eq!(e.handle(b"Action=DescribeDBInstances").0, 200);
        let (s, xml) = e.handle(b"Action=DescribeDBInstances");
        assert_eq!((s, field(&xml, "Code").unwrap()), (400, "Throttling".into()));
        assert_eq!(e.calls().1, 1);
    }

    #[test]
    fn deleted_files_are_gone_and_recorded_and_failing_instances_refuse() {
        let (e, dir) = emulator();
        e.set_throttle(None);
        std::fs::create_dir_all(dir.join("error")).unwrap();
        std::fs::write(dir.join("error/a.log"), "12345\n").unwrap();
        std::fs::write(dir.join("error/b.log"), "x\n").unwrap();
        assert_eq!(e.delete_file("db1", "error/a.log").unwrap(), b"12345\n");
        assert!(e.delete_file("db1", "error/a.log").is_err(), "gone");
        assert_eq!(e.deleted(), [("db1".into(), "error/a.log".into(), 6)]);
        let (_, xml) = e.handle(b"Action=DescribeDBLogFiles&DBInstanceIdentifier=db1");
        assert!(
            !xml.contains("error/a.log") && xml.contains("error/b.log"),
            "{xml}"
        );
        let (s, xml) = e.handle(
            b"Action=DownloadDBLogFilePortion&DBInstanceIdentifier=db1&LogFileName=error/a.log&Marker=0",
        );
        assert_eq!(
            (s, field(&xml, "Code").unwrap()),
            (404, "DBLogFileNotFoundFault".into())
        );
        e.fail_instance("db1", Some("InvalidDBInstanceState"));
        let (s, xml) = e.handle(b"Action=DescribeDBLogFiles&DBInstanceIdentifier=db1");
        assert_eq!(
            (s, field(&xml, "Code").unwrap()),
            (400, "InvalidDBInstanceState".into())
        );
        assert_eq!(
            e.handle(b"Action=DescribeDBInstances").0,
            200,
            "only its log calls fail"
        );
        e.fail_instance("db1", None);
        assert_eq!(
            e.handle(b"Action=DescribeDBLogFiles&DBInstanceIdentifier=db1").0,
            200
        );
    }

    #[test]
    fn listings() {
        let (e, dir) = emulator();
        e.set_throttle(None);
        for n in 0..5 {
            std::fs::write(dir.join(format!("f{n}.log")), "x\n").unwrap();
        }
        let (_, xml) = e.handle(b"Action=DescribeDBLogFiles&DBInstanceIdentifier=db1&MaxRecords=3");
        assert_eq!(xml.matches("<LogFileName>").count(), 3);
        assert_eq!(field(&xml, "Marker").unwrap(), "3");
        let (_, xml) = e.handle(b"Action=DescribeDBLogFiles&DBInstanceIdentifier=db1&MaxRecords=3&Marker=3");
        assert_eq!(xml.matches("<LogFileName>").count(), 2);
        assert!(field(&xml, "Marker").is_none());
        let (_, xml) = e.handle(b"Action=DescribeDBInstances");
        assert!(
            xml.contains("<DBInstanceIdentifier>db1</DBInstanceIdentifier>")
                && xml.contains("<Key>team</Key>")
        );
        let (_, xml) = e.handle(b"Action=DescribeDBClusters&DBClusterIdentifier=c1");
        assert!(xml.contains("<DBClusterMember><DBInstanceIdentifier>db1</DBInstanceIdentifier>"));
        assert_eq!(
            e.handle(b"Action=DescribeDBLogFiles&DBInstanceIdentifier=nope").0,
            404
        );
    }
}
