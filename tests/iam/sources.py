"""Where a resolved statement came from in the template's text, and the `# not exercised: <why>`
comment it carries, if any.

The translator drops comments, so they are read from the YAML text: the resource's block (from
`  <LogicalId>:` to the next resource), then the statement's item in it (from its `- ` line to the
next item at the same or a lesser indentation, with the comment lines right above it).
"""

import re

MARKER = re.compile(r"#\s*not exercised:\s*(.+)$")


def _indent(line):
    return len(line) - len(line.lstrip(" "))


class Source:
    def __init__(self, path, original):
        with open(path, encoding="utf-8") as f:
            self.lines = f.read().splitlines()
        self.original = original

    def resource_block(self, logical):
        start = None
        for i, line in enumerate(self.lines):
            if line == f"  {logical}:":
                start = i
            elif start is not None and re.match(r"^  [A-Za-z0-9]+:\s*$", line):
                return self.lines[start:i]
            elif start is not None and re.match(r"^[A-Za-z]", line):
                return self.lines[start:i]
        return self.lines[start:] if start is not None else []

    @staticmethod
    def _item(block, index):
        """The lines of the list item that holds line `index`, with the comments right above it."""
        start = index
        while start > 0 and not block[start].lstrip().startswith("- "):
            start -= 1
        dash = _indent(block[start])
        end = start + 1
        while end < len(block):
            line = block[end]
            if line.strip() and not line.lstrip().startswith("#") and _indent(line) <= dash:
                break
            end += 1
        # Comment lines at the end lead into the next item, not this one.
        while end > start + 1 and block[end - 1].lstrip().startswith("#"):
            end -= 1
        above = start
        while above > 0 and block[above - 1].lstrip().startswith("#"):
            above -= 1
        return block[above:end]

    def statement_lines(self, logical, sid=None, policy_index=None):
        """The statement's lines: by Sid, or (for SAM policy templates) the Policies item."""
        block = self.resource_block(logical)
        if sid:
            for i, line in enumerate(block):
                if re.search(rf"\bSid:\s*{re.escape(sid)}\s*$", line):
                    return self._item(block, i)
            return []
        if policy_index is not None:
            policies = next((i for i, l in enumerate(block) if l.strip() == "Policies:"), None)
            if policies is None:
                return []
            indent = None
            count = -1
            for i in range(policies + 1, len(block)):
                line = block[i]
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                if indent is None:
                    indent = _indent(line)
                if _indent(line) < indent:
                    break
                if _indent(line) == indent and line.lstrip().startswith("- "):
                    count += 1
                    if count == policy_index:
                        return self._item(block, i)
        return []

    def events_lines(self, logical):
        block = self.resource_block(logical)
        start = next((i for i, l in enumerate(block) if l.strip() == "Events:"), None)
        if start is None:
            return []
        indent = _indent(block[start])
        end = start + 1
        while end < len(block) and (not block[end].strip() or _indent(block[end]) > indent):
            end += 1
        return block[start:end]

    @staticmethod
    def reason(lines):
        """The `# not exercised: <why>` text in these lines (with the comment lines that continue
        it), or None."""
        for i, line in enumerate(lines):
            m = MARKER.search(line)
            if not m:
                continue
            words = [m.group(1).strip()]
            for more in lines[i + 1 :]:
                text = more.strip()
                if not text.startswith("#") or MARKER.search(text):
                    break
                words.append(text.lstrip("#").strip())
            return " ".join(words)
        return None
