//! Checking an AWS Signature Version 4 the way an AWS endpoint does, for the emulated endpoints
//! that must refuse what AWS refuses (the RDS emulator's `DownloadCompleteLogFile`): the
//! canonical request is rebuilt here from the request as received (method, path encoded again as
//! SigV4 does for every service but S3, sorted query, the signed headers, the payload's hash),
//! the string to sign from the credential scope and `X-Amz-Date`, and the signature computed with
//! the caller's secret (the signing key and HMAC from `aws-sigv4`), then compared. Both forms are
//! read: the `Authorization` header, and a presigned URL's `X-Amz-*` query parameters.
//!
//! Refused as AWS refuses: no signature (`MissingAuthenticationToken`), an access key nobody
//! issued (`InvalidClientTokenId`), a scope for another region or service, a date more than
//! 15 minutes off or a presigned URL past its `X-Amz-Expires`, and any other mismatch
//! (`SignatureDoesNotMatch`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, Method, Uri};
use sha2::{Digest, Sha256};

/// How far a header-signed request's date may be from the receiver's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Why a request's signature is refused: the error code AWS answers (403) and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
}

fn refused(code: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

fn mismatch(message: impl Into<String>) -> Refused {
    refused("SignatureDoesNotMatch", message)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// SigV4's URI encoding: everything but the unreserved characters (and `/` when `keep_slash`).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` as a time.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let digits = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    if s.len() != 16 || s.as_bytes()[8] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let (y, m, d) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hh, mm, ss) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The parts of a signature, from either form.
struct Signed {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    /// A presigned URL's `X-Amz-Expires`.
    expires: Option<u64>,
}

fn scope_parts(credential: &str) -> Option<(String, String, String, String)> {
    match credential.split('/').collect::<Vec<_>>().as_slice() {
        [key, date, region, service, "aws4_request"] if !key.is_empty() => {
            Some(((*key).into(), (*date).into(), (*region).into(), (*service).into()))
        }
        _ => None,
    }
}

fn from_header(auth: &str, headers: &HeaderMap) -> Result<Signed, Refused> {
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| refused("IncompleteSignature", "unsupported authorization algorithm"))?;
    let field = |name: &str| {
        rest.split(',')
            .map(str::trim)
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .map(str::to_owned)
    };
    let incomplete = || {
        refused(
            "IncompleteSignature",
            "Authorization lacks Credential, SignedHeaders or Signature",
        )
    };
    let credential = field("Credential").ok_or_else(incomplete)?;
    let (access_key_id, date, region, service) = scope_parts(&credential).ok_or_else(incomplete)?;
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refused("IncompleteSignature", "X-Amz-Date is required"))?
        .to_owned();
    Ok(Signed {
        access_key_id,
        date,
        region,
        service,
        signed_headers: field("SignedHeaders")
            .ok_or_else(incomplete)?
            .split(';')
            .map(str::to_owned)
            .collect(),
        signature: field("Signature").ok_or_else(incomplete)?,
        amz_date,
        expires: None,
    })
}

fn from_query(query: &BTreeMap<String, String>) -> Result<Signed, Refused> {
    let get = |k: &str| {
        query
            .get(k)
            .cloned()
            .ok_or_else(|| refused("IncompleteSignature", format!("{k} is required")))
    };
    if get("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
        return Err(refused("IncompleteSignature", "unsupported X-Amz-Algorithm"));
    }
    let (access_key_id, date, region, service) = scope_parts(&get("X-Amz-Credential")?)
        .ok_or_else(|| refused("IncompleteSignature", "malformed X-Amz-Credential"))?;
    Ok(Signed {
        access_key_id,
        date,
        region,
        service,
        signed_headers: get("X-Amz-SignedHeaders")?
            .split(';')
            .map(str::to_owned)
            .collect(),
        signature: get("X-Amz-Signature")?,
        amz_date: get("X-Amz-Date")?,
        expires: Some(
            get("X-Amz-Expires")?
                .parse()
                .map_err(|_| mismatch("bad X-Amz-Expires"))?,
        ),
    })
}

