//! The review of an unsafe change set, pure: every change with its property-level before and
//! after values, each offence marked with its reason, secrets masked; as JSON and as Markdown
//! bounded for SNS; and the fingerprint that ties an approval to exactly the changes reviewed.
//!
//! Masking fails closed: a value under a property whose name passes [`is_secret_name`] is
//! `****` (its whole subtree), a `NoEcho` parameter's value is masked wherever it appears (also
//! where CloudFormation cut it short), text that is not valid JSON but names a secret is
//! withheld, and when a `NoEcho` value is not known here every property value is withheld.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::changeset::{
    self, KNOWN_ACTIONS, KNOWN_EVALUATIONS, KNOWN_POLICY_ACTIONS, KNOWN_RECREATIONS, KNOWN_REPLACEMENTS,
    PageParameter, Policy, ResourceChange,
};
use crate::drift::{DriftedResource, PropertyDifference};
use crate::plan::Parameter;

mod render;
pub use render::{bounded_markdown, markdown, subject};

/// What CloudFormation itself shows for a `NoEcho` value.
pub const MASK: &str = "****";

/// The SNS message limit (262,144 bytes) less room for the subject and message attributes.
pub const MAX_MESSAGE_BYTES: usize = 240 * 1024;

/// A secret at least this long is masked wherever it appears; a shorter one only as a whole
/// value (masking every "abc" inside other values would hide more than it protects).
const MIN_SUBSTRING_SECRET: usize = 6;
/// A value that ends with at least this many bytes of a secret's beginning (CloudFormation cut
/// it short) has that end masked.
const MIN_SECRET_TAIL: usize = 3;
/// Fields that name the value beside them: `{"Name": "DB_PASSWORD", "Value": "…"}`.
const NAME_FIELDS: [&str; 5] = ["Key", "Name", "ParameterKey", "OptionName", "ParameterName"];

/// Words that mark a property (or a drifted property path) whose value is never shown.
const SECRET_WORDS: [&str; 13] = [
    "password",
    "passwd",
    "pwd",
    "connectionstring",
    "securestring",
    "passphrase",
    "secret",
    "token",
    "privatekey",
    "keymaterial",
    "credential",
    "apikey",
    "accesskey",
];

/// Whether a property name (or path, such as `/Properties/MasterUserPassword`) suggests a secret:
/// password, secret, token, key material and the like, in any case, with or without `_` or `-`.
pub fn is_secret_name(name: &str) -> bool {
    let folded: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '.')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SECRET_WORDS.iter().any(|w| folded.contains(w))
}

/// What [`build`] reviews.
pub struct ReviewInput<'a> {
    /// `<stack>/<change set name>`.
    pub review_id: &'a str,
    pub stack_name: &'a str,
    pub stack_id: Option<&'a str>,
    pub change_set_id: &'a str,
    pub change_set_name: &'a str,
    /// every change of the root and nested change sets, in DescribeChangeSet order, with its
    /// nested-stack path prefix ("" at the root, "Network/" or "Network/Subnets/" below)
    pub changes: &'a [(String, ResourceChange)],
    /// The root change set's `Parameters` (`****` for a `NoEcho` one).
    pub parameters: &'a [PageParameter],
    /// The values the deployment passed.
    pub given_parameters: &'a [Parameter],
    pub policy: &'a Policy,
    pub drifted: &'a [DriftedResource],
    pub drift_summary: Option<&'a str>,
}

/// The review written to S3 as JSON and, rendered by [`markdown`], sent for approval. Every
/// value in it is masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    /// 1.
    pub version: u32,
    pub review_id: String,
    pub stack_name: String,
    pub stack_id: Option<String>,
    pub change_set_id: String,
    pub change_set_name: String,
    /// [`fingerprint`] of the change set id and the changes as DescribeChangeSet gave them.
    pub fingerprint: String,
    pub safe: bool,
    pub change_count: usize,
    pub offence_count: usize,
    /// One line, at most 4,000 characters: the verdict's (`Verdict::bounded`).
    pub summary: String,
    /// What the reader should know about the values shown (values withheld, and why).
    pub notes: Vec<String>,
    pub changes: Vec<ReviewedChange>,
    /// The root change set's parameters, `NoEcho` ones (and those named like secrets) as `****`.
    pub parameters: Vec<ReviewedParameter>,
    pub drift: DriftReview,
}

