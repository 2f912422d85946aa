#!/usr/bin/env python3
"""Least privilege, proven: every AWS request each function (and each state machine) made during
the end-to-end tests, checked against its role's policies in template.yaml.

1. template.yaml is translated by the AWS SAM translator (pinned in requirements-dev.txt).
2. Each role's policies are resolved for the test account and region, with the parameters and
   resource names each test's stack used (its `bindings.jsonl`).
3. The gateway of each stack recorded every request (`calls.jsonl`) and who sent it (each function
   signs with its own access key id: `callers.jsonl`).
4. Each request becomes the authorizations IAM makes for it (`authz.py`), validated against the
   Service Authorization Reference (`iamdata.py`).
5. Each authorization is evaluated against the caller's role (`policy.py`), plus the bucket
   policies of the template.

Fails, naming function, action, resource and the statement expected to allow it, on any denied
request. Lists every granted action (and resource) no request used: each must carry a
`# not exercised: <why>` comment in the template's statement, or the check fails. With
`--mutations`, also removes each exercised statement in turn and fails unless some request is then
denied.

Usage: check.py [--calls DIR] [--template template.yaml] [--edge-template ...] [--mutations]
"""

import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import authz  # noqa: E402
import policy  # noqa: E402
import sources  # noqa: E402
import template as tpl  # noqa: E402
from iamdata import Reference  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Callers whose requests are not a template role's: the tests themselves, and the job's own
# artifact credentials (the pipeline's role grants those, not this template).
NOT_A_ROLE = {"harness", "codepipeline-artifact-credentials"}

# The condition keys the check sets in a request's context (or knows the request lacks): a
# condition on any other key is not evaluated but refused (policy.Unsupported), so it cannot
# silently count as absent.
MODELLED_KEYS = {
    "aws:PrincipalArn",
    "aws:SecureTransport",
    "iam:PassedToService",
    "cloudformation:ChangeSetName",
    "cloudformation:RoleArn",
}

# Managed policies whose grants no function request uses: the Lambda service writes the function's
# logs with them.
SERVICE_MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": "the Lambda service writes the function's logs with it",
    # SAM adds it to a function with Tracing Active or PassThrough. The functions link no X-Ray SDK:
    # only Lambda's own X-Ray daemon, in the execution environment, sends trace segments with it.
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": "Lambda's X-Ray daemon sends the function's traces with it",
}


def read_jsonl(path):
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Stack:
    """One end-to-end test's local stack: its callers, bindings and recorded calls."""

    def __init__(self, directory):
        self.directory = directory
        self.callers = {c["access_key_id"]: c for c in read_jsonl(os.path.join(directory, "callers.jsonl"))}
        self.bindings = read_jsonl(os.path.join(directory, "bindings.jsonl"))
        self.calls = read_jsonl(os.path.join(directory, "calls.jsonl"))

    def parameters(self):
        return {b["parameter"]: b["value"] for b in self.bindings if "parameter" in b}

    def names(self):
        return {b["logical"]: b["value"] for b in self.bindings if "logical" in b}

    def expected_denials(self):
        return [b for b in self.bindings if "expect_denied" in b]

    def machine_types(self):
        """The type of each state machine the tests created (from their CreateStateMachine calls)."""
        if getattr(self, "_machine_types", None) is not None:
            return self._machine_types
        out = {}
        for call in self.calls:
            if authz.operation(call) == "CreateStateMachine" and call.get("status", 200) < 300:
                params = call.get("params") or {}
                arn = tpl_arn_of_machine(params.get("name", ""))
                out[arn] = params.get("type", "STANDARD")
        self._machine_types = out
        return out

    def change_set_stacks(self):
        """Change set name -> its stack's ARN. The steps name a change set by its ARN after
        creating it; IAM authorizes change-set actions on the stack, so the stack comes from the
        CreateChangeSet call that named both (change set names are unique per deployment)."""
        out = {}
        for call in self.calls:
            params = call.get("params") or {}
            cs, stack = params.get("ChangeSetName"), params.get("StackName")
            if authz.operation(call) == "CreateChangeSet" and cs and stack:
                out.setdefault(cs, authz._stack_arn(stack))
        return out


def tpl_arn_of_machine(name):
    return f"arn:{tpl.PARTITION}:states:{tpl.REGION}:{tpl.ACCOUNT}:stateMachine:{name}"


