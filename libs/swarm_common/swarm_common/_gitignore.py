"""The part of `.gitignore` the inventory applies to folders outside any git repository, where
git cannot be asked (`git ls-files --exclude-standard` answers inside one).

Supported: one pattern per line, `#` comments, `!` negation (the last matching line wins),
a trailing `/` for folders only, a leading or inner `/` anchoring the pattern to the
`.gitignore`'s folder, `*`, `?`, `[...]` within one path component and `**` across them.
Not supported: escaped leading `#`/`!` and trailing spaces kept with `\\`. An ignored folder
is not entered, so a negation cannot bring back a file inside it (as with git).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from swarm_common import globs

__all__ = ["IgnoreRules", "parse_gitignore"]

MAX_PATTERNS = 1000
"""Lines read from one `.gitignore` (the rest is ignored): a bound on matching time."""


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negated: bool
    folders_only: bool
    anchored: bool


def parse_gitignore(text: str) -> tuple[_Rule, ...]:
    """The rules of one `.gitignore` file's text."""
    rules: list[_Rule] = []
    for raw in text.splitlines()[:MAX_PATTERNS]:
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        if negated:
            line = line[1:]
        folders_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/")
        try:
            regex = re.compile(globs.translate(line) + r"\Z", re.DOTALL)
        except re.error:
            continue
        rules.append(_Rule(regex, negated, folders_only, anchored))
    return tuple(rules)


@dataclass(frozen=True)
class IgnoreRules:
    """The rules in force in one folder: each `.gitignore` from the project's top down to
    it, with the folder (relative to the project, `""` for its top) it was read in."""

    layers: tuple[tuple[str, tuple[_Rule, ...]], ...] = ()

    def below(self, folder: str, text: str | None) -> IgnoreRules:
        """The rules for `folder`, whose own `.gitignore` holds `text` (None: it has none)."""
        if not text:
            return self
        rules = parse_gitignore(text)
        return IgnoreRules((*self.layers, (folder, rules))) if rules else self

    def ignored(self, path: str, *, folder: bool) -> bool:
        """Whether `path` (relative to the project's top) is ignored."""
        verdict = False
        for base, rules in self.layers:
            if base and not path.startswith(base + "/"):
                continue
            rel = path[len(base) + 1 :] if base else path
            name = rel.rsplit("/", 1)[-1]
            for rule in rules:
                if rule.folders_only and not folder:
                    continue
                if rule.regex.match(rel if rule.anchored else name):
                    verdict = not rule.negated
        return verdict
