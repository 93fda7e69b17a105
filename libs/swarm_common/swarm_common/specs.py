"""What a person (or a tool) submits: the spec of a task in a task graph.

Keys become git branch names and folder names, so they are validated here, once, for every
entry point (REST, CLI files, planners).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from swarm_common.redaction import looks_secret

__all__ = [
    "ADAPTER_KINDS",
    "AGENT_KINDS",
    "AUTO_AGENT",
    "AdapterKind",
    "AgentKind",
    "MAX_PROMPT_CHARS",
    "PRIORITY_LEVELS",
    "Priority",
    "MAX_PERSONA_NAME_CHARS",
    "NOOP_AGENT",
    "RaceSpec",
    "ReviewSpec",
    "TaskAgent",
    "TaskKey",
    "TaskSpec",
    "Text",
    "check_persona_name",
    "check_task_key",
    "check_text",
]

AgentKind = Literal["shell", "claude", "codex", "gemini"]
AdapterKind = Literal["shell", "claude", "codex", "gemini", "noop"]
AGENT_KINDS: tuple[str, ...] = ("shell", "claude", "codex", "gemini")
"""The kinds that run an agent (a command or a CLI) in a worktree."""
NOOP_AGENT = "noop"
"""A join or milestone node: an adapter of this kind completes it in-process, with no
worktree, no agent and nothing to merge. Never chosen by `auto`."""
ADAPTER_KINDS: tuple[str, ...] = (*AGENT_KINDS, NOOP_AGENT)
"""Every kind an adapter can serve."""
AUTO_AGENT = "auto"
TaskAgent = Literal["shell", "claude", "codex", "gemini", "noop", "auto"]
"""What a task asks for: an agent kind, or `auto` (Swarm routes it when it is queued,
`swarm_orchestrator.graph.routing`)."""

MAX_KEY_CHARS = 64
MAX_PROMPT_CHARS = 256 * 1024
MAX_DEPENDENCIES = 1000
MAX_PERSONA_NAME_CHARS = 64
READ_ONLY_TASK_FIELDS = ("status", "merge_status", "result", "assigned_persona")
"""What an exported task says of its run (`GET /v1/sessions/{id}/graph`), and what Swarm
adds to a stored spec (`assigned_persona`, the persona it runs as); a submitted task's are
ignored."""

_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PERSONA_NAME_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def check_task_key(key: str) -> str:
    """A key is one safe path and ref component: `[A-Za-z0-9][A-Za-z0-9_.-]*`, ≤ 64 chars,
    no `..`, not ending in `.` or `.lock` (git's ref rules)."""
    if not key or len(key) > MAX_KEY_CHARS:
        raise ValueError(f"task key must be 1 to {MAX_KEY_CHARS} characters")
    if not _KEY_RE.fullmatch(key):
        raise ValueError(
            "task key must start with a letter or digit and hold only letters, digits, "
            "'_', '-' and '.'"
        )
    if ".." in key or key.endswith(".") or key.endswith(".lock"):
        raise ValueError("task key must not contain '..' or end with '.' or '.lock'")
    return key


TaskKey = Annotated[str, AfterValidator(check_task_key)]


def check_persona_name(value: str) -> str:
    """A persona's name: 1–64 lower-case letters and digits in words joined by single
    hyphens (`ada-lovelace-2`); it appears in URLs, branch names and commit addresses."""
    if len(value) > MAX_PERSONA_NAME_CHARS or not _PERSONA_NAME_RE.fullmatch(value):
        raise ValueError(
            f"a persona name is 1 to {MAX_PERSONA_NAME_CHARS} lower-case letters and digits, "
            "in words joined by single hyphens (ada-lovelace-2)"
        )
    return value


def check_text(value: str) -> str:
    """PostgreSQL cannot store NUL, and no prompt or name needs one. Nor does any of them
    need a credential: what is submitted travels in task messages and shows on timelines,
    so text holding a well-known key format is refused (without echoing it)."""
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    found = looks_secret(value)
    if found is not None:
        raise ValueError(
            f"text holds what looks like a credential ({found[:6]}…); give secrets to the "
            "adapters through their environment, never in a task or a session"
        )
    return value


Text = Annotated[str, AfterValidator(check_text)]

_MODEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@\[\]-]{0,199}")
_TOOL_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,99}(\([^()\n]{0,200}\))?")


