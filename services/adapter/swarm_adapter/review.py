"""A review run (`TaskMessage.review`): what its agent is shown of the work it judges, and
the prompt that asks for a verdict.

The worktree starts at the builder's commit, so the reviewer reads the work as it stands;
the prompt holds the diff from the merge base of that commit and the integration head (what
merging it would bring in), cut to `MAX_DIFF_BYTES` with the file list kept whole, and asks
for one JSON verdict (the runners pass the schema where their CLI takes one)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from swarm_common import git
from swarm_common.messages import TaskMessage

__all__ = ["MAX_DIFF_BYTES", "review_prompt", "with_diff"]

log = logging.getLogger(__name__)

MAX_DIFF_BYTES = 96 * 1024
"""The most of the patch a reviewer's prompt holds (the file list is always whole)."""

VERDICT_RULES = """\
## How to answer
- The current directory is a git worktree holding the work as it stands: read any file you
  need. Change nothing: whatever you write is thrown away.
- Judge the work against the task, its acceptance criteria and the rubric. Be exacting:
  your verdict decides whether it merges.
- FAIL when something must change before it can merge (a bug, a missed criterion, broken
  or missing behaviour, a security hole), and list each such thing in `critical_issues`
  precisely enough for the builder to fix it. PASS when nothing like that is left;
  `critical_issues` is then empty. `recommendations` never block.
- Your final message is your verdict, one JSON object and nothing else:
  {"verdict": "PASS" or "FAIL", "summary": "...", "critical_issues": ["..."],
   "recommendations": ["..."]}"""


async def with_diff(message: TaskMessage, worktree: Path) -> TaskMessage:
    """`message` with the diff its review judges (`review.stat`, `review.diff`,
    `review.diff_cut`); unchanged for any other run."""
    review = message.review
    if not review or not review.get("commit"):
        return message
    shown = await asyncio.to_thread(_diff, worktree, review["commit"], review.get("against"))
    return message.model_copy(update={"review": {**review, **shown}})


def _diff(worktree: Path, commit: str, against: str | None) -> dict[str, Any]:
    try:
        base = against
        if against:
            found = git.git("merge-base", commit, against, cwd=worktree, check=False)
            base = found.stdout.strip() or against
        if not base:
            return {"stat": "", "diff": "", "diff_cut": False}
        stat = git.git("diff", "--stat=200", "--no-color", base, commit, cwd=worktree).stdout
        patch = git.git(
            "diff", "--no-color", "--no-ext-diff", base, commit, cwd=worktree, timeout=120
        ).stdout
    except git.GitError as exc:
        log.warning("cannot read the diff under review", extra={"error": str(exc)})
        return {"stat": "", "diff": "", "diff_cut": False, "diff_error": str(exc)[:500]}
    data = patch.encode()
    cut = len(data) > MAX_DIFF_BYTES
    if cut:
        patch = data[:MAX_DIFF_BYTES].decode(errors="ignore")
    return {"stat": stat, "diff": patch, "diff_cut": cut}


def review_prompt(message: TaskMessage) -> str:
    """The prompt of a review run: who reviews, the task the builder was given, the rubric,
    the diff, and how to answer."""
    review = message.review or {}
    verify = bool(review.get("verify"))
    persona = message.persona or {}
    who = persona.get("author_name") or persona.get("name")
    if verify:  # a verifier: the tasks before it merged their work; it judges the whole
        parts = [f"# Verify: {review.get('title') or review.get('task_key')}"]
        parts.append(
            (f"You are {who}, a verifier. " if who else "You are a verifier. ")
            + "The tasks before you merged their work into the branch in this worktree; "
            "verify it as the task below asks."
        )
    else:
        parts = [f"# Review: {review.get('title') or review.get('task_key')}"]
        builder = review.get("builder_agent") or "an agent"
        parts.append(
            (f"You are {who}, a reviewer. " if who else "You are a reviewer. ")
            + f"Another agent ({builder}) did the task below; judge its work. This is review "
            f"round {review.get('round', 1)} of {review.get('max_rounds', 1)}."
        )
    if persona.get("style"):
        parts.append(f"## How you work\n{persona['style']}")
    if message.context:
        parts.append(f"## Goal of the whole session\n{message.context}")
    heading = "## What to verify" if verify else "## The task it was given"
    parts.append(f"{heading}\n{review.get('prompt') or ''}")
    acceptance = review.get("acceptance") or []
    if acceptance:
        parts.append("## Acceptance criteria\n" + "\n".join(f"- {a}" for a in acceptance))
    if review.get("rubric"):
        parts.append(f"## What to check besides\n{review['rubric']}")
    stat = (review.get("stat") or "").rstrip()
    patch = review.get("diff") or ""
    if review.get("diff_error"):
        parts.append(
            "## Its changes\nThe diff could not be read here; compare the files in the "
            "worktree with the task."
        )
    elif not patch:
        parts.append("## Its changes\nThe work changed no file.")
    else:
        cut = (
            f"\n\n(The patch is cut at {MAX_DIFF_BYTES} bytes; read the files listed above "
            "in the worktree for the rest.)"
            if review.get("diff_cut")
            else ""
        )
        what = "## The changes of the session so far" if verify else "## Its changes"
        parts.append(f"{what}\n```\n{stat}\n```\n\n```diff\n{patch}\n```{cut}")
    if message.feedback:
        parts.append(
            f"## What went wrong in your previous answer\nAnswer again, minding this.\n\n"
            f"{message.feedback}"
        )
    parts.append(VERDICT_RULES)
    return "\n\n".join(parts)
