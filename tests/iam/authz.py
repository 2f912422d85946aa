"""Recorded AWS requests (one line of the gateway's `calls.jsonl`) turned into what IAM authorizes:
the action, the resource ARN and the request context, as the Service Authorization Reference
defines them. One request may need several authorizations: `iam:PassRole` when CloudFormation is
handed a service role, `s3:GetObject` of a `TemplateURL` (CloudFormation reads it with the
caller's permissions), `s3:GetObject` of a copy's source, and `s3:ListBucket` for an object read
answered 404 (S3 tells a missing key only to a caller that may list the bucket; without it the
function would have seen a 403, not the answer the test saw).
"""

from urllib.parse import unquote

from template import ACCOUNT, PARTITION, REGION


class Unmapped(Exception):
    """A recorded request this module cannot turn into an authorization (the check fails)."""


class Authorization:
    """One authorization a request needs (`why` says why, when it is not the request's own
    action: an implied one)."""

    def __init__(self, action, resource, context=None, why=None):
        self.action = action
        self.resource = resource
        self.context = dict(context or {})
        self.why = why

    def __repr__(self):
        return f"{self.action} on {self.resource}"

    def key(self):
        return (self.action, self.resource)


def _arn(service, rest, region=REGION):
    return f"arn:{PARTITION}:{service}:{region}:{ACCOUNT}:{rest}"


def operation(call):
    """The call's operation name: X-Amz-Target's suffix, the form's Action, or S3/Lambda REST."""
    if call.get("target"):
        return call["target"].rsplit(".", 1)[-1]
    if "Action" in (call.get("params") or {}):
        return call["params"]["Action"]
    return None


# ---- S3 (REST, path style) ----


def _s3_object(bucket, key):
    return f"arn:{PARTITION}:s3:::{bucket}/{key}"


# Query keys that do not change what an S3 request is authorized as (the SDK's `x-id`, a
# listing's options, multipart's upload id and part number): any other key is a subresource this
# mapping does not know, and is refused rather than mapped to a broader action.
S3_PLAIN_QUERY = {
    "x-id", "list-type", "prefix", "delimiter", "continuation-token", "max-keys", "start-after",
    "encoding-type", "fetch-owner", "uploads", "uploadId", "partNumber", "delete",
    "versioning", "location", "policy", "tagging",
}


def s3(call):
    unknown = set(call.get("query") or {}) - S3_PLAIN_QUERY
    if unknown:
        if unknown == {"versionId"} and call["method"].upper() in ("GET", "HEAD"):
            bucket, _, key = unquote(call.get("path", "/")).lstrip("/").partition("/")
            return [Authorization("s3:GetObjectVersion", _s3_object(bucket, key))]
        raise Unmapped(f"S3 {call['method']} {call.get('path')} with {sorted(unknown)}")
    path = call.get("path", "/")
    segments = path.lstrip("/").split("/", 1)
    bucket = unquote(segments[0])
    key = unquote(segments[1]) if len(segments) > 1 and segments[1] else None
    query = call.get("query") or {}
    method = call["method"].upper()
    bucket_arn = f"arn:{PARTITION}:s3:::{bucket}"
    if not bucket:
        raise Unmapped(f"S3 {method} {path}: no bucket")
    if key is None:
        table = {
            ("GET", "uploads"): "s3:ListBucketMultipartUploads",
            ("GET", "versioning"): "s3:GetBucketVersioning",
            ("GET", "location"): "s3:GetBucketLocation",
            ("GET", "policy"): "s3:GetBucketPolicy",
            ("PUT", "policy"): "s3:PutBucketPolicy",
            ("PUT", "versioning"): "s3:PutBucketVersioning",
        }
        for (m, q), action in table.items():
            if method == m and q in query:
                return [Authorization(action, bucket_arn)]
        if method in ("GET", "HEAD"):
            return [Authorization("s3:ListBucket", bucket_arn)]
        if method == "PUT":
            return [Authorization("s3:CreateBucket", bucket_arn)]
        if method == "DELETE":
            return [Authorization("s3:DeleteBucket", bucket_arn)]
        if method == "POST" and "delete" in query:
            # DeleteObjects: authorized as s3:DeleteObject of each key (the keys are in the body,
            # which is not recorded): checked on the bucket's objects as a whole.
            return [Authorization("s3:DeleteObject", _s3_object(bucket, "*"))]
        raise Unmapped(f"S3 {method} {path}?{'&'.join(query)}")
    obj = _s3_object(bucket, key)
    if method in ("GET", "HEAD"):
        if "uploadId" in query:
            return [Authorization("s3:ListMultipartUploadParts", obj)]
        if "tagging" in query:
            return [Authorization("s3:GetObjectTagging", obj)]
        out = [Authorization("s3:GetObject", obj)]
        if call.get("status") == 404:
            # S3 answers a missing key with 404 only to a caller that may list the bucket.
            out.append(
                Authorization("s3:ListBucket", bucket_arn, why="S3 tells a missing key (404) only with s3:ListBucket")
            )
        return out
    if method == "PUT":
        if "tagging" in query:
            return [Authorization("s3:PutObjectTagging", obj)]
        out = [Authorization("s3:PutObject", obj)]
        source = (call.get("headers") or {}).get("x-amz-copy-source")
        if source:
            src_bucket, _, src_key = unquote(source).lstrip("/").partition("/")
            src_key, versioned, _ = src_key.partition("?versionId=")
            action = "s3:GetObjectVersion" if versioned else "s3:GetObject"
            out.append(Authorization(action, _s3_object(src_bucket, src_key), why="copy source"))
        return out
    if method == "POST":
        # CreateMultipartUpload (?uploads) and CompleteMultipartUpload (?uploadId) are PutObject.
        return [Authorization("s3:PutObject", obj)]
    if method == "DELETE":
        if "uploadId" in query:
            return [Authorization("s3:AbortMultipartUpload", obj)]
        return [Authorization("s3:DeleteObject", obj)]
    raise Unmapped(f"S3 {method} {path}")