class Check:
    def __init__(self, template_path, reference):
        self.template_path = template_path
        self.reference = reference
        self.original, self.translated = tpl.translate(template_path)
        self.resources = self.translated["Resources"]
        self.roles = tpl.roles_of(self.translated)
        self.source = sources.Source(template_path, self.original)
        self.failures = []
        self.notes = []
        self.coverage = set()
        self.checked = {}
        self.evaluated = []
        self.default_parameters = {}
        self.listing_parameters = {}
        self._caller_names = {}
        self._served = {}
        self._env_bindings = {}

    # ---- who is the caller ----

    def function_for(self, caller):
        """The template function a recorded caller runs as: by binary, and DEPLOY_STEP for the
        deploy steps' shared binary. Of functions that share both (the trigger and its failure
        destination), the one whose own literal variables the caller has, most of them first
        (PIPELINE_TRIGGER_MODE=failure-destination names the failure destination)."""
        binary = caller.get("binary")
        given = caller.get("env") or {}
        step = given.get("DEPLOY_STEP")
        best, best_score = None, -1
        for logical, resource in self.original["Resources"].items():
            if resource.get("Type") != "AWS::Serverless::Function":
                continue
            built = (resource.get("Metadata") or {}).get("BuildProperties", {}).get("Binary")
            env = (resource["Properties"].get("Environment") or {}).get("Variables", {})
            if built != binary or env.get("DEPLOY_STEP") != step:
                continue
            literals = {k: v for k, v in env.items() if isinstance(v, str)}
            if any(given.get(k) != v for k, v in literals.items()):
                continue
            if len(literals) > best_score:
                best, best_score = logical, len(literals)
        return best

    def served(self, stack):
        """The stack's callers that run a template function, with that function: (caller,
        logical) pairs, worked out once per stack."""
        if stack.directory not in self._served:
            pairs = []
            for caller in stack.callers.values():
                logical = self.function_for(caller) if caller.get("binary") else None
                if logical:
                    pairs.append((caller, logical))
            self._served[stack.directory] = pairs
        return self._served[stack.directory]

    def variables(self, logical):
        """The environment variables the template sets for a function (its own, over Globals')."""
        merged = dict(((self.original.get("Globals") or {}).get("Function", {}).get("Environment") or {}).get("Variables", {}))
        merged.update((self.original["Resources"][logical]["Properties"].get("Environment") or {}).get("Variables", {}))
        return merged

    def machines(self):
        return [l for l, r in self.original["Resources"].items() if r.get("Type") == "AWS::Serverless::StateMachine"]

    def machines_integrating(self, service):
        """The template state machines whose definition uses an integration of `service`
        (`arn:aws:states:::<service>:...`: a Distributed Map's ItemReader or ResultWriter, say):
        the state machine's own requests to it are checked against its role."""
        out = []
        for logical, resource in self.original["Resources"].items():
            if resource.get("Type") != "AWS::Serverless::StateMachine":
                continue
            uri = resource["Properties"].get("DefinitionUri")
            if not isinstance(uri, str):
                continue
            path = os.path.join(ROOT, uri)
            with open(path, encoding="utf-8") as f:
                if f"arn:aws:states:::{service}:" in f.read():
                    out.append(logical)
        return out

    def machine_invoking(self, function_logical):
        """The template state machine whose definition invokes this function."""
        for logical, resource in self.original["Resources"].items():
            if resource.get("Type") != "AWS::Serverless::StateMachine":
                continue
            subs = resource["Properties"].get("DefinitionSubstitutions", {})
            for value in subs.values():
                if isinstance(value, dict) and value.get("Fn::GetAtt", [None])[0] == function_logical:
                    return logical
        return None

    # ---- evaluation ----

    def resolver(self, stack, function_names, overrides=None):
        """The template resolved as a test's stack had it; `overrides` (parameter or resource
        name -> value) bind what one request needs bound (see `overrides_for`)."""
        env_params, env_names = self.env_bindings(stack)
        params = dict(self.test_parameters())
        params.update(env_params)
        params.update(stack.parameters())
        names = dict(function_names)
        names.update(env_names)
        names.update(stack.names())
        for key, value in (overrides or {}).items():
            (params if key in self.original.get("Parameters", {}) else names)[key] = value
        return tpl.Resolver(self.translated, params, tpl.Names(self.resources, names))

    def env_bindings(self, stack):
        """The parameters and resource names a test gave its functions: where the template sets
        an environment variable to `!Ref X` (or an `!If` between a parameter and a resource), the
        test's value of that variable is X's (the parameter, when one of the branches is one)."""
        if stack.directory in self._env_bindings:
            return self._env_bindings[stack.directory]
        params, names = {}, {}
        declared = self.original.get("Parameters", {})
        for caller, logical in self.served(stack):
            for var, spec in self.variables(logical).items():
                value = (caller.get("env") or {}).get(var)
                if value is None:
                    continue
                branches = spec["Fn::If"][1:] if isinstance(spec, dict) and "Fn::If" in spec else [spec]
                refs = [b["Ref"] for b in branches if isinstance(b, dict) and "Ref" in b and not b["Ref"].startswith("AWS::")]
                # Of an `!If` between a resource and a parameter, the resource when the test bound
                # it to this very value (the template's own deploy workflow, its own topic), else
                # the parameter (a deployment given one).
                bound = stack.names()
                chosen = next((r for r in refs if r not in declared and bound.get(r) == value), None)
                chosen = chosen or next((r for r in refs if r in declared), None) or (refs[0] if refs else None)
                if chosen is None:
                    continue
                (params if chosen in declared else names)[chosen] = value
        self._env_bindings[stack.directory] = (params, names)
        return params, names

    def test_parameters(self):
        """The parameters the tests bound, over all their stacks: the base of every resolution
        (a stack's own bindings and functions' environment win), and what the grants no request
        used are listed with."""
        return self.default_parameters

    def learn_parameters(self, stacks):
        """The parameters the tests bound explicitly (the first value seen). What a stack's
        functions' environment says stays that stack's: a target state machine, say, must not
        leak into another stack's deployment."""
        merged, listing = {}, {}
        for stack in stacks:
            for key, value in stack.parameters().items():
                merged.setdefault(key, value)
            env_params, _ = self.env_bindings(stack)
            for key, value in env_params.items():
                listing.setdefault(key, value)
        self.default_parameters = merged
        # The grants are listed as deployed with the tests' parameters; the target state machine
        # left out, so that the template's own deploy workflow is the trigger's target there.
        listing.pop("TargetStateMachineArn", None)
        listing.pop("TargetStateMachineType", None)
        self.listing_parameters = {**listing, **merged}

    def role_arn(self, role):
        return f"arn:aws:iam::{tpl.ACCOUNT}:role/{role}"

    def evaluate_call(self, stack, call, who, function_names, bucket_policies_cache):
        role = self.roles.get(who)
        if role is None:
            self.failures.append(f"{who}: no role in the template")
            return
        try:
            needed = authz.authorizations(call, stack.change_set_stacks())
        except authz.Unmapped as e:
            self.failures.append(f"{who}: cannot map a recorded request: {e}")
            return
        for auth in needed:
            self.evaluate_one(stack, who, role, auth, call, function_names, bucket_policies_cache)

    def overrides_for(self, who, auth, stack):
        """Bindings one request needs. The trigger is granted one target state machine; the tests
        start several (named in UserParameters), so each of its requests is checked as the
        template deployed for the state machine it names, of that state machine's type. A state
        machine's invoke of a function is checked with that function named as invoked (the tests
        serve one template function under several names, e.g. with a shorter timeout)."""
        if who in self.machines() and auth.action == "lambda:InvokeFunction":
            invoked = auth.resource.split(":function:")[-1]
            logical = self.logical_named(stack, invoked)
            return {logical: invoked} if logical else {}
        if who != "PipelineTriggerFunction" or not auth.action.startswith("states:"):
            return {}
        parts = auth.resource.split(":")
        if len(parts) < 7 or parts[5] not in ("stateMachine", "execution", "express"):
            return {}
        machine = ":".join(parts[:5] + ["stateMachine", parts[6]])
        kind = stack.machine_types().get(machine, "STANDARD")
        configured = {
            (c.get("env") or {}).get("STATE_MACHINE_ARN")
            for c in stack.callers.values()
            if c.get("binary") == "pipeline-trigger"
        }
        if machine in configured and stack.names().get("DeployStateMachine") == machine:
            # The trigger's own target is this template's deploy workflow: the default branch.
            return {}
        return {"TargetStateMachineArn": machine, "TargetStateMachineType": kind}

    def evaluate_one(self, stack, who, role, auth, call, function_names, cache):
        if self.reference.action(auth.action) is None:
            self.failures.append(f"{who}: {auth.action} is not an IAM action (mapping of {authz.operation(call) or call.get('path')})")
            return
        if not self.reference.fits(auth.action, auth.resource):
            self.failures.append(
                f"{who}: {auth.action} on {auth.resource} does not fit the action's resource types "
                f"{self.reference.resource_arns(auth.action) or ['*']} (a mapping error)"
            )
            return
        overrides = self.overrides_for(who, auth, stack)
        key = (stack.directory, role, tuple(sorted(overrides.items())))
        if key not in cache:
            resolver = self.resolver(stack, function_names, overrides)
            statements, managed = tpl.role_statements(self.translated, resolver, role)
            cache[key] = (statements, managed, tpl.bucket_policies(self.translated, resolver))
        statements, _, buckets = cache[key]
        context = {"aws:PrincipalArn": self.role_arn(role), "aws:SecureTransport": "true"}
        context.update(auth.context)
        resource_policy = []
        if auth.action.startswith("s3:") and auth.resource.startswith("arn:aws:s3:::"):
            bucket = auth.resource[len("arn:aws:s3:::"):].split("/", 1)[0]
            resource_policy = buckets.get(bucket, [])
        decision = policy.evaluate(statements, auth.action, auth.resource, context, resource_policy, MODELLED_KEYS)
        self.evaluated.append((who, role, auth, context, resource_policy, key, tuple(decision.allowing)))
        self.checked[who] = self.checked.get(who, 0) + 1
        caller_name = self._caller_names.get((stack.directory, who), set())
        expected_denial = next(
            (
                e
                for e in stack.expected_denials()
                if auth.resource.startswith(e["expect_denied"])
                and policy.wildcard_match(e.get("action", "*"), auth.action, case_sensitive=False)
                and e.get("caller") in caller_name
            ),
            None,
        )
        if not decision.allowed and expected_denial:
            self.notes.append(f"{who}: {auth.action} on {auth.resource} is denied, as the test means: {expected_denial['why']}")
            return
        if decision.allowed and expected_denial:
            self.failures.append(f"{who}: {auth.action} on {auth.resource} is allowed, but the test expects a denial ({expected_denial['why']})")
            return
        if not decision.allowed:
            expected = policy.nearest_statements(statements, auth.action)
            why = (
                f"denied by {', '.join(decision.denying)}"
                if decision.denying
                else f"expected to be allowed by {', '.join(expected)}" if expected else "no statement grants it"
            )
            self.failures.append(
                f"DENIED {who} ({role}): {auth.action} on {auth.resource}"
                + (f" [{auth.why}]" if auth.why else "")
                + f": {why}"
            )
            return
        for label in decision.allowing:
            statement = dict(statements)[label]
            for action in policy._as_list(statement.get("Action")):
                if not policy.wildcard_match(action, auth.action, case_sensitive=False):
                    continue
                for index, resource in enumerate(policy._as_list(statement.get("Resource"))):
                    if policy.wildcard_match(resource, auth.resource):
                        self.coverage.add((role, label, action.lower(), index))

    # ---- the whole run ----

    def note_foreign_env(self, stack):
        """Notes the variables a test gives a function that the template never sets (tuning for
        fast tests, or a selection the template does not offer): their paths may need grants the
        template lacks."""
        for caller, logical in self.served(stack):
            extra = sorted(set(caller.get("env") or {}) - set(self.variables(logical)))
            if extra:
                self.notes.append(f"{logical} ({caller['caller']}) runs with variables the template never sets: {', '.join(extra)}")

    def function_names(self, stack):
        """Each template function's name in this stack: the first caller serving it."""
        names = {}
        for caller, logical in self.served(stack):
            names.setdefault(logical, caller["caller"])
        return names

    def run(self, stacks):
        for stack in stacks:
            function_names = self.function_names(stack)
            self.note_foreign_env(stack)
            cache = {}
            for call in stack.calls:
                caller = stack.callers.get(call.get("access_key_id"), {})
                name = caller.get("caller") or call.get("caller") or "unknown"
                if name in NOT_A_ROLE:
                    continue
                if name == "states-engine":
                    if authz.service_of(call) != "lambda":
                        machines = self.machines_integrating(authz.service_of(call))
                        if len(machines) != 1:
                            self.failures.append(
                                f"a state machine's own {authz.service_of(call)} request ({authz.operation(call)}): "
                                f"{len(machines)} template state machines integrate that service; add a way to tell them apart"
                            )
                            continue
                        self.evaluate_call(stack, call, machines[0], function_names, cache)
                        continue
                    invoked = self.invoked_function(call, stack)
                    machine = self.machine_invoking(invoked) if invoked else None
                    if machine is None:
                        self.notes.append(f"a test state machine (not in the template) invoked {call.get('path')}")
                        continue
                    self.evaluate_call(stack, call, machine, function_names, cache)
                    continue
                if not call.get("access_key_id") and call.get("status") in (403, 405):
                    # Unsigned and refused by the gateway itself (its proxy refuses non-loopback
                    # hosts): no AWS request of any role.
                    continue
                logical = self.function_for(caller) if caller else None
                if logical is not None:
                    self._caller_names.setdefault((stack.directory, logical), set()).add(name)
                if logical is None:
                    self.failures.append(f"a request from an unknown caller {name!r}: {call.get('method')} {call.get('path')} {authz.operation(call)}")
                    continue
                self.evaluate_call(stack, call, logical, function_names, cache)

    def invoked_function(self, call, stack):
        name = authz.invoked_name(call)
        return self.logical_named(stack, name) if name else None

    def logical_named(self, stack, name):
        """The template function a stack serves under the function name `name`."""
        return next((logical for caller, logical in self.served(stack) if caller.get("caller") == name), None)

    # ---- grants no request used ----

    def roles_in_scope(self):
        """The roles of the template's functions and state machines, and the roles SAM generates
        for their events (schedules); resources whose Condition is false in the tests are out."""
        resolver = tpl.Resolver(self.translated, self.listing_parameters, tpl.Names(self.resources))
        out = []
        for logical, resource in self.resources.items():
            if resource.get("Type") != "AWS::IAM::Role":
                continue
            if "Condition" in resource and not resolver.condition(resource["Condition"]):
                continue
            services = json.dumps(resource["Properties"].get("AssumeRolePolicyDocument", {}))
            if any(s in services for s in ("lambda.amazonaws.com", "states.amazonaws.com", "events.amazonaws.com", "scheduler.amazonaws.com")):
                out.append(logical)
        return out

    def source_of(self, role, label):
        """The template lines a statement came from (its resource, then the statement item)."""
        policy_name, _, statement = label.partition("/")
        sid = None if statement.startswith("#") else statement
        if role in self.original["Resources"]:
            return self.source.statement_lines(role, sid=sid)
        owner = role[: -len("Role")] if role.endswith("Role") else role
        if owner in self.original["Resources"]:
            if sid:
                return self.source.statement_lines(owner, sid=sid)
            index = policy_name[len(role + "Policy"):]
            return self.source.statement_lines(owner, policy_index=int(index) if index.isdigit() else None)
        for logical in self.original["Resources"]:
            if role.startswith(logical) and role != logical:
                return self.source.events_lines(logical)
        return []

    def grants(self, role, resolvers):
        """Every (label, action, resource index, resource) the role grants, over the resolutions
        the evaluation used (conditional statements differ between them)."""
        out = {}
        for resolver in resolvers:
            statements, _ = tpl.role_statements(self.translated, resolver, role)
            for label, statement in statements:
                if statement.get("Effect") != "Allow":
                    continue
                for action in policy._as_list(statement.get("Action")):
                    for index, resource in enumerate(policy._as_list(statement.get("Resource"))):
                        out.setdefault((role, label, action.lower(), index), (action, resource))
        return out

    def unexercised(self):
        default = tpl.Resolver(self.translated, self.listing_parameters, tpl.Names(self.resources))
        report = []
        for role in self.roles_in_scope():
            for key, (action, resource) in sorted(self.grants(role, [default]).items()):
                if key in self.coverage:
                    continue
                lines = self.source_of(role, key[1])
                reason = sources.Source.reason(lines)
                # The comment must name each action it keeps: one comment cannot excuse an action
                # added to its statement later.
                if reason and action.lower() not in reason.lower():
                    reason = None
                report.append((role, key[1], action, resource, reason))
            _, managed = tpl.role_statements(self.translated, default, role)
            for arn in managed:
                if arn not in SERVICE_MANAGED:
                    report.append((role, "ManagedPolicyArns", arn, "", None))
        return report

    # ---- mutation: every exercised statement is needed ----

    def mutations(self):
        """For each exercised statement, the evaluation without it: some request it allowed must
        then be denied (a request denied anyway, such as one a test expects denied, proves
        nothing)."""
        surviving = []
        by_statement = {}
        for who, role, auth, context, resource_policy, key, allowing in self.evaluated:
            by_statement.setdefault(role, []).append((auth, context, resource_policy, key, allowing))
        labels = sorted({(c[0], c[1]) for c in self.coverage})
        statements_by_key = {}
        for role, label in labels:
            denied = False
            for auth, context, resource_policy, key, allowing in by_statement.get(role, []):
                # Only a request this statement helped allow can show that it is needed.
                if label not in allowing:
                    continue
                statements = statements_by_key.get((role, key))
                if statements is None:
                    statements = self._statements_for(role, key)
                    statements_by_key[(role, key)] = statements
                without = [(l, s) for l, s in statements if l != label]
                if not policy.evaluate(without, auth.action, auth.resource, context, resource_policy, MODELLED_KEYS).allowed:
                    denied = True
                    break
            if not denied:
                surviving.append((role, label))
        return labels, surviving

    def _statements_for(self, role, key):
        directory, _, overrides = key
        stack = self._stacks_by_dir[directory]
        resolver = self.resolver(stack, self._function_names[directory], dict(overrides))
        return tpl.role_statements(self.translated, resolver, role)[0]


