"""Does a task's work cross its session's policy (`settings.policy`)?

What a task's work changes is read from git in the orchestrator's mirror (`read_change`):
its commit against where it branched from the branch it merges into, with rename detection,
so a task sent back to fix its work is judged on all of it, not on its last attempt's part.
`check` lists the violations, each with a reason a person can read ("deletes 12 files, the
session allows 5"): protected paths touched (globs, `**` for any depth), and more deleted
files, renamed files or changed lines than the session allows.

The merge queue (`integration.merges`) asks before a task's work merges; a task with
violations waits in `awaiting_approval` with them until a person approves or cancels it.
Paths are data: read NUL-separated (`-z`), never quoted, shell-expanded or taken as options.
A change too large to list (`MAX_FILES`) crosses any policy that is set: a person looks.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from swarm_common import git, globs
from swarm_common.session_settings import PolicyConfig

__all__ = [
    "MAX_FILES",
    "Change",
    "FileChange",
    "Violation",
    "check",
    "glob_matches",
    "has_limits",
    "read_change",
    "reason",
]

MAX_FILES = 20_000
"""Files a change may touch and still be listed; past that it is only counted."""
PATHS_NAMED = 20
"""Paths a violation keeps (how many there are is always said)."""


@dataclass(frozen=True)
class FileChange:
    path: str
    status: str
    """git's letter: A added, M modified, D deleted, R renamed, T type changed."""
    added: int | None = None
    deleted: int | None = None
    """Lines; None for a binary file."""
    old_path: str | None = None
    """For a rename: where it was."""


@dataclass(frozen=True)
class Change:
    """What `head` changes against `base`."""

    base: str
    head: str
    files: list[FileChange] = field(default_factory=list)
    total_files: int = 0
    added: int = 0
    deleted: int = 0
    truncated: bool = False
    """More than `MAX_FILES` files: `files` is empty, the totals are git's `--shortstat`."""

    @property
    def deleted_files(self) -> int:
        return sum(1 for f in self.files if f.status == "D")

    @property
    def renamed_files(self) -> int:
        return sum(1 for f in self.files if f.status == "R")

    @property
    def changed_lines(self) -> int:
        return self.added + self.deleted

    def diffstat(self) -> dict[str, Any]:
        return {
            "files": self.total_files,
            "added": self.added,
            "deleted": self.deleted,
            "deleted_files": self.deleted_files,
            "renamed_files": self.renamed_files,
            **({"truncated": True} if self.truncated else {}),
        }

    def file_rows(self, limit: int) -> list[dict[str, Any]]:
        return [{k: v for k, v in asdict(f).items() if v is not None} for f in self.files[:limit]]


@dataclass(frozen=True)
class Violation:
    kind: str
    """`protected_path`, `deleted_files`, `renamed_files`, `changed_lines` or `too_large`."""
    reason: str
    found: int
    limit: int | None = None
    paths: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.paths:
            del data["paths"]
        if self.limit is None:
            del data["limit"]
        return data


def has_limits(policy: PolicyConfig) -> bool:
    return bool(policy.protected_paths) or any(
        limit is not None
        for limit in (policy.max_deleted_files, policy.max_renamed_files, policy.max_changed_lines)
    )


# -- reading a change ----------------------------------------------------------------------

_SHORTSTAT = re.compile(
    r"(\d+) files? changed(?:, (\d+) insertions?\(\+\))?(?:, (\d+) deletions?)?"
)


def read_change(git_dir: Path, *, start: str, commit: str, fallback_base: str | None) -> Change:
    """What merging `commit` into a branch at `start` brings in: `commit` against their
    merge base (`fallback_base` when they share no history). Blocking: run it in a thread,
    outside the database's locks."""
    base = _merge_base(git_dir, start, commit) or fallback_base or start
    stat = _diff(git_dir, base, commit, "--shortstat")
    found = _SHORTSTAT.search(stat)
    total = int(found.group(1)) if found else 0
    if total > MAX_FILES:
        added = int(found.group(2) or 0) if found else 0
        deleted = int(found.group(3) or 0) if found else 0
        return Change(
            base=base, head=commit, total_files=total, added=added, deleted=deleted, truncated=True
        )
    files = _files(git_dir, base, commit)
    return Change(
        base=base,
        head=commit,
        files=files,
        total_files=len(files),
        added=sum(f.added or 0 for f in files),
        deleted=sum(f.deleted or 0 for f in files),
    )


def _merge_base(git_dir: Path, a: str, b: str) -> str | None:
    proc = git.git("merge-base", "--end-of-options", a, b, git_dir=git_dir, check=False)
    if proc.returncode == 1:
        return None  # no common history
    if proc.returncode != 0:
        raise git.GitError(["merge-base", a, b], proc.returncode, proc.stderr)
    return proc.stdout.strip() or None


def _diff(git_dir: Path, base: str, head: str, *options: str) -> str:
    return git.git(
        "diff",
        "-M",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        *options,
        "--end-of-options",
        base,
        head,
        "--",
        git_dir=git_dir,
    ).stdout


