"""Unit tests of the allow-only evaluator: every rule it implements, and refusal of what it does
not."""

import unittest

from policy import Unsupported, conditions_hold, evaluate, nearest_statements, wildcard_match

ROLE = "arn:aws:iam::123456789012:role/DeployApproveFunctionRole"
OTHER = "arn:aws:iam::123456789012:role/DeployPrepareFunctionRole"


def allow(action, resource, condition=None, sid="S"):
    s = {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        s["Condition"] = condition
    return (sid, s)


class Wildcards(unittest.TestCase):
    def test_star_and_question_mark(self):
        cases = [
            ("arn:aws:s3:::b/reviews/*", "arn:aws:s3:::b/reviews/x/y.json", True),
            ("arn:aws:s3:::b/reviews/*", "arn:aws:s3:::b/approvals/x", False),
            ("arn:aws:s3:::b/?", "arn:aws:s3:::b/k", True),
            ("arn:aws:s3:::b/?", "arn:aws:s3:::b/kk", False),
            ("arn:aws:s3:::b", "arn:aws:s3:::b/k", False),
            ("stack/prod-*/*", "stack/prod-app/abc-123", True),
            ("a.b", "aXb", False),
        ]
        for pattern, value, expected in cases:
            self.assertEqual(wildcard_match(pattern, value), expected, (pattern, value))

    def test_resources_are_case_sensitive_actions_are_not(self):
        statements = [allow("S3:getobject", "arn:aws:s3:::B/*")]
        self.assertTrue(evaluate(statements, "s3:GetObject", "arn:aws:s3:::B/k", {}).allowed)
        self.assertFalse(evaluate(statements, "s3:GetObject", "arn:aws:s3:::b/k", {}).allowed)


class Statements(unittest.TestCase):
    def test_no_matching_allow_is_an_implicit_deny(self):
        statements = [allow("s3:GetObject", "arn:aws:s3:::b/*")]
        d = evaluate(statements, "s3:PutObject", "arn:aws:s3:::b/k", {})
        self.assertFalse(d.allowed)
        self.assertEqual(d.allowing, [])

    def test_lists_of_actions_and_resources(self):
        statements = [allow(["s3:GetObject", "s3:PutObject"], ["arn:aws:s3:::a/*", "arn:aws:s3:::b/*"])]
        for action in ["s3:GetObject", "s3:PutObject"]:
            for res in ["arn:aws:s3:::a/k", "arn:aws:s3:::b/k"]:
                self.assertTrue(evaluate(statements, action, res, {}).allowed)
        self.assertFalse(evaluate(statements, "s3:DeleteObject", "arn:aws:s3:::a/k", {}).allowed)

    def test_explicit_deny_wins(self):
        statements = [
            allow("s3:*", "*", sid="All"),
            ("NoDelete", {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}),
        ]
        d = evaluate(statements, "s3:DeleteObject", "arn:aws:s3:::b/k", {})
        self.assertFalse(d.allowed)
        self.assertEqual(d.denying, ["NoDelete"])
        self.assertTrue(evaluate(statements, "s3:GetObject", "arn:aws:s3:::b/k", {}).allowed)

    def test_not_action_and_not_resource(self):
        statements = [("S", {"Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::secret/*"})]
        self.assertTrue(evaluate(statements, "s3:GetObject", "arn:aws:s3:::b/k", {}).allowed)
        self.assertFalse(evaluate(statements, "iam:PassRole", "arn:aws:s3:::b/k", {}).allowed)
        self.assertFalse(evaluate(statements, "s3:GetObject", "arn:aws:s3:::secret/k", {}).allowed)

    def test_a_resource_policy_deny_by_principal(self):
        bucket_policy = [
            (
                "OnlyTheApproveFunctionReadsTokens",
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::r/approvals/*",
                    "Condition": {"ArnNotEquals": {"aws:PrincipalArn": ROLE}},
                },
            )
        ]
        identity = [allow("s3:GetObject", "arn:aws:s3:::r/*")]
        ok = evaluate(identity, "s3:GetObject", "arn:aws:s3:::r/approvals/t.json", {"aws:PrincipalArn": ROLE}, bucket_policy)
        self.assertTrue(ok.allowed)
        refused = evaluate(identity, "s3:GetObject", "arn:aws:s3:::r/approvals/t.json", {"aws:PrincipalArn": OTHER}, bucket_policy)
        self.assertFalse(refused.allowed)
        self.assertEqual(refused.denying, ["OnlyTheApproveFunctionReadsTokens"])
        # A resource policy's Allow does not stand in for a missing identity Allow here.
        self.assertFalse(evaluate([], "s3:GetObject", "arn:aws:s3:::r/x", {"aws:PrincipalArn": ROLE}, [
            ("A", {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"})
        ]).allowed)

    def test_nearest_statements_name_the_expected_grant(self):
        statements = [allow("s3:GetObject", "arn:aws:s3:::b/templates/*", sid="ReadTemplates"), allow("sns:Publish", "*", sid="Publish")]
        self.assertEqual(nearest_statements(statements, "s3:GetObject"), ["ReadTemplates"])
        self.assertEqual(nearest_statements(statements, "s3:PutObject"), [])

    def test_not_principal_is_refused(self):
        with self.assertRaises(Unsupported):
            evaluate([], "s3:GetObject", "r", {}, [("N", {"Effect": "Deny", "NotPrincipal": {"AWS": ROLE}, "Action": "*", "Resource": "*"})])


class Conditions(unittest.TestCase):
    def test_string_and_arn_operators(self):
        ctx = {"iam:PassedToService": "cloudformation.amazonaws.com", "aws:PrincipalArn": ROLE}
        cases = [
            ({"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}, True),
            ({"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}, False),
            ({"StringEquals": {"iam:PassedToService": ["lambda.amazonaws.com", "cloudformation.amazonaws.com"]}}, True),
            ({"StringNotEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}, True),
            ({"StringLike": {"iam:PassedToService": "cloudformation.*"}}, True),
            ({"StringNotLike": {"iam:PassedToService": "cloudformation.*"}}, False),
            ({"ArnEquals": {"aws:PrincipalArn": ROLE}}, True),
            ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/Deploy*"}}, True),
            ({"ArnNotEquals": {"aws:PrincipalArn": ROLE}}, False),
            ({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/Other*"}}, True),
            # Every operator and key must hold.
            ({"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}, "ArnEquals": {"aws:PrincipalArn": OTHER}}, False),
        ]
        for condition, expected in cases:
            self.assertEqual(conditions_hold(condition, ctx), expected, condition)

    def test_missing_keys(self):
        self.assertFalse(conditions_hold({"StringEquals": {"k": "v"}}, {}))
        self.assertTrue(conditions_hold({"StringNotEquals": {"k": "v"}}, {}))
        self.assertTrue(conditions_hold({"ArnNotEquals": {"aws:PrincipalArn": ROLE}}, {}))
        self.assertTrue(conditions_hold({"StringEqualsIfExists": {"k": "v"}}, {}))
        self.assertFalse(conditions_hold({"StringEqualsIfExists": {"k": "v"}}, {"k": "w"}))
        self.assertTrue(conditions_hold({"Null": {"k": "true"}}, {}))
        self.assertFalse(conditions_hold({"Null": {"k": "true"}}, {"k": "v"}))

    def test_bool(self):
        self.assertTrue(conditions_hold({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "false"}))
        self.assertFalse(conditions_hold({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "true"}))
        self.assertTrue(conditions_hold({"Bool": {"lambda:InvokedViaFunctionUrl": True}}, {"lambda:InvokedViaFunctionUrl": "true"}))

    def test_unimplemented_operators_are_refused(self):
        for condition in [{"ForAnyValue:StringEquals": {"k": "v"}}, {"NumericLessThan": {"k": "1"}}, {"DateGreaterThan": {"k": "x"}}]:
            with self.assertRaises(Unsupported, msg=condition):
                conditions_hold(condition, {"k": "v"})


if __name__ == "__main__":
    unittest.main()
