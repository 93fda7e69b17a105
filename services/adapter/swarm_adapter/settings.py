"""Settings of an adapter process (`SWARM_*` environment variables). Adapters need Redis and
the shared workspace, never the database: a database URL given to one is ignored, and
`drop_database_credentials` takes it out of the process's environment at start."""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import MutableMapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from swarm_common.settings import CommonSettings
from swarm_common.specs import NOOP_AGENT, AdapterKind, check_model

__all__ = ["DATABASE_URL_ENV", "AdapterSettings", "drop_database_credentials", "get_settings"]

log = logging.getLogger(__name__)

DATABASE_URL_ENV = "SWARM_DATABASE_URL"
MAX_CONCURRENCY = 64
MAX_NOOP_CONCURRENCY = 4096


class AdapterSettings(CommonSettings):
    agent: AdapterKind = "shell"
    concurrency: int = Field(1, ge=1, le=MAX_NOOP_CONCURRENCY)
    """Tasks run at once: at most 64 for an agent kind (each a process and a worktree),
    up to 4,096 for `noop` (an entry of a batch, see `swarm_adapter.noop`)."""
    worker_name: str = ""
    """Consumer name in the `adapters` group; `<agent>-<host>-<pid>` unless set."""
    heartbeat_interval_s: float = Field(3.0, gt=0)
    cancel_poll_interval_s: float = Field(1.0, gt=0)
    worker_ttl_s: float = Field(30.0, gt=0)
    read_block_ms: int = Field(2000, ge=10)
    shutdown_grace_s: float = Field(30.0, ge=0)
    """On SIGTERM, running attempts get this long to finish before they are cancelled."""
    lease_s: float = Field(12.0, gt=0)
    """An attempt's lease (see `swarm_common.leases`): renewed every heartbeat (four times
    a lease by default); once it lapses, the orchestrator declares the attempt lost and
    runs the task again: the task of an adapter killed outright runs again about 12 s
    later (`bench/recovery.py`)."""
    claim_idle_ms: int = Field(60_000, ge=100)
    """A task message pending this long on another adapter (which died: live ones keep
    their entries fresh) is taken over."""
    max_deliveries: int = Field(5, ge=1)
    """A task message delivered more often goes to the dead-letter stream; its task fails."""
    max_start_failures: int = Field(5, ge=0)
    """`SWARM_MAX_START_FAILURES`: after this many attempts in a row failed at start (the
    agent CLI died before its first event, the worktree could not be made; see `watchdog`),
    the adapter leaves rotation and exits with status 3. 0: never."""
    control_poll_interval_s: float = Field(1.0, gt=0)
    """How often the system mode (drain, emergency stop) is read."""
    kill_grace_s: float = Field(5.0, ge=0)
    """Between SIGTERM and SIGKILL to an agent's process group."""
    output_tail_bytes: int = Field(8192, ge=256)
    progress_interval_s: float = Field(1.0, gt=0)
    """At most one `task.progress` event per attempt per this many seconds."""
    worktree_pool: int = Field(4, ge=0, le=64)
    """`SWARM_WORKTREE_POOL`: clean worktrees kept ready per repository for the next tasks
    (`pool`: reused, moved to the task's commit touching only what differs). 0: every
    attempt gets a new worktree (`git worktree add`), removed in the background after."""

    sandbox: Literal["required", "auto", "off"] = "auto"
    """`SWARM_SANDBOX`: run every agent, setup command and gate in a sandbox of its own
    (`swarm_adapter.sandbox`: bubblewrap, its network limited to its model API and the
    session's `sandbox.allow_hosts`). `required`: refuse to start without one; `auto`: the
    best that works here, said at start; `off`: as the adapter's own user."""
    sandbox_read_only: Annotated[list[Path], NoDecode] = []
    """`SWARM_SANDBOX_READ_ONLY` (colon-separated): more folders the sandbox sees read-only
    (toolchains outside /usr and PATH: an SDK, a shared cache of packages)."""

    claude_path: Path | None = None
    """The `claude` binary; found on PATH when not set."""
    codex_path: Path | None = None
    gemini_path: Path | None = None
    claude_model: str | None = None
    """Model when a task names none; the CLI's own default when this is not set either."""
    codex_model: str | None = "gpt-5.5"
    gemini_model: str | None = "gemini-2.5-pro"
    max_turns: int = Field(50, ge=1, le=1000)
    """Turn limit when a task names none."""
    models: Annotated[list[str], NoDecode] = []
    """`SWARM_MODELS` (comma-separated): the models this adapter may use, announced for
    routing (a task naming another model does not go to its kind when every live adapter of
    the kind lists its own). Empty: its default model alone, when it has one."""
    allow_shell_agent: bool = False
    """`SWARM_ALLOW_SHELL_AGENT`: the shell agent runs every task's prompt as a shell command,
    so an adapter of that kind starts only when this says so."""
    allow_commands: bool = False
    """`SWARM_ALLOW_COMMANDS`: run sessions' setup and gate commands (bash, in the worktree)
    on this adapter. Without it (and without `allow_shell_agent`) a setup command fails the
    attempt, a gate the session asked for fails and a detected one is skipped."""

    @property
    def runs_commands(self) -> bool:
        return self.allow_commands or self.allow_shell_agent

    @field_validator("database_url", mode="before")
    @classmethod
    def _normalize_db(cls, value: object) -> None:
        """Adapters never use the database: whatever URL was given is dropped unread."""
        return None

    @field_validator("claude_model", "codex_model", "gemini_model")
    @classmethod
    def _model_name(cls, value: str | None) -> str | None:
        return check_model(value) if value else None

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("sandbox_read_only", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.split(":") if part.strip()]
        return value

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: list[str]) -> list[str]:
        return [check_model(v) for v in dict.fromkeys(value)]

    @property
    def announced_models(self) -> list[str]:
        """The models it says it may use: `models`, else its kind's default model."""
        default = getattr(self, f"{self.agent}_model", None)
        return list(self.models) or ([default] if default else [])

    @model_validator(mode="after")
    def _concurrency_of_kind(self) -> AdapterSettings:
        if self.agent != NOOP_AGENT and self.concurrency > MAX_CONCURRENCY:
            raise ValueError(
                f"concurrency of a {self.agent} adapter is at most {MAX_CONCURRENCY} "
                f"(up to {MAX_NOOP_CONCURRENCY} for noop)"
            )
        return self

    @model_validator(mode="after")
    def _default_name(self) -> AdapterSettings:
        if not self.worker_name:
            self.worker_name = f"{self.agent}-{socket.gethostname()}-{os.getpid()}"
        return self


def drop_database_credentials(environ: MutableMapping[str, str]) -> bool:
    """Remove `SWARM_DATABASE_URL` from `environ` (the process's own, at start), so nothing
    the adapter spawns (agents, gates, git) inherits it; True when it was there."""
    if environ.pop(DATABASE_URL_ENV, None) is None:
        return False
    log.warning(
        "%s is set, but adapters never use the database: ignored, and removed from the "
        "environment so that no agent, gate or git process inherits it",
        DATABASE_URL_ENV,
    )
    return True


def get_settings(**overrides: object) -> AdapterSettings:
    return AdapterSettings(**overrides)  # type: ignore[arg-type]
