//! `deploy-prepare`: validates the execution input, reads the template out of the source
//! artifact, checks its declared parameters, stages it in S3 when it is too large for
//! `TemplateBody`, and returns the plan every later step works from.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::info;

use super::Steps;
use crate::error::{StepError, aws};
use crate::plan::{self, MAX_TEMPLATE_BODY_BYTES, Plan, TemplateSource, Validated};
use crate::state::PrepareInput;
use crate::template;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
        let template = self.template_source(&v, &req.execution_name, body).await?;
        let declared = self.declared_parameters(&template).await?;
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
            approval_timeout_seconds: v.approval_timeout_seconds,
            drift: v.drift,
        };
        info!(stack = %plan.stack_name, change_set = %plan.change_set_name, "deployment planned");
        Ok(plan)
    }

    /// The template as a `TemplateBody`, or staged in S3 (`TemplateURL`) when it is too large.
    async fn template_source(
        &self,
        v: &Validated,
        execution_name: &str,
        body: String,
    ) -> Result<TemplateSource, StepError> {
        if body.len() <= MAX_TEMPLATE_BODY_BYTES {
            return Ok(TemplateSource::Body(body));
        }
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
        let key = format!("templates/{}/{execution_name}/{file}", v.stack_name);
        self.s3
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(body.into_bytes().into())
            .send()
            .await
            .map_err(|e| aws("S3 PutObject (staging the template)", e))?;
        Ok(TemplateSource::Url(plan::template_url(
            &bucket,
            &self.config.region,
            &key,
        )))
    }

    /// The parameters the template declares (GetTemplateSummary).
    async fn declared_parameters(&self, template: &TemplateSource) -> Result<Vec<String>, StepError> {
        let summary = match template {
            TemplateSource::Body(b) => self.cfn.get_template_summary().template_body(b),
            TemplateSource::Url(u) => self.cfn.get_template_summary().template_url(u),
        }
        .send()
        .await
        .map_err(|e| aws("CloudFormation GetTemplateSummary", e))?;
        Ok(summary
            .parameters()
            .iter()
            .filter_map(|p| p.parameter_key().map(str::to_owned))
            .collect())
    }

    /// Streams the artifact to a temporary file (memory stays bounded whatever its size) and
    /// extracts the one template entry.
    async fn read_template(&self, bucket: &str, key: &str, path: &str) -> Result<String, StepError> {
        let artifact_err = |message: String, source: BoxError| StepError::Artifact {
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
}

/// A temporary file in the Lambda's /tmp, removed when closed. Named by process, time and a
/// counter, so concurrent invocations in one process (tests) never collide.
fn tempfile_in_tmp() -> std::io::Result<std::fs::File> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "artifact-{}-{}-{}.zip",
        std::process::id(),
        lambda_common::clock::now_ms(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let path = std::env::temp_dir().join(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    // Unlinked at once: the open handle keeps the data until it is closed.
    std::fs::remove_file(&path)?;
    Ok(file)
}
