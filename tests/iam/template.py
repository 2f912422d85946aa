"""template.yaml as IAM sees it: translated by the AWS SAM translator, each role's policy
statements resolved for given parameters and physical names, each statement traced back to the
template text it came from.

The translation is offline (no AWS call): CodeUri and DefinitionUri become `s3://` URIs, and
managed policy names map to their ARNs without asking IAM (SAM's policy templates, such as
LambdaInvokePolicy, are expanded by the translator itself).
"""

import copy
import os
import re

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
STACK_NAME = "rust-pipeline-lambdas"

NO_VALUE = object()


class ManagedPolicies(dict):
    """Managed policy names to ARNs, without asking IAM (the translator asks for the ones it
    references)."""

    def __missing__(self, name):
        prefix = "service-role/" if name.startswith("AWSLambda") else ""
        return f"arn:aws:iam::aws:policy/{prefix}{name}"


def translate(path):
    """The template after the SAM transform (plain CloudFormation, intrinsics unresolved)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    import logging

    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    from samtranslator.yaml_helper import yaml_parse

    with open(path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    original = copy.deepcopy(template)
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://iam-check/code.zip"
        if resource.get("Type") == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["DefinitionUri"] = "s3://iam-check/definition.json"
    translated = Translator(ManagedPolicies(), Parser()).translate(
        template, parameter_values={"AWS::Region": REGION}
    )
    return original, translated


class Names:
    """Physical names and attributes of the template's resources, as a deployment (or the
    end-to-end tests) would have them: `names[logical]` is the resource's name; anything not
    given is named after its logical id."""

    def __init__(self, resources, names=None):
        self.resources = resources
        self.names = dict(names or {})

    def name(self, logical):
        return self.names.get(logical, logical)

    def ref(self, logical):
        kind = self.resources[logical]["Type"]
        name = self.name(logical)
        if kind in ("AWS::StepFunctions::StateMachine", "AWS::SNS::Topic", "AWS::IAM::ManagedPolicy"):
            return name if name.startswith("arn:") else self.arn(logical)
        return name

    def arn(self, logical):
        kind = self.resources[logical]["Type"]
        name = self.name(logical)
        if name.startswith("arn:"):
            return name
        arns = {
            "AWS::Lambda::Function": f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}",
            "AWS::StepFunctions::StateMachine": f"arn:{PARTITION}:states:{REGION}:{ACCOUNT}:stateMachine:{name}",
            "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{name}",
            "AWS::SNS::Topic": f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{name}",
            "AWS::SQS::Queue": f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{name}",
            "AWS::IAM::Role": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}",
            "AWS::IAM::ManagedPolicy": f"arn:{PARTITION}:iam::{ACCOUNT}:policy/{name}",
            "AWS::Logs::LogGroup": f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
        }
        if kind not in arns:
            raise KeyError(f"no ARN form for {logical} ({kind})")
        return arns[kind]

    def get_att(self, logical, attribute):
        if attribute == "Arn":
            return self.arn(logical)
        if attribute in ("Name", "TopicName", "QueueName"):
            name = self.name(logical)
            return name.rsplit(":", 1)[-1] if name.startswith("arn:") else name
        raise KeyError(f"attribute {logical}.{attribute} is not modelled")


class Resolver:
    """Resolves the intrinsic functions of a translated template for one set of parameter values
    and names."""

    def __init__(self, template, parameters, names):
        self.template = template
        self.names = names
        self.parameters = {}
        for key, spec in template.get("Parameters", {}).items():
            if key in parameters:
                self.parameters[key] = parameters[key]
            elif "Default" in spec:
                self.parameters[key] = str(spec["Default"])
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": PARTITION,
            "AWS::StackName": STACK_NAME,
            "AWS::URLSuffix": "amazonaws.com",
        }
        self._conditions = {}

    def condition(self, name):
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self._conditions[name]

    def ref(self, target):
        if target == "AWS::NoValue":
            return NO_VALUE
        if target in self.pseudo:
            return self.pseudo[target]
        if target in self.parameters:
            return self.parameters[target]
        if target in self.template.get("Parameters", {}):
            raise KeyError(f"parameter {target} has no value and no default")
        return self.names.ref(target)

    def sub(self, text, variables=None):
        variables = variables or {}

        def one(match):
            expr = match.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                return str(self.resolve(variables[expr]))
            if "." in expr and expr.split(".", 1)[0] in self.template.get("Resources", {}):
                logical, attribute = expr.split(".", 1)
                return self.names.get_att(logical, attribute)
            return str(self.ref(expr))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, node):
        if isinstance(node, list):
            items = [self.resolve(n) for n in node]
            return [i for i in items if i is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            handler = self._functions().get(key)
            if handler:
                return handler(value)
        out = {}
        for key, value in node.items():
            resolved = self.resolve(value)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def _functions(self):
        return {
            "Ref": lambda v: self.ref(v),
            "Fn::Sub": lambda v: self.sub(v) if isinstance(v, str) else self.sub(v[0], v[1]),
            "Fn::GetAtt": lambda v: self.names.get_att(*(v.split(".", 1) if isinstance(v, str) else v)),
            "Fn::If": lambda v: self.resolve(v[1] if self.condition(v[0]) else v[2]),
            "Fn::Join": lambda v: v[0].join(str(x) for x in self.resolve(v[1])),
            "Fn::Select": lambda v: self.resolve(v[1])[int(self.resolve(v[0]))],
            "Fn::Split": lambda v: self.resolve(v[1]).split(v[0]),
            "Fn::Equals": lambda v: self.resolve(v[0]) == self.resolve(v[1]),
            "Fn::And": lambda v: all(self.resolve(x) for x in v),
            "Fn::Or": lambda v: any(self.resolve(x) for x in v),
            "Fn::Not": lambda v: not self.resolve(v[0]),
            "Condition": lambda v: self.condition(v),
        }


def role_statements(translated, resolver, role_logical):
    """The role's policy statements, resolved: (label, statement) pairs. Labels name the role's
    inline policy and the statement's Sid (or its index); managed policies are returned apart,
    as ARNs."""
    props = translated["Resources"][role_logical]["Properties"]
    statements = []
    for policy in resolver.resolve(props.get("Policies", [])):
        document = policy["PolicyDocument"]
        for index, statement in enumerate(policy_statements(document)):
            label = statement.get("Sid") or f"#{index}"
            statements.append((f"{policy['PolicyName']}/{label}", statement))
    managed = [m for m in resolver.resolve(props.get("ManagedPolicyArns", [])) if m]
    return statements, managed


def policy_statements(document):
    """A policy document's statements: a list, a single statement, or none."""
    statements = document.get("Statement") or []
    return statements if isinstance(statements, list) else [statements]


def roles_of(translated):
    """Which role each function and state machine runs as: {resource logical id: role logical id}."""
    out = {}
    for logical, resource in translated["Resources"].items():
        role = resource.get("Properties", {}).get("Role") or resource.get("Properties", {}).get("RoleArn")
        if isinstance(role, dict) and "Fn::GetAtt" in role:
            target = role["Fn::GetAtt"]
            out[logical] = target[0] if isinstance(target, list) else target.split(".")[0]
    return out


def bucket_policies(translated, resolver):
    """Each bucket policy's statements, keyed by the bucket's name: (label, statement) pairs."""
    out = {}
    for logical, resource in translated["Resources"].items():
        if resource.get("Type") != "AWS::S3::BucketPolicy":
            continue
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        props = resolver.resolve(resource["Properties"])
        statements = props["PolicyDocument"].get("Statement", [])
        out[props["Bucket"]] = [(f"{logical}/{s.get('Sid', i)}", s) for i, s in enumerate(statements)]
    return out