# ---- Step Functions, CodePipeline (JSON protocol) ----

STATES_BY_MACHINE = {
    "StartExecution",
    "StartSyncExecution",
    "DescribeStateMachine",
    "DeleteStateMachine",
    "UpdateStateMachine",
    "ListExecutions",
}
STATES_BY_EXECUTION = {"DescribeExecution", "GetExecutionHistory", "StopExecution"}


def states(call):
    op = operation(call)
    params = call.get("params") or {}
    if op in STATES_BY_MACHINE:
        return [Authorization(f"states:{op}", params.get("stateMachineArn", "*"))]
    if op in STATES_BY_EXECUTION:
        return [Authorization(f"states:{op}", params.get("executionArn", "*"))]
    if op == "CreateStateMachine":
        return [Authorization("states:CreateStateMachine", _arn("states", f"stateMachine:{params.get('name')}"))]
    # Task callbacks and lists support no resource-level permissions.
    return [Authorization(f"states:{op}", "*")]


def codepipeline(call):
    return [Authorization(f"codepipeline:{operation(call)}", "*")]


# ---- CloudFormation, RDS, SNS, SQS (query protocol) ----


def _stack_arn(name_or_arn):
    if name_or_arn.startswith("arn:"):
        if ":changeSet/" in name_or_arn:
            return None
        return name_or_arn
    return _arn("cloudformation", f"stack/{name_or_arn}/00000000-0000-0000-0000-000000000000")


def cloudformation(call, stacks_of_change_sets=None):
    op = operation(call)
    params = call.get("params") or {}
    stack = params.get("StackName")
    change_set = params.get("ChangeSetName")
    resource = _stack_arn(stack) if stack else None
    if resource is None and change_set and change_set.startswith("arn:"):
        name = change_set.split(":changeSet/")[-1].split("/")[0]
        resource = (stacks_of_change_sets or {}).get(name)
        if resource is None:
            raise Unmapped(f"cloudformation:{op} names change set {change_set}, created by no recorded call")
    context = {}
    if change_set:
        context["cloudformation:ChangeSetName"] = change_set.split(":changeSet/")[-1].split("/")[0]
    if params.get("RoleARN"):
        context["cloudformation:RoleArn"] = params["RoleARN"]
    out = [Authorization(f"cloudformation:{op}", resource or "*", context)]
    if params.get("RoleARN") and op in ("CreateStack", "CreateChangeSet", "UpdateStack"):
        out.append(
            Authorization(
                "iam:PassRole",
                params["RoleARN"],
                {"iam:PassedToService": "cloudformation.amazonaws.com"},
                why="the service role handed to CloudFormation",
            )
        )
    url = params.get("TemplateURL")
    if url:
        out.append(Authorization("s3:GetObject", _s3_from_url(url), why="CloudFormation reads the TemplateURL as the caller"))
    if op == "DetectStackDrift" and resource:
        out.append(
            Authorization(
                "cloudformation:DetectStackResourceDrift", resource, why="DetectStackDrift checks each resource as the caller"
            )
        )
    return out


