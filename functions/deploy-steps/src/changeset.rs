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
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Change {
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    pub resource_change: Option<ResourceChange>,
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
    /// `Replacement: Conditional`: `block` (default) or `allow`. CDK stacks show it on almost
    /// every change (CDKMetadata); allow it, or allow those resources by type or logical id.
    pub conditional_replacement: Treatment,
    /// `Action: Dynamic` (the change cannot be known until execution): `block` (default) or `allow`.
    pub dynamic: Treatment,
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

const DESTRUCTIVE_POLICY_ACTIONS: [&str; 4] = [
    "Delete",
    "ReplaceAndDelete",
    "ReplaceAndRetain",
    "ReplaceAndSnapshot",
];

/// The offences of one resource change (`path` is the nested-stack prefix, empty at the root).
pub fn judge(change: &ResourceChange, policy: &Policy, path: &str) -> Vec<Offence> {
    let logical = change.logical_resource_id.as_deref().unwrap_or("?");
    let rtype = change.resource_type.as_deref().unwrap_or("?");
    let action = change.action.as_deref().unwrap_or("?");
    let offence = |reason: String| Offence {
        logical_resource_id: format!("{path}{logical}"),
        resource_type: rtype.to_owned(),
        action: action.to_owned(),
        reason,
    };
    let may_replace = allowed(&policy.allow_replacement, rtype, logical);
    let may_remove = allowed(&policy.allow_removal, rtype, logical);
    let mut found = Vec::new();
    match action {
        "Add" | "Import" => {}
        "Remove" if !may_remove => found.push(offence("removed".into())),
        "Remove" => {}
        "Modify" => match change.replacement.as_deref() {
            Some("True") if !may_replace => found.push(offence("replaced (Replacement: True)".into())),
            Some("Conditional") if !may_replace && policy.conditional_replacement == Treatment::Block => {
                let causes: Vec<String> = change
                    .details
                    .iter()
                    .filter_map(|d| d.target.as_ref())
                    .filter(|t| matches!(t.requires_recreation.as_deref(), Some("Conditionally" | "Always")))
                    .filter_map(|t| t.name.clone().or_else(|| t.attribute.clone()))
                    .collect();
                let why = if causes.is_empty() {
                    String::new()
                } else {
                    format!(", because of {}", causes.join(", "))
                };
                found.push(offence(format!(
                    "may be replaced (Replacement: Conditional{why})"
                )));
            }
            _ => {}
        },
        "Dynamic" if policy.dynamic == Treatment::Block => found.push(offence(
            "dynamic change: what it does is known only at execution (Action: Dynamic)".into(),
        )),
        "Dynamic" => {}
        other => found.push(offence(format!("unknown action {other}: refused until reviewed"))),
    }
    if rtype == "AWS::CloudFormation::Stack"
        && matches!(action, "Modify" | "Dynamic")
        && change.change_set_id.is_none()
        && found.is_empty()
    {
        found.push(offence(
            "nested stack changes could not be inspected (no nested change set was created)".into(),
        ));
    }
    if let Some(pa) = change.policy_action.as_deref()
        && DESTRUCTIVE_POLICY_ACTIONS.contains(&pa)
        && found.is_empty()
        && !(pa == "Delete" && may_remove)
        && !(pa.starts_with("Replace") && may_replace)
    {
        found.push(offence(format!("PolicyAction {pa}")));
    }
    found
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