/// One resource change as reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewedChange {
    /// From 1, in the change sets' order.
    pub number: usize,
    /// The nested-stack path and logical id, as the verdict names it: `Network/Subnet`.
    pub resource: String,
    /// Why the policy refuses this change (`changeset::judge`), if it does.
    pub offence: Option<ReviewedOffence>,
    /// Whether the change set gave any property value (a context or a target's values).
    pub values_available: bool,
    /// From the contexts: the paths whose values differ (a `Modify`), or every property (an
    /// `Add`'s after, a `Remove`'s before).
    pub properties: Vec<PropertyChange>,
    /// The change as DescribeChangeSet gave it (PascalCase), values masked. A context is kept
    /// only when it is not valid JSON (as masked text); otherwise `properties` holds its values.
    pub change: ResourceChange,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewedOffence {
    pub reason: String,
    /// What the change's fields say it does: `removal`, `replacement`, `conditional-replacement`,
    /// `dynamic-evaluation`, `destructive-policy-action`, `fields-disagree`, `unrecognised`,
    /// `unreported-replacement`, `nested-stack-not-inspected`.
    pub kinds: Vec<String>,
}

/// A property's values as compact JSON (`"old"`, `5`, `{}`), or `****`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyChange {
    /// Such as `Properties.Tags[0].Value`.
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewedParameter {
    pub key: String,
    pub value: Option<String>,
    pub no_echo: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftReview {
    pub summary: Option<String>,
    /// Expected and actual values shown as [`PropertyChange`]'s.
    pub drifted: Vec<DriftedResource>,
}

/// Builds the review: judges every change, reads its values, masks what must not be shown.
pub fn build(input: &ReviewInput) -> Review {
    let masker = Masker::new(input.parameters, input.given_parameters);
    let changes: Vec<ReviewedChange> = (input.changes.iter().enumerate())
        .map(|(i, (path, change))| reviewed_change(i + 1, path, change, input.policy, &masker))
        .collect();
    let all = input.changes.iter().map(|(p, c)| (p.as_str(), c));
    let summary = changeset::verdict(all, input.policy).bounded().summary;
    let offence_count = changes.iter().filter(|c| c.offence.is_some()).count();
    let notes = (!masker.unknown.is_empty()).then(|| {
        format!(
            "NoEcho parameter(s) {} have no value given here (previous or default value): every \
             property value is shown as {MASK}, as it could hold theirs",
            masker.unknown.join(", ")
        )
    });
    let hide = |key: &String, v: &str| {
        if masker.keys.contains(key) {
            MASK.into()
        } else {
            masker.text(v)
        }
    };
    let parameters = input.parameters.iter().map(|p| ReviewedParameter {
        key: p.parameter_key.clone(),
        value: p.parameter_value.as_deref().map(|v| hide(&p.parameter_key, v)),
        no_echo: p.parameter_value.as_deref() == Some(MASK),
    });
    Review {
        version: 1,
        review_id: input.review_id.to_owned(),
        stack_name: input.stack_name.to_owned(),
        stack_id: input.stack_id.map(str::to_owned),
        change_set_id: input.change_set_id.to_owned(),
        change_set_name: input.change_set_name.to_owned(),
        fingerprint: fingerprint(input.change_set_id, input.changes),
        safe: offence_count == 0,
        change_count: changes.len(),
        offence_count,
        summary: masker.text(&summary),
        notes: notes.into_iter().collect(),
        changes,
        parameters: parameters.collect(),
        drift: DriftReview {
            summary: input.drift_summary.map(|s| masker.text(s)),
            drifted: input.drifted.iter().map(|d| masker.drift(d)).collect(),
        },
    }
}

/// "sha256:<64 hex>" over the change set id and every change in order, all fields including
/// property values and contexts (canonical JSON of (path, ResourceChange) pairs). Unmasked
/// input; changes in any field (or order) change it.
pub fn fingerprint(change_set_id: &str, changes: &[(String, ResourceChange)]) -> String {
    // Serialising these types cannot fail; should it, their debug text still holds every field.
    let bytes = serde_json::to_vec(&(change_set_id, changes))
        .unwrap_or_else(|e| format!("{e}: {change_set_id} {changes:?}").into_bytes());
    let hex: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn reviewed_change(
    number: usize,
    path: &str,
    change: &ResourceChange,
    policy: &Policy,
    masker: &Masker,
) -> ReviewedChange {
    let reasons: Vec<String> = changeset::judge(change, policy, path)
        .into_iter()
        .map(|o| o.reason)
        .collect();
    let offence = (!reasons.is_empty()).then(|| {
        let reason = reasons.join("; ");
        ReviewedOffence {
            kinds: offence_kinds(change, &reason),
            reason: masker.text(&reason),
        }
    });
    let action = change.action.as_deref().unwrap_or("?");
    // An Add has nothing before it, a Remove nothing after.
    let before = change.before_context.as_deref().filter(|_| action != "Add");
    let after = change.after_context.as_deref().filter(|_| action != "Remove");
    // A context's JSON; `None` when there is none or it is not valid JSON.
    let parse = |context: Option<&str>| context.and_then(|t| serde_json::from_str::<Value>(t).ok());
    let (before_json, after_json) = (parse(before), parse(after));
    // The properties a NoEcho parameter sets: their values (the old one too) are secret.
    let set_by_secret = |d: &changeset::Detail| {
        let entity = d.causing_entity.as_deref().unwrap_or_default();
        d.change_source.as_deref() == Some("ParameterReference") && masker.keys.iter().any(|k| k == entity)
    };
    let by_parameter: Vec<&str> = (change.details.iter().filter(|d| set_by_secret(d)))
        .filter_map(|d| d.target.as_ref()?.name.as_deref())
        .collect();
    let mut shown = change.clone();
    shown.physical_resource_id = change.physical_resource_id.as_deref().map(|s| masker.text(s));
    shown.before_context = before.filter(|_| before_json.is_none()).map(|t| masker.opaque(t));
    shown.after_context = after.filter(|_| after_json.is_none()).map(|t| masker.opaque(t));
    for detail in &mut shown.details {
        let by_secret = set_by_secret(detail);
        detail.causing_entity = detail.causing_entity.as_deref().map(|s| masker.text(s));
        let Some(t) = &mut detail.target else { continue };
        let secret = by_secret
            || [&t.name, &t.path]
                .into_iter()
                .flatten()
                .any(|n| is_secret_name(n));
        t.before_value = t.before_value.as_deref().map(|v| masker.value(v, secret));
        t.after_value = t.after_value.as_deref().map(|v| masker.value(v, secret));
    }
    let has_values = |d: &changeset::Detail| {
        d.target
            .as_ref()
            .is_some_and(|t| t.before_value.is_some() || t.after_value.is_some())
    };
    ReviewedChange {
        number,
        resource: format!("{path}{}", change.logical_resource_id.as_deref().unwrap_or("?")),
        offence,
        values_available: before.is_some() || after.is_some() || change.details.iter().any(has_values),
        properties: diff(
            &flatten(before_json.as_ref(), &by_parameter),
            &flatten(after_json.as_ref(), &by_parameter),
            masker,
        ),
        change: shown,
    }
}

/// What an offending change's fields say it does (the gate's reason tells the last few).
fn offence_kinds(change: &ResourceChange, reason: &str) -> Vec<String> {
    let action = change.action.as_deref().unwrap_or("?");
    let replacement = change.replacement.as_deref().unwrap_or("");
    let pa = change.policy_action.as_deref().unwrap_or("");
    // Each detail's (evaluated at execution, Evaluation, RequiresRecreation).
    let details: Vec<(bool, &str, &str)> = (change.details.iter())
        .map(|d| {
            let evaluation = d.evaluation.as_deref().unwrap_or("");
            let requires = d.target.as_ref().and_then(|t| t.requires_recreation.as_deref());
            (evaluation == "Dynamic", evaluation, requires.unwrap_or(""))
        })
        .collect();
    let any = |f: &dyn Fn(bool, &str, &str) -> bool| details.iter().any(|(d, e, r)| f(*d, e, r));
    let unrecognised = ["unrecognised ", "unknown action"]
        .iter()
        .any(|w| reason.contains(w))
        || !KNOWN_ACTIONS.contains(&action)
        || !(replacement.is_empty() || KNOWN_REPLACEMENTS.contains(&replacement))
        || !(pa.is_empty() || KNOWN_POLICY_ACTIONS.contains(&pa))
        || any(&|_, e, r| {
            !(e.is_empty() || KNOWN_EVALUATIONS.contains(&e))
                || !(r.is_empty() || KNOWN_RECREATIONS.contains(&r))
        });
    let removal = action == "Remove" || (action == "Modify" && matches!(pa, "Delete" | "Snapshot"));
    let replaces =
        replacement == "True" || pa.starts_with("ReplaceAnd") || any(&|d, _, r| !d && r == "Always");
    let conditional =
        replacement == "Conditional" || any(&|d, _, r| r == "Conditionally" || (d && r == "Always"));
    [
        ("removal", removal),
        ("replacement", replaces),
        ("conditional-replacement", conditional),
        ("dynamic-evaluation", action == "Dynamic" || any(&|d, _, _| d)),
        (
            "destructive-policy-action",
            matches!(
                pa,
                "Delete" | "Snapshot" | "ReplaceAndDelete" | "ReplaceAndSnapshot"
            ),
        ),
        ("fields-disagree", reason.contains("disagree")),
        ("unrecognised", unrecognised),
        (
            "unreported-replacement",
            reason.starts_with("replacement not reported"),
        ),
        (
            "nested-stack-not-inspected",
            reason.contains("could not be inspected"),
        ),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(kind, _)| kind.to_owned())
    .collect()
}

/// A leaf of a context: its path, its value, and whether it is secret (then it is the whole
/// subtree under the secret's name).
type Leaf<'v> = (String, &'v Value, bool);

/// Paths like `Properties.Tags[0].Value` to each scalar, empty or secret value; the properties
/// in `by_parameter` (set from a `NoEcho` parameter) are secret.
fn flatten<'v>(value: Option<&'v Value>, by_parameter: &[&str]) -> Vec<Leaf<'v>> {
    fn walk<'v>(value: &'v Value, path: String, secret: bool, by: &[&str], out: &mut Vec<Leaf<'v>>) {
        match value {
            Value::Object(map) if !secret && !map.is_empty() => {
                let named = names_secret(map);
                for (key, child) in map {
                    let secret = hides(named, key) || (path == "Properties" && by.contains(&key.as_str()));
                    let dot = if path.is_empty() { "" } else { "." };
                    walk(child, format!("{path}{dot}{key}"), secret, by, out);
                }
            }
            Value::Array(items) if !secret && !items.is_empty() => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, format!("{path}[{i}]"), false, by, out);
                }
            }
            _ => out.push((path, value, secret)),
        }
    }
    let mut out = Vec::new();
    if let Some(value) = value {
        walk(value, String::new(), false, by_parameter, &mut out);
    }
    out
}

