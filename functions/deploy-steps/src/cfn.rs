//! The CloudFormation SDK adapters: the stack inputs set on CreateStack and CreateChangeSet
//! requests, a DescribeChangeSet answer mapped into the pure [`ChangeSetPage`], and the one
//! refusal that means "nothing to change". The decisions never see an SDK type.

use aws_sdk_cloudformation::error::SdkError;
use aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput;
use aws_sdk_cloudformation::types::{Capability, Parameter as CfnParameter, Tag as CfnTag};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::changeset::{self, Change, ChangeSetPage, Detail, PageParameter, ResourceChange, Target};
use crate::plan::Plan;

/// Sets a deployment's stack inputs (parameters, capabilities, tags, role, template) on a
/// CreateStack or a CreateChangeSet request: two SDK builder types with the same setters.
macro_rules! with_stack_inputs {
    ($req:expr, $plan:expr) => {{
        let plan: &$crate::plan::Plan = $plan;
        let req = $req
            .set_parameters(Some($crate::cfn::parameters(plan)))
            .set_capabilities(Some($crate::cfn::capabilities(plan)))
            .set_tags(Some($crate::cfn::tags(plan)))
            .set_role_arn(plan.role_arn.clone());
        match &plan.template {
            $crate::plan::TemplateSource::Body(b) => req.template_body(b),
            $crate::plan::TemplateSource::Url(u) => req.template_url(u),
        }
    }};
}
pub(crate) use with_stack_inputs;

pub(crate) fn parameters(plan: &Plan) -> Vec<CfnParameter> {
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

pub(crate) fn tags(plan: &Plan) -> Vec<CfnTag> {
    plan.tags
        .iter()
        .map(|t| CfnTag::builder().key(&t.key).value(&t.value).build())
        .collect()
}

pub(crate) fn capabilities(plan: &Plan) -> Vec<Capability> {
    plan.capabilities
        .iter()
        .map(|c| Capability::from(c.as_str()))
        .collect()
}

/// CreateChangeSet's (and UpdateStack's) refusal when the template and parameters are unchanged.
pub(crate) fn is_no_updates<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    e.code() == Some("ValidationError") && e.message().is_some_and(changeset::is_no_changes_reason)
}

/// One DescribeChangeSet page in the shape the decisions read.
pub(crate) fn page_from_sdk(out: &DescribeChangeSetOutput) -> ChangeSetPage {
    ChangeSetPage {
        change_set_id: out.change_set_id().map(str::to_owned),
        change_set_name: out.change_set_name().map(str::to_owned),
        stack_id: out.stack_id().map(str::to_owned),
        stack_name: out.stack_name().map(str::to_owned),
        status: out.status().map(|s| s.as_str().to_owned()),
        status_reason: out.status_reason().map(str::to_owned),
        execution_status: out.execution_status().map(|s| s.as_str().to_owned()),
        next_token: out.next_token().map(str::to_owned),
        parameters: out
            .parameters()
            .iter()
            .map(|p| PageParameter {
                parameter_key: p.parameter_key().unwrap_or_default().to_owned(),
                parameter_value: p.parameter_value().map(str::to_owned),
            })
            .collect(),
        changes: out
            .changes()
            .iter()
            .map(|c| Change {
                kind: c.r#type().map(|t| t.as_str().to_owned()),
                resource_change: c.resource_change().map(resource_change),
            })
            .collect(),
    }
}

fn resource_change(rc: &aws_sdk_cloudformation::types::ResourceChange) -> ResourceChange {
    ResourceChange {
        action: rc.action().map(|a| a.as_str().to_owned()),
        logical_resource_id: rc.logical_resource_id().map(str::to_owned),
        physical_resource_id: rc.physical_resource_id().map(str::to_owned),
        resource_type: rc.resource_type().map(str::to_owned),
        replacement: rc.replacement().map(|r| r.as_str().to_owned()),
        policy_action: rc.policy_action().map(|p| p.as_str().to_owned()),
        scope: rc.scope().iter().map(|s| s.as_str().to_owned()).collect(),
        change_set_id: rc.change_set_id().map(str::to_owned),
        details: rc.details().iter().map(detail).collect(),
        before_context: rc.before_context().map(str::to_owned),
        after_context: rc.after_context().map(str::to_owned),
    }
}

fn detail(d: &aws_sdk_cloudformation::types::ResourceChangeDetail) -> Detail {
    Detail {
        evaluation: d.evaluation().map(|e| e.as_str().to_owned()),
        change_source: d.change_source().map(|s| s.as_str().to_owned()),
        causing_entity: d.causing_entity().map(str::to_owned),
        target: d.target().map(|t| Target {
            attribute: t.attribute().map(|a| a.as_str().to_owned()),
            name: t.name().map(str::to_owned),
            requires_recreation: t.requires_recreation().map(|r| r.as_str().to_owned()),
            path: t.path().map(str::to_owned),
            before_value: t.before_value().map(str::to_owned),
            after_value: t.after_value().map(str::to_owned),
            attribute_change_type: t.attribute_change_type().map(|a| a.as_str().to_owned()),
        }),
    }
}
