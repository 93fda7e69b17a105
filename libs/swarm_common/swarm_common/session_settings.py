"""A session's `settings`: how its worktrees are set up, which quality gates run, what a
merge conflict does, where checkpoints go, who plans the session's goal, and what becomes
of the follow-up tasks handoffs propose (`delegation`).

The orchestrator validates them when a session is created and sends them with every task
message; the adapter reads them back with `SessionSettings.model_validate`. Unknown keys are
refused, so a misspelt setting is an error rather than silently ignored.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from swarm_common.gates import GateConfig
from swarm_common.specs import AgentKind, ModelName, ReviewSpec, Text

__all__ = [
    "BudgetConfig",
    "CheckpointConfig",
    "ConflictConfig",
    "DelegationConfig",
    "FailoverConfig",
    "MAX_SETUP_FILE_BYTES",
    "PlannerConfig",
    "PolicyConfig",
    "SandboxConfig",
    "SessionSettings",
    "SetupConfig",
    "check_relative_path",
]

MAX_SETUP_FILES = 50
MAX_SETUP_FILE_BYTES = 1024 * 1024


def check_relative_path(value: str) -> str:
    """A path inside a worktree: relative, no `..`, no `.git`, nothing git reads as an
    option."""
    path = PurePosixPath(value)
    if (
        not value
        or len(value) > 500
        or "\0" in value
        or "\\" in value
        or value.startswith("-")
        or path.is_absolute()
        or any(part in ("..", ".git") for part in path.parts)
        or value.endswith("/")
    ):
        raise ValueError(f"{value!r} is not a relative path inside the repository")
    return str(path)


RelativePath = Annotated[str, AfterValidator(check_relative_path)]


class SetupConfig(BaseModel):
    """Makes a fresh worktree runnable before the agent starts."""

    model_config = ConfigDict(extra="forbid")

    files: list[RelativePath] = Field(
        default_factory=list,
        max_length=MAX_SETUP_FILES,
        description="Untracked files of a local repository (e.g. `.env`) copied into every "
        "worktree; never committed.",
    )
    command: Text | None = Field(
        None, max_length=4000, description="Run with bash in the worktree before the agent."
    )
    timeout_s: int = Field(900, ge=1, le=24 * 3600)


class ConflictConfig(BaseModel):
    """What a merge conflict does: `review` puts the session in `awaiting_review`; `resolve`
    adds a task that merges the integration branch into the task's work and resolves it."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["review", "resolve"] = "review"
    agent: AgentKind | None = Field(
        None, description="Agent of resolution tasks; the conflicting task's agent if null."
    )
    prompt: Text | None = Field(
        None,
        max_length=64 * 1024,
        description="Prompt of resolution tasks (for `shell`, the command); a default for "
        "agent CLIs names the conflicting files.",
    )
    max_rounds: int = Field(
        2, ge=1, le=10, description="Resolution tasks per task before asking for review."
    )


class PlannerConfig(BaseModel):
    """Who turns the session's goal into a task graph (`POST /v1/sessions/{id}/plan`)."""

    model_config = ConfigDict(extra="forbid")

    agent: Literal["heuristic", "claude", "codex", "gemini"] | None = Field(
        None,
        description="The planning agent; `heuristic` plans from the goal's structure without "
        "a model. Null: the server's default (`SWARM_PLANNER_AGENT`).",
    )
    model: ModelName | None = Field(None, description="Model for the planning agent's CLI.")
    timeout_s: int = Field(900, ge=30, le=24 * 3600)
    max_turns: int | None = Field(None, ge=1, le=1000)


class CheckpointConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on_finish: bool = Field(
        True,
        description="When every task has succeeded and merged, take a final checkpoint; the "
        "session is `finalized` when it passes.",
    )