def stacks_under(directory):
    """Every test stack that served a function (it has callers); one without its recording is
    returned too, and fails the check."""
    return [Stack(d) for d in sorted(glob.glob(os.path.join(directory, "*"))) if os.path.isfile(os.path.join(d, "callers.jsonl"))]


def static_checks(check, reference):
    """Every action the template grants exists and is no wildcard; every statement written in the
    template has a Sid (the report and the `not exercised` comments name statements by it)."""
    failures = []
    default = tpl.Resolver(check.translated, check.listing_parameters, tpl.Names(check.resources))
    for role in check.roles_in_scope():
        statements, _ = tpl.role_statements(check.translated, default, role)
        for label, statement in statements:
            star = "*" in policy._as_list(statement.get("Resource"))
            for action in policy._as_list(statement.get("Action")):
                if "*" in action or "?" in action:
                    failures.append(f"{role} {label}: wildcard action {action}")
                elif reference.action(action) is None:
                    failures.append(f"{role} {label}: {action} is not an IAM action")
                elif star and not reference.fits(action, "*"):
                    failures.append(
                        f"{role} {label}: {action} on \"*\", but it supports resource-level permissions: name its resources"
                    )
    for logical, resource in check.original["Resources"].items():
        props = resource.get("Properties", {})
        documents = [p for p in props.get("Policies", []) if isinstance(p, dict) and "Statement" in p]
        documents += [p["PolicyDocument"] for p in props.get("Policies", []) if isinstance(p, dict) and "PolicyDocument" in p]
        for document in documents:
            for statement in tpl.policy_statements(document):
                if isinstance(statement, dict) and "Fn::If" not in statement and not statement.get("Sid"):
                    failures.append(f"{logical}: a policy statement without a Sid ({json.dumps(statement)[:120]})")
    return failures


