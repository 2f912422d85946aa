//! The step handlers. Each receives the workflow's state document (or, for `prepare`, the
//! execution input), makes its CloudFormation or S3 calls, and returns its part of the state.
//! Decisions are delegated to the pure modules.

use std::collections::VecDeque;
use std::io::Write;

use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;
use aws_sdk_cloudformation::types::{Capability, ChangeSetType, Parameter as CfnParameter, Tag as CfnTag};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::changeset::{self, ChangeSetPage, ChangeSetState, ResourceChange, Verdict};
use crate::error::{StepError, aws};
use crate::plan::{self, MAX_TEMPLATE_BODY_BYTES, Plan, TemplateSource};
use crate::poll::{self, Poll, PollConfig};
use crate::stack::{self, Completion, StackCheck, StackNext};
use crate::template;

/// How many change sets (root and nested) one inspection may describe: a guard, not a limit
/// any real stack reaches.
const MAX_CHANGE_SETS: usize = 200;

/// Configuration read once at cold start.
#[derive(Debug, Clone, Default)]
pub struct StepConfig {
    pub poll: PollConfig,
    /// Bucket where templates over 51,200 bytes are staged for `TemplateURL`.
    pub template_bucket: Option<String>,
    /// The CloudFormation service role used when the input names none
    /// (`CLOUDFORMATION_ROLE_ARN`): CloudFormation then acts with that role, not the steps' own.
    pub default_role_arn: Option<String>,
    pub region: String,
}

impl StepConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            poll: PollConfig::from_lookup(&lookup),
            template_bucket: lookup("TEMPLATE_BUCKET").filter(|b| !b.trim().is_empty()),
            default_role_arn: lookup("CLOUDFORMATION_ROLE_ARN").filter(|b| !b.trim().is_empty()),
            region: lookup("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
        }
    }
}

/// Clients and configuration, built once at cold start.
#[derive(Debug, Clone)]
pub struct Steps {
    pub cfn: aws_sdk_cloudformation::Client,
    pub s3: aws_sdk_s3::Client,
    pub config: StepConfig,
}

/// The stack an operation targets: the pipeline's stack, or the blue-green one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub stack_name: String,
    pub mode: String,
}

/// The state document the steps after `prepare` receive. Only `plan` is always present.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub plan: Plan,
    #[serde(default)]
    pub target: Option<Target>,
    #[serde(default)]
    pub stack: Option<StackResult>,
    #[serde(default)]
    pub created: Option<Created>,
    #[serde(default)]
    pub change_set: Option<ChangeSetRef>,
    #[serde(default)]
    pub change_set_status: Option<ChangeSetStatus>,
    #[serde(default)]
    pub executed: Option<Executed>,
    #[serde(default)]
    pub progress: Option<Progress>,
}

impl State {
    fn target_stack(&self) -> &str {
        self.target
            .as_ref()
            .map_or(&self.plan.stack_name, |t| &t.stack_name)
    }

    /// The stack the running operation works on: by id when known (names can be reused), the
    /// blue-green stack once it is the target.
    fn operation_stack(&self) -> String {
        let blue_green = self.target.as_ref().is_some_and(|t| t.mode == "blue-green");
        let id = if blue_green {
            self.created.as_ref().map(|c| c.stack_id.clone())
        } else {
            self.executed
                .as_ref()
                .and_then(|e| e.stack_id.clone())
                .or_else(|| self.created.as_ref().map(|c| c.stack_id.clone()))
        };
        id.unwrap_or_else(|| self.target_stack().to_owned())
    }