def check_model(value: str) -> str:
    """A model name goes into an agent's command line: it must not read as an option."""
    if not _MODEL_RE.fullmatch(value):
        raise ValueError("a model name holds letters, digits and . _ : / @ - [ ] only")
    return value


def check_tool(value: str) -> str:
    """A tool name, optionally with a rule: `Bash`, `Bash(git diff:*)`, `mcp__x__y`."""
    if not _TOOL_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a tool name")
    return value


ModelName = Annotated[str, AfterValidator(check_model)]

PRIORITY_LEVELS: dict[str, int] = {"urgent": 100, "high": 10, "normal": 0, "low": -10}
"""Named priorities and the numbers they stand for."""


def _priority(value: Any) -> Any:
    """A named level (`high`, `normal`, `low`) as its number."""
    if isinstance(value, str):
        level = PRIORITY_LEVELS.get(value.strip().lower())
        if level is None:
            raise ValueError(f"priority must be a number or one of {', '.join(PRIORITY_LEVELS)}")
        return level
    return value


Priority = Annotated[int, BeforeValidator(_priority), Field(ge=-1000, le=1000)]
ToolName = Annotated[str, AfterValidator(check_tool)]


PersonaName = Annotated[str, AfterValidator(check_persona_name)]


class ReviewSpec(BaseModel):
    """A reviewer for a task's work: after its attempt succeeds and its gates pass, a
    read-only run of `agent` reads the diff and answers a verdict (`PASS` or `FAIL`). `FAIL`
    sends the builder back with the critical issues as feedback, up to `max_rounds`
    reviews; then the task fails with the last verdict."""

    model_config = ConfigDict(extra="forbid")

    agent: Literal["auto", "claude", "codex", "gemini"] = Field(
        "auto",
        description="`auto`: another agent kind than the builder's where a live adapter "
        "serves one, else the builder's.",
    )
    persona: PersonaName | None = Field(
        None,
        description="The reviewer's persona; left out, one of role `qa` when the catalogue "
        "has any.",
    )
    rubric: Text | None = Field(
        None, max_length=8000, description="What the reviewer checks beyond the task's own words."
    )
    max_rounds: int = Field(2, ge=1, le=10, description="Reviews before the task fails.")


