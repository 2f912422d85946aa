//! Table-driven tests of every rule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a panic

use edge_rewriter::abi;
use edge_rewriter::rules::{Decision, decide, validate_path};
use edge_rewriter::{Extensionless, Options};

fn pass() -> Decision {
    Decision::Pass
}
fn rw(uri: &str) -> Decision {
    Decision::Rewrite(uri.into())
}
fn redirect(location: &str) -> Decision {
    Decision::Redirect {
        status: 301,
        location: location.into(),
    }
}
fn status(d: &Decision) -> Option<u16> {
    match d {
        Decision::Reject { status, .. } => Some(*status),
        _ => None,
    }
}

#[test]
fn default_rules() {
    let o = Options::default();
    let cases: &[(&str, &str, &str, Decision)] = &[
        ("GET", "/", "", rw("/index.html")),
        ("GET", "/about/", "", rw("/about/index.html")),
        ("GET", "/about/", "a=1&b=%20x", rw("/about/index.html")),
        ("HEAD", "/about/", "", rw("/about/index.html")),
        ("GET", "/about", "", redirect("/about/")),
        ("GET", "/about", "utm=x&y=1", redirect("/about/?utm=x&y=1")),
        ("HEAD", "/about", "", redirect("/about/")),
        // A dot anywhere in the last segment is a file; dots in directories are fine.
        ("GET", "/v1.2/guide", "", redirect("/v1.2/guide/")),
        ("GET", "/docs/v1.2", "", pass()),
        ("GET", "/file.txt", "", pass()),
        ("GET", "/.hidden", "", pass()),
        ("GET", "/css/site.css", "v=3", pass()),
        ("GET", "/foo/index.htmlx", "", pass()),
        ("GET", "/docs/v1%2E2", "", pass()),
        // Other methods pass unchanged.
        ("POST", "/about", "", pass()),
        ("PUT", "/about/", "", pass()),
        ("OPTIONS", "/", "", pass()),
        ("DELETE", "//x", "", pass()),
        // Runs of slashes are collapsed: the Location never leaves the site.
        ("GET", "//evil", "x=1", redirect("/evil/?x=1")),
        ("GET", "///evil.example/path", "", redirect("/evil.example/path/")),
        ("GET", "//evil.com", "", rw("/evil.com")),
        ("GET", "/a//b/", "", rw("/a/b/index.html")),
        ("GET", "/a//b.txt", "", rw("/a/b.txt")),
        // Valid percent-encoding is preserved exactly.
        ("GET", "/caf%C3%A9/", "", rw("/caf%C3%A9/index.html")),
        ("GET", "/caf%c3%a9", "q=%2F", redirect("/caf%c3%a9/?q=%2F")),
        ("GET", "/a%20b/c%2Fd", "", redirect("/a%20b/c%2Fd/")),
        ("GET", "/日本/", "", rw("/日本/index.html")),
        // The Location header is ASCII: what is not URL-safe is percent-encoded.
        (
            "GET",
            "/日本",
            "q=a b\\c",
            redirect("/%E6%97%A5%E6%9C%AC/?q=a%20b%5Cc"),
        ),
    ];
    for (method, uri, qs, expected) in cases {
        assert_eq!(&decide(method, uri, qs, &o), expected, "{method} {uri}?{qs}");
    }
}

#[test]
fn unsafe_or_malformed_paths_are_refused_for_every_method() {
    let o = Options::default();
    let bad = [
        "/a/../b",
        "/..",
        "/./a",
        "/a/.",
        "/a/%2e%2E/b",
        "/a/.%2E/b",
        "/a/%2E",
        "/a/%2f..%2fb",
        "/a\\b",
        "/a%5Cb",
        "/a%5cb/",
        "/a%00b",
        "/a%zz",
        "/a%4",
        "/%",
        "/a%%20",
        "relative/path",
        "",
        "/a\r\nLocation: x",
        "/a%0d%0aX: y",
        "/tab%09",
        "/a?b",
        "/a#b",
    ];
    for method in ["GET", "HEAD", "POST"] {
        for uri in bad {
            let d = decide(method, uri, "", &o);
            assert_eq!(status(&d), Some(400), "{method} {uri:?} -> {d:?}");
        }
    }
    assert_eq!(status(&decide("GET", "/a", "x=\r\nSet-Cookie: a", &o)), Some(400));
    // A dot inside a segment is no dot segment.
    assert!(validate_path("/a/..b/c.../.d/").is_ok());
}