/// Whether an object names a secret in a name field (`{"Name": "DB_PASSWORD", "Value": …}`).
fn names_secret(map: &Map<String, Value>) -> bool {
    NAME_FIELDS
        .iter()
        .any(|f| map.get(*f).and_then(Value::as_str).is_some_and(is_secret_name))
}

/// Whether the value under `key` is hidden: a secret's name, or beside a name field naming one.
fn hides(named_secret: bool, key: &str) -> bool {
    is_secret_name(key) || (named_secret && !NAME_FIELDS.contains(&key))
}

/// The paths whose values differ: in before's order, then those only after has.
fn diff(before: &[Leaf], after: &[Leaf], masker: &Masker) -> Vec<PropertyChange> {
    let index = |leaves: &[Leaf]| -> HashMap<String, usize> {
        leaves
            .iter()
            .enumerate()
            .map(|(i, (path, _, _))| (path.clone(), i))
            .collect()
    };
    let (before_at, after_at) = (index(before), index(after));
    let change = |path: &str, before, after| PropertyChange {
        path: masker.text(path),
        before,
        after,
    };
    let mut out = Vec::new();
    for (path, value, secret) in before {
        let other = after_at.get(path).map(|i| &after[*i]);
        if other.is_some_and(|(_, v, _)| v == value) {
            continue;
        }
        // Secret if either side says so.
        let hidden = *secret || other.is_some_and(|(_, _, s)| *s);
        let after = other.map(|(_, v, _)| masker.json(v, hidden));
        out.push(change(path, Some(masker.json(value, hidden)), after));
    }
    for (path, value, secret) in after.iter().filter(|(path, _, _)| !before_at.contains_key(path)) {
        out.push(change(path, None, Some(masker.json(value, *secret))));
    }
    out
}