class RaceSpec(BaseModel):
    """Best of N: `n` attempts of the task at once, each a contender in its own worktree on
    one of `agents` (in turn); the first whose gates and review pass wins and is merged,
    the others are cancelled and kept on their branches."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(ge=2, le=10)
    agents: list[Literal["claude", "codex", "gemini", "shell"]] = Field(
        default_factory=list,
        max_length=10,
        description="The contenders' agent kinds, in turn; the task's own when left out.",
    )


class TaskSpec(BaseModel):
    """One node of a task graph, as submitted."""

    model_config = ConfigDict(extra="forbid")

    key: TaskKey = Field(description="Unique within the session; names the task's branch.")
    title: Text = Field("", max_length=500)
    prompt: Text = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="What the agent is asked to do; for `shell`, the command.",
    )
    agent: TaskAgent = Field(
        "shell",
        description="The agent kind that runs it; `auto`: Swarm chooses one each time the "
        "task is queued (the persona's preferences, what the task needs, which kinds have "
        "live adapters with free slots, price), never `shell`; `noop`: a join or milestone "
        "that a `noop` adapter completes at once, with no worktree and nothing to merge.",
    )
    persona: PersonaName | None = Field(
        None,
        description="A persona of the session's catalogue (`swarm personas`): its working "
        "style goes into the prompt and it authors the commits. Left out, a task whose "
        "`role` is a persona role gets one of that role (best on `skills`).",
    )
    role: Text | None = Field(
        None,
        max_length=100,
        description="What the agent acts as; without a persona, the author of its commits.",
    )
    skills: list[Annotated[Text, Field(max_length=100)]] = Field(
        default_factory=list, max_length=50
    )
    depends_on: list[TaskKey] = Field(default_factory=list, max_length=MAX_DEPENDENCIES)
    priority: Priority = Field(
        0,
        description="Higher runs first among the ready tasks of its session: a number from "
        "-1000 to 1000, or `urgent` (100), `high` (10), `normal` (0), `low` (-10).",
    )
    timeout_s: int = Field(1800, ge=1, le=7 * 24 * 3600)
    max_attempts: int = Field(1, ge=1, le=20)
    gates: list[Literal["lint", "test", "build"]] | None = Field(
        None,
        max_length=3,
        description="Quality gates to run after the agent; null means all the session has.",
    )
    retry_on_gate_failure: bool = Field(
        False,
        description="A failed gate counts as a failed attempt that is retried (up to "
        "`max_attempts`), with the gate's output in the next prompt.",
    )
    requires_approval: bool = Field(
        False,
        description="After a successful attempt the task waits in `awaiting_approval` until "
        "a person approves it (`POST /v1/tasks/{id}/approve`); only then is it merged and "
        "its dependents run. Cancelling it instead abandons the work.",
    )
    acceptance: list[Annotated[Text, Field(max_length=2000)]] = Field(
        default_factory=list, max_length=50, description="Acceptance criteria for the agent."
    )
    files: list[Annotated[Text, Field(max_length=500)]] = Field(
        default_factory=list, max_length=200, description="Files the task is expected to touch."
    )
    model: ModelName | None = Field(
        None, description="Model for an agent CLI; the adapter's default when left out."
    )
    max_turns: int | None = Field(None, ge=1, le=1000, description="Agent turn limit.")
    allowed_tools: list[ToolName] | None = Field(
        None, max_length=50, description="Tools the agent may use; the CLI's default set if null."
    )
    output_schema: dict[str, Any] | None = Field(
        None, description="JSON schema the agent's final message must follow (Codex)."
    )
    review: ReviewSpec | bool | None = Field(
        None,
        description="Review its work before it merges: a reviewer, `true` for the session's "
        "(`settings.review`) or the default one, `false` for none even when the session "
        "reviews every task; null takes the session's.",
    )
    fallback: list[Literal["claude", "codex", "gemini"]] = Field(
        default_factory=list,
        max_length=3,
        description="Agent kinds to move to, in order, when an attempt ends rate limited or "
        "out of quota (or the kind has no live adapter) and the reset is further away than "
        "`settings.failover.max_wait_s`; the next attempt starts from the work left.",
    )
    race: RaceSpec | None = Field(
        None, description="Best of N: run `n` contenders at once; the first to pass wins."
    )
    verify: bool = Field(
        False,
        description="A verifier: it reads the integration branch (its dependencies' merged "
        "work) without changing it and answers a verdict (PASS or FAIL, critical issues, "
        "recommendations); FAIL fails it, so its dependents are blocked.",
    )
    phase: Text | None = Field(
        None, max_length=100, description="The stage of the plan the task belongs to."
    )
    epic: Text | None = Field(None, max_length=100, description="A named group of related tasks.")
    estimated_hours: float | None = Field(
        None, ge=0, le=10_000, description="The planner's (or a person's) estimate of the work."
    )

    @model_validator(mode="before")
    @classmethod
    def _ignore_read_only(cls, value: Any) -> Any:
        """An exported graph's tasks say how they ran (`READ_ONLY_TASK_FIELDS`); submitted
        again, that is ignored."""
        if isinstance(value, dict) and any(f in value for f in READ_ONLY_TASK_FIELDS):
            return {k: v for k, v in value.items() if k not in READ_ONLY_TASK_FIELDS}
        return value

    @model_validator(mode="after")
    def _defaults(self) -> TaskSpec:
        if not self.title:
            self.title = self.key
        if self.key in self.depends_on:
            raise ValueError(f"task {self.key!r} depends on itself")
        if self.agent == NOOP_AGENT:
            work = [
                name
                for name in ("race", "review", "verify", "requires_approval", "fallback")
                if getattr(self, name)
            ]
            if work:
                raise ValueError(f"a noop task does no work to {'/'.join(work)}: drop {work[0]}")
        return self
