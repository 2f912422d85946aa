"""The operations dashboard in template.yaml: its body is valid JSON once CloudFormation has
substituted it, names only resources and variables that exist, and shows every alarm."""

import json
import os
import re
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::StackName": "stack", "AWS::Partition": "aws"}


def load_template():
    from samtranslator.yaml_helper import yaml_parse

    with open(os.path.join(ROOT, "template.yaml"), encoding="utf-8") as f:
        return yaml_parse(f.read())


class Dashboard(unittest.TestCase):
    def setUp(self):
        self.template = load_template()
        self.resources = self.template["Resources"]
        sub = self.resources["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
        self.body, self.variables = (sub, {}) if isinstance(sub, str) else sub

    def substituted(self):
        def one(match):
            name = match.group(1)
            if name in PSEUDO:
                return PSEUDO[name]
            if name in self.variables:
                return "Namespace/Of-The.Stack"
            logical, _, attribute = name.partition(".")
            self.assertIn(logical, self.resources, f"${{{name}}} names no resource")
            self.assertEqual(attribute, "Arn", f"${{{name}}}: only alarm ARNs are expected")
            return f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{logical}"

        return re.sub(r"\$\{([^}!]+)\}", one, self.body)

    def test_the_body_is_json_after_substitution(self):
        body = json.loads(self.substituted())
        self.assertTrue(body["widgets"])
        for widget in body["widgets"]:
            self.assertEqual(widget["properties"].get("region", "us-east-1"), "us-east-1")

    def test_every_alarm_is_on_the_dashboard(self):
        alarms = {l for l, r in self.resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
        body = json.loads(self.substituted())
        shown = set()
        for widget in body["widgets"]:
            if widget["type"] == "alarm":
                shown |= {arn.rsplit(":", 1)[-1] for arn in widget["properties"]["alarms"]}
        self.assertEqual(shown, alarms)

    def test_every_alarm_notifies_and_treats_missing_data_as_not_breaching(self):
        for logical, resource in self.resources.items():
            if resource["Type"] != "AWS::CloudWatch::Alarm":
                continue
            props = resource["Properties"]
            self.assertEqual(props["TreatMissingData"], "notBreaching", logical)
            self.assertTrue(props.get("AlarmActions") and props.get("OKActions"), logical)
            self.assertTrue(props.get("AlarmDescription"), logical)


if __name__ == "__main__":
    unittest.main()
