"""The Glue table of template.yaml (CreateAthenaTable) as Athena sees it, and the keys the
shipper wrote in the last end-to-end run.

- `table(...)`: the RdsLogTable's TableInput, translated by the SAM translator and resolved by
  tests/iam/template.py for a bucket and a prefix.
- `Projection`: Athena's partition projection over that table (types injected, enum and date, the
  subset the table uses): `partition(location)` is the partition a key's location belongs to, or
  why the projection yields none; `location(values)` is the S3 prefix a partition projects to.
- `written(...)`: every chunk key the shipper wrote, from the gateway's recordings
  (`target/local-stack/<uuid>/calls.jsonl`: a PutObject or a CompleteMultipartUpload answered 200,
  by a caller running the shipper's binary), with that caller's LOG_BUCKET and LOG_PREFIX
  (`callers.jsonl`).
"""

import datetime
import json
import os
import pathlib
import re
import sys
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "tests" / "iam"))

import template as tpl  # noqa: E402  (tests/iam/template.py)

TABLE = "RdsLogTable"
SHIPPER_BINARY = "rds-log-shipper"


def local_stack_dir():
    target = os.environ.get("CARGO_TARGET_DIR") or str(ROOT / "target")
    return pathlib.Path(target) / "local-stack"


_translated = None


def translated():
    global _translated
    if _translated is None:
        _translated = tpl.translate(str(ROOT / "template.yaml"))[1]
    return _translated


def resolver(bucket, prefix, create="true"):
    t = translated()
    names = tpl.Names(t["Resources"], {"RdsLogArchiveBucket": bucket})
    return tpl.Resolver(t, {"RdsLogPrefix": prefix, "CreateAthenaTable": create}, names)


def table(bucket, prefix):
    """The table's TableInput, resolved (the template's condition is checked by the caller)."""
    resource = translated()["Resources"][TABLE]
    return resolver(bucket, prefix).resolve(resource["Properties"])["TableInput"]


# Java DateTimeFormatter letters Athena's date projection formats use, as strptime directives.
JAVA_DATE = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
UNITS = {"DAYS": datetime.timedelta(days=1), "HOURS": datetime.timedelta(hours=1)}


def strptime_format(java):
    out, rest = "", java
    while rest:
        for letters, directive in JAVA_DATE.items():
            if rest.startswith(letters):
                out, rest = out + directive, rest[len(letters):]
                break
        else:
            if rest[0].isalpha():
                raise ValueError(f"date format {java!r}: {rest[0]!r} is not modelled")
            out, rest = out + rest[0].replace("%", "%%"), rest[1:]
    return out


class Projection:
    def __init__(self, table_input, now=None):
        params = table_input["Parameters"]
        if params.get("projection.enabled") != "true":
            raise ValueError("projection.enabled is not \"true\"")
        self.template = params["storage.location.template"]
        self.columns = [k["Name"] for k in table_input["PartitionKeys"]]
        self.params = params
        self.now = now or datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        names = re.findall(r"\$\{([^}]+)\}", self.template)
        if names != self.columns:
            raise ValueError(f"the location template names {names}, the partition keys are {self.columns}")
        if not self.template.endswith("/"):
            raise ValueError("the location template does not end in /")
        pattern = "".join(
            f"(?P<{part[2:-1]}>[^/]+)" if part.startswith("${") else re.escape(part)
            for part in re.split(r"(\$\{[^}]+\})", self.template)
            if part
        )
        self.pattern = re.compile(pattern)
        for column in self.columns:
            kind = self.kind(column)
            if kind not in ("injected", "enum", "date"):
                raise ValueError(f"projection.{column}.type {kind!r} is not modelled")

    def kind(self, column):
        return self.params[f"projection.{column}.type"].strip().lower()

    def values(self, column):
        return self.params[f"projection.{column}.values"].split(",")

    def date_range(self, column):
        fmt = strptime_format(self.params[f"projection.{column}.format"])
        start, end = (s.strip() for s in self.params[f"projection.{column}.range"].split(","))
        parse = lambda s: self.now if s == "NOW" else datetime.datetime.strptime(s, fmt)  # noqa: E731
        step = int(self.params.get(f"projection.{column}.interval", "1"))
        unit = UNITS[self.params.get(f"projection.{column}.interval.unit", "DAYS")]
        return fmt, parse(start), parse(end), step * unit

    def check(self, column, value):
        """Why the projection yields no partition with this column value, or None."""
        kind = self.kind(column)
        if kind == "injected":
            return None if value else "empty"
        if kind == "enum":
            return None if value in self.values(column) else f"{value!r} is not in the enum {self.values(column)}"
        fmt, start, end, step = self.date_range(column)
        try:
            at = datetime.datetime.strptime(value, fmt)
        except ValueError:
            return f"{value!r} is not in the format {self.params[f'projection.{column}.format']}"
        if at.strftime(fmt) != value:
            return f"{value!r} is not written as the format writes it"
        if not start <= at <= end:
            return f"{value!r} is outside the range {start:%Y-%m-%d}..{end:%Y-%m-%d}"
        if (at - start) % step:
            return f"{value!r} is not on the interval from {start:%Y-%m-%d}"
        return None

    def partition(self, url):
        """(the partition's column values, None) for an object's s3:// URL, or (None, why)."""
        m = self.pattern.match(url)
        if not m:
            return None, f"does not match the location template {self.template}"
        if not url[m.end():]:
            return None, "names a partition, not an object in one"
        values = {c: urllib.parse.unquote(m.group(c)) for c in self.columns}
        for column, value in values.items():
            why = self.check(column, value)
            if why:
                return None, f"{column}: {why}"
        return values, None

    def location(self, values):
        """The S3 prefix the projection gives the partition with these values."""
        out = self.template
        for column in self.columns:
            out = out.replace("${" + column + "}", values[column])
        return out


def read_jsonl(path):
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def is_object_write(call):
    """A request that created an object: PutObject, or CompleteMultipartUpload (POST ?uploadId)."""
    if call.get("service") != "s3" or call.get("status") != 200:
        return False
    query = call.get("query") or {}
    if call["method"] == "PUT":
        return query.get("x-id") == "PutObject" and "partNumber" not in query
    return call["method"] == "POST" and "uploadId" in query


def written(directory=None):
    """{stack dir: [(LOG_BUCKET, LOG_PREFIX, bucket written to, key)]}: the chunk keys the
    shipper wrote, stack by stack."""
    out = {}
    for stack in sorted(p for p in (directory or local_stack_dir()).glob("*") if p.is_dir()):
        shippers = {
            c["caller"]: c["env"]
            for c in read_jsonl(stack / "callers.jsonl")
            if c.get("binary") == SHIPPER_BINARY and "LOG_BUCKET" in c.get("env", {})
        }
        keys = []
        for call in read_jsonl(stack / "calls.jsonl"):
            env = shippers.get(call.get("caller"))
            if env is None or not is_object_write(call):
                continue
            bucket, _, key = urllib.parse.unquote(call["path"]).lstrip("/").partition("/")
            prefix = env.get("LOG_PREFIX", "").strip("/")
            if key.startswith((f"{prefix}/_state/", f"{prefix}/_fleet/")):
                continue  # checkpoints, the lag index, the state machine's manifests: outside the table (Athena skips paths starting with _)
            keys.append((env["LOG_BUCKET"], prefix, bucket, key))
        if keys:
            out[stack] = keys
    return out
