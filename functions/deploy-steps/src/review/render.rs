//! The review as Markdown, cut to fit an SNS message, and its SNS subject.

use super::{MASK, Review, ReviewedChange};
use crate::changeset::Detail;

/// SNS wants a subject under 100 characters.
const MAX_SUBJECT_CHARS: usize = 99;
/// A value longer than this is cut with "…" in the Markdown (the JSON keeps it whole).
const MAX_VALUE_CHARS: usize = 200;

/// The review as Markdown that reads as well in a terminal as in a plain-text e-mail: the
/// verdict, the unsafe changes with their reasons, every change with its property values, the
/// parameters, the drift.
pub fn markdown(review: &Review) -> String {
    let mut out = vec![
        format!("# Change set review: {}", review.review_id),
        String::new(),
    ];
    out.push(format!("Stack:         {}", review.stack_name));
    out.extend(review.stack_id.as_ref().map(|id| format!("Stack id:      {id}")));
    out.push(format!("Change set:    {}", review.change_set_name));
    out.push(format!("Change set id: {}", review.change_set_id));
    out.push(format!("Fingerprint:   {}", review.fingerprint));
    out.push(String::new());
    out.push(match review.safe {
        true => format!("Verdict: safe, {} change(s), none unsafe.", review.change_count),
        false => format!(
            "Verdict: UNSAFE, {} of {} change(s) would remove or replace resources or could not be \
             judged. Approve only if every one is intended.",
            review.offence_count, review.change_count
        ),
    });
    out.push(String::new());
    let values = format!(
        "values are as the change set gives them (CloudFormation may cut them short); secrets and \
         NoEcho values are shown as {MASK}."
    );
    out.extend(review.notes.iter().chain([&values]).map(|n| format!("Note: {n}")));
    out.push(String::new());
    let offending = review
        .changes
        .iter()
        .filter_map(|c| c.offence.as_ref().map(|o| (c, o)));
    for (i, (c, o)) in offending.enumerate() {
        if i == 0 {
            out.extend([
                format!("## Unsafe changes ({})", review.offence_count),
                String::new(),
            ]);
        }
        out.push(format!(
            "- #{} {} ({}, {}):",
            c.number,
            c.resource,
            field(&c.change.resource_type),
            field(&c.change.action)
        ));
        out.push(format!("  {}", cut(&o.reason)));
        out.extend((!o.kinds.is_empty()).then(|| format!("  kinds: {}", o.kinds.join(", "))));
    }
    out.extend([
        String::new(),
        format!("## All changes ({})", review.change_count),
        String::new(),
    ]);
    for c in &review.changes {
        md_change(c, &mut out);
        out.push(String::new());
    }
    md_parameters_and_drift(review, &mut out);
    out.push(String::new());
    out.join("\n")
}

fn field(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

fn md_change(c: &ReviewedChange, out: &mut Vec<String>) {
    let rc = &c.change;
    out.push(format!(
        "{}. {} ({}): {}",
        c.number,
        c.resource,
        field(&rc.resource_type),
        field(&rc.action)
    ));
    out.extend(
        rc.physical_resource_id
            .as_ref()
            .map(|id| format!("   physical id: {}", cut(id))),
    );
    out.push(format!(
        "   replacement: {}, policy action: {}",
        field(&rc.replacement),
        field(&rc.policy_action)
    ));
    out.extend(
        c.offence
            .as_ref()
            .map(|o| format!("   UNSAFE: {}", cut(&o.reason))),
    );
    if !rc.details.is_empty() {
        out.push("   details:".to_owned());
    }
    out.extend(rc.details.iter().map(|d| format!("   - {}", detail_line(d))));
    if !c.properties.is_empty() {
        out.push("   properties:".to_owned());
    }
    // A context kept as text is not valid JSON: the values on its side are unknown.
    let unknown =
        |context: &Option<String>, side| context.as_ref().map(|_| format!("({side} not valid JSON)"));
    let (no_before, no_after) = (
        unknown(&rc.before_context, "before"),
        unknown(&rc.after_context, "after"),
    );
    for p in &c.properties {
        let path = if p.path.is_empty() {
            "(whole context)"
        } else {
            &p.path
        };
        let before = p.before.as_deref().or(no_before.as_deref());
        let values = pair(
            field(&rc.action),
            before,
            p.after.as_deref().or(no_after.as_deref()),
        );
        out.push(format!("   - {}: {values}", cut(path)));
    }
    for (side, text) in [("before", &rc.before_context), ("after", &rc.after_context)] {
        out.extend(
            text.as_ref()
                .map(|t| format!("   {side} (not valid JSON): {}", cut(t))),
        );
    }
    if !c.values_available {
        out.push("   property values not available".to_owned());
    }
}

/// `BucketName: "old" → "new" (requires recreation: Always)`.
fn detail_line(d: &Detail) -> String {
    let t = d.target.clone().unwrap_or_default();
    let name = t.name.as_deref().or(t.attribute.as_deref()).unwrap_or("?");
    // The path when it says more than the name: `/Properties/Tags/0/Value`.
    let label = match t.path.as_deref() {
        Some(path) if t.name.is_none() || !path.ends_with(&format!("/{name}")) => path,
        _ => name,
    };
    let values = match (&t.before_value, &t.after_value) {
        (None, None) => String::new(),
        (before, after) => format!(": {}", pair("Modify", before.as_deref(), after.as_deref())),
    };
    let source = [
        d.change_source.as_deref().filter(|s| *s != "DirectModification"),
        d.causing_entity.as_deref(),
    ];
    let source: Vec<&str> = source.into_iter().flatten().collect();
    let notes: Vec<String> = [
        t.attribute_change_type
            .as_deref()
            .filter(|t| *t != "Modify")
            .map(str::to_lowercase),
        t.requires_recreation
            .as_ref()
            .map(|r| format!("requires recreation: {r}")),
        d.evaluation
            .as_deref()
            .filter(|e| *e != "Static")
            .map(|e| format!("evaluation: {e}")),
        (!source.is_empty()).then(|| format!("from {}", source.join(" "))),
    ]
    .into_iter()
    .flatten()
    .collect();
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join(", "))
    };
    format!("{}{values}{}", cut(label), cut(&notes))
}