class DelegationConfig(BaseModel):
    """What becomes of the follow-up tasks a handoff proposes: `approve` keeps them until a
    person accepts or refuses each, `auto` adds them at once, `off` refuses them. A task
    proposed by a delegated task is one level deeper; past `max_depth`, or past
    `max_per_task` proposals of one task, a proposal is refused with the reason. Given as a
    word (`"delegation": "auto"`), it is the policy with the default limits."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["auto", "approve", "off"] = "approve"
    max_depth: int = Field(
        2, ge=1, le=10, description="Most levels of delegation below a task people gave."
    )
    max_per_task: int = Field(5, ge=1, le=10, description="Most proposals one task makes.")

    @model_validator(mode="before")
    @classmethod
    def _word(cls, value: object) -> object:
        return {"policy": value} if isinstance(value, str) else value


class BudgetConfig(BaseModel):
    """What a session may spend (`graph.budgets`). At 80% of a limit a warning goes on the
    timeline; once it is spent no new attempt starts and the session is `suspended` with the
    reason `budget_exhausted` (`stop` also stops its running agents; `finish` lets them end).
    Raising the budget (`PUT /v1/sessions/{id}/budget`) resumes it. `per_task_usd` caps one
    attempt: its adapter stops the agent once the usage its CLI streams costs more."""

    model_config = ConfigDict(extra="forbid")

    usd: float | None = Field(None, gt=0, le=1_000_000, description="Most US dollars to spend.")
    tokens: int | None = Field(
        None, gt=0, le=10**12, description="Most tokens (input and output) to use."
    )
    per_task_usd: float | None = Field(
        None, gt=0, le=1_000_000, description="Most one attempt of a task may spend."
    )
    on_exhausted: Literal["stop", "finish"] = Field(
        "finish",
        description="`stop`: running agents are stopped at once; `finish`: they finish.",
    )


class FailoverConfig(BaseModel):
    """When a task with `fallback` kinds moves on (`graph.failover`): its attempt ended rate
    limited or out of quota (or its kind has no live adapter) and the reset is further away
    than `max_wait_s`."""

    model_config = ConfigDict(extra="forbid")

    max_wait_s: int = Field(
        300, ge=0, le=7 * 24 * 3600, description="Longest wait for a kind's reset."
    )


class PolicyConfig(BaseModel):
    """Limits on what one task may change before a person looks (`integration.policies`):
    a task whose work crosses one waits in `awaiting_approval` with the reason."""

    model_config = ConfigDict(extra="forbid")

    protected_paths: list[Annotated[Text, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list,
        max_length=100,
        description="Globs (`fnmatch`, `**` for any depth) of paths no task may change "
        "without approval.",
    )
    max_deleted_files: int | None = Field(None, ge=0, le=1_000_000)
    max_renamed_files: int | None = Field(None, ge=0, le=1_000_000)
    max_changed_lines: int | None = Field(
        None, ge=0, le=100_000_000, description="Lines added plus lines deleted."
    )


_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST_PATTERN = re.compile(
    rf"^(?P<name>(\*\.)?({_LABEL}\.)*{_LABEL}|\[[0-9a-f:.]+\])(:(?P<port>[0-9]{{1,5}}))?$"
)


def check_host(value: str) -> str:
    """`host`, `host:port`, `*.domain[:port]` or `[ipv6][:port]`, lower-cased."""
    host = value.strip().lower()
    found = _HOST_PATTERN.match(host) if len(host) <= 253 else None
    port = found.group("port") if found else None
    if found is None or (port is not None and not 0 < int(port) < 65536):
        raise ValueError(f"{value!r} is not a host, host:port or *.domain")
    return host


class SandboxConfig(BaseModel):
    """What an agent's sandbox may reach besides its model API (see `swarm_adapter.sandbox`)."""

    model_config = ConfigDict(extra="forbid")

    allow_hosts: list[Annotated[str, AfterValidator(check_host)]] = Field(
        default_factory=list,
        max_length=100,
        description="Hosts the agent, its setup command and its gates may reach through the "
        "adapter's proxy: `host` (ports 80 and 443), `host:port`, `*.domain` (any "
        "subdomain), e.g. `registry.npmjs.org` for `npm ci`. Every other connection is "
        "refused and counted on the attempt.",
    )


class SessionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)

    gates: GateConfig = Field(default_factory=GateConfig)
    setup: SetupConfig = Field(default_factory=SetupConfig)
    conflicts: ConflictConfig = Field(default_factory=ConflictConfig)
    review: ReviewSpec | None = Field(
        None,
        description="Review every work task's attempt before it merges (a task's own "
        "`review` wins; `review: false` on a task opts it out).",
    )
    delegation: DelegationConfig = Field(default_factory=DelegationConfig)
    budget: BudgetConfig | None = Field(None, description="What the session may spend.")
    failover: FailoverConfig = Field(default_factory=FailoverConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    dry_run: bool = Field(
        False,
        description="Run agents and gates but merge nothing into the integration or target "
        "branch; each task reports what it would have merged.",
    )
    weight: int = Field(
        1,
        ge=1,
        le=100,
        description="The session's share of each agent kind's slots against other sessions "
        "of its tenant (weighted round robin).",
    )
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    push: bool = Field(
        False,
        description="Push the target branch and checkpoint tags to the session's origin "
        "(fast-forward only).",
    )