/// The request's query, decoded (`+` is a space only in form bodies, not here).
fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    crate::recorder::form_pairs(&uri.query().unwrap_or_default().replace('+', "%2B"))
        .into_iter()
        .collect()
}

/// The canonical request of a request as received; `skip_query` leaves the signature out.
fn canonical_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    signed: &Signed,
    payload: &str,
) -> String {
    let path = uri.path();
    let canonical_uri = path
        .split('/')
        .map(|seg| encode(seg, false))
        .collect::<Vec<_>>()
        .join("/");
    let mut pairs: Vec<(String, String)> = query_map(uri)
        .into_iter()
        .filter(|(k, _)| k != "X-Amz-Signature")
        .map(|(k, v)| (encode(&k, false), encode(&v, false)))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in &signed.signed_headers {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    format!(
        "{}\n{canonical_uri}\n{query}\n{canonical_headers}\n{}\n{payload}",
        method.as_str(),
        signed.signed_headers.join(";")
    )
}

/// Checks the request's signature for `service` in `region` at `now`, with `secret_for` giving
/// the secret access key of an access key id (`None`: no such key). Returns the access key id.
pub fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    (region, service): (&str, &str),
    now: SystemTime,
    secret_for: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Refused> {
    let query = query_map(uri);
    let signed = match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(auth) => from_header(auth, headers)?,
        None if query.contains_key("X-Amz-Signature") => from_query(&query)?,
        None => {
            return Err(refused(
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            ));
        }
    };
    let secret = secret_for(&signed.access_key_id).ok_or_else(|| {
        refused(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        )
    })?;
    if signed.region != region || signed.service != service {
        return Err(mismatch(format!(
            "Credential should be scoped to a valid region and service ({region}, {service}), not ({}, {})",
            signed.region, signed.service
        )));
    }
    let time = parse_amz_date(&signed.amz_date)
        .filter(|_| signed.amz_date.starts_with(&signed.date))
        .ok_or_else(|| mismatch("X-Amz-Date is malformed or not the credential scope's date"))?;
    let expired = match signed.expires {
        Some(expires) => now > time + Duration::from_secs(expires.min(7 * 86_400)),
        None => now.duration_since(time).unwrap_or_else(|e| e.duration()) > MAX_SKEW,
    };
    if expired {
        return Err(mismatch(format!(
            "Signature expired: {} is out of range",
            signed.amz_date
        )));
    }
    if !signed.signed_headers.iter().any(|h| h == "host") {
        return Err(mismatch("the host header must be signed"));
    }
    let payload = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.get("X-Amz-Content-SHA256").cloned())
        .unwrap_or_else(|| sha256_hex(body));
    let creq = canonical_request(method, uri, headers, &signed, &payload);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{}/{region}/{service}/aws4_request\n{}",
        signed.amz_date,
        signed.date,
        sha256_hex(creq.as_bytes())
    );
    let key = aws_sigv4::sign::v4::generate_signing_key(&secret, time, region, service);
    let expected = aws_sigv4::sign::v4::calculate_signature(key, string_to_sign.as_bytes());
    if expected != signed.signature {
        return Err(mismatch(
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    Ok(signed.access_key_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
    use aws_smithy_runtime_api::client::identity::Identity;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn secrets(key: &str) -> Option<String> {
        (key == "AKIDEXAMPLE").then(|| SECRET.to_owned())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_sigv4_test_suites_get_vanilla_verifies() {
        // AWS's SigV4 test suite, "get-vanilla": GET / on example.amazonaws.com, service "service".
        let h = headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
        ]);
        let at = parse_amz_date("20150830T123600Z").unwrap();
        let uri: Uri = "/".parse().unwrap();
        let ok = verify(
            &Method::GET,
            &uri,
            &h,
            b"",
            ("us-east-1", "service"),
            at,
            &secrets,
        );
        assert_eq!(ok, Ok("AKIDEXAMPLE".to_owned()));
        // Twenty minutes later: too far off.
        let late = verify(
            &Method::GET,
            &uri,
            &h,
            b"",
            ("us-east-1", "service"),
            at + Duration::from_secs(1200),
            &secrets,
        );
        assert_eq!(late.unwrap_err().code, "SignatureDoesNotMatch");
        // Another path, another service, another key: refused.
        let other: Uri = "/x".parse().unwrap();
        assert_eq!(
            verify(
                &Method::GET,
                &other,
                &h,
                b"",
                ("us-east-1", "service"),
                at,
                &secrets
            )
            .unwrap_err()
            .code,
            "SignatureDoesNotMatch"
        );
        assert!(verify(&Method::GET, &uri, &h, b"", ("us-east-1", "rds"), at, &secrets).is_err());
        assert_eq!(
            verify(&Method::GET, &uri, &h, b"", ("us-east-1", "service"), at, &|_| {
                None
            })
            .unwrap_err()
            .code,
            "InvalidClientTokenId"
        );
        assert_eq!(
            verify(
                &Method::GET,
                &uri,
                &headers(&[("host", "h")]),
                b"",
                ("us-east-1", "service"),
                at,
                &secrets
            )
            .unwrap_err()
            .code,
            "MissingAuthenticationToken"
        );
    }

    /// Signs a GET of `url` as the shipper does (`aws-sigv4`, service rds), in either form;
    /// returns the request's headers and URI as an endpoint receives them.
    fn signed(url: &str, location: SignatureLocation, secret: &str, at: SystemTime) -> (HeaderMap, Uri) {
        let creds =
            aws_sdk_s3::config::Credentials::new("AKIDEXAMPLE", secret, Some("token".into()), None, "test");
        let identity: Identity = creds.into();
        let mut settings = SigningSettings::default();
        settings.signature_location = location;
        settings.expires_in = Some(Duration::from_secs(300));
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("rds")
            .time(at)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let request = SignableRequest::new("GET", url, std::iter::empty(), SignableBody::Bytes(&[])).unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let mut h = headers(&[("host", "127.0.0.1:4566")]);
        for (k, v) in instructions.headers() {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let mut uri = url.to_owned();
        let params = instructions.params();
        if !params.is_empty() {
            let query: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k, false), encode(v, false)))
                .collect();
            uri = format!("{uri}?{}", query.join("&"));
        }
        let uri: Uri = uri.parse().unwrap();
        (h, uri.path_and_query().unwrap().as_str().parse().unwrap())
    }

    #[test]
    fn requests_signed_as_the_shipper_signs_verify_in_both_forms_and_tampering_fails() {
        let url = "http://127.0.0.1:4566/v19/downloadCompleteLogFile/db1/error/postgresql.log.2026-11-22-00";
        let now = SystemTime::now();
        let rds = ("us-east-1", "rds");
        for location in [SignatureLocation::Headers, SignatureLocation::QueryParams] {
            let (h, uri) = signed(url, location, SECRET, now);
            assert_eq!(
                verify(&Method::GET, &uri, &h, b"", rds, now, &secrets),
                Ok("AKIDEXAMPLE".into()),
                "{location:?}"
            );
            let other: Uri = uri.to_string().replace("db1", "db2").parse().unwrap();
            assert!(
                verify(&Method::GET, &other, &h, b"", rds, now, &secrets).is_err(),
                "{location:?}"
            );
            assert!(
                verify(&Method::HEAD, &uri, &h, b"", rds, now, &secrets).is_err(),
                "{location:?}"
            );
            let (h, uri) = signed(url, location, "not-the-secret", now);
            let wrong = verify(&Method::GET, &uri, &h, b"", rds, now, &secrets).unwrap_err();
            assert_eq!(wrong.code, "SignatureDoesNotMatch", "{location:?}");
        }
        // A presigned URL past its X-Amz-Expires (300 s).
        let (h, uri) = signed(
            url,
            SignatureLocation::QueryParams,
            SECRET,
            now - Duration::from_secs(301),
        );
        assert!(verify(&Method::GET, &uri, &h, b"", rds, now, &secrets).is_err());
    }

    #[test]
    fn amz_dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_amz_date("20261201T120000Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_796_126_400))
        );
        assert_eq!(parse_amz_date("20261301T120000Z"), None);
        assert_eq!(parse_amz_date("2026-12-01T12:00:00Z"), None);
    }
}
