//! Stack status decisions: what to do with a stack before deploying, and whether a create or
//! update has finished.

use serde::{Deserialize, Serialize};

/// What the deployment does next, given the stack as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StackNext {
    /// No such stack: create it.
    CreateStack,
    /// REVIEW_IN_PROGRESS (a stack created by a CREATE change set that never ran): use a CREATE
    /// change set.
    CreateChangeSet,
    /// An existing, updatable stack: UPDATE change set.
    UpdateChangeSet,
    /// An operation is in progress: wait and look again.
    Wait,
    /// The stack cannot be deployed to as it is.
    Fail,
}

/// The decision with the reason an operator reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackCheck {
    pub next: StackNext,
    pub status: Option<String>,
    pub reason: String,
}

/// The only DescribeStacks error that means "absent": `ValidationError` "Stack with id X does
/// not exist". Any other error (throttling, access denied, a bad name) is not an absence.
pub fn is_absent(code: Option<&str>, message: Option<&str>) -> bool {
    code == Some("ValidationError") && message.is_some_and(|m| m.contains("does not exist"))
}

pub fn absent(stack_name: &str) -> StackCheck {
    StackCheck {
        next: StackNext::CreateStack,
        status: None,
        reason: format!("stack {stack_name} does not exist: creating it"),
    }
}

/// Decides from an existing stack's status.
pub fn check_existing(stack_name: &str, status: &str) -> StackCheck {
    let (next, reason) = match status {
        "REVIEW_IN_PROGRESS" => (
            StackNext::CreateChangeSet,
            format!("stack {stack_name} is REVIEW_IN_PROGRESS (never created): using a CREATE change set"),
        ),
        "ROLLBACK_COMPLETE" | "ROLLBACK_FAILED" | "CREATE_FAILED" => (
            StackNext::Fail,
            format!(
                "stack {stack_name} is {status}: its creation failed and it cannot be updated; delete it \
                 and run the deployment again"
            ),
        ),
        "DELETE_FAILED" => (
            StackNext::Fail,
            format!("stack {stack_name} is DELETE_FAILED: finish deleting it, then run the deployment again"),
        ),
        "UPDATE_ROLLBACK_FAILED" => (
            StackNext::Fail,
            format!(
                "stack {stack_name} is UPDATE_ROLLBACK_FAILED: continue the update rollback \
                 (ContinueUpdateRollback) before deploying"
            ),
        ),
        "DELETE_COMPLETE" => (
            StackNext::CreateStack,
            format!("stack {stack_name} was deleted: creating it"),
        ),
        s if s.ends_with("_IN_PROGRESS") => (
            StackNext::Wait,
            format!("stack {stack_name} is {s}: waiting for the operation to finish"),
        ),
        "CREATE_COMPLETE"
        | "UPDATE_COMPLETE"
        | "UPDATE_ROLLBACK_COMPLETE"
        | "UPDATE_FAILED"
        | "IMPORT_COMPLETE"
        | "IMPORT_ROLLBACK_COMPLETE" => (
            StackNext::UpdateChangeSet,
            format!("stack {stack_name} is {status}: creating an UPDATE change set"),
        ),
        other => (
            StackNext::Fail,
            format!("stack {stack_name} is in a status this workflow does not know ({other})"),
        ),
    };
    StackCheck {
        next,
        status: Some(status.to_owned()),
        reason,
    }
}

/// Where a create or update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Completion {
    InProgress,
    Complete,
    Failed,
}

/// CREATE_COMPLETE / UPDATE_COMPLETE / IMPORT_COMPLETE are success; anything in progress is
/// waited for (a rollback in progress ends as a failure); every other status is a failure.
pub fn completion(status: &str) -> Completion {
    match status {
        "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "IMPORT_COMPLETE" => Completion::Complete,
        s if s.ends_with("_IN_PROGRESS") => Completion::InProgress,
        _ => Completion::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_error_means_absent() {
        assert!(is_absent(
            Some("ValidationError"),
            Some("Stack with id prod-app does not exist")
        ));
        assert!(!is_absent(
            Some("ValidationError"),
            Some("1 validation error detected: stackName")
        ));
        assert!(!is_absent(Some("AccessDenied"), Some("does not exist")));
        assert!(!is_absent(Some("Throttling"), Some("Rate exceeded")));
        assert!(!is_absent(None, None));
    }

    #[test]
    fn existing_stacks() {
        let next = |s| check_existing("prod-app", s).next;
        assert_eq!(next("REVIEW_IN_PROGRESS"), StackNext::CreateChangeSet);
        for s in [
            "ROLLBACK_COMPLETE",
            "ROLLBACK_FAILED",
            "CREATE_FAILED",
            "DELETE_FAILED",
            "UPDATE_ROLLBACK_FAILED",
            "WEIRD",
        ] {
            assert_eq!(next(s), StackNext::Fail, "{s}");
        }
        for s in [
            "CREATE_IN_PROGRESS",
            "UPDATE_IN_PROGRESS",
            "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
            "UPDATE_ROLLBACK_IN_PROGRESS",
            "ROLLBACK_IN_PROGRESS",
            "DELETE_IN_PROGRESS",
            "IMPORT_IN_PROGRESS",
        ] {
            assert_eq!(next(s), StackNext::Wait, "{s}");
        }
        for s in [
            "CREATE_COMPLETE",
            "UPDATE_COMPLETE",
            "UPDATE_ROLLBACK_COMPLETE",
            "IMPORT_COMPLETE",
        ] {
            assert_eq!(next(s), StackNext::UpdateChangeSet, "{s}");
        }
        assert_eq!(next("DELETE_COMPLETE"), StackNext::CreateStack);
        let r = check_existing("prod-app", "ROLLBACK_COMPLETE");
        assert!(
            r.reason.contains("ROLLBACK_COMPLETE") && r.reason.contains("delete it"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn completions() {
        assert_eq!(completion("CREATE_COMPLETE"), Completion::Complete);
        assert_eq!(completion("UPDATE_COMPLETE"), Completion::Complete);
        assert_eq!(
            completion("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
            Completion::InProgress
        );
        assert_eq!(completion("UPDATE_ROLLBACK_IN_PROGRESS"), Completion::InProgress);
        for s in [
            "ROLLBACK_COMPLETE",
            "UPDATE_ROLLBACK_COMPLETE",
            "CREATE_FAILED",
            "UPDATE_FAILED",
            "ROLLBACK_FAILED",
            "DELETE_COMPLETE",
        ] {
            assert_eq!(completion(s), Completion::Failed, "{s}");
        }
    }
}