def _files(git_dir: Path, base: str, head: str) -> list[FileChange]:
    """One entry per changed path (a rename once, under its new path), with its lines."""
    lines = _numstat(_diff(git_dir, base, head, "--numstat", "-z"))
    files = []
    for status, path, old in _name_status(_diff(git_dir, base, head, "--name-status", "-z")):
        added, deleted = lines.get(path, (None, None))
        files.append(FileChange(path, status, added, deleted, old))
    return files


def _name_status(out: str) -> list[tuple[str, str, str | None]]:
    """`--name-status -z`: `S\\0path\\0`, or `R100\\0old\\0new\\0` for a rename or copy."""
    parts = out.split("\0")
    rows: list[tuple[str, str, str | None]] = []
    i = 0
    while i < len(parts) and parts[i]:
        letter = parts[i][0]
        if letter in "RC" and i + 2 < len(parts):
            rows.append((letter, parts[i + 2], parts[i + 1]))
            i += 3
        elif i + 1 < len(parts):
            rows.append((letter, parts[i + 1], None))
            i += 2
        else:
            break
    return rows


def _numstat(out: str) -> dict[str, tuple[int | None, int | None]]:
    """`--numstat -z`: `added\\tdeleted\\tpath\\0`, or `added\\tdeleted\\t\\0old\\0new\\0`
    for a rename; `-` counts for a binary file. Keyed by the (new) path."""
    parts = out.split("\0")
    lines: dict[str, tuple[int | None, int | None]] = {}
    i = 0
    while i < len(parts) and parts[i]:
        added, deleted, path = (parts[i].split("\t", 2) + ["", ""])[:3]
        if path == "" and i + 2 < len(parts):  # a rename: the old and new paths follow
            path, i = parts[i + 2], i + 3
        else:
            i += 1
        lines[path] = (_count(added), _count(deleted))
    return lines


def _count(text: str) -> int | None:
    return int(text) if text.isdigit() else None


# -- judging it ----------------------------------------------------------------------------


def check(policy: PolicyConfig, change: Change) -> list[Violation]:
    """Every limit of `policy` that `change` crosses, each with its reason."""
    if not has_limits(policy):
        return []
    if change.truncated:
        return [
            Violation(
                kind="too_large",
                reason=f"changes {change.total_files} files, more than Swarm checks against the "
                f"session's policy ({MAX_FILES})",
                found=change.total_files,
                limit=MAX_FILES,
            )
        ]
    found: list[Violation] = []
    touched = _protected(policy.protected_paths, change)
    if touched:
        found.append(
            Violation(
                kind="protected_path",
                reason=f"changes {_files_word(len(touched))} under protected paths ("
                + ", ".join(touched[:3])
                + (" …" if len(touched) > 3 else "")
                + ")",
                found=len(touched),
                paths=touched[:PATHS_NAMED],
            )
        )
    limits = (
        ("deleted_files", "deletes", policy.max_deleted_files, change.deleted_files, "D"),
        ("renamed_files", "renames", policy.max_renamed_files, change.renamed_files, "R"),
    )
    for kind, verb, limit, count, letter in limits:
        if limit is not None and count > limit:
            paths = [f.path for f in change.files if f.status == letter]
            found.append(
                Violation(
                    kind=kind,
                    reason=f"{verb} {_files_word(count)}, the session allows {limit}",
                    found=count,
                    limit=limit,
                    paths=paths[:PATHS_NAMED],
                )
            )
    limit = policy.max_changed_lines
    if limit is not None and change.changed_lines > limit:
        found.append(
            Violation(
                kind="changed_lines",
                reason=f"changes {change.changed_lines} lines (+{change.added} -{change.deleted})"
                f", the session allows {limit}",
                found=change.changed_lines,
                limit=limit,
            )
        )
    return found


def reason(violations: list[Violation]) -> str:
    """One line for a person: `crosses the session's policy: deletes 12 files, …`."""
    return "crosses the session's policy: " + "; ".join(v.reason for v in violations)


def _files_word(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _protected(patterns: list[str], change: Change) -> list[str]:
    """Paths of `change` (a rename's old and new) that a protected glob matches, in order."""
    touched: list[str] = []
    for f in change.files:
        for path in (f.old_path, f.path):
            if path is not None and path not in touched and _any_match(patterns, path):
                touched.append(path)
    return touched


def _any_match(patterns: list[str], path: str) -> bool:
    return any(glob_matches(pattern, path) for pattern in patterns)


def glob_matches(pattern: str, path: str) -> bool:
    """Whether `path` (from the repository's root, `/`-separated) matches `pattern`: `*`
    and `?` within one name, `[abc]`/`[!abc]` a character, `**` any number of names
    (`docs/**`, `**/*.pem`); a pattern ending in `/` stands for everything under it."""
    return _compile(pattern).match(path) is not None


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    if pattern.endswith("/"):
        pattern += "**"
    pattern = pattern.removeprefix("/")
    return re.compile(globs.translate(pattern) + r"\Z", re.DOTALL)
