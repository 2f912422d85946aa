"""A small IAM policy evaluator: identity policies (Allow and Deny) plus a resource policy's Deny
statements, for requests of one account.

Why our own and not @cloud-copilot/iam-simulate: that package is AGPL-3.0, and some adopters of
this Apache-2.0 project forbid AGPL tools outright, even in tests. What this check needs is small:
does some Allow statement match the action, the resource and its conditions, and does no Deny? So
this module implements exactly that, and refuses (raises) whatever it does not implement rather
than guessing: NotPrincipal, ForAnyValue/ForAllValues set operators and the operators not listed
in OPERATORS.

Matching follows IAM's documented rules: actions match case-insensitively with `*` and `?`
wildcards; resources match case-sensitively with the same wildcards; a condition block is the AND
of its operators, each the AND of its keys, each the OR of its values; a key missing from the
request context makes a positive operator false, a negated one (`...Not...`) true, and any
`...IfExists` operator true; `Null` tests presence. Explicit Deny wins over Allow; no matching
Allow is an implicit deny.
"""

import re


class Unsupported(Exception):
    """A policy construct this evaluator does not implement (never silently allowed)."""


def _as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def wildcard_match(pattern, value, case_sensitive=True):
    """IAM's wildcard match: `*` any run of characters (including `:` and `/`), `?` any one."""
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern
    )
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.fullmatch(regex, value, flags) is not None


def _string_equals(a, b):
    return a == b


def _string_like(pattern, value):
    return wildcard_match(pattern, value)


def _arn_like(pattern, value):
    """ARN matching: each of the six colon-separated parts matched on its own, with wildcards."""
    p_parts = pattern.split(":", 5)
    v_parts = value.split(":", 5)
    if len(p_parts) != 6 or len(v_parts) != 6:
        return False
    return all(wildcard_match(p, v) for p, v in zip(p_parts, v_parts))


def _bool(expected, value):
    return str(expected).lower() == str(value).lower()


# name -> (test(policy value, request value), negated)
OPERATORS = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringEqualsIgnoreCase": (lambda a, b: a.lower() == b.lower(), False),
    "StringLike": (_string_like, False),
    "StringNotLike": (_string_like, True),
    "ArnEquals": (_arn_like, False),
    "ArnLike": (_arn_like, False),
    "ArnNotEquals": (_arn_like, True),
    "ArnNotLike": (_arn_like, True),
    "Bool": (_bool, False),
}


def _condition_holds(operator, key, policy_values, context, known_keys=None):
    if known_keys is not None and key not in known_keys:
        raise Unsupported(f"condition key {key} is not modelled in the request context")
    if operator.startswith(("ForAnyValue:", "ForAllValues:")):
        raise Unsupported(f"set operator {operator}")
    if operator == "Null":
        present = key in context
        return any(_bool(v, not present) for v in _as_list(policy_values))
    if_exists = operator.endswith("IfExists")
    name = operator[: -len("IfExists")] if if_exists else operator
    if name not in OPERATORS:
        raise Unsupported(f"condition operator {operator}")
    test, negated = OPERATORS[name]
    if key not in context:
        return if_exists or negated
    request_values = _as_list(context[key])
    matched = any(
        test(str(pv), str(rv)) for pv in _as_list(policy_values) for rv in request_values
    )
    return not matched if negated else matched


def conditions_hold(condition, context, known_keys=None):
    """The AND of every operator and key of a Condition block, against the request context.
    With `known_keys`, a key outside them is refused: the caller does not model it."""
    for operator, keys in (condition or {}).items():
        for key, values in keys.items():
            if not _condition_holds(operator, key, values, context, known_keys):
                return False
    return True


def _matches_any(patterns, value, case_sensitive):
    return any(wildcard_match(p, value, case_sensitive) for p in patterns)


def action_matches(statement, action):
    if "NotAction" in statement:
        return not _matches_any(_as_list(statement["NotAction"]), action, False)
    return _matches_any(_as_list(statement.get("Action")), action, False)


def resource_matches(statement, resource):
    if "NotResource" in statement:
        return not _matches_any(_as_list(statement["NotResource"]), resource, True)
    return _matches_any(_as_list(statement.get("Resource")), resource, True)


def statement_applies(statement, action, resource, context, known_keys=None):
    """Whether the statement speaks to this request (whatever its effect)."""
    if "NotPrincipal" in statement:
        raise Unsupported("NotPrincipal")
    return (
        action_matches(statement, action)
        and resource_matches(statement, resource)
        and conditions_hold(statement.get("Condition"), context, known_keys)
    )


def _principal_matches(statement, principal_arn):
    """A resource policy statement's Principal: `*`, {"AWS": ...} ARNs (or account roots)."""
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if isinstance(principal, dict):
        aws = _as_list(principal.get("AWS"))
        account = principal_arn.split(":")[4] if principal_arn.count(":") >= 5 else None
        return any(
            p == "*" or p == principal_arn or p in (account, f"arn:aws:iam::{account}:root")
            for p in aws
        )
    return False


class Decision:
    """The outcome: `allowed`, and the statements that decided it (Allow or Deny)."""

    def __init__(self, allowed, allowing=None, denying=None):
        self.allowed = allowed
        self.allowing = allowing or []
        self.denying = denying or []

    def __repr__(self):
        return f"Decision(allowed={self.allowed}, allowing={self.allowing}, denying={self.denying})"


def evaluate(identity_statements, action, resource, context, resource_statements=(), known_keys=None):
    """Evaluates one request (one action on one resource) for a principal of the same account.

    `identity_statements`: (label, statement) pairs of the principal's policies.
    `resource_statements`: (label, statement) pairs of the resource's policy; only their Deny
    statements can change the outcome here (same account: an identity Allow suffices).
    """
    denying = [
        label
        for label, s in identity_statements
        if s.get("Effect") == "Deny" and statement_applies(s, action, resource, context, known_keys)
    ]
    principal = context.get("aws:PrincipalArn", "")
    if any("NotPrincipal" in s for _, s in resource_statements):
        raise Unsupported("NotPrincipal")
    denying += [
        label
        for label, s in resource_statements
        if s.get("Effect") == "Deny"
        and _principal_matches(s, principal)
        and statement_applies(s, action, resource, context, known_keys)
    ]
    allowing = [
        label
        for label, s in identity_statements
        if s.get("Effect") == "Allow" and statement_applies(s, action, resource, context, known_keys)
    ]
    return Decision(bool(allowing) and not denying, allowing, denying)


def nearest_statements(identity_statements, action):
    """The statements that grant `action` at all (whatever their resources and conditions): what
    a denied request was expected to be allowed by."""
    return [
        label
        for label, s in identity_statements
        if s.get("Effect") == "Allow" and action_matches(s, action)
    ]


__all__ = [
    "Decision",
    "Unsupported",
    "evaluate",
    "nearest_statements",
    "wildcard_match",
    "conditions_hold",
]
