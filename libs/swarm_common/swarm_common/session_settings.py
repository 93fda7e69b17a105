"""A session's `settings`: how its worktrees are set up, which quality gates run, what a
merge conflict does, where checkpoints go, who plans the session's goal, and what becomes
of the follow-up tasks handoffs propose (`delegation`).

The orchestrator validates them when a session is created and sends them with every task
message; the adapter reads them back with `SessionSettings.model_validate`. Unknown keys are
refused, so a misspelt setting is an error rather than silently ignored.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from swarm_common.gates import GateConfig
from swarm_common.specs import AgentKind, ModelName, ReviewSpec, Text

__all__ = [
    "CheckpointConfig",
    "ConflictConfig",
    "DelegationConfig",
    "MAX_SETUP_FILE_BYTES",
    "PlannerConfig",
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
    push: bool = Field(
        False,
        description="Push the target branch and checkpoint tags to the session's origin "
        "(fast-forward only).",
    )
