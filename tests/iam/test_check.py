"""The check end to end on a tiny template and hand-made recordings: a denied request fails, an
unused grant needs a comment naming it, a mutation kills only through requests it allowed."""

import contextlib
import io
import json
import os
import tempfile
import textwrap
import unittest

import check
from iamdata import Reference

TEMPLATE = textwrap.dedent("""\
    AWSTemplateFormatVersion: "2010-09-09"
    Transform: AWS::Serverless-2016-10-31
    Parameters:
      Bucket:
        Type: String
    Resources:
      Shipper:
        Type: AWS::Serverless::Function
        Metadata:
          BuildProperties: { Binary: shipper }
        Properties:
          CodeUri: .
          Handler: bootstrap
          Runtime: provided.al2023
          Environment:
            Variables:
              LOG_BUCKET: !Ref Bucket
          Policies:
            - Statement:
                - Sid: ReadObjects
                  Effect: Allow
                  Action: s3:GetObject
                  Resource: !Sub arn:${AWS::Partition}:s3:::${Bucket}/logs/*
                - Sid: WriteObjects
                  Effect: Allow
                  # not exercised: s3:DeleteObject: only when a write is rolled back.
                  Action: [s3:PutObject, s3:DeleteObject%s]
                  Resource: !Sub arn:${AWS::Partition}:s3:::${Bucket}/logs/*
    """)


EDGE = textwrap.dedent("""\
    Resources:
      EdgeRole:
        Type: AWS::IAM::Role
        Properties:
          AssumeRolePolicyDocument: {}
          Policies:
            - PolicyName: logs
              PolicyDocument:
                Statement:
                  # not exercised: logs:PutLogEvents: the Lambda service writes the logs.
                  - Sid: WriteLogs
                    Effect: Allow
                    Action: logs:PutLogEvents
                    Resource: "*"
    """)


def stack_dir(root, calls):
    d = os.path.join(root, "stack")
    os.makedirs(d)
    with open(os.path.join(d, "callers.jsonl"), "w") as f:
        f.write(json.dumps({"access_key_id": "AK1", "caller": "shipper", "binary": "shipper", "env": {"LOG_BUCKET": "archive"}}) + "\n")
    with open(os.path.join(d, "calls.jsonl"), "w") as f:
        for method, key in calls:
            f.write(json.dumps({"caller": "shipper", "access_key_id": "AK1", "service": "s3", "method": method,
                                "path": f"/archive/{key}", "query": {}, "target": None, "params": None, "headers": {}, "status": 200}) + "\n")
    return root


class EndToEnd(unittest.TestCase):
    def run_check(self, calls, extra_action="", mutations=True):
        with tempfile.TemporaryDirectory() as root:
            path = os.path.join(root, "template.yaml")
            with open(path, "w") as f:
                f.write(TEMPLATE % extra_action)
            edge = os.path.join(root, "edge", "template.yaml")
            os.makedirs(os.path.join(root, "edge", "handler"))
            with open(edge, "w") as f:
                f.write(EDGE)
            stack_dir(os.path.join(root, "calls"), calls)
            args = ["--calls", os.path.join(root, "calls"), "--template", path, "--edge-template", edge]
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                return check.main(args + (["--mutations"] if mutations else []))

    def test_every_request_allowed_and_every_grant_explained_passes(self):
        self.assertEqual(self.run_check([("GET", "logs/a"), ("PUT", "logs/b")]), 0)

    def test_a_denied_request_fails(self):
        self.assertEqual(self.run_check([("GET", "logs/a"), ("PUT", "logs/b"), ("GET", "secrets/x")]), 1)

    def test_an_unused_grant_without_its_comment_fails(self):
        # ReadObjects is never used, and no comment names s3:GetObject.
        self.assertEqual(self.run_check([("PUT", "logs/b")]), 1)
        # An action added to a commented statement is not excused by the comment.
        self.assertEqual(self.run_check([("GET", "logs/a"), ("PUT", "logs/b")], extra_action=", s3:PutObjectTagging"), 1)

    def test_a_redundant_statement_survives_its_mutation_and_fails(self):
        # With s3:GetObject also in WriteObjects, removing ReadObjects denies nothing.
        self.assertEqual(self.run_check([("GET", "logs/a"), ("PUT", "logs/b")], extra_action=", s3:GetObject"), 1)
        self.assertEqual(self.run_check([("GET", "logs/a"), ("PUT", "logs/b")], extra_action=", s3:GetObject", mutations=False), 0)

    def test_the_x_ray_policy_sam_adds_for_tracing_needs_no_comment(self):
        # SAM adds AWSXrayWriteOnlyAccess to a traced function's role; only Lambda's X-Ray daemon
        # uses it, so no request of the function can exercise it.
        global TEMPLATE
        plain = TEMPLATE
        TEMPLATE = plain.replace("      Runtime: provided.al2023\n", "      Runtime: provided.al2023\n      Tracing: Active\n")
        try:
            self.assertNotEqual(TEMPLATE, plain)
            self.assertEqual(self.run_check([("GET", "logs/a"), ("PUT", "logs/b")]), 0)
        finally:
            TEMPLATE = plain
        self.assertIn("arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess", check.SERVICE_MANAGED)


TWINS = textwrap.dedent("""\
    AWSTemplateFormatVersion: "2010-09-09"
    Transform: AWS::Serverless-2016-10-31
    Globals:
      Function:
        Environment:
          Variables:
            SHARED: !Ref AWS::StackName
    Resources:
      Trigger:
        Type: AWS::Serverless::Function
        Metadata:
          BuildProperties: { Binary: trigger }
        Properties:
          CodeUri: .
          Handler: bootstrap
          Runtime: provided.al2023
          Environment:
            Variables:
              TARGET: !Ref AWS::StackName
      TriggerFailure:
        Type: AWS::Serverless::Function
        Metadata:
          BuildProperties: { Binary: trigger }
        Properties:
          CodeUri: .
          Handler: bootstrap
          Runtime: provided.al2023
          Environment:
            Variables:
              PIPELINE_TRIGGER_MODE: failure-destination
              TARGET: !Ref AWS::StackName
    """)


class Callers(unittest.TestCase):
    def test_functions_sharing_a_binary_are_told_apart_by_their_literal_variables(self):
        with tempfile.TemporaryDirectory() as root:
            path = os.path.join(root, "template.yaml")
            with open(path, "w") as f:
                f.write(TWINS)
            c = check.Check(path, Reference())
        self.assertEqual(c.function_for({"binary": "trigger", "env": {"TARGET": "x"}}), "Trigger")
        failure = {"binary": "trigger", "env": {"TARGET": "x", "PIPELINE_TRIGGER_MODE": "failure-destination"}}
        self.assertEqual(c.function_for(failure), "TriggerFailure")
        self.assertIsNone(c.function_for({"binary": "other", "env": {}}))
        # Globals' variables count as the function's own (no "never sets" note for them).
        self.assertEqual(set(c.variables("Trigger")), {"SHARED", "TARGET"})


if __name__ == "__main__":
    Reference()  # fails early when node_modules is missing
    unittest.main()