#[test]
fn rewritten_uris_stay_under_cloudfronts_limit() {
    let o = Options::default();
    // 8,181 + "index.html" = 8,191 characters: allowed without a query string…
    let dir = format!("/{}/", "a".repeat(8_179));
    assert_eq!(dir.len(), 8_181);
    assert!(matches!(decide("GET", &dir, "", &o), Decision::Rewrite(_)));
    // …but not with one (8,191 + "?" + 3 >= 8,192).
    assert_eq!(status(&decide("GET", &dir, "a=1", &o)), Some(414));
    let long = format!("/{}", "b".repeat(8_190));
    assert_eq!(
        status(&decide("GET", &long, "", &o)),
        Some(414),
        "the redirect location would be too long"
    );
    assert_eq!(
        decide("GET", &format!("/{}", "b".repeat(8_100)), "", &o),
        redirect(&format!("/{}/", "b".repeat(8_100)))
    );
}

#[test]
fn options() {
    let spa = Options::from_json(r#"{"spaPrefixes": ["/app", "/admin/"]}"#).unwrap();
    assert_eq!(spa.spa_prefixes, ["/app/", "/admin/"]);
    assert_eq!(
        decide("GET", "/app/users/42", "tab=2", &spa),
        rw("/app/index.html")
    );
    assert_eq!(decide("GET", "/app/", "", &spa), rw("/app/index.html"));
    assert_eq!(decide("GET", "/app/main.js", "", &spa), pass());
    assert_eq!(decide("GET", "/app", "", &spa), redirect("/app/"));
    assert_eq!(decide("GET", "/application", "", &spa), redirect("/application/"));
    assert_eq!(decide("GET", "/admin//x", "", &spa), rw("/admin/index.html"));

    let rewrite =
        Options::from_json(r#"{"extensionless": "rewrite", "indexDocument": "default.htm"}"#).unwrap();
    assert_eq!(rewrite.extensionless, Extensionless::Rewrite);
    assert_eq!(decide("GET", "/about", "x=1", &rewrite), rw("/about/default.htm"));
    assert_eq!(decide("GET", "/about/", "", &rewrite), rw("/about/default.htm"));

    let temporary = Options::from_json(r#"{"redirectStatus": 308}"#).unwrap();
    assert_eq!(
        decide("GET", "/about", "", &temporary),
        Decision::Redirect {
            status: 308,
            location: "/about/".into()
        }
    );

    for bad in [
        r#"{"indexDocument": "index"}"#,
        r#"{"indexDocument": "a/b.html"}"#,
        r#"{"indexDocument": "a b.html"}"#,
        r#"{"redirectStatus": 200}"#,
        r#"{"spaPrefixes": ["app"]}"#,
        r#"{"spaPrefixes": ["//app/"]}"#,
        r#"{"spaPrefixes": ["/a/../b/"]}"#,
        r#"{"extensionless": "ignore"}"#,
        r#"{"indexDoc": "index.html"}"#,
        "not json",
    ] {
        assert!(Options::from_json(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_wire_format() {
    let o = Options::default();
    assert_eq!(abi::handle(b"GET\0/about\0x=1", &o), b"R301 /about/?x=1");
    assert_eq!(abi::handle(b"GET\0/about/\0", &o), b"U/about/index.html");
    assert_eq!(abi::handle(b"GET\0/a.txt\0", &o), b"P");
    assert_eq!(
        abi::handle(b"GET\0/a/../b\0", &o),
        b"E400 dot segments (. and ..) are not allowed in the URI"
    );
    // A NUL smuggled into the uri ends up in the query part, where it is refused.
    assert!(abi::handle(b"GET\0/a\0b\0c", &o).starts_with(b"E400"));
    assert!(abi::handle(&[0xff, 0xfe], &o).starts_with(b"E400"));
    assert!(abi::configure(br#"{"redirectStatus": 302}"#).is_ok());
    assert_eq!(abi::handle_configured(b"GET\0/x\0"), b"R302 /x/");
    assert!(abi::configure(br#"{"redirectStatus": 1}"#).is_err());
}