def edge_check(path, reference):
    """The edge template: its function makes no AWS request (its handler loads only Node's own
    modules and its own files), so every grant of its role must say why it stays."""
    import re

    failures, kept = [], []
    handler_dir = os.path.join(os.path.dirname(path), "handler")
    for name in sorted(os.listdir(handler_dir)):
        if name.endswith(".js"):
            with open(os.path.join(handler_dir, name), encoding="utf-8") as f:
                code = f.read()
            modules = re.findall(r"require\(\s*['\"]([^'\"]+)['\"]\s*\)", code)
            modules += re.findall(r"\bfrom\s+['\"]([^'\"]+)['\"]|\bimport\s*\(\s*['\"]([^'\"]+)['\"]", code)
            for module in [m if isinstance(m, str) else (m[0] or m[1]) for m in modules]:
                if not module.startswith(("node:", "./", "../")):
                    failures.append(f"edge handler {name} loads {module}: its AWS requests would need checking")
            if re.search(r"\bfetch\s*\(|\brequire\(\s*[^'\"\s]", code):
                failures.append(f"edge handler {name} fetches or loads a computed module: its requests would need checking")
    original, translated = tpl.translate(path)
    source = sources.Source(path, original)
    resolver = tpl.Resolver(translated, {}, tpl.Names(translated["Resources"]))
    for logical, resource in translated["Resources"].items():
        if resource.get("Type") != "AWS::IAM::Role":
            continue
        statements, managed = tpl.role_statements(translated, resolver, logical)
        for label, statement in statements:
            sid = label.partition("/")[2]
            if sid.startswith("#"):
                failures.append(f"{logical} {label}: a policy statement without a Sid")
                continue
            reason = sources.Source.reason(source.statement_lines(logical, sid=sid))
            for action in policy._as_list(statement.get("Action")):
                if reference.action(action) is None or "*" in action:
                    failures.append(f"{logical} {label}: {action} is no IAM action (or a wildcard)")
                elif reason and action.lower() in reason.lower():
                    kept.append((logical, label, action, reason))
                else:
                    failures.append(f"UNEXERCISED {logical} {label}: {action}: say why it stays (`# not exercised: <why>`)")
        failures += [f"{logical}: managed policy {m}: not expected here" for m in managed]
    return failures, kept


