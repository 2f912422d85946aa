//! Change sets in the shape `DescribeChangeSet` returns, and the decisions made on them: is it
//! ready, empty, failed; which of its changes are unsafe under the deployment's policy.

use serde::{Deserialize, Serialize};

/// The sample's values, plus one for a change set without changes.
pub const SAFE: &str = "CAN-SAFELY-UPDATE-EXISTING-STACK";
pub const UNSAFE: &str = "RESOURCES-BEING-DELETED-OR-REPLACED";
pub const NO_CHANGES: &str = "NO-CHANGES";

/// One page of `DescribeChangeSet` (the fields the decisions use).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ChangeSetPage {
    pub change_set_id: Option<String>,
    pub change_set_name: Option<String>,
    pub stack_id: Option<String>,
    pub stack_name: Option<String>,
    pub status: Option<String>,
    pub status_reason: Option<String>,
    pub execution_status: Option<String>,
    pub changes: Vec<Change>,
    pub next_token: Option<String>,
    /// The change set's parameters; CloudFormation shows a `NoEcho` parameter's value as `****`.
    pub parameters: Vec<PageParameter>,
}

/// A parameter as `DescribeChangeSet` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PageParameter {
    pub parameter_key: String,
    pub parameter_value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Change {
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    pub resource_change: Option<ResourceChange>,
}