/// `"old" → "new"`; only the one side of an Add's or a Remove's properties.
fn pair(action: &str, before: Option<&str>, after: Option<&str>) -> String {
    match (before.map(cut), after.map(cut)) {
        (Some(b), Some(a)) => format!("{b} → {a}"),
        (None, Some(a)) if action == "Add" => a,
        (Some(b), None) if action == "Remove" => b,
        (b, a) => format!(
            "{} → {}",
            b.as_deref().unwrap_or("(none)"),
            a.as_deref().unwrap_or("(none)")
        ),
    }
}

fn md_parameters_and_drift(review: &Review, out: &mut Vec<String>) {
    out.extend([
        format!("## Parameters ({})", review.parameters.len()),
        String::new(),
    ]);
    for p in &review.parameters {
        let value = p.value.as_deref().map_or_else(|| "(not set)".to_owned(), cut);
        out.push(format!(
            "- {}: {value}{}",
            p.key,
            if p.no_echo { " (NoEcho)" } else { "" }
        ));
    }
    let drift = &review.drift;
    out.extend([
        String::new(),
        format!("## Drift ({} resource(s))", drift.drifted.len()),
        String::new(),
    ]);
    out.push(cut(drift.summary.as_deref().unwrap_or("No drift information.")));
    for r in &drift.drifted {
        let id = r
            .physical_resource_id
            .as_deref()
            .map(|p| format!(", {}", cut(p)))
            .unwrap_or_default();
        out.push(format!(
            "- {} ({}{id}): {}",
            r.logical_resource_id, r.resource_type, r.status
        ));
        for d in &r.differences {
            let value = |v: &Option<String>| v.as_deref().map_or_else(|| "(none)".to_owned(), cut);
            let (expected, actual) = (value(&d.expected_value), value(&d.actual_value));
            let path = cut(&d.property_path);
            out.push(format!(
                "  - {path} ({}): expected {expected}, actual {actual}",
                d.difference_type
            ));
        }
    }
}

