//! `deploy-drift`: the drift gate before an update's change set: DetectStackDrift, then
//! DescribeStackDriftDetectionStatus polled (boundedly) and, once detection ends,
//! DescribeStackResourceDrifts (MODIFIED and DELETED, every page); [`crate::drift`] decides.

use aws_sdk_cloudformation::types::{self as cfn, StackResourceDriftStatus};
use lambda_common::sdk::ErrorKind;

use super::Steps;
use crate::drift::{self, DetectionStatus, DriftResult, DriftState, DriftedResource, Gate, Observation};
use crate::error::{StepError, StepInputError, aws};
use crate::plan::DriftMode;
use crate::poll::{self, Poll};
use crate::state::State;

const DETECT: &str = "CloudFormation DetectStackDrift";
const STATUS: &str = "CloudFormation DescribeStackDriftDetectionStatus";
const RESOURCES: &str = "CloudFormation DescribeStackResourceDrifts";

/// DescribeStackResourceDrifts pages of 100: a stack holds at most 500 resources, so more pages
/// than this is an answer that does not end.
const MAX_PAGES: usize = 20;

impl Steps {
    /// Starts drift detection, or looks at the running one, and decides: PENDING, DONE or
    /// BLOCKED. Only throttling is an error; any other failure of the drift APIs is drift not
    /// detected (BLOCKED under `block`, DONE unchecked under `warn`).
    pub async fn drift(&self, state: State) -> Result<DriftResult, StepError> {
        let mode = state.plan.drift;
        if mode == DriftMode::Ignore {
            return Ok(drift::ignored());
        }
        let name = state.plan.stack_name.as_str();
        let stack = state
            .stack
            .as_ref()
            .ok_or(StepInputError::Missing("stack (the check-stack step's output)"))?;
        if let Some(skipped) = drift::not_an_update(name, &stack.check) {
            return Ok(skipped);
        }
        let previous = state.drift_check.as_ref();
        let detection_id = previous.and_then(|d| d.detection_id.as_deref());
        let answer = match detection_id {
            None => self.start_detection(name).await,
            Some(id) => self.detection(name, id, previous.map(|d| d.poll)).await,
        };
        let observation = match answer {
            Ok(o) => o,
            // Throttled after the SDK's retries: the state machine retries the step under
            // block; warn never stops a deployment, so it goes on unchecked.
            Err(e) if is_throttled(&e) && mode == DriftMode::Block => return Err(e),
            Err(e) => Observation::Unavailable {
                message: e.to_string(),
            },
        };
        let concerning = observation.is_concerning();
        let gate = Gate {
            mode,
            stack_name: name,
            detection_id,
        };
        let result = drift::decide(&gate, observation);
        if concerning && result.state == DriftState::Done {
            tracing::warn!(stack = name, summary = %result.summary, "going on despite drift (drift: warn)");
        }
        Ok(result)
    }

    async fn start_detection(&self, name: &str) -> Result<Observation, StepError> {
        let out = self
            .cfn
            .detect_stack_drift()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| aws(DETECT, e))?;
        let detection_id = out
            .stack_drift_detection_id()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| StepError::UnexpectedResponse {
                operation: DETECT,
                problem: "no StackDriftDetectionId".into(),
            })?;
        Ok(Observation::Started {
            detection_id: detection_id.to_owned(),
            poll: poll::next(None, &self.config.poll),
        })
    }

    /// DescribeStackDriftDetectionStatus and, once detection has ended, the drifted resources.
    async fn detection(
        &self,
        name: &str,
        id: &str,
        previous: Option<Poll>,
    ) -> Result<Observation, StepError> {
        let out = self
            .cfn
            .describe_stack_drift_detection_status()
            .stack_drift_detection_id(id)
            .send()
            .await
            .map_err(|e| aws(STATUS, e))?;
        let stack_drift_status = out.stack_drift_status().map(|s| s.as_str().to_owned());
        match DetectionStatus::parse(out.detection_status().map(cfn::StackDriftDetectionStatus::as_str)) {
            DetectionStatus::InProgress => Ok(Observation::InProgress {
                poll: poll::next(previous, &self.config.poll),
            }),
            DetectionStatus::Complete => Ok(Observation::Complete {
                stack_drift_status,
                drifted: self.drifted_resources(name).await?,
            }),
            DetectionStatus::Failed => {
                // What was found all the same, best effort: the failure decides either way.
                let drifted = match self.drifted_resources(name).await {
                    Ok(d) => d,
                    Err(e) if is_throttled(&e) => return Err(e),
                    Err(e) => {
                        tracing::warn!(stack = name, error = %e, "drifted resources not listed");
                        Vec::new()
                    }
                };
                Ok(Observation::Failed {
                    reason: out.detection_status_reason().map(str::to_owned),
                    stack_drift_status,
                    drifted,
                })
            }
            DetectionStatus::Other(status) => Err(StepError::UnexpectedResponse {
                operation: STATUS,
                problem: format!("DetectionStatus {status}"),
            }),
        }
    }

    /// Every MODIFIED or DELETED resource of the latest detection, every page.
    async fn drifted_resources(&self, name: &str) -> Result<Vec<DriftedResource>, StepError> {
        let mut drifted = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let out = self
                .cfn
                .describe_stack_resource_drifts()
                .stack_name(name)
                .stack_resource_drift_status_filters(StackResourceDriftStatus::Modified)
                .stack_resource_drift_status_filters(StackResourceDriftStatus::Deleted)
                .max_results(100)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| aws(RESOURCES, e))?;
            drifted.extend(out.stack_resource_drifts().iter().map(drifted_from_sdk));
            match out.next_token().filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_owned()),
                None => return Ok(drifted),
            }
        }
        Err(StepError::UnexpectedResponse {
            operation: RESOURCES,
            problem: format!("still a NextToken after {MAX_PAGES} pages"),
        })
    }
}

fn is_throttled(err: &StepError) -> bool {
    matches!(
        err,
        StepError::Aws {
            kind: ErrorKind::Throttled,
            ..
        }
    )
}

fn drifted_from_sdk(r: &cfn::StackResourceDrift) -> DriftedResource {
    DriftedResource {
        logical_resource_id: r.logical_resource_id().unwrap_or("?").to_owned(),
        resource_type: r.resource_type().unwrap_or("?").to_owned(),
        physical_resource_id: r.physical_resource_id().map(str::to_owned),
        status: r
            .stack_resource_drift_status()
            .map_or("?", StackResourceDriftStatus::as_str)
            .to_owned(),
        differences: r
            .property_differences()
            .iter()
            .map(|d| drift::PropertyDifference {
                property_path: d.property_path().unwrap_or("").to_owned(),
                difference_type: d
                    .difference_type()
                    .map_or("", cfn::DifferenceType::as_str)
                    .to_owned(),
                expected_value: d.expected_value().map(str::to_owned),
                actual_value: d.actual_value().map(str::to_owned),
            })
            .collect(),
    }
}
