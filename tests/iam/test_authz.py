"""Unit tests of the request-to-authorization mapping and of the reference it is checked against."""

import unittest

import authz
from iamdata import Reference, arn_fits

ACCOUNT = "123456789012"


def call(service, **fields):
    base = {"service": service, "method": "POST", "path": "/", "query": {}, "target": None, "params": None, "headers": {}, "status": 200}
    base.update(fields)
    return base


def pairs(c, stacks=None):
    return [(a.action, a.resource) for a in authz.authorizations(c, stacks)]


class S3(unittest.TestCase):
    def test_object_and_bucket_operations(self):
        cases = [
            (dict(method="GET", path="/b/dir/k.json"), [("s3:GetObject", "arn:aws:s3:::b/dir/k.json")]),
            (dict(method="HEAD", path="/b/k"), [("s3:GetObject", "arn:aws:s3:::b/k")]),
            (dict(method="PUT", path="/b/k", query={"x-id": "PutObject"}), [("s3:PutObject", "arn:aws:s3:::b/k")]),
            (dict(method="POST", path="/b/k", query={"uploads": ""}), [("s3:PutObject", "arn:aws:s3:::b/k")]),
            (dict(method="PUT", path="/b/k", query={"partNumber": "1", "uploadId": "u"}), [("s3:PutObject", "arn:aws:s3:::b/k")]),
            (dict(method="DELETE", path="/b/k", query={"uploadId": "u"}), [("s3:AbortMultipartUpload", "arn:aws:s3:::b/k")]),
            (dict(method="DELETE", path="/b/k"), [("s3:DeleteObject", "arn:aws:s3:::b/k")]),
            (dict(method="GET", path="/b/", query={"list-type": "2", "prefix": "p/"}), [("s3:ListBucket", "arn:aws:s3:::b")]),
            (dict(method="GET", path="/b/a%20b%2Fc"), [("s3:GetObject", "arn:aws:s3:::b/a b/c")]),
        ]
        for fields, expected in cases:
            self.assertEqual(pairs(call("s3", **fields)), expected, fields)

    def test_a_copy_reads_its_source_and_a_404_needs_list_bucket(self):
        copy = call("s3", method="PUT", path="/b/dst", headers={"x-amz-copy-source": "/src/a%2Fb.txt"})
        self.assertEqual(pairs(copy), [("s3:PutObject", "arn:aws:s3:::b/dst"), ("s3:GetObject", "arn:aws:s3:::src/a/b.txt")])
        missing = authz.authorizations(call("s3", method="GET", path="/b/k", status=404))
        self.assertEqual([a.action for a in missing], ["s3:GetObject", "s3:ListBucket"])

    def test_unknown_shapes_are_refused(self):
        with self.assertRaises(authz.Unmapped):
            authz.authorizations(call("s3", method="PATCH", path="/b/k"))
        with self.assertRaises(authz.Unmapped):
            authz.authorizations(call("kinesis", target="Kinesis_20131202.PutRecord"))


class RdsRest(unittest.TestCase):
    def test_a_whole_log_file_download_is_download_complete_db_log_file_on_the_instance(self):
        db = f"arn:aws:rds:us-east-1:{ACCOUNT}:db:pg-main"
        for version in ("v19", "v13"):
            c = call("rds", method="GET", path=f"/{version}/downloadCompleteLogFile/pg-main/error/postgresql.log.2026-11-22-00")
            self.assertEqual(pairs(c), [("rds:DownloadCompleteDBLogFile", db)])
        with self.assertRaises(authz.Unmapped):
            authz.authorizations(call("rds", method="POST", path="/v19/downloadCompleteLogFile/pg-main/x"))
        form = call("rds", params={"Action": "DownloadDBLogFilePortion", "DBInstanceIdentifier": "pg-main"})
        self.assertEqual(pairs(form), [("rds:DownloadDBLogFilePortion", db)])


