//! `deploy-inspect-change-set`: every page of the change set and of every nested change set,
//! judged by the deployment's policy; the verdict the state machine keeps is bounded.

use std::collections::VecDeque;

use tracing::{info, warn};

use super::Steps;
use crate::cfn::page_from_sdk;
use crate::changeset::{self, ChangeSetPage, Policy, ResourceChange, Verdict};
use crate::error::{StepError, aws};
use crate::state::State;

/// How many change sets (root and nested) one inspection may describe: a guard, not a limit
/// any real stack reaches.
const MAX_CHANGE_SETS: usize = 200;

const OPERATION: &str = "CloudFormation DescribeChangeSet";

/// A change set described in full: its first page (status fields) and every change.
#[derive(Debug, Clone, Default)]
pub(super) struct Described {
    pub root: ChangeSetPage,
    pub changes: Vec<(String, ResourceChange)>,
}

impl Steps {
    /// The inspection verdict, with the sample's `changeSetAction` values.
    pub async fn inspect_change_set(&self, state: State) -> Result<Verdict, StepError> {
        let cs = state.change_set()?;
        let (verdict, _) = self.judge(&cs.id, &state.plan.policy).await?;
        if verdict.safe {
            info!(change_set = %cs.id, changes = verdict.changes, "change set is safe");
        } else {
            // The whole list goes to the log; the state keeps a bounded verdict.
            warn!(change_set = %cs.id, offences = verdict.offence_count, summary = %verdict.summary, "change set is unsafe");
        }
        Ok(verdict.bounded())
    }

    /// Every page of the change set and of every nested change set, judged by the policy; with
    /// the root change set's first page (its status fields). The execute step judges with this
    /// too.
    pub(super) async fn judge(
        &self,
        change_set_id: &str,
        policy: &Policy,
    ) -> Result<(Verdict, ChangeSetPage), StepError> {
        let described = self.describe_all(change_set_id, false).await?;
        let verdict = changeset::verdict(described.changes.iter().map(|(p, rc)| (p.as_str(), rc)), policy);
        Ok((verdict, described.root))
    }

    /// Every change of the change set and of its nested change sets, with their nested-stack
    /// paths, in DescribeChangeSet order; `with_values` asks for property values
    /// (`IncludePropertyValues`), as the review and the approved execution read them.
    pub(super) async fn describe_all(
        &self,
        change_set_id: &str,
        with_values: bool,
    ) -> Result<Described, StepError> {
        let mut queue = VecDeque::from([(String::new(), change_set_id.to_owned())]);
        let mut changes: Vec<(String, ResourceChange)> = Vec::new();
        let mut root: Option<ChangeSetPage> = None;
        let mut described = 0;
        while let Some((path, id)) = queue.pop_front() {
            described += 1;
            if described > MAX_CHANGE_SETS {
                return Err(StepError::UnexpectedResponse {
                    operation: OPERATION,
                    problem: format!("more than {MAX_CHANGE_SETS} nested change sets under {change_set_id}"),
                });
            }
            for page in self.pages(&id, with_values).await? {
                queue.extend(changeset::nested_change_sets(&page, &path));
                changes.extend(page.changes.iter().map(|c| (path.clone(), c.to_judge())));
                if root.is_none() {
                    root = Some(page);
                }
            }
        }
        Ok(Described {
            root: root.unwrap_or_default(),
            changes,
        })
    }

    /// Every page of one change set.
    async fn pages(&self, id: &str, with_values: bool) -> Result<Vec<ChangeSetPage>, StepError> {
        let mut pages = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .cfn
                .describe_change_set()
                .change_set_name(id)
                .set_include_property_values(with_values.then_some(true))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| aws(OPERATION, e))?;
            let page = page_from_sdk(&out);
            token = page.next_token.clone().filter(|t| !t.is_empty());
            pages.push(page);
            if token.is_none() {
                return Ok(pages);
            }
        }
    }
}