    fn change_set(&self) -> Result<&ChangeSetRef, StepError> {
        self.change_set
            .as_ref()
            .ok_or_else(|| StepError::State("changeSet (the created change set)".into()))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareInput {
    pub input: Value,
    pub execution_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackResult {
    #[serde(flatten)]
    pub check: StackCheck,
    pub poll: Poll,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub stack_name: String,
    pub stack_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeSetRef {
    /// Empty when CloudFormation refused to create it because nothing changes.
    pub id: String,
    pub name: String,
    pub stack_name: String,
    #[serde(default)]
    pub stack_id: Option<String>,
    pub change_set_type: String,
    /// CreateChangeSet answered "No updates are to be performed." (as moto and UpdateStack do;
    /// CloudFormation itself creates a FAILED change set saying so).
    #[serde(default)]
    pub no_changes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeSetStatus {
    pub state: ChangeSetState,
    pub status: String,
    pub execution_status: Option<String>,
    pub reason: String,
    pub poll: Poll,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub state: Completion,
    pub stack_name: String,
    pub stack_id: String,
    pub status: String,
    pub reason: String,
    pub poll: Poll,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Done {
    pub change_set_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Executed {
    pub change_set_id: String,
    #[serde(default)]
    pub stack_id: Option<String>,
}

fn page_from_sdk(out: &DescribeChangeSetOutput) -> ChangeSetPage {
    use changeset::{Change, Detail, Target as DetailTarget};
    ChangeSetPage {
        change_set_id: out.change_set_id().map(str::to_owned),
        change_set_name: out.change_set_name().map(str::to_owned),
        stack_id: out.stack_id().map(str::to_owned),
        stack_name: out.stack_name().map(str::to_owned),
        status: out.status().map(|s| s.as_str().to_owned()),
        status_reason: out.status_reason().map(str::to_owned),
        execution_status: out.execution_status().map(|s| s.as_str().to_owned()),
        next_token: out.next_token().map(str::to_owned),
        changes: out
            .changes()
            .iter()
            .map(|c| Change {
                kind: c.r#type().map(|t| t.as_str().to_owned()),
                resource_change: c.resource_change().map(|rc| ResourceChange {
                    action: rc.action().map(|a| a.as_str().to_owned()),
                    logical_resource_id: rc.logical_resource_id().map(str::to_owned),
                    physical_resource_id: rc.physical_resource_id().map(str::to_owned),
                    resource_type: rc.resource_type().map(str::to_owned),
                    replacement: rc.replacement().map(|r| r.as_str().to_owned()),
                    policy_action: rc.policy_action().map(|p| p.as_str().to_owned()),
                    scope: rc.scope().iter().map(|s| s.as_str().to_owned()).collect(),
                    change_set_id: rc.change_set_id().map(str::to_owned),
                    details: rc
                        .details()
                        .iter()
                        .map(|d| Detail {
                            evaluation: d.evaluation().map(|e| e.as_str().to_owned()),
                            change_source: d.change_source().map(|s| s.as_str().to_owned()),
                            causing_entity: d.causing_entity().map(str::to_owned),
                            target: d.target().map(|t| DetailTarget {
                                attribute: t.attribute().map(|a| a.as_str().to_owned()),
                                name: t.name().map(str::to_owned),
                                requires_recreation: t.requires_recreation().map(|r| r.as_str().to_owned()),
                            }),
                        })
                        .collect(),
                }),
            })
            .collect(),
    }
}

/// The stack inputs of a deployment, set on a CreateStack or a CreateChangeSet request: two SDK
/// builder types with the same setters.
macro_rules! with_stack_inputs {
    ($req:expr, $plan:expr) => {{
        let plan: &Plan = $plan;
        let req = $req
            .set_parameters(Some(cfn_parameters(plan)))
            .set_capabilities(Some(capabilities(plan)))
            .set_tags(Some(cfn_tags(plan)))
            .set_role_arn(plan.role_arn.clone());
        match &plan.template {
            TemplateSource::Body(b) => req.template_body(b),
            TemplateSource::Url(u) => req.template_url(u),
        }
    }};
}

fn cfn_parameters(plan: &Plan) -> Vec<CfnParameter> {
    plan.parameters
        .iter()
        .map(|p| {
            CfnParameter::builder()
                .parameter_key(&p.key)
                .set_parameter_value(p.value.clone())
                .set_use_previous_value(p.use_previous_value.then_some(true))
                .build()
        })
        .collect()
}

fn cfn_tags(plan: &Plan) -> Vec<CfnTag> {
    plan.tags
        .iter()
        .map(|t| CfnTag::builder().key(&t.key).value(&t.value).build())
        .collect()
}

fn capabilities(plan: &Plan) -> Vec<Capability> {
    plan.capabilities
        .iter()
        .map(|c| Capability::from(c.as_str()))
        .collect()
}

impl Steps {
    /// Validates the input, reads the template out of the source artifact, checks its declared
    /// parameters, stages it in S3 when it is too large for `TemplateBody`, and returns the plan.
    pub async fn prepare(&self, req: PrepareInput) -> Result<Plan, StepError> {
        let v = plan::validate(&req.input)?;
        if let (Some(given), Some(allowed)) = (&v.role_arn, &self.config.default_role_arn)
            && given != allowed
        {
            return Err(plan::InputError::RoleArn(format!(
                "{given} is not this workflow's CloudFormation service role ({allowed}), the only role its steps may pass"
            ))
            .into());
        }
        let body = self
            .read_template(&v.artifact_bucket, &v.artifact_key, &v.template_path)
            .await?;
        let template = if body.len() > MAX_TEMPLATE_BODY_BYTES {
            let bucket = self
                .config
                .template_bucket
                .clone()
                .ok_or(StepError::TemplateTooLarge {
                    path: v.template_path.clone(),
                    size: body.len(),
                    max: MAX_TEMPLATE_BODY_BYTES,
                })?;
            let file = v.template_path.rsplit('/').next().unwrap_or("template");
            let key = format!("templates/{}/{}/{file}", v.stack_name, req.execution_name);
            self.s3
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .body(body.clone().into_bytes().into())
                .send()
                .await
                .map_err(|e| aws("S3 PutObject (staging the template)", e))?;
            TemplateSource::Url(plan::template_url(&bucket, &self.config.region, &key))
        } else {
            TemplateSource::Body(body)
        };
        let summary = match &template {
            TemplateSource::Body(b) => self.cfn.get_template_summary().template_body(b),
            TemplateSource::Url(u) => self.cfn.get_template_summary().template_url(u),
        }
        .send()
        .await
        .map_err(|e| aws("CloudFormation GetTemplateSummary", e))?;
        let declared: Vec<String> = summary
            .parameters()
            .iter()
            .filter_map(|p| p.parameter_key().map(str::to_owned))
            .collect();
        let parameters = plan::resolve_parameters(&v, &declared)?;
        let plan = Plan {
            blue_green_stack_name: plan::blue_green_stack_name(&v.stack_name, &req.execution_name),
            change_set_name: plan::change_set_name(&req.execution_name),
            stack_name: v.stack_name,
            template_path: v.template_path,
            template,
            parameters,
            capabilities: v.capabilities,
            tags: v.tags,
            role_arn: v.role_arn.or_else(|| self.config.default_role_arn.clone()),
            policy: v.policy,
            on_unsafe: v.on_unsafe,
        };
        info!(stack = %plan.stack_name, change_set = %plan.change_set_name, "deployment planned");
        Ok(plan)
    }

    /// Streams the artifact to a temporary file (memory stays bounded whatever its size) and
    /// extracts the one template entry.
    async fn read_template(&self, bucket: &str, key: &str, path: &str) -> Result<String, StepError> {
        let artifact_err =
            |message: String, source: Box<dyn std::error::Error + Send + Sync>| StepError::Artifact {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message,
                source,
            };
        let out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| artifact_err(lambda_common::sdk::summary(&e), Box::new(e)))?;
        let mut file = tempfile_in_tmp().map_err(|e| artifact_err(e.to_string(), Box::new(e)))?;
        let mut body = out.body;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| artifact_err(e.to_string(), Box::new(e)))?
        {
            file.write_all(&chunk)
                .map_err(|e| artifact_err(e.to_string(), Box::new(e)))?;
        }
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            use std::io::Seek;
            file.rewind()
                .map_err(|e| template::TemplateError::NotAZip(e.to_string()))?;
            template::extract(file, &path)
        })
        .await
        .map_err(|e| artifact_err(e.to_string(), Box::new(e)))?
        .map_err(StepError::from)
    }

    /// DescribeStacks on the target stack and the decision. Only "does not exist" is absence.
    pub async fn check_stack(&self, state: State) -> Result<StackResult, StepError> {
        let name = state.target_stack().to_owned();
        let check = match self.cfn.describe_stacks().stack_name(&name).send().await {
            Ok(out) => match out.stacks().first().and_then(|s| s.stack_status()) {
                Some(status) => stack::check_existing(&name, status.as_str()),
                None => stack::absent(&name),
            },
            Err(e) => {
                use aws_smithy_types::error::metadata::ProvideErrorMetadata;
                if stack::is_absent(e.code(), e.message()) {
                    stack::absent(&name)
                } else {
                    return Err(aws("CloudFormation DescribeStacks", e));
                }
            }
        };
        let previous = state.stack.as_ref().map(|s| s.poll);
        let mut check = check;
        let poll = if check.next == StackNext::Wait {
            let poll = poll::next(previous, &self.config.poll);
            if poll.exhausted {
                check.reason = format!(
                    "stack {name} is still {} after {} checks; giving up waiting",
                    check.status.as_deref().unwrap_or("busy"),
                    poll.attempt
                );
            }
            poll
        } else {
            Poll::default()
        };
        info!(stack = %name, next = ?check.next, status = ?check.status, "stack checked");
        Ok(StackResult { check, poll })
    }

    /// CreateStack for the target stack (absent, or the blue-green stack).
    pub async fn create_stack(&self, state: State) -> Result<Created, StepError> {
        let plan = &state.plan;
        let name = state.target_stack().to_owned();
        let req = with_stack_inputs!(self.cfn.create_stack().stack_name(&name), plan);
        let stack_id = match req.send().await {
            Ok(out) => out.stack_id().unwrap_or(&name).to_owned(),
            // A retried step whose first attempt created the stack (CheckStack found it absent,
            // and blue-green names are unique per execution): carry on with that stack.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                warn!(stack = %name, "stack already exists: a previous attempt of this step created it");
                let out = self
                    .cfn
                    .describe_stacks()
                    .stack_name(&name)
                    .send()
                    .await
                    .map_err(|e| aws("CloudFormation DescribeStacks", e))?;
                out.stacks()
                    .first()
                    .and_then(|s| s.stack_id())
                    .unwrap_or(&name)
                    .to_owned()
            }
            Err(e) => return Err(aws("CloudFormation CreateStack", e)),
        };
        info!(stack = %name, "stack creation started");
        Ok(Created {
            stack_id,
            stack_name: name,
        })
    }

    /// CreateChangeSet (UPDATE, or CREATE for a REVIEW_IN_PROGRESS stack), nested stacks included.
    pub async fn create_change_set(&self, state: State) -> Result<ChangeSetRef, StepError> {
        let plan = &state.plan;
        let kind = match state.stack.as_ref().map(|s| s.check.next) {
            Some(StackNext::CreateChangeSet) => ChangeSetType::Create,
            Some(StackNext::UpdateChangeSet) => ChangeSetType::Update,
            other => {
                return Err(StepError::State(format!(
                    "stack.next = CREATE_CHANGE_SET or UPDATE_CHANGE_SET (found {other:?})"
                )));
            }
        };
        let req = self
            .cfn
            .create_change_set()
            .stack_name(&plan.stack_name)
            .change_set_name(&plan.change_set_name)
            .change_set_type(kind.clone())
            .include_nested_stacks(true)
            .description(format!("Deployment of {}", plan.template_path));
        let req = with_stack_inputs!(req, plan);
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) if is_no_updates(&e) => {
                info!(stack = %plan.stack_name, "nothing to change: no change set created");
                return Ok(ChangeSetRef {
                    id: String::new(),
                    name: plan.change_set_name.clone(),
                    stack_name: plan.stack_name.clone(),
                    stack_id: None,
                    change_set_type: kind.as_str().to_owned(),
                    no_changes: true,
                });
            }
            Err(e) => return Err(aws("CloudFormation CreateChangeSet", e)),
        };
        let id = out
            .id()
            .map(str::to_owned)
            .ok_or_else(|| StepError::State("CreateChangeSet returned no Id".into()))?;
        info!(change_set = %id, change_set_type = kind.as_str(), "change set creation started");
        Ok(ChangeSetRef {
            id,
            name: plan.change_set_name.clone(),
            stack_name: plan.stack_name.clone(),
            stack_id: out.stack_id().map(str::to_owned),
            change_set_type: kind.as_str().to_owned(),
            no_changes: false,
        })
    }