impl Change {
    /// The resource change to judge. A change of another `Type` than `Resource`, or one without
    /// a `ResourceChange`, becomes an action this code does not know, refused until reviewed.
    pub fn to_judge(&self) -> ResourceChange {
        let kind = self.kind.as_deref().unwrap_or("Resource");
        match &self.resource_change {
            Some(rc) if kind == "Resource" => rc.clone(),
            Some(rc) => ResourceChange {
                action: Some(format!(
                    "{} (in a change of Type {kind})",
                    rc.action.as_deref().unwrap_or("?")
                )),
                ..rc.clone()
            },
            None => ResourceChange {
                action: Some(format!("(a change of Type {kind} without a ResourceChange)")),
                ..ResourceChange::default()
            },
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ResourceChange {
    pub action: Option<String>,
    pub logical_resource_id: Option<String>,
    pub physical_resource_id: Option<String>,
    pub resource_type: Option<String>,
    pub replacement: Option<String>,
    pub policy_action: Option<String>,
    pub scope: Vec<String>,
    pub details: Vec<Detail>,
    /// Set on an `AWS::CloudFormation::Stack` change: the nested stack's own change set.
    pub change_set_id: Option<String>,
    /// The resource's properties before and after, as JSON text (only when DescribeChangeSet is
    /// called with `IncludePropertyValues`).
    pub before_context: Option<String>,
    pub after_context: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Detail {
    pub evaluation: Option<String>,
    pub change_source: Option<String>,
    pub causing_entity: Option<String>,
    pub target: Option<Target>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Target {
    pub attribute: Option<String>,
    pub name: Option<String>,
    pub requires_recreation: Option<String>,
    /// With `IncludePropertyValues`: the property's path and its values (which CloudFormation
    /// may truncate), and whether it is added, removed or modified.
    pub path: Option<String>,
    pub before_value: Option<String>,
    pub after_value: Option<String>,
    pub attribute_change_type: Option<String>,
}

/// How a change set stands, decided from its status fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeSetState {
    /// Still being created: wait.
    Pending,
    /// Created and executable: inspect it.
    Ready,
    /// CloudFormation found nothing to change: delete it, the deployment succeeds.
    NoChanges,
    /// Creation failed for another reason, or it can no longer be executed.
    Failed,
}

/// The `StatusReason`s CloudFormation gives a change set without changes.
pub fn is_no_changes_reason(reason: &str) -> bool {
    reason.starts_with("The submitted information didn't contain changes")
        || reason.starts_with("No updates are to be performed")
}

/// Decides from `Status`, `ExecutionStatus` and `StatusReason`. An empty `Changes` list alone
/// is never taken as "no changes": a change set can change only Outputs.
pub fn change_set_state(
    status: &str,
    execution_status: Option<&str>,
    reason: Option<&str>,
) -> ChangeSetState {
    match status {
        "CREATE_PENDING" | "CREATE_IN_PROGRESS" => ChangeSetState::Pending,
        "CREATE_COMPLETE" => match execution_status {
            Some("AVAILABLE") => ChangeSetState::Ready,
            // UNAVAILABLE right after creation: CloudFormation is still settling; anything else
            // (OBSOLETE, EXECUTE_*) means this change set can no longer be executed.
            Some("UNAVAILABLE") | None => ChangeSetState::Pending,
            Some(_) => ChangeSetState::Failed,
        },
        "FAILED" if reason.is_some_and(is_no_changes_reason) => ChangeSetState::NoChanges,
        _ => ChangeSetState::Failed,
    }
}

/// What the deployment tolerates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Policy {
    /// A conditional replacement (`Replacement: Conditional`, a detail with `RequiresRecreation:
    /// Conditionally`): `block` (default) or `allow`. CDK stacks show it on almost every change
    /// (CDKMetadata); allow it, or allow those resources by type or logical id.
    pub conditional_replacement: Treatment,
    /// `Action: Dynamic` (the change cannot be known until execution): `block` (default) or `allow`.
    pub dynamic: Treatment,
    /// A `Modify` that says nothing about replacement (no `Replacement`, no detail with
    /// `RequiresRecreation`, no `PolicyAction`): `block` (default) or `allow`. AWS always sends
    /// `Replacement` for a `Modify`; emulators such as moto never do.
    pub unreported_replacement: Treatment,
    /// Resource types or logical ids that may be replaced.
    pub allow_replacement: Vec<String>,
    /// Resource types or logical ids that may be removed.
    pub allow_removal: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            conditional_replacement: Treatment::Block,
            dynamic: Treatment::Block,
            unreported_replacement: Treatment::Block,
            allow_replacement: Vec::new(),
            allow_removal: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Treatment {
    Block,
    Allow,
}

/// A change the policy does not allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Offence {
    /// Logical ids from the root stack down, joined with `/` for nested stacks.
    pub logical_resource_id: String,
    pub resource_type: String,
    pub action: String,
    pub reason: String,
}

impl Offence {
    pub fn describe(&self) -> String {
        format!(
            "{} ({}): {}",
            self.logical_resource_id, self.resource_type, self.reason
        )
    }
}

fn allowed(list: &[String], resource_type: &str, logical_id: &str) -> bool {
    list.iter().any(|a| a == resource_type || a == logical_id)
}

/// How far a change goes in recreating its resource, least impact first, as AWS ranks
/// `RequiresRecreation` values when it derives `Replacement` from a change's details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Recreation {
    /// `RequiresRecreation: Never`, `Replacement: False`.
    Never,
    /// `RequiresRecreation: Conditionally`.
    Conditionally,
    /// `RequiresRecreation: Always` with `Evaluation: Dynamic`: replaced if the value, known only
    /// at execution, changes. AWS reports it as `Replacement: Conditional`; it is still a
    /// replacement of a property that always recreates, so only `allowReplacement` lets it pass.
    AlwaysIfChanged,
    /// `RequiresRecreation: Always` (static or unstated evaluation), `Replacement: True`,
    /// `PolicyAction: ReplaceAnd*`.
    Always,
}

impl Recreation {
    /// The `Replacement` values consistent with this level.
    fn agrees_with(self, replacement: Recreation) -> bool {
        match replacement {
            Recreation::Conditionally | Recreation::AlwaysIfChanged => {
                matches!(self, Recreation::Conditionally | Recreation::AlwaysIfChanged)
            }
            r => self == r,
        }
    }
}

/// The `Replacement` field, read: `False`, `Conditional` or `True`.
fn replacement_level(value: &str) -> Option<Recreation> {
    match value {
        "False" => Some(Recreation::Never),
        "Conditional" => Some(Recreation::Conditionally),
        "True" => Some(Recreation::Always),
        _ => None,
    }
}

/// One detail's `RequiresRecreation`, weighed by its `Evaluation`.
fn detail_level(requires: &str, evaluation: Option<&str>) -> Option<Recreation> {
    match (requires, evaluation) {
        ("Never", _) => Some(Recreation::Never),
        ("Conditionally", _) => Some(Recreation::Conditionally),
        ("Always", Some("Dynamic")) => Some(Recreation::AlwaysIfChanged),
        ("Always", _) => Some(Recreation::Always),
        _ => None,
    }
}

/// The values this code knows, field by field (the gate refuses any other; the review names
/// those `unrecognised`).
pub(crate) const KNOWN_ACTIONS: [&str; 5] = ["Add", "Import", "Modify", "Dynamic", "Remove"];
pub(crate) const KNOWN_REPLACEMENTS: [&str; 3] = ["True", "False", "Conditional"];
pub(crate) const KNOWN_RECREATIONS: [&str; 3] = ["Never", "Conditionally", "Always"];
pub(crate) const KNOWN_EVALUATIONS: [&str; 2] = ["Static", "Dynamic"];
pub(crate) const KNOWN_POLICY_ACTIONS: [&str; 6] = [
    "Delete",
    "Retain",
    "Snapshot",
    "ReplaceAndDelete",
    "ReplaceAndRetain",
    "ReplaceAndSnapshot",
];

/// Everything a change's fields say about removing or replacing its resource.
#[derive(Debug, Default)]
struct Signals {
    /// `Replacement`, when recognised.
    reported: Option<Recreation>,
    /// The most impactful `RequiresRecreation` among the details that state one.
    derived: Option<Recreation>,
    /// Details that may recreate the resource: their property (or attribute) and level.
    causes: Vec<(String, Recreation)>,
    /// `PolicyAction: ReplaceAnd*` (the resource is replaced).
    policy_replaces: bool,
    /// `PolicyAction: Delete` or `Snapshot` (the resource is deleted).
    policy_deletes: bool,
    /// Values this code does not know, as `Field: value`.
    unrecognised: Vec<String>,
}

impl Signals {
    fn read(change: &ResourceChange) -> Signals {
        let mut s = Signals::default();
        if let Some(r) = change.replacement.as_deref() {
            match replacement_level(r) {
                Some(level) => s.reported = Some(level),
                None => s.unrecognised.push(format!("Replacement: {r}")),
            }
        }
        for detail in &change.details {
            let evaluation = detail.evaluation.as_deref();
            if let Some(e) = evaluation.filter(|e| !KNOWN_EVALUATIONS.contains(e)) {
                s.unrecognised.push(format!("Evaluation: {e}"));
            }
            let Some(target) = &detail.target else { continue };
            let Some(requires) = target.requires_recreation.as_deref() else {
                continue;
            };
            let Some(level) = detail_level(requires, evaluation) else {
                s.unrecognised.push(format!("RequiresRecreation: {requires}"));
                continue;
            };
            s.derived = s.derived.max(Some(level));
            if level > Recreation::Never {
                let name = target.name.clone().or_else(|| target.attribute.clone());
                s.causes.push((name.unwrap_or_else(|| "?".into()), level));
            }
        }
        match change.policy_action.as_deref() {
            Some(p) if p.starts_with("Replace") && KNOWN_POLICY_ACTIONS.contains(&p) => {
                s.policy_replaces = true
            }
            // Snapshot: "a snapshot is taken before the resource is deleted".
            Some("Delete" | "Snapshot") => s.policy_deletes = true,
            Some(p) if !KNOWN_POLICY_ACTIONS.contains(&p) => {
                s.unrecognised.push(format!("PolicyAction: {p}"))
            }
            _ => {}
        }
        s
    }

    /// The replacement the fields add up to: the most impactful of them.
    fn level(&self) -> Option<Recreation> {
        let by_policy = self.policy_replaces.then_some(Recreation::Always);
        self.reported.max(self.derived).max(by_policy)
    }

    /// Where `Replacement`, the details and `PolicyAction` contradict each other. AWS derives
    /// `Replacement` from the details, and replaces only what `PolicyAction` says it replaces.
    fn disagreement(&self, change: &ResourceChange) -> Option<String> {
        let replacement = change.replacement.as_deref().unwrap_or("-");
        if let (Some(reported), Some(derived)) = (self.reported, self.derived)
            && !derived.agrees_with(reported)
        {
            let details = if self.causes.is_empty() {
                "every detail says RequiresRecreation: Never".to_owned()
            } else {
                format!("the details say {}", self.describe_causes())
            };
            return Some(format!("Replacement says {replacement} but {details}"));
        }
        let pa = change.policy_action.as_deref().unwrap_or("-");
        if self.policy_replaces && self.reported.max(self.derived) == Some(Recreation::Never) {
            return Some(format!(
                "PolicyAction says {pa} but Replacement says {replacement}"
            ));
        }
        None
    }

    fn describe_causes(&self) -> String {
        let list: Vec<String> = self
            .causes
            .iter()
            .map(|(name, level)| match level {
                Recreation::Always => format!("RequiresRecreation: Always for {name}"),
                Recreation::AlwaysIfChanged => {
                    format!("RequiresRecreation: Always for {name}, evaluated at execution")
                }
                _ => format!("RequiresRecreation: Conditionally for {name}"),
            })
            .collect();
        list.join(", ")
    }

    /// What says the resource is (or may be) replaced at `level`, for the offence's reason.
    fn evidence(&self, change: &ResourceChange, level: Recreation) -> String {
        let replacement = change.replacement.as_deref().unwrap_or("-");
        if self.reported == Some(level) {
            let names: Vec<&str> = self.causes.iter().map(|(n, _)| n.as_str()).collect();
            if level == Recreation::Conditionally && !names.is_empty() {
                return format!("Replacement: Conditional, because of {}", names.join(", "));
            }
            return format!("Replacement: {replacement}");
        }
        if self.derived == Some(level) {
            return self.describe_causes();
        }
        format!("PolicyAction {}", change.policy_action.as_deref().unwrap_or("-"))
    }
}

/// The offences of one resource change (`path` is the nested-stack prefix, empty at the root).
///
/// Fails closed: every field that can signal a removal or a replacement is read (`Action`,
/// `Replacement`, each detail's `RequiresRecreation` and `Evaluation`, `PolicyAction`); the most
/// impactful of them decides; fields that contradict each other, values this code does not know,
/// and a `Modify` that says nothing about replacement are unsafe.
pub fn judge(change: &ResourceChange, policy: &Policy, path: &str) -> Vec<Offence> {
    let logical = change.logical_resource_id.as_deref().unwrap_or("?");
    let rtype = change.resource_type.as_deref().unwrap_or("?");
    let action = change.action.as_deref().unwrap_or("?");
    let reason = offence_reason(change, policy, rtype, logical);
    reason
        .map(|reason| Offence {
            logical_resource_id: format!("{path}{logical}"),
            resource_type: rtype.to_owned(),
            action: action.to_owned(),
            reason,
        })
        .into_iter()
        .collect()
}

/// Why `change` is unsafe under `policy`, or `None` when it is safe.
fn offence_reason(change: &ResourceChange, policy: &Policy, rtype: &str, logical: &str) -> Option<String> {
    let may_replace = allowed(&policy.allow_replacement, rtype, logical);
    let may_remove = allowed(&policy.allow_removal, rtype, logical);
    let signals = Signals::read(change);
    if !signals.unrecognised.is_empty() {
        return Some(format!(
            "unrecognised {}: refused until reviewed",
            signals.unrecognised.join(", ")
        ));
    }
    let action = change.action.as_deref().unwrap_or("?");
    let replaces = matches!(action, "Modify" | "Dynamic");
    if !KNOWN_ACTIONS.contains(&action) {
        return Some(format!("unknown action {action}: refused until reviewed"));
    }
    let level = signals.level();
    let pa = change.policy_action.as_deref().unwrap_or("-");
    let disagreement = if replaces {
        let fields = signals.disagreement(change).filter(|_| !may_replace);
        fields.or_else(|| {
            (action == "Modify" && signals.policy_deletes && !may_remove)
                .then(|| format!("PolicyAction says {pa} but Action says Modify"))
        })
    } else {
        // An Add, Import or Remove replaces nothing: a replacement signal on one contradicts it.
        level
            .filter(|l| *l > Recreation::Never && !may_replace)
            .map(|l| format!("Action says {action} but {}", signals.evidence(change, l)))
    };
    let deletes = action == "Remove" || signals.policy_deletes;
    let primary = if deletes && !may_remove {
        Some(if action == "Remove" {
            "removed".to_owned()
        } else {
            format!("deleted (PolicyAction {pa})")
        })
    } else if !replaces || may_replace {
        None
    } else {
        match level {
            Some(l @ Recreation::Always) => Some(format!("replaced ({})", signals.evidence(change, l))),
            Some(l @ Recreation::AlwaysIfChanged) => {
                Some(format!("may be replaced ({})", signals.evidence(change, l)))
            }
            Some(l @ Recreation::Conditionally) if policy.conditional_replacement == Treatment::Block => {
                Some(format!("may be replaced ({})", signals.evidence(change, l)))
            }
            None if action == "Modify" && policy.unreported_replacement == Treatment::Block => Some(
                "replacement not reported (no Replacement, RequiresRecreation or PolicyAction): \
                     refused until reviewed"
                    .to_owned(),
            ),
            _ => None,
        }
    };
    let primary = primary.or_else(|| {
        (action == "Dynamic" && policy.dynamic == Treatment::Block)
            .then(|| "dynamic change: what it does is known only at execution (Action: Dynamic)".to_owned())
    });
    let primary = primary.or_else(|| {
        (rtype == "AWS::CloudFormation::Stack" && replaces && change.change_set_id.is_none()).then(|| {
            "nested stack changes could not be inspected (no nested change set was created)".to_owned()
        })
    });
    match (primary, disagreement) {
        (Some(p), Some(d)) => Some(format!("{p}, and the change's fields disagree: {d}")),
        (None, Some(d)) => Some(format!("the change's fields disagree: {d}")),
        (p, None) => p,
    }
}

/// The verdict on a change set (all pages and nested change sets already gathered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub change_set_action: String,
    pub safe: bool,
    pub changes: usize,
    /// How many changes offend (`offences` may hold fewer, see [`Verdict::bounded`]).
    pub offence_count: usize,
    pub offences: Vec<Offence>,
    /// One line per offence (or "n changes, none unsafe"), for logs and failure causes.
    pub summary: String,
}

/// What a verdict may carry through the state machine: Step Functions refuses state over
/// 256 KiB (`States.DataLimitExceeded`, which no Catch can handle), and the summary becomes a
/// failure cause and an output variable.
pub const MAX_OFFENCES_IN_STATE: usize = 50;
pub const MAX_SUMMARY_CHARS: usize = 4_000;

impl Verdict {
    /// The verdict as kept in the workflow's state: at most 50 offences and a summary of at most
    /// 4,000 characters that says how many more there are.
    pub fn bounded(mut self) -> Verdict {
        self.offences.truncate(MAX_OFFENCES_IN_STATE);
        if self.summary.chars().count() > MAX_SUMMARY_CHARS {
            let mut cut: String = self.summary.chars().take(MAX_SUMMARY_CHARS - 60).collect();
            if let Some(i) = cut.rfind("; ") {
                cut.truncate(i);
            }
            let shown = cut.matches("; ").count() + 1;
            cut.push_str(&format!(
                "; … and {} more",
                self.offence_count.saturating_sub(shown)
            ));
            self.summary = cut;
        }
        self
    }
}

/// Judges every change; `nested` are the changes of nested change sets with their path.
pub fn verdict<'a>(
    changes: impl IntoIterator<Item = (&'a str, &'a ResourceChange)>,
    policy: &Policy,
) -> Verdict {
    let mut offences = Vec::new();
    let mut count = 0;
    for (path, change) in changes {
        count += 1;
        offences.extend(judge(change, policy, path));
    }
    let safe = offences.is_empty();
    let summary = if safe {
        format!("{count} change(s), none removes or replaces a resource")
    } else {
        let list: Vec<String> = offences.iter().map(Offence::describe).collect();
        format!(
            "{} of {count} change(s) would remove or replace resources: {}",
            offences.len(),
            list.join("; ")
        )
    };
    Verdict {
        change_set_action: if safe { SAFE } else { UNSAFE }.to_owned(),
        safe,
        changes: count,
        offence_count: offences.len(),
        offences,
        summary,
    }
}

/// The nested change sets to describe next: `(path prefix, change set id)`.
pub fn nested_change_sets(page: &ChangeSetPage, path: &str) -> Vec<(String, String)> {
    page.changes
        .iter()
        .filter_map(|c| c.resource_change.as_ref())
        .filter(|rc| rc.resource_type.as_deref() == Some("AWS::CloudFormation::Stack"))
        .filter_map(|rc| {
            let id = rc.change_set_id.clone()?;
            Some((
                format!("{path}{}/", rc.logical_resource_id.as_deref().unwrap_or("?")),
                id,
            ))
        })
        .collect()
}
