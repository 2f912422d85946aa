//! Properties over arbitrary requests: no redirect leaves the site, rewriting is idempotent,
//! output URIs start with a single `/`, and a redirect's target is served without another
//! redirect.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a panic

use edge_rewriter::Options;
use edge_rewriter::rules::{Decision, decide, validate_path};
use proptest::prelude::*;

/// URIs built from the pieces attackers and real sites use.
fn uri() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E".to_owned()),
        Just("%2f".to_owned()),
        Just("%5c".to_owned()),
        Just("\\".to_owned()),
        Just("%".to_owned()),
        Just("%00".to_owned()),
        Just("%C3%A9".to_owned()),
        Just("?".to_owned()),
        Just("#".to_owned()),
        Just("@".to_owned()),
        Just(":".to_owned()),
        Just("evil.com".to_owned()),
        Just("index.html".to_owned()),
        Just("\r\n".to_owned()),
        "[a-zA-Z0-9_~-]{1,6}",
        "\\PC{1,3}",
    ];
    (prop::bool::ANY, prop::collection::vec(piece, 0..12)).prop_map(|(leading, parts)| {
        let s: String = parts.concat();
        if leading { format!("/{s}") } else { s }
    })
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z0-9=&%/.:@-]{0,20}", "\\PC{0,8}"]
}

fn options() -> impl Strategy<Value = Options> {
    (
        prop::bool::ANY,
        prop::bool::ANY,
        prop::sample::select(vec![301u16, 302, 307, 308]),
    )
        .prop_map(|(spa, rewrite, status)| {
            let mut json = serde_json::json!({"redirectStatus": status});
            if spa {
                json["spaPrefixes"] = serde_json::json!(["/app/"]);
            }
            if rewrite {
                json["extensionless"] = serde_json::json!("rewrite");
            }
            Options::from_json(&json.to_string()).unwrap()
        })
}

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["GET", "HEAD", "POST", "PUT"])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn a_redirect_never_points_off_the_site(m in method(), u in uri(), q in query(), o in options()) {
        if let Decision::Redirect { location, .. } = decide(m, &u, &q, &o) {
            prop_assert!(location.starts_with('/'), "{location}");
            prop_assert!(!location.starts_with("//"), "{location}");
            prop_assert!(!location.starts_with("/\\"), "{location}");
            prop_assert!(!location.contains('\\'), "{location}");
            prop_assert!(location.bytes().all(|b| (0x21..0x7f).contains(&b)), "{location:?}");
            let path = location.split('?').next().unwrap();
            prop_assert!(validate_path(path).is_ok(), "{location}");
        }
    }

    #[test]
    fn rewriting_is_idempotent(m in method(), u in uri(), q in query(), o in options()) {
        if let Decision::Rewrite(out) = decide(m, &u, &q, &o) {
            prop_assert_eq!(decide(m, &out, &q, &o), Decision::Pass, "{} -> {}", u, out);
        }
    }

    #[test]
    fn output_uris_start_with_a_single_slash(m in method(), u in uri(), q in query(), o in options()) {
        match decide(m, &u, &q, &o) {
            Decision::Rewrite(out) => prop_assert!(out.starts_with('/') && !out.starts_with("//"), "{out}"),
            Decision::Pass if m == "GET" || m == "HEAD" => {
                prop_assert!(u.starts_with('/') && !u.contains("//"), "{u}")
            }
            _ => {}
        }
    }

    #[test]
    fn a_redirect_target_is_served_without_another_redirect(u in uri(), q in query(), o in options()) {
        if let Decision::Redirect { location, .. } = decide("GET", &u, &q, &o) {
            let path = location.split('?').next().unwrap();
            let next = decide("GET", path, &q, &o);
            prop_assert!(matches!(next, Decision::Rewrite(_) | Decision::Pass | Decision::Reject { status: 414, .. }), "{location} -> {next:?}");
        }
    }
}