/// The secret values to mask: the `NoEcho` parameters' (and those of parameters named like
/// secrets).
#[derive(Debug, Default)]
struct Masker {
    /// At least [`MIN_SUBSTRING_SECRET`] long, and their JSON-escaped forms; longest first.
    long: Vec<String>,
    /// Shorter `NoEcho` values: masked as a whole value only.
    short: Vec<String>,
    /// `NoEcho` parameters whose value is not known here: every property value is withheld.
    unknown: Vec<String>,
    /// The `NoEcho` parameters and those named like secrets: a property they set is secret.
    keys: Vec<String>,
}

impl Masker {
    fn new(parameters: &[PageParameter], given: &[Parameter]) -> Masker {
        let mut masker = Masker::default();
        for p in parameters {
            let no_echo = p.parameter_value.as_deref() == Some(MASK);
            if no_echo || is_secret_name(&p.parameter_key) {
                masker.keys.push(p.parameter_key.clone());
            }
            let given = given
                .iter()
                .find(|g| g.key == p.parameter_key)
                .and_then(|g| g.value.as_deref());
            match (given, p.parameter_value.as_deref()) {
                (None, Some(MASK)) => masker.unknown.push(p.parameter_key.clone()),
                (Some(v), _) | (None, Some(v)) if no_echo || is_secret_name(&p.parameter_key) => {
                    let long = v.chars().count() >= MIN_SUBSTRING_SECRET;
                    let escaped = Value::String(v.to_owned()).to_string();
                    let escaped = escaped
                        .strip_prefix('"')
                        .and_then(|e| e.strip_suffix('"'))
                        .unwrap_or(v);
                    // A short value of a parameter only named like a secret ("true") is not
                    // masked elsewhere: that would hide every such value.
                    if long {
                        masker.long.extend([v.to_owned(), escaped.to_owned()]);
                    } else if no_echo && !v.is_empty() {
                        masker.short.push(v.to_owned());
                    }
                }
                _ => {}
            }
        }
        masker
            .long
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        masker.long.dedup();
        masker
    }