class JsonAndQuery(unittest.TestCase):
    def test_states(self):
        sm = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:deploy"
        ex = f"arn:aws:states:us-east-1:{ACCOUNT}:execution:deploy:e1"
        self.assertEqual(pairs(call("states", target="AWSStepFunctions.StartSyncExecution", params={"stateMachineArn": sm})), [("states:StartSyncExecution", sm)])
        self.assertEqual(pairs(call("states", target="AWSStepFunctions.GetExecutionHistory", params={"executionArn": ex})), [("states:GetExecutionHistory", ex)])
        self.assertEqual(pairs(call("states", target="AWSStepFunctions.SendTaskSuccess", params={})), [("states:SendTaskSuccess", "*")])

    def test_change_set_actions_authorize_on_the_stack_with_pass_role_and_template_url(self):
        create = call("cloudformation", params={
            "Action": "CreateChangeSet", "StackName": "e2e-app", "ChangeSetName": "deploy-1",
            "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/cfn", "TemplateURL": "https://stage.s3.us-east-1.amazonaws.com/templates/t.yaml",
        })
        got = authz.authorizations(create)
        self.assertEqual([(a.action, a.resource) for a in got], [
            ("cloudformation:CreateChangeSet", f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/e2e-app/00000000-0000-0000-0000-000000000000"),
            ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/cfn"),
            ("s3:GetObject", "arn:aws:s3:::stage/templates/t.yaml"),
        ])
        self.assertEqual(got[0].context["cloudformation:ChangeSetName"], "deploy-1")
        self.assertEqual(got[1].context["iam:PassedToService"], "cloudformation.amazonaws.com")
        cs = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:changeSet/deploy-1/abc"
        stack = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/e2e-app/x"
        execute = call("cloudformation", params={"Action": "ExecuteChangeSet", "ChangeSetName": cs})
        self.assertEqual(pairs(execute, {"deploy-1": stack}), [("cloudformation:ExecuteChangeSet", stack)])
        with self.assertRaises(authz.Unmapped):
            authz.authorizations(execute, {})

    def test_rds_lists_on_star_and_reads_an_instance(self):
        self.assertEqual(pairs(call("rds", params={"Action": "DescribeDBInstances"})), [("rds:DescribeDBInstances", "*")])
        self.assertEqual(
            pairs(call("rds", params={"Action": "DownloadDBLogFilePortion", "DBInstanceIdentifier": "pg-1"})),
            [("rds:DownloadDBLogFilePortion", f"arn:aws:rds:us-east-1:{ACCOUNT}:db:pg-1")],
        )

    def test_lambda_invoke_by_name_or_encoded_arn(self):
        for path in ["/2015-03-31/functions/deploy-prepare/invocations",
                     "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Adeploy-prepare/invocations"]:
            self.assertEqual(pairs(call("lambda", path=path)), [("lambda:InvokeFunction", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:deploy-prepare")])


class TheReference(unittest.TestCase):
    def test_arn_formats(self):
        self.assertTrue(arn_fits("arn:${Partition}:s3:::${BucketName}/${ObjectName}", "arn:aws:s3:::b/a/b/c"))
        self.assertFalse(arn_fits("arn:${Partition}:s3:::${BucketName}", "arn:aws:s3:::b:c"))
        self.assertTrue(arn_fits("arn:${Partition}:cloudformation:${Region}:${Account}:stack/${StackName}/${Id}",
                                 "arn:aws:cloudformation:us-east-1:1:stack/s/id"))
        self.assertFalse(arn_fits("arn:${Partition}:cloudformation:${Region}:${Account}:stack/${StackName}/${Id}",
                                  "arn:aws:cloudformation:us-east-1:1:changeSet/c/id"))

    def test_resource_types_of_actions(self):
        ref = Reference()
        self.assertIsNone(ref.action("states:NoSuchAction"))
        self.assertTrue(ref.fits("codepipeline:PutJobSuccessResult", "*"))
        self.assertFalse(ref.fits("states:StartExecution", "*"), "a required resource type")
        self.assertTrue(ref.fits("rds:DescribeDBInstances", "*"), "an optional resource type")
        self.assertTrue(ref.fits("rds:DownloadCompleteDBLogFile", "arn:aws:rds:us-east-1:1:db:pg-main"))
        self.assertFalse(ref.fits("rds:DownloadCompleteDBLogFile", "*"), "on the instance only")
        # Change-set actions authorize on the stack, never the change set.
        cs = "arn:aws:cloudformation:us-east-1:1:changeSet/deploy-1/abc"
        self.assertFalse(ref.fits("cloudformation:ExecuteChangeSet", cs))
        self.assertTrue(ref.fits("cloudformation:ExecuteChangeSet", "arn:aws:cloudformation:us-east-1:1:stack/s/id"))


if __name__ == "__main__":
    unittest.main()
