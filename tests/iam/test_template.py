"""Unit tests of the template side: intrinsic functions, names, and the `not exercised` comments
found in the text."""

import os
import tempfile
import textwrap
import unittest

import sources
import template as tpl

RESOURCES = {
    "Bucket": {"Type": "AWS::S3::Bucket"},
    "Machine": {"Type": "AWS::StepFunctions::StateMachine"},
    "Fn": {"Type": "AWS::Lambda::Function"},
    "Topic": {"Type": "AWS::SNS::Topic"},
}
TEMPLATE = {
    "Parameters": {"Prefix": {"Type": "String"}, "Topic": {"Type": "String", "Default": ""}, "Kind": {"Type": "String", "Default": "STANDARD"}},
    "Conditions": {
        "MakeTopic": {"Fn::Equals": [{"Ref": "Topic"}, ""]},
        "Express": {"Fn::And": [{"Fn::Not": [{"Condition": "MakeTopic"}]}, {"Fn::Equals": [{"Ref": "Kind"}, "EXPRESS"]}]},
    },
    "Resources": RESOURCES,
}


class Intrinsics(unittest.TestCase):
    def resolver(self, params, names=None):
        return tpl.Resolver(TEMPLATE, params, tpl.Names(RESOURCES, names or {"Bucket": "b", "Machine": "m", "Fn": "f"}))

    def test_sub_ref_getatt(self):
        r = self.resolver({"Prefix": "e2e-"})
        self.assertEqual(r.resolve({"Fn::Sub": "${Bucket.Arn}/${Prefix}*"}), "arn:aws:s3:::b/e2e-*")
        self.assertEqual(r.resolve({"Fn::Sub": "arn:${AWS::Partition}:x:${AWS::Region}:${AWS::AccountId}:${!Literal}"}), "arn:aws:x:us-east-1:123456789012:${Literal}")
        self.assertEqual(r.resolve({"Ref": "Machine"}), "arn:aws:states:us-east-1:123456789012:stateMachine:m")
        self.assertEqual(r.resolve({"Ref": "Fn"}), "f")
        self.assertEqual(r.resolve({"Fn::GetAtt": ["Fn", "Arn"]}), "arn:aws:lambda:us-east-1:123456789012:function:f")
        self.assertEqual(r.resolve({"Fn::GetAtt": "Machine.Name"}), "m")
        self.assertEqual(r.resolve({"Fn::Sub": ["${X}-y", {"X": {"Ref": "Prefix"}}]}), "e2e--y")

    def test_conditions_if_and_no_value(self):
        made = self.resolver({"Prefix": "p"})
        given = self.resolver({"Prefix": "p", "Topic": "arn:aws:sns:us-east-1:1:t", "Kind": "EXPRESS"})
        node = {"Fn::If": ["MakeTopic", {"Ref": "Topic"}, "given"]}
        self.assertEqual(made.resolve(node), "")
        self.assertEqual(given.resolve(node), "given")
        self.assertTrue(given.condition("Express"))
        self.assertFalse(made.condition("Express"))
        listed = [{"Fn::If": ["Express", "a", {"Ref": "AWS::NoValue"}]}, "b"]
        self.assertEqual(made.resolve(listed), ["b"])
        self.assertEqual(given.resolve(listed), ["a", "b"])
        self.assertEqual(made.resolve({"k": {"Fn::If": ["Express", 1, {"Ref": "AWS::NoValue"}]}, "j": 2}), {"j": 2})

    def test_join_select_split(self):
        r = self.resolver({"Prefix": "arn:aws:states:eu-west-1:2:stateMachine:x"})
        node = {"Fn::Join": [":", ["arn", {"Fn::Select": [3, {"Fn::Split": [":", {"Ref": "Prefix"}]}]}, "*"]]}
        self.assertEqual(r.resolve(node), "arn:eu-west-1:*")

    def test_a_parameter_without_value_is_named(self):
        with self.assertRaises(KeyError) as e:
            self.resolver({}).resolve({"Ref": "Prefix"})
        self.assertIn("Prefix", str(e.exception))


class Comments(unittest.TestCase):
    TEXT = textwrap.dedent("""\
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              Policies:
                - LambdaInvokePolicy: { FunctionName: x }
                # not exercised: the second policy item,
                # on two lines.
                - Statement:
                    - Sid: Used
                      Effect: Allow
                      Action: s3:GetObject
                    - Sid: Kept
                      Effect: Allow
                      # not exercised: only on a failure path.
                      Action: s3:DeleteObject
              Events:
                # not exercised: the schedule's role.
                Nightly:
                  Type: Schedule
          Other:
            Type: AWS::S3::Bucket
        """)

    def test_markers_are_found_per_statement(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(self.TEXT)
        try:
            src = sources.Source(f.name, {})
            self.assertIsNone(sources.Source.reason(src.statement_lines("Fn", sid="Used")))
            self.assertEqual(sources.Source.reason(src.statement_lines("Fn", sid="Kept")), "only on a failure path.")
            self.assertIsNone(sources.Source.reason(src.statement_lines("Fn", policy_index=0)))
            self.assertEqual(sources.Source.reason(src.statement_lines("Fn", policy_index=1)), "the second policy item, on two lines.")
            self.assertEqual(sources.Source.reason(src.events_lines("Fn")), "the schedule's role.")
            self.assertEqual(src.statement_lines("Other", sid="Used"), [])
        finally:
            os.unlink(f.name)


if __name__ == "__main__":
    unittest.main()