    /// Text (a reason, an id, a path) with every secret in it replaced by `****`.
    fn text(&self, text: &str) -> String {
        if self.short.iter().any(|s| s == text) {
            return MASK.to_owned();
        }
        let mut out = text.to_owned();
        for secret in self.long.iter().filter(|s| text.contains(s.as_str())) {
            out = out.replace(secret.as_str(), MASK);
        }
        out
    }

    /// A value's text as [`Masker::text`]; one that ends with a secret's beginning (the value
    /// was cut short) also has that end masked.
    fn value_text(&self, text: &str) -> String {
        let mut out = self.text(text);
        for secret in &self.long {
            let mut ends = secret
                .char_indices()
                .map(|(i, _)| i)
                .filter(|i| *i >= MIN_SECRET_TAIL)
                .rev();
            if let Some(n) = ends.find(|n| out.ends_with(&secret[..*n])) {
                out.truncate(out.len() - n);
                out.push_str(MASK);
            }
        }
        out
    }

    /// A JSON value as shown: compact JSON, secrets (by name or by value) as `****`.
    fn json(&self, value: &Value, secret: bool) -> String {
        if secret || !self.unknown.is_empty() {
            return MASK.to_owned();
        }
        match self.mask_json(value) {
            Value::String(s) if s == MASK => s,
            masked => masked.to_string(),
        }
    }

