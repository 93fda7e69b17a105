"""The attempt pipeline's escape check: `escape`'s findings turned into the attempt's
`workspace_escape` failure, with what can be undone undone (a mirror's config put back, the
task's branch put back where the attempt started). `escape` finds; this module decides what
the attempt reports and cleans up after it."""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import Any

from swarm_adapter import escape
from swarm_adapter.outcome import spend
from swarm_adapter.runners.base import RunResult
from swarm_adapter.running import about, log_context
from swarm_adapter.worktree import WorktreeError, Worktrees
from swarm_common import git
from swarm_common.gates import GateResult
from swarm_common.messages import TaskFailed, TaskMessage
from swarm_common.redaction import Redactor
from swarm_common.text import clean_text

__all__ = ["EscapeCheck"]

log = logging.getLogger(__name__)


class EscapeCheck:
    """Take a snapshot of the workspace before the attempt writes; later, `refusal` says
    whether the attempt escaped its worktree since."""

    def __init__(self, *, worktrees: Worktrees, redact: Redactor, worker: str) -> None:
        self.worktrees = worktrees
        self.redact = redact
        self.worker = worker

    async def snapshot(self, worktree: Path) -> escape.Snapshot:
        return await asyncio.to_thread(escape.snapshot, self.worktrees.workspace, worktree)

    async def refusal(
        self,
        message: TaskMessage,
        worktree: Path,
        before: escape.Snapshot,
        checks: list[GateResult],
        result: RunResult | None = None,
        *,
        exclude: list[str] | None = None,
        listed: escape.Listed | None = None,
    ) -> TaskFailed | None:
        """The `workspace_escape` failure when the attempt wrote to the workspace outside its
        worktree since `before` or (with `exclude`, before the commit) leaves a symlink or a
        `.git` file pointing out of it; None when it did not. The task's branch is put back
        where the attempt started, so nothing of it stays committed. `listed` gets the
        worktree's `git status` entries when the check read them."""
        ran = result or RunResult(outcome="failed", exit_code=None)
        gates = [c.model_dump(mode="json") for c in checks]
        links: list[str] = []
        writes = await self._writes_outside(message, before)
        if not writes and exclude is not None:
            try:
                links = await self._escaping_links(message, worktree, before, exclude, listed)
            except (git.GitError, TimeoutError) as exc:  # unchecked: not to be committed
                return TaskFailed(
                    **about(message, self.worker),
                    reason="git_error",
                    error=f"cannot check the worktree for symlinks: {exc}",
                    exit_code=ran.exit_code,
                    gates=gates,
                    **spend(ran),
                )
        if not links and not writes:
            return None
        return await self._refuse(message, escape.describe(links, writes), ran, gates)

    async def _writes_outside(self, message: TaskMessage, before: escape.Snapshot) -> list[str]:
        """The workspace's changes outside the worktree since `before`. Checked first: before
        git runs again here, a mirror's config written by the agent (a filter or fsmonitor
        command, say) is put back."""
        workspace = self.worktrees.workspace
        writes = await asyncio.to_thread(escape.writes_outside, workspace, before)
        if writes:
            undone = await asyncio.to_thread(escape.restore_mirrors, workspace, before)
            if undone:
                log.warning("writes into the mirror undone", extra=self._ctx(message, paths=undone))
        return writes

    async def _escaping_links(
        self,
        message: TaskMessage,
        worktree: Path,
        before: escape.Snapshot,
        exclude: list[str],
        listed: escape.Listed | None,
    ) -> list[str]:
        """Symlinks (and a `.git` file) the commit would take that point out of the
        worktree. Raises `git.GitError` or `TimeoutError`."""
        return await asyncio.to_thread(
            functools.partial(
                escape.escaping_symlinks,
                worktree,
                message.base_commit,
                exclude=exclude,
                expected_git_link=before.git_link,
                listed=listed,
            )
        )

    async def _refuse(
        self, message: TaskMessage, described: str, ran: RunResult, gates: list[dict[str, Any]]
    ) -> TaskFailed:
        """Put the task's branch back where the attempt started; the `workspace_escape`
        failure."""
        error = clean_text(self.redact(described))
        log.warning(
            "the attempt wrote outside its worktree; its work is refused",
            extra=self._ctx(message, error=error[:1000]),
        )
        try:
            await self.worktrees.restore_branch(message)
        except WorktreeError as exc:
            log.warning("task branch not restored", extra=self._ctx(message, error=str(exc)))
        return TaskFailed(
            **about(message, self.worker),
            reason="workspace_escape",
            error=error[:4000],
            exit_code=ran.exit_code,
            output_tail=ran.output_tail,
            duration_s=ran.duration_s,
            gates=gates,
            **spend(ran),
        )

    def _ctx(self, message: TaskMessage, **extra: Any) -> dict[str, Any]:
        return log_context(message, self.worker, **extra)
