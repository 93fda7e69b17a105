"""Path globs as regular expressions: the one translation both `.gitignore` rules
(`swarm_common._gitignore`) and sessions' protected paths
(`swarm_orchestrator.integration.policies`) use.

A glob matches a `/`-separated relative path: `*` and `?` within one name, `[abc]`,
`[a-z]` and `[!abc]` (or `[^abc]`) one character other than `/`, `**/` any number of
folders (none included), `**` anything; every other character stands for itself. A `[`
without its `]` is a plain `[`.
"""

from __future__ import annotations

import re

__all__ = ["translate"]


def translate(pattern: str) -> str:
    """`pattern` as a regular expression (without anchors) over a relative path."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := _class_end(pattern, i)) > 0:
            body = pattern[i + 1 : end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            out.append("[" + ("^/" if negate else "") + _class_body(body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def _class_body(body: str) -> str:
    """A class's characters for `re`: each escaped but for a lone `-` (a range)."""
    return "".join(
        c if c == "-" and body[i - 1 : i] != "-" and body[i + 1 : i + 2] != "-" else re.escape(c)
        for i, c in enumerate(body)
    )


def _class_end(pattern: str, start: int) -> int:
    """Index of the `]` closing the class opened at `start`, or -1 (then `[` is literal)."""
    j = start + 1
    if j < len(pattern) and pattern[j] in "!^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    end = pattern.find("]", j)
    return end
