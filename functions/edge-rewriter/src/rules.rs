//! The rewrite rules: what the edge does with one request. Pure functions, no I/O.

use crate::config::{Extensionless, Options};

/// CloudFront refuses a URI plus query string of 8,192 characters or more.
pub const MAX_URI_AND_QUERY: usize = 8_192;

/// Printable ASCII without `%`, `?` or `#`: safe to use verbatim in a URI.
pub(crate) fn is_plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x21..0x7f).contains(&b) && !matches!(b, b'%' | b'?' | b'#'))
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward the request unchanged.
    Pass,
    /// Forward the request with this URI (the query string is untouched).
    Rewrite(String),
    /// Answer with a redirect to this site-relative location.
    Redirect { status: u16, location: String },
    /// Answer with an error; the request never reaches the origin.
    Reject { status: u16, reason: &'static str },
}

const BAD_REQUEST: u16 = 400;
const URI_TOO_LONG: u16 = 414;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes; `None` for a malformed escape.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Checks a path: must start with `/`; no malformed escape, no control character, no backslash
/// and no `.` or `..` segment, raw or percent-encoded (an encoded `/` separates segments too, as
/// S3 decodes it into the key).
pub fn validate_path(uri: &str) -> Result<(), &'static str> {
    if !uri.starts_with('/') {
        return Err("the URI must start with /");
    }
    if uri.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("control characters are not allowed in the URI");
    }
    if uri.contains(['?', '#']) {
        return Err("a raw ? or # cannot be part of the URI path");
    }
    let decoded = percent_decode(uri).ok_or("malformed percent-encoding in the URI")?;
    if decoded.contains(&0) {
        return Err("NUL is not allowed in the URI");
    }
    if decoded.iter().any(|b| *b < 0x20 || *b == 0x7f) {
        return Err("control characters are not allowed in the URI");
    }
    if decoded.contains(&b'\\') {
        return Err("backslashes are not allowed in the URI");
    }
    if decoded
        .split(|b| *b == b'/')
        .any(|seg| seg == b"." || seg == b"..")
    {
        return Err("dot segments (. and ..) are not allowed in the URI");
    }
    Ok(())
}

/// Percent-encodes, for a `Location` header, every byte that is not URL-safe ASCII; existing
/// escapes are kept as they are (the input was validated).
fn location_safe(s: &str, query: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b) || (query && b == b'?');
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Collapses runs of `/` into one.
pub fn collapse_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut previous_slash = false;
    for c in path.chars() {
        if c == '/' {
            if !previous_slash {
                out.push(c);
            }
            previous_slash = true;
        } else {
            out.push(c);
            previous_slash = false;
        }
    }
    out
}

/// The last segment names a file when it contains a dot anywhere (`/file.txt`, `/.hidden`,
/// `/docs/v1.2`); otherwise the path is a directory (`/v1.2/guide`). Percent-encoded dots count.
fn last_segment_is_file(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    percent_decode(last).is_some_and(|d| d.contains(&b'.'))
}

fn too_long(uri: &str, querystring: &str) -> bool {
    let q = if querystring.is_empty() {
        0
    } else {
        1 + querystring.chars().count()
    };
    uri.chars().count() + q >= MAX_URI_AND_QUERY
}

fn rewrite(uri: String, querystring: &str) -> Decision {
    if too_long(&uri, querystring) {
        Decision::Reject {
            status: URI_TOO_LONG,
            reason: "the rewritten URI and query string exceed CloudFront's 8,192 characters",
        }
    } else {
        Decision::Rewrite(uri)
    }
}

/// Decides what the edge does with a request (viewer-request and origin-request alike).
pub fn decide(method: &str, uri: &str, querystring: &str, opts: &Options) -> Decision {
    // Safety applies to every method: such a request never reaches the origin.
    if let Err(reason) = validate_path(uri) {
        return Decision::Reject {
            status: BAD_REQUEST,
            reason,
        };
    }
    if querystring.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Decision::Reject {
            status: BAD_REQUEST,
            reason: "control characters are not allowed in the query string",
        };
    }
    if method != "GET" && method != "HEAD" {
        return Decision::Pass;
    }
    let path = collapse_slashes(uri);
    let is_file = last_segment_is_file(&path);
    if !is_file && let Some(prefix) = opts.spa_prefixes.iter().find(|p| path.starts_with(p.as_str())) {
        return rewrite(format!("{prefix}{}", opts.index_document), querystring);
    }
    if path.ends_with('/') {
        return rewrite(format!("{path}{}", opts.index_document), querystring);
    }
    if is_file {
        return if path == uri {
            Decision::Pass
        } else {
            rewrite(path, querystring)
        };
    }
    match opts.extensionless {
        Extensionless::Rewrite => rewrite(format!("{path}/{}", opts.index_document), querystring),
        Extensionless::Redirect => {
            let mut location = format!("{}/", location_safe(&path, false));
            if !querystring.is_empty() {
                location.push('?');
                location.push_str(&location_safe(querystring, true));
            }
            if location.chars().count() >= MAX_URI_AND_QUERY {
                return Decision::Reject {
                    status: URI_TOO_LONG,
                    reason: "the redirect location exceeds CloudFront's 8,192 characters",
                };
            }
            Decision::Redirect {
                status: opts.redirect_status,
                location,
            }
        }
    }
}
