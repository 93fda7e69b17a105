"""The `shell` agent: the task's prompt is a shell command, run by bash in the worktree.

Success is exit code 0. Useful for scripted steps (codegen, formatting, migrations) and for
testing Swarm end to end without a model. It hands task text to a shell, so an adapter runs
it only when enabled (`SWARM_ALLOW_SHELL_AGENT`, see `swarm_adapter.runners`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import ClassVar, Literal

from swarm_adapter.runners.base import RunContext, RunnerUnavailable, RunResult, base_env
from swarm_common.procs import ProcessResult, run_process

__all__ = ["ShellRunner"]

PROMPT_ARG_BYTES = 100_000


class ShellRunner:
    agent: ClassVar[str] = "shell"
    capabilities: ClassVar[frozenset[str]] = frozenset()
    version: str | None = None
    """No CLI to ask: the shell's version says nothing about what it can do."""

    def __init__(self) -> None:
        self._shell = shutil.which("bash") or shutil.which("sh")

    @property
    def secrets(self) -> list[str]:
        return []

    def model_apis(self) -> list[str]:
        return []

    def sandbox_paths(self) -> list[Path]:
        return []

    async def check(self) -> None:
        if self._shell is None:
            raise RunnerUnavailable("the shell agent needs bash or sh on PATH")

    async def run(self, ctx: RunContext) -> RunResult:
        env = base_env(ctx, dict(os.environ))
        # `--`: a command that begins with `-` is run, not read as the shell's own options.
        command = [self._shell or "/bin/sh", "-c", "--", ctx.message.prompt]
        if len(ctx.message.prompt.encode()) > PROMPT_ARG_BYTES:  # over one argument's limit
            script = ctx.home / "task.sh"
            script.write_text(ctx.message.prompt, encoding="utf-8")
            command = [self._shell or "/bin/sh", str(script)]
        proc = await run_process(
            ctx.wrap(command),
            cwd=ctx.worktree,
            env=env,
            timeout_s=ctx.message.timeout_s,
            cancel=ctx.cancel,
            kill_grace_s=ctx.kill_grace_s,
            tail_bytes=ctx.tail_bytes,
        )
        if proc.cancelled:
            return _result("cancelled", proc, reason="cancelled")
        if proc.timed_out:
            return _result(
                "failed", proc, reason="timeout", error=f"timed out after {ctx.message.timeout_s}s"
            )
        if proc.exit_code == 0:
            return _result("succeeded", proc)
        if proc.exit_code is not None and proc.exit_code < 0:
            return _result(
                "failed", proc, reason="crash", error=f"killed by signal {-proc.exit_code}"
            )
        return _result(
            "failed", proc, reason="exit_code", error=f"exited with code {proc.exit_code}"
        )


def _result(
    outcome: Literal["succeeded", "failed", "cancelled"],
    proc: ProcessResult,
    *,
    reason: str = "",
    error: str = "",
) -> RunResult:
    return RunResult(
        outcome=outcome,
        exit_code=proc.exit_code,
        reason=reason,
        error=error,
        output_tail=proc.tail,
        duration_s=proc.duration_s,
    )