    /// DescribeChangeSet (first page) and the status decision.
    pub async fn change_set_status(&self, state: State) -> Result<ChangeSetStatus, StepError> {
        let cs = state.change_set()?;
        if cs.no_changes {
            return Ok(ChangeSetStatus {
                state: ChangeSetState::NoChanges,
                status: "NOT_CREATED".into(),
                execution_status: None,
                reason: "No updates are to be performed.".into(),
                poll: Poll::default(),
            });
        }
        let out = self
            .cfn
            .describe_change_set()
            .change_set_name(&cs.id)
            .send()
            .await
            .map_err(|e| aws("CloudFormation DescribeChangeSet", e))?;
        let page = page_from_sdk(&out);
        let status = page.status.clone().unwrap_or_default();
        let decided = changeset::change_set_state(
            &status,
            page.execution_status.as_deref(),
            page.status_reason.as_deref(),
        );
        let previous = state.change_set_status.as_ref().map(|s| s.poll);
        let poll = if decided == ChangeSetState::Pending {
            poll::next(previous, &self.config.poll)
        } else {
            Poll::default()
        };
        let reason = match decided {
            ChangeSetState::Pending if poll.exhausted => format!(
                "change set {} is still {status} after {} checks",
                cs.name, poll.attempt
            ),
            ChangeSetState::Failed => format!(
                "change set {} is {status} (ExecutionStatus {}): {}",
                cs.name,
                page.execution_status.as_deref().unwrap_or("-"),
                page.status_reason.as_deref().unwrap_or("no reason given")
            ),
            _ => page.status_reason.clone().unwrap_or_else(|| status.clone()),
        };
        Ok(ChangeSetStatus {
            state: decided,
            status,
            execution_status: page.execution_status,
            reason,
            poll,
        })
    }