/// A value of at most [`MAX_VALUE_CHARS`] characters (cut with "…"), on one line.
fn cut(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(MAX_VALUE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if value.chars().nth(MAX_VALUE_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// The Markdown cut to at most max_bytes (UTF-8 safe, at a line boundary), ending with a note
/// that it was cut short, how much is shown, and the full review's location `full_uri`;
/// unchanged when it fits.
pub fn bounded_markdown(markdown: &str, max_bytes: usize, full_uri: &str) -> String {
    if markdown.len() <= max_bytes {
        return markdown.to_owned();
    }
    let (total_bytes, total_lines) = (markdown.len(), markdown.lines().count());
    let note = |bytes: usize, lines: usize| {
        format!(
            "\n… Cut short: this message shows the first {lines} of {total_lines} lines ({bytes} of \
             {total_bytes} bytes). The full review: {full_uri}\n"
        )
    };
    // The longest note this can end with has numbers no longer than these.
    let room = max_bytes.saturating_sub(note(total_bytes, total_lines).len());
    let end = markdown.as_bytes()[..room]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let shown = &markdown[..end];
    let out = format!("{shown}{}", note(end, shown.lines().count()));
    if out.len() <= max_bytes {
        return out;
    }
    // Not even the note fits: as much of a shorter one as does.
    let mut out = format!("… Cut short; the full review: {full_uri}\n");
    let mut end = max_bytes.min(out.len());
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

/// An SNS Subject: under 100 characters, printable ASCII, no line breaks, e.g.
/// "Approve 2 unsafe change(s) to prod-app?".
pub fn subject(review: &Review) -> String {
    let head = match review.safe {
        true => format!("Approve {} change(s) to ", review.change_count),
        false => format!("Approve {} unsafe change(s) to ", review.offence_count),
    };
    let stack: String = review
        .stack_name
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    let room = MAX_SUBJECT_CHARS.saturating_sub(head.len() + 1);
    if stack.len() <= room {
        return format!("{head}{stack}?");
    }
    let short: String = stack.chars().take(room.saturating_sub(3)).collect();
    format!("{head}{short}...?")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::DriftReview;

    fn review(stack_name: &str, safe: bool) -> Review {
        Review {
            version: 1,
            review_id: format!("{stack_name}/cs"),
            stack_name: stack_name.into(),
            stack_id: None,
            change_set_id: "arn:cs".into(),
            change_set_name: "cs".into(),
            fingerprint: "sha256:00".into(),
            safe,
            change_count: 3,
            offence_count: if safe { 0 } else { 2 },
            summary: String::new(),
            notes: Vec::new(),
            changes: Vec::new(),
            parameters: Vec::new(),
            drift: DriftReview {
                summary: None,
                drifted: Vec::new(),
            },
        }
    }

    #[test]
    fn a_value_is_cut_at_200_characters_on_one_line() {
        assert_eq!(cut("a\nb"), "a b");
        let long = "é".repeat(MAX_VALUE_CHARS + 1);
        assert_eq!(cut(&long), format!("{}…", "é".repeat(MAX_VALUE_CHARS)));
        assert_eq!(cut(&long[..2 * MAX_VALUE_CHARS]), long[..2 * MAX_VALUE_CHARS]);
    }

    #[test]
    fn pair_shows_one_side_for_an_add_or_a_remove() {
        assert_eq!(pair("Modify", Some("1"), Some("2")), "1 → 2");
        assert_eq!(pair("Add", None, Some("2")), "2");
        assert_eq!(pair("Remove", Some("1"), None), "1");
        assert_eq!(pair("Modify", None, Some("2")), "(none) → 2");
        assert_eq!(pair("Modify", Some("1"), None), "1 → (none)");
    }

    #[test]
    fn bounded_markdown_is_unchanged_when_it_fits() {
        let md = "# a\nb\n";
        assert_eq!(bounded_markdown(md, md.len(), "s3://b/k"), md);
    }

    #[test]
    fn bounded_markdown_never_exceeds_its_bound_and_cuts_at_a_line() {
        let md: String = (0..500)
            .map(|i| format!("- line {i}: ü → é {}\n", "x".repeat(i % 37)))
            .collect();
        for max in [0, 1, 5, 30, 100, 150, 151, 152, 200, 1000, 4096, md.len() - 1] {
            let out = bounded_markdown(&md, max, "s3://bucket/reviews/prod/cs.md");
            assert!(out.len() <= max, "{max}: {}", out.len());
            if max >= 200 {
                let (shown, note) = out.split_once("\n… Cut short").unwrap();
                assert!(
                    md.starts_with(shown) && (shown.is_empty() || shown.ends_with('\n')),
                    "{max}"
                );
                let lines = shown.lines().count();
                assert!(note.contains(&format!("first {lines} of 500 lines")), "{note}");
                assert!(
                    note.contains(&format!("({} of {} bytes)", shown.len(), md.len())),
                    "{note}"
                );
                assert!(
                    note.ends_with("The full review: s3://bucket/reviews/prod/cs.md\n"),
                    "{note}"
                );
            }
        }
    }

    #[test]
    fn the_subject_is_short_printable_ascii() {
        assert_eq!(
            subject(&review("prod-app", false)),
            "Approve 2 unsafe change(s) to prod-app?"
        );
        assert_eq!(
            subject(&review("prod-app", true)),
            "Approve 3 change(s) to prod-app?"
        );
        let long = subject(&review(&format!("ünï\ncode-{}", "s".repeat(128)), false));
        assert!(long.len() < 100 && long.ends_with("...?"), "{long}");
        assert!(long.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{long}");
        assert!(
            long.starts_with("Approve 2 unsafe change(s) to ?n??code-sss"),
            "{long}"
        );
    }
}