    fn mask_json(&self, value: &Value) -> Value {
        let mask = || Value::String(MASK.to_owned());
        match value {
            Value::String(s) => Value::String(self.value_text(s)),
            Value::Number(n) if self.value_text(&n.to_string()) != n.to_string() => mask(),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.mask_json(v)).collect()),
            Value::Object(map) => {
                let named = names_secret(map);
                let entry = |(k, v): (&String, &Value)| {
                    (
                        self.text(k),
                        if hides(named, k) {
                            mask()
                        } else {
                            self.mask_json(v)
                        },
                    )
                };
                Value::Object(map.iter().map(entry).collect())
            }
            other => other.clone(),
        }
    }

    /// A value CloudFormation gives as text (a target's, a drift's): JSON in it is masked by
    /// name; text that is not JSON but looks structured (cut short, `KEY=value`) and names a
    /// secret is withheld.
    fn value(&self, text: &str, secret: bool) -> String {
        match serde_json::from_str::<Value>(text) {
            Ok(v @ (Value::Object(_) | Value::Array(_))) => self.json(&v, secret),
            _ if text.contains(['{', '[', '"', '=']) && is_secret_name(text) => MASK.to_owned(),
            _ => self.json(&Value::String(text.to_owned()), secret),
        }
    }

    /// A context that is not valid JSON (cut short, perhaps): withheld if it names a secret.
    fn opaque(&self, text: &str) -> String {
        if !self.unknown.is_empty() || is_secret_name(text) {
            return MASK.to_owned();
        }
        self.value_text(text)
    }

    fn drift(&self, resource: &DriftedResource) -> DriftedResource {
        let difference = |d: &PropertyDifference| {
            let value = |s: &Option<String>| {
                s.as_deref()
                    .map(|s| self.value(s, is_secret_name(&d.property_path)))
            };
            PropertyDifference {
                property_path: self.text(&d.property_path),
                difference_type: d.difference_type.clone(),
                expected_value: value(&d.expected_value),
                actual_value: value(&d.actual_value),
            }
        };
        DriftedResource {
            physical_resource_id: resource.physical_resource_id.as_deref().map(|s| self.text(s)),
            differences: resource.differences.iter().map(difference).collect(),
            ..resource.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for name in [
            "MasterUserPassword",
            "/Properties/MasterUserPassword",
            "SecretString",
            "client_secret",
            "AuthToken",
            "PublicKeyMaterial",
            "PRIVATE_KEY",
            "Credentials",
            "api-key",
            "AccessKey",
            "DbPwd",
            "ConnectionString",
            "SecureStringValue",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "BucketName",
            "KeyName",
            "KeySchema",
            "S3Key",
            "TokenValidityUnits2",
        ] {
            // "TokenValidityUnits" holds "token": over-masking is the safe side.
            assert_eq!(is_secret_name(name), name.starts_with("Token"), "{name}");
        }
    }

    fn masker(no_echo: &[(&str, &str)]) -> Masker {
        let page: Vec<PageParameter> = (no_echo.iter())
            .map(|(k, _)| PageParameter {
                parameter_key: (*k).into(),
                parameter_value: Some(MASK.into()),
            })
            .collect();
        let given: Vec<Parameter> = (no_echo.iter())
            .map(|(k, v)| Parameter {
                key: (*k).into(),
                value: Some((*v).into()),
                use_previous_value: false,
            })
            .collect();
        Masker::new(&page, &given)
    }

    #[test]
    fn a_long_no_echo_value_is_masked_inside_others_a_short_one_only_whole() {
        let m = masker(&[("DbPassword", "hunter2-long"), ("Pin", "1234")]);
        assert_eq!(
            m.text("postgres://app:hunter2-long@db/x"),
            "postgres://app:****@db/x"
        );
        assert_eq!(m.text("1234"), MASK);
        assert_eq!(m.text("room 1234"), "room 1234");
        // Cut short by CloudFormation: the secret's beginning at the end is masked too.
        assert_eq!(m.value_text("postgres://app:hunt"), "postgres://app:****");
        assert_eq!(m.value_text("postgres://app:hu"), "postgres://app:hu");
        assert_eq!(m.json(&serde_json::json!(1234), false), MASK);
        assert_eq!(m.json(&serde_json::json!("x hunter2-long"), false), "\"x ****\"");
    }

    #[test]
    fn a_secret_is_masked_also_in_its_json_escaped_form() {
        let m = masker(&[("DbPassword", "quo\"te\\back")]);
        let text = serde_json::to_string(&serde_json::json!({"Url": "a quo\"te\\back b"})).unwrap();
        assert_eq!(m.opaque(&text), "{\"Url\":\"a **** b\"}");
    }

    #[test]
    fn a_parameter_only_named_like_a_secret_masks_only_long_values_elsewhere() {
        let page = [
            PageParameter {
                parameter_key: "UseSecretsManager".into(),
                parameter_value: Some("true".into()),
            },
            PageParameter {
                parameter_key: "ApiTokenValue".into(),
                parameter_value: Some("tok-123456".into()),
            },
        ];
        let m = Masker::new(&page, &[]);
        assert_eq!(m.text("true"), "true");
        assert_eq!(m.text("Bearer tok-123456"), "Bearer ****");
        assert!(m.unknown.is_empty());
    }

    #[test]
    fn an_unknown_no_echo_value_withholds_every_value() {
        let page = [PageParameter {
            parameter_key: "DbPassword".into(),
            parameter_value: Some(MASK.into()),
        }];
        let given = [Parameter {
            key: "DbPassword".into(),
            value: None,
            use_previous_value: true,
        }];
        let m = Masker::new(&page, &given);
        assert_eq!(m.unknown, ["DbPassword"]);
        assert_eq!(m.json(&serde_json::json!("plain"), false), MASK);
        assert_eq!(m.value("plain", false), MASK);
        assert_eq!(m.opaque("plain"), MASK);
    }

    #[test]
    fn flatten_names_paths_and_stops_at_secrets() {
        let v = serde_json::json!({"Properties": {
            "Tags": [{"Key": "team", "Value": "a"}],
            "MasterUserPassword": {"Nested": "x"},
            "Env": [{"Name": "DB_PASSWORD", "Value": "p"}, {"Name": "HOST", "Value": "h"}],
            "Empty": {}
        }});
        let leaves: Vec<(String, bool)> = flatten(Some(&v), &[])
            .into_iter()
            .map(|(p, _, s)| (p, s))
            .collect();
        let want = [
            ("Properties.Tags[0].Key", false),
            ("Properties.Tags[0].Value", false),
            ("Properties.MasterUserPassword", true),
            ("Properties.Env[0].Name", false),
            ("Properties.Env[0].Value", true),
            ("Properties.Env[1].Name", false),
            ("Properties.Env[1].Value", false),
            ("Properties.Empty", false),
        ];
        let want: Vec<(String, bool)> = want.iter().map(|(p, s)| ((*p).to_owned(), *s)).collect();
        assert_eq!(leaves, want);
        let by_parameter = flatten(Some(&v), &["Tags"]);
        assert_eq!(
            (by_parameter[0].0.as_str(), by_parameter[0].2),
            ("Properties.Tags", true)
        );
    }

    #[test]
    fn diff_shows_what_differs_and_a_changed_secret_as_masks() {
        let m = masker(&[]);
        let before =
            serde_json::json!({"Properties": {"A": 1, "B": "same", "Password": "old", "Gone": true}});
        let after = serde_json::json!({"Properties": {"A": 2, "B": "same", "Password": "new", "New": [1]}});
        let got = diff(&flatten(Some(&before), &[]), &flatten(Some(&after), &[]), &m);
        let got: Vec<(&str, Option<&str>, Option<&str>)> = got
            .iter()
            .map(|p| (p.path.as_str(), p.before.as_deref(), p.after.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("Properties.A", Some("1"), Some("2")),
                ("Properties.Password", Some(MASK), Some(MASK)),
                ("Properties.Gone", Some("true"), None),
                ("Properties.New[0]", None, Some("1")),
            ]
        );
    }

    #[test]
    fn a_value_secret_on_either_side_is_masked_on_both() {
        let m = masker(&[]);
        let before = serde_json::json!({"Env": [{"Name": "DB_HOST", "Value": "h1"}]});
        let after = serde_json::json!({"Env": [{"Name": "DB_PASSWORD", "Value": "p2"}]});
        let got = diff(&flatten(Some(&before), &[]), &flatten(Some(&after), &[]), &m);
        assert_eq!(got[1].path, "Env[0].Value");
        assert_eq!(
            (got[1].before.as_deref(), got[1].after.as_deref()),
            (Some(MASK), Some(MASK))
        );
    }

    #[test]
    fn text_values_are_masked_by_structure_or_withheld() {
        let m = masker(&[]);
        assert_eq!(m.value("old", false), "\"old\"");
        assert_eq!(m.value("old", true), MASK);
        assert_eq!(
            m.value("{\"password\":\"p\",\"user\":\"u\"}", false),
            "{\"password\":\"****\",\"user\":\"u\"}"
        );
        // Cut short, not JSON, and names a secret: withheld whole.
        assert_eq!(m.value("{\"user\":\"u\",\"password\":\"p", false), MASK);
        assert_eq!(m.value("DB_PASSWORD=p", false), MASK);
        assert_eq!(
            m.opaque("{\"Properties\":{\"Name\":\"a"),
            "{\"Properties\":{\"Name\":\"a"
        );
        assert_eq!(m.opaque("{\"Properties\":{\"SecretString\":\"a"), MASK);
    }

    fn change(json: &str) -> ResourceChange {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn offence_kinds_follow_the_fields() {
        let kinds = |json: &str, reason: &str| offence_kinds(&change(json), reason);
        assert_eq!(
            kinds("{\"Action\":\"Remove\",\"PolicyAction\":\"Delete\"}", "removed"),
            ["removal", "destructive-policy-action"]
        );
        assert_eq!(
            kinds(
                "{\"Action\":\"Modify\",\"PolicyAction\":\"Snapshot\",\"Replacement\":\"False\"}",
                "x"
            ),
            ["removal", "destructive-policy-action"]
        );
        let replaced =
            "{\"Action\":\"Modify\",\"Replacement\":\"True\",\"PolicyAction\":\"ReplaceAndRetain\",
            \"Details\":[{\"Evaluation\":\"Static\",\"Target\":{\"RequiresRecreation\":\"Always\"}}]}";
        assert_eq!(kinds(replaced, "replaced"), ["replacement"]);
        let conditional = "{\"Action\":\"Modify\",\"Replacement\":\"Conditional\",
            \"Details\":[{\"Evaluation\":\"Dynamic\",\"Target\":{\"RequiresRecreation\":\"Always\"}}]}";
        assert_eq!(
            kinds(conditional, "may be replaced"),
            ["conditional-replacement", "dynamic-evaluation"]
        );
        assert_eq!(
            kinds("{\"Action\":\"Dynamic\"}", "dynamic change"),
            ["dynamic-evaluation"]
        );
        assert_eq!(
            kinds(
                "{\"Action\":\"Modify\",\"Replacement\":\"Maybe\"}",
                "unrecognised Replacement: Maybe"
            ),
            ["unrecognised"]
        );
        assert_eq!(
            kinds(
                "{\"Action\":\"Modify\",\"Replacement\":\"False\"}",
                "the change's fields disagree: x"
            ),
            ["fields-disagree"]
        );
        assert_eq!(
            kinds("{\"Action\":\"Modify\"}", "replacement not reported (…)"),
            ["unreported-replacement"]
        );
    }

    #[test]
    fn the_fingerprint_is_sha256_over_canonical_json() {
        assert_eq!(
            fingerprint("cs-1", &[]),
            "sha256:4dc5ff2680958d8ceddcf877ce24802daf54652af389a0d8efd2c96137741ffc"
        );
        let one = [(
            "Net/".to_owned(),
            change("{\"Action\":\"Add\",\"LogicalResourceId\":\"Q\"}"),
        )];
        assert_eq!(
            fingerprint("cs-1", &one),
            "sha256:ea3015481f863f568e906561dca6f5c5fbc9df8bfe114844ddede4bb6d4e53c4"
        );
        assert_ne!(fingerprint("cs-2", &one), fingerprint("cs-1", &one));
    }
}