    /// Every page of the change set and of every nested change set, judged by the policy.
    async fn judge(
        &self,
        change_set_id: &str,
        policy: &changeset::Policy,
    ) -> Result<(Verdict, ChangeSetPage), StepError> {
        let mut queue = VecDeque::from([(String::new(), change_set_id.to_owned())]);
        let mut gathered: Vec<(String, ResourceChange)> = Vec::new();
        let mut root: Option<ChangeSetPage> = None;
        let mut described = 0;
        while let Some((path, id)) = queue.pop_front() {
            described += 1;
            if described > MAX_CHANGE_SETS {
                return Err(StepError::State(format!(
                    "more than {MAX_CHANGE_SETS} nested change sets under {change_set_id}"
                )));
            }
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .cfn
                    .describe_change_set()
                    .change_set_name(&id)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| aws("CloudFormation DescribeChangeSet", e))?;
                let page = page_from_sdk(&out);
                queue.extend(changeset::nested_change_sets(&page, &path));
                gathered.extend(
                    page.changes
                        .iter()
                        .filter_map(|c| c.resource_change.clone())
                        .map(|rc| (path.clone(), rc)),
                );
                token = page.next_token.clone().filter(|t| !t.is_empty());
                if root.is_none() {
                    root = Some(page);
                }
                if token.is_none() {
                    break;
                }
            }
        }
        let verdict = changeset::verdict(gathered.iter().map(|(p, rc)| (p.as_str(), rc)), policy);
        Ok((verdict, root.unwrap_or_default()))
    }

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

    /// Executes the change set, only after judging it again (whatever the state machine says)
    /// and only when its ExecutionStatus is AVAILABLE.
    pub async fn execute_change_set(&self, state: State) -> Result<Executed, StepError> {
        let cs = state.change_set()?;
        let (verdict, root) = self.judge(&cs.id, &state.plan.policy).await?;
        if !verdict.safe {
            return Err(StepError::Unsafe {
                change_set: cs.id.clone(),
                summary: verdict.bounded().summary,
            });
        }
        let status = root.execution_status.clone().unwrap_or_else(|| "unknown".into());
        if status == "EXECUTE_IN_PROGRESS" || status == "EXECUTE_COMPLETE" {
            // A retried step whose first attempt executed it (this change set is this execution's
            // own, and only this step executes change sets, after judging them safe).
            warn!(change_set = %cs.id, status = %status, "change set already executed by a previous attempt");
            return Ok(Executed {
                change_set_id: cs.id.clone(),
                stack_id: root.stack_id.or_else(|| cs.stack_id.clone()),
            });
        }
        if status != "AVAILABLE" {
            return Err(StepError::NotExecutable {
                change_set: cs.id.clone(),
                status,
            });
        }
        self.cfn
            .execute_change_set()
            .change_set_name(&cs.id)
            .send()
            .await
            .map_err(|e| aws("CloudFormation ExecuteChangeSet", e))?;
        info!(change_set = %cs.id, "change set executed");
        Ok(Executed {
            change_set_id: cs.id.clone(),
            stack_id: root.stack_id.or_else(|| cs.stack_id.clone()),
        })
    }

    /// Deletes the change set (unsafe or empty); it is never executed.
    pub async fn delete_change_set(&self, state: State) -> Result<Done, StepError> {
        let cs = state.change_set()?;
        if cs.id.is_empty() {
            return Ok(Done {
                change_set_id: String::new(),
            });
        }
        self.cfn
            .delete_change_set()
            .change_set_name(&cs.id)
            .send()
            .await
            .map_err(|e| aws("CloudFormation DeleteChangeSet", e))?;
        info!(change_set = %cs.id, "change set deleted");
        Ok(Done {
            change_set_id: cs.id.clone(),
        })
    }

    /// Where the create or update of the target stack stands; on failure, the failed resources.
    pub async fn stack_status(&self, state: State) -> Result<Progress, StepError> {
        let name = state.target_stack().to_owned();
        let stack_ref = state.operation_stack();
        let out = self
            .cfn
            .describe_stacks()
            .stack_name(&stack_ref)
            .send()
            .await
            .map_err(|e| aws("CloudFormation DescribeStacks", e))?;
        let stack = out
            .stacks()
            .first()
            .ok_or_else(|| StepError::State(format!("stack {stack_ref} in DescribeStacks")))?;
        let stack_id = stack.stack_id().unwrap_or(&stack_ref).to_owned();
        let status = stack
            .stack_status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        let state_now = stack::completion(&status);
        let previous = state.progress.as_ref().map(|p| p.poll);
        let poll = if state_now == Completion::InProgress {
            poll::next(previous, &self.config.poll)
        } else {
            Poll::default()
        };
        let reason = match state_now {
            Completion::Complete => format!("stack {name} is {status}"),
            Completion::InProgress if poll.exhausted => {
                format!("stack {name} is still {status} after {} checks", poll.attempt)
            }
            Completion::InProgress => format!("stack {name} is {status}"),
            Completion::Failed => {
                let causes = self.failed_resources(&stack_id, &name).await;
                let stack_reason = stack.stack_status_reason().unwrap_or("");
                let mut r = format!("stack {name} ended {status}");
                if !stack_reason.is_empty() {
                    r.push_str(&format!(": {stack_reason}"));
                }
                if !causes.is_empty() {
                    r.push_str(&format!("; failed resources: {}", causes.join("; ")));
                }
                r
            }
        };
        Ok(Progress {
            state: state_now,
            stack_name: name,
            stack_id,
            status,
            reason,
            poll,
        })
    }

    /// The resources that failed in the latest operation (best effort: an error here must not
    /// hide the stack's own status).
    async fn failed_resources(&self, stack_id: &str, name: &str) -> Vec<String> {
        let Ok(out) = self.cfn.describe_stack_events().stack_name(stack_id).send().await else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for e in out.stack_events() {
            let status = e.resource_status().map(|s| s.as_str()).unwrap_or("");
            let is_stack = e.resource_type() == Some("AWS::CloudFormation::Stack")
                && e.logical_resource_id() == Some(name);
            if is_stack && (status == "UPDATE_IN_PROGRESS" || status == "CREATE_IN_PROGRESS") {
                break; // the start of the latest operation: older events are not its causes
            }
            if status.ends_with("_FAILED") && !is_stack {
                found.push(format!(
                    "{} ({}) {status}: {}",
                    e.logical_resource_id().unwrap_or("?"),
                    e.resource_type().unwrap_or("?"),
                    e.resource_status_reason().unwrap_or("no reason given")
                ));
            }
            if found.len() >= 10 {
                break;
            }
        }
        found.reverse();
        found
    }
}

/// CreateChangeSet's (and UpdateStack's) refusal when the template and parameters are unchanged.
fn is_no_updates<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(
    e: &aws_sdk_cloudformation::error::SdkError<E>,
) -> bool {
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    e.code() == Some("ValidationError") && e.message().is_some_and(changeset::is_no_changes_reason)
}

/// A temporary file in the Lambda's /tmp, removed when closed.
fn tempfile_in_tmp() -> std::io::Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!("artifact-{}-{}.zip", std::process::id(), nanos()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    // Unlinked at once: the open handle keeps the data until it is closed.
    std::fs::remove_file(&path)?;
    Ok(file)
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
