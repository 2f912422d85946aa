//! The approval path's local plumbing: the review bucket, the approval topic with an SQS inbox
//! subscribed (SNS delivers to it as it would to any subscriber), and the approver's call, made
//! as Lambda delivers a function URL request authenticated with `AuthType: AWS_IAM`.

use anyhow::Context;
use serde_json::{Value, json};

use crate::LocalStack;
use crate::stack::{ACCOUNT, REGION};

pub const REVIEW_BUCKET: &str = "deploy-reviews";
pub const APPROVAL_TOPIC: &str = "deploy-approvals";
const INBOX_QUEUE: &str = "deploy-approvals-inbox";
/// The approve function's name, as template.yaml deploys it (`DEPLOY_STEP=approve`).
pub const APPROVE_FUNCTION: &str = "deploy-approve";

/// The approval topic and the queue that receives what is published to it.
#[derive(Debug, Clone)]
pub struct Approvals {
    pub topic_arn: String,
    queue_url: String,
}

/// A message published to the approval topic.
#[derive(Debug, Clone)]
pub struct Published {
    pub subject: String,
    pub message: String,
}

/// Calls moto's SQS with its JSON protocol (the gateway passes it through).
async fn sqs(stack: &LocalStack, action: &str, body: Value) -> anyhow::Result<Value> {
    let auth = crate::recorder::authorization("test", "20260101", REGION, "sqs");
    let out = reqwest::Client::new()
        .post(format!("{}/", stack.endpoint))
        .header("x-amz-target", format!("AmazonSQS.{action}"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("authorization", auth)
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("SQS {action}"))?;
    let status = out.status();
    let text = out.text().await?;
    anyhow::ensure!(status.is_success(), "SQS {action}: {status} {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl Approvals {
    /// Creates the review bucket, the topic and its inbox.
    pub async fn create(stack: &LocalStack) -> anyhow::Result<Self> {
        stack
            .s3()
            .create_bucket()
            .bucket(REVIEW_BUCKET)
            .send()
            .await
            .context("CreateBucket (reviews)")?;
        let sns = aws_sdk_sns::Client::new(&stack.sdk);
        let topic = sns
            .create_topic()
            .name(APPROVAL_TOPIC)
            .send()
            .await
            .context("CreateTopic")?;
        let topic_arn = topic.topic_arn().context("no TopicArn")?.to_owned();
        let queue = sqs(stack, "CreateQueue", json!({"QueueName": INBOX_QUEUE})).await?;
        let queue_url = queue["QueueUrl"].as_str().context("no QueueUrl")?.to_owned();
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{INBOX_QUEUE}"))
            .send()
            .await
            .context("Subscribe")?;
        Ok(Self { topic_arn, queue_url })
    }

    /// The messages published since the last call (SNS's envelope opened).
    pub async fn received(&self, stack: &LocalStack) -> anyhow::Result<Vec<Published>> {
        let out = sqs(
            stack,
            "ReceiveMessage",
            json!({"QueueUrl": self.queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1}),
        )
        .await?;
        let mut published = Vec::new();
        for m in out["Messages"].as_array().into_iter().flatten() {
            let envelope: Value = serde_json::from_str(m["Body"].as_str().unwrap_or("{}"))?;
            published.push(Published {
                subject: envelope["Subject"].as_str().unwrap_or_default().to_owned(),
                message: envelope["Message"].as_str().unwrap_or_default().to_owned(),
            });
            sqs(
                stack,
                "DeleteMessage",
                json!({"QueueUrl": self.queue_url, "ReceiptHandle": m["ReceiptHandle"]}),
            )
            .await?;
        }
        Ok(published)
    }
}

/// A function URL request (payload 2.0) from `caller`, as Lambda delivers it to the function.
pub fn url_event(caller: Option<&str>, body: &Value) -> Value {
    let mut context = json!({
        "accountId": "anonymous",
        "apiId": "deployapprove",
        "domainName": "deployapprove.lambda-url.us-east-1.on.aws",
        "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "curl/8"},
        "requestId": uuid::Uuid::new_v4().to_string(),
        "routeKey": "$default",
        "stage": "$default",
        "time": "01/Dec/2026:00:00:00 +0000",
        "timeEpoch": 1_796_083_200_000u64,
    });
    if let Some(arn) = caller {
        context["authorizer"] = json!({"iam": {
            "accessKey": "AKIAAPPROVER", "accountId": ACCOUNT, "callerId": "AIDAAPPROVER",
            "userArn": arn, "userId": "AIDAAPPROVER",
        }});
    }
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "deployapprove.lambda-url.us-east-1.on.aws"},
        "requestContext": context,
        "body": body.to_string(),
        "isBase64Encoded": false,
    })
}

/// Sends a decision through the approve function; its function URL response (status, body).
pub async fn decide(stack: &LocalStack, caller: Option<&str>, body: &Value) -> anyhow::Result<(u16, Value)> {
    let out = stack
        .lambda()
        .invoke()
        .function_name(APPROVE_FUNCTION)
        .payload(aws_smithy_types::Blob::new(url_event(caller, body).to_string()))
        .send()
        .await
        .context("Lambda Invoke (deploy-approve)")?;
    anyhow::ensure!(out.function_error().is_none(), "deploy-approve failed: {out:?}");
    let response: Value = serde_json::from_slice(out.payload().map(|p| p.as_ref()).unwrap_or(b"{}"))?;
    let status = u16::try_from(response["statusCode"].as_u64().unwrap_or(0))?;
    let body = serde_json::from_str(response["body"].as_str().unwrap_or("null"))?;
    Ok((status, body))
}

/// The review id of the first approval that becomes pending (its task token kept), waiting up
/// to 30 s.
pub async fn pending_review(stack: &LocalStack) -> anyhow::Result<String> {
    for _ in 0..120 {
        let out = stack
            .s3()
            .list_objects_v2()
            .bucket(REVIEW_BUCKET)
            .prefix("approvals/")
            .send()
            .await
            .context("ListObjectsV2 (approvals)")?;
        if let Some(key) = out.contents().first().and_then(|o| o.key()) {
            return Ok(key
                .trim_start_matches("approvals/")
                .trim_end_matches(".json")
                .to_owned());
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    anyhow::bail!("no approval became pending within 30 s")
}
