"""The runner interface: what an agent runner gets (`RunContext`) and returns (`RunResult`).

A runner runs one attempt in a prepared worktree and decides its outcome from the process
(exit code and, for agent CLIs, the final result event). Committing, events and
acknowledgement are the adapter's business, not the runner's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from swarm_common.messages import TaskMessage

__all__ = [
    "ProgressHandler",
    "RunContext",
    "RunResult",
    "Runner",
    "RunnerUnavailable",
    "base_env",
    "task_env",
]

ProgressHandler = Callable[[str, str, dict[str, Any]], None]
"""`(kind, text, data)`: something the agent did, for the timeline. Cheap and synchronous:
the adapter batches these into `task.progress` events."""

_ENV_ALLOWLIST = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TERM",
    "USER",
    "LOGNAME",
    "SHELL",
    "TMPDIR",
    # Reaching the model API from behind a proxy or a private certificate authority.
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)


class RunnerUnavailable(RuntimeError):
    """The runner cannot work on this machine (its CLI is missing, say); the message says
    how to fix it."""


@dataclass
class RunContext:
    message: TaskMessage
    worktree: Path
    home: Path
    """A private folder for the agent's `HOME` and configuration, per attempt."""
    artifacts: Path
    """Where the runner keeps files worth reviewing later (transcripts)."""
    cancel: asyncio.Event
    kill_grace_s: float
    tail_bytes: int
    progress: ProgressHandler
    wrap: Callable[[Sequence[str]], list[str]] = list
    """The attempt's sandbox (`swarm_adapter.sandbox.Cell.wrap`): what runs the agent's argv
    inside it; as it stands without one."""

    def home_folder(self, name: str) -> Path:
        """`name` in the private home, made if missing: a CLI's configuration or its
        temporary folder."""
        folder = self.home / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder


@dataclass
class RunResult:
    outcome: Literal["succeeded", "failed", "cancelled"]
    exit_code: int | None
    reason: str = ""
    """For a failure: `exit_code`, `timeout`, `crash`, ... (stable codes)."""
    error: str = ""
    output_tail: str = ""
    duration_s: float = 0.0
    usage: dict[str, int] = field(default_factory=dict)
    """Tokens as `input`, `cached_input`, `output` (only what the agent reported)."""
    cost_usd: float | None = None
    model: str | None = None
    """The model the CLI ran on, as it said, else as it was asked; None when unknown."""
    transcript_path: Path | None = None
    retry_at: datetime | None = None
    """For `rate_limited`: when the provider's limit resets, if it said."""
    transcript_summary: str | None = None
    """What the agent said last (`swarm_adapter.transcript`): set by the attempt pipeline,
    not the runner; reported with a failure."""
    answer: str | None = None
    """The agent's final message (with a structured answer, its JSON), without a code fence
    around it; None when the agent gave none. Reported for read-only and `output_schema`
    tasks (see `answers`)."""


class Runner(Protocol):
    agent: ClassVar[str]

    @property
    def secrets(self) -> list[str]:
        """Credentials this runner hands its agent: never to be committed or reported."""

    async def check(self) -> None:
        """Raise `RunnerUnavailable` when this runner cannot run here."""

    async def run(self, ctx: RunContext) -> RunResult:
        """Run one attempt to its end, its timeout, or `ctx.cancel`."""

    def model_apis(self) -> list[str]:
        """The base URLs of the model APIs its agent talks to: what its sandbox lets it
        reach (`swarm_adapter.sandbox`)."""

    def sandbox_paths(self) -> list[Path]:
        """What its sandbox must show read-only for its agent to run (its CLI's package)."""


def base_env(ctx: RunContext, environ: dict[str, str]) -> dict[str, str]:
    """The environment every agent starts from: an allowlist of the adapter's own variables
    (no credentials, no Swarm settings), a private HOME, and the task's identity."""
    return task_env(ctx.message, worktree=ctx.worktree, home=ctx.home, environ=environ)


def task_env(
    message: TaskMessage, *, worktree: Path, home: Path, environ: dict[str, str]
) -> dict[str, str]:
    """`base_env` for anything run in a task's worktree (agent, setup command, gates): its
    HOME and TMPDIR are the attempt's own (`home`, `home/tmp`). `SWARM_FEEDBACK` holds
    what went wrong in the previous attempt, if anything."""
    env = {k: environ[k] for k in _ENV_ALLOWLIST if k in environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(
        HOME=str(home),
        TMPDIR=str(home / "tmp"),
        SWARM_SESSION_ID=str(message.session_id),
        SWARM_TASK_ID=str(message.task_id),
        SWARM_TASK_KEY=message.task_key,
        SWARM_ATTEMPT=str(message.attempt),
        SWARM_WORKTREE=str(worktree),
    )
    if message.feedback:
        env["SWARM_FEEDBACK"] = message.feedback
    return env