def _s3_from_url(url):
    """`https://<bucket>.s3.<region>.amazonaws.com/<key>` or a path-style URL to the object ARN."""
    rest = url.split("://", 1)[-1]
    host, _, path = rest.partition("/")
    path = unquote(path.split("?")[0])
    if ".s3." in host or host.endswith(".s3.amazonaws.com"):
        return _s3_object(host.split(".s3")[0], path)
    bucket, _, key = path.partition("/")
    return _s3_object(bucket, key)


RDS_INSTANCE_ACTIONS = {"DescribeDBLogFiles", "DownloadDBLogFilePortion", "DownloadCompleteDBLogFile"}


# RDS's REST endpoint that streams a whole log file (no form body, no Action): GET
# /v19/downloadCompleteLogFile/<instance>/<file> (or /v13/), IAM action DownloadCompleteDBLogFile.
RDS_COMPLETE_PREFIXES = ("/v19/downloadCompleteLogFile/", "/v13/downloadCompleteLogFile/")


def rds(call):
    path = call.get("path", "")
    prefix = next((p for p in RDS_COMPLETE_PREFIXES if path.startswith(p)), None)
    if prefix is not None:
        instance = unquote(path[len(prefix):].split("/", 1)[0])
        if call["method"].upper() != "GET" or not instance:
            raise Unmapped(f"rds {call['method']} {path}")
        return [Authorization("rds:DownloadCompleteDBLogFile", _arn("rds", f"db:{instance}"))]
    op = operation(call)
    params = call.get("params") or {}
    instance = params.get("DBInstanceIdentifier")
    if op in RDS_INSTANCE_ACTIONS or (op == "DescribeDBInstances" and instance):
        if not instance:
            raise Unmapped(f"rds:{op} without DBInstanceIdentifier")
        return [Authorization(f"rds:{op}", _arn("rds", f"db:{instance}"))]
    cluster = params.get("DBClusterIdentifier")
    if op == "DescribeDBClusters" and cluster:
        return [Authorization("rds:DescribeDBClusters", _arn("rds", f"cluster:{cluster}"))]
    return [Authorization(f"rds:{op}", "*")]


def sns(call):
    op = operation(call)
    params = call.get("params") or {}
    return [Authorization(f"sns:{op}", params.get("TopicArn") or params.get("Name") and _arn("sns", params["Name"]) or "*")]


def sqs(call):
    op = operation(call)
    params = call.get("params") or {}
    url = params.get("QueueUrl")
    name = url.rstrip("/").rsplit("/", 1)[-1] if url else params.get("QueueName")
    return [Authorization(f"sqs:{op}", _arn("sqs", name) if name else "*")]


# ---- Lambda (REST) ----


INVOKE_PREFIX = "/2015-03-31/functions/"


def invoked_name(call):
    """The function an Invoke request names (by name or URL-encoded ARN, a qualifier dropped), or
    None when the request is no Invoke."""
    path = call.get("path", "")
    if call["method"].upper() != "POST" or not path.startswith(INVOKE_PREFIX) or not path.endswith("/invocations"):
        return None
    name = unquote(path[len(INVOKE_PREFIX) : -len("/invocations")])
    return name.split(":function:")[-1].split(":")[0]


def lambda_(call):
    name = invoked_name(call)
    if name is None:
        raise Unmapped(f"Lambda {call['method']} {call.get('path', '')}")
    return [Authorization("lambda:InvokeFunction", _arn("lambda", f"function:{name}"))]


def service_of(call):
    """The service a call is for: its SigV4 scope, else what its path or target says."""
    if call.get("service"):
        return call["service"]
    path = call.get("path", "")
    if path.startswith(INVOKE_PREFIX):
        return "lambda"
    target = call.get("target") or ""
    if target.startswith("AWSStepFunctions."):
        return "states"
    if target.startswith("CodePipeline_"):
        return "codepipeline"
    return None


MAPPERS = {
    "s3": s3,
    "states": states,
    "codepipeline": codepipeline,
    "cloudformation": cloudformation,
    "rds": rds,
    "sns": sns,
    "sqs": sqs,
    "lambda": lambda_,
}


def authorizations(call, stacks_of_change_sets=None):
    """Every authorization the recorded request needs; raises Unmapped for one it cannot read."""
    service = service_of(call)
    mapper = MAPPERS.get(service)
    if mapper is None:
        raise Unmapped(f"service {service!r}: {call.get('method')} {call.get('path')} {operation(call)}")
    if service == "cloudformation":
        return mapper(call, stacks_of_change_sets)
    return mapper(call)