def main(argv=None):
    try:
        return run_check(argv)
    except (KeyError, IndexError, TypeError, ValueError, policy.Unsupported) as e:
        print(f"iam-check FAILED: the template's policies cannot be resolved or evaluated: {e!r}", file=sys.stderr)
        return 1


def run_check(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default=os.path.join(ROOT, "target", "local-stack"))
    parser.add_argument("--template", default=os.path.join(ROOT, "template.yaml"))
    parser.add_argument("--edge-template", default=os.path.join(ROOT, "functions", "edge-rewriter", "template.yaml"))
    parser.add_argument("--mutations", action="store_true")
    args = parser.parse_args(argv)

    reference = Reference()
    try:
        check = Check(args.template, reference)
    except Exception as e:  # the translator's own errors have many types
        print(f"iam-check FAILED: {args.template} cannot be translated: {e}", file=sys.stderr)
        return 1
    stacks = stacks_under(args.calls)
    check._stacks_by_dir = {s.directory: s for s in stacks}
    check._function_names = {s.directory: check.function_names(s) for s in stacks}
    calls = sum(len(s.calls) for s in stacks)
    for s in stacks:
        if not os.path.isfile(os.path.join(s.directory, "calls.jsonl")):
            check.failures.append(f"{s.directory}: the stack served functions but recorded no request (calls.jsonl missing)")
    if calls == 0:
        print(f"iam-check: no recorded calls under {args.calls}: run the end-to-end tests first", file=sys.stderr)
        return 2
    check.learn_parameters(stacks)
    check.failures += static_checks(check, reference)
    check.run(stacks)
    report = check.unexercised()

    print(f"iam-check: {calls} recorded requests in {len(stacks)} test stacks; authorizations checked per role:")
    for who, n in sorted(check.checked.items()):
        print(f"  {who:40} {n:6}")
    kept = [r for r in report if r[4]]
    unexplained = [r for r in report if not r[4]]
    if kept:
        print("granted but not exercised by the tests, kept (the template says why):")
        for role, label, action, resource, reason in kept:
            print(f"  {role} {label}: {action} on {resource or '-'}: {reason}")
    for role, label, action, resource, _ in unexplained:
        check.failures.append(
            f"UNEXERCISED {role} {label}: {action} on {resource or '-'}: no test used it; remove it, or say "
            "why it stays with a `# not exercised: <action>, ...: <why>` comment in the statement"
        )
    if args.mutations:
        labels, surviving = check.mutations()
        print(f"mutations: {len(labels)} exercised statements removed one at a time; "
              f"{len(labels) - len(surviving)} made a recorded request denied")
        for role, label in surviving:
            check.failures.append(f"MUTATION {role} {label}: removing it denies no recorded request (redundant grant)")
    edge_failures, edge_kept = edge_check(args.edge_template, reference)
    check.failures += edge_failures
    for role, label, action, reason in edge_kept:
        print(f"  {role} {label}: {action}: {reason}")
    for note in sorted(set(check.notes)):
        print(f"note: {note}")
    if check.failures:
        print(f"iam-check FAILED ({len(check.failures)}):", file=sys.stderr)
        for f in check.failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    print("iam-check passed: every recorded request is allowed, and every grant is used or explained")
    return 0


if __name__ == "__main__":
    sys.exit(main())
