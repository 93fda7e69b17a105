"""Pydantic models of every message that crosses Redis: the task message and the events.

A message class names its envelope `type` in `TYPE`; `MESSAGE_TYPES` maps types back to
classes for decoding. Adapters learn everything about a task from `TaskMessage`, and report
everything through the events below.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from swarm_common.handoffs import BoardFact, Handoff, ParentHandoff

__all__ = [
    "EVENT_TYPES",
    "Began",
    "MAX_ANSWER_CHARS",
    "MAX_SUMMARY_CHARS",
    "MESSAGE_TYPES",
    "CancelRequest",
    "Message",
    "TaskCancelled",
    "TaskEvent",
    "TaskFailed",
    "TaskHeartbeat",
    "TaskMessage",
    "TaskProgress",
    "TaskStarted",
    "TaskSucceeded",
    "WorkerOffline",
    "WorkerOnline",
    "utcnow",
]


MAX_ANSWER_CHARS = 512 * 1024
"""The longest final message an adapter reports (a plan of a few hundred tasks)."""
MAX_SUMMARY_CHARS = 4000
"""The longest transcript summary a failed attempt reports (`TaskFailed.transcript_summary`)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Base of every stream payload; unknown fields are kept so newer senders do not break
    older readers."""

    model_config = ConfigDict(extra="allow", frozen=True)
    TYPE: ClassVar[str] = ""


class TaskMessage(Message):
    """One attempt of one task, for an adapter of `agent`'s kind."""

    TYPE: ClassVar[str] = "task.run"

    session_id: UUID
    task_id: UUID
    task_key: str
    attempt: int = Field(ge=1, description="Fencing token: events of older attempts are ignored.")
    agent: str
    title: str
    prompt: str
    role: str | None = None
    persona: dict[str, Any] | None = Field(
        None,
        description="The persona the task runs as (`name`, `style`, `author_name`, "
        "`author_email`): its style goes into the prompt, it authors the commit.",
    )
    skills: list[str] = Field(default_factory=list)
    acceptance: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    gates: list[str] | None = None
    context: str = Field("", description="The session's goal, for agents that take context.")
    repo: str = Field(description="The session's bare repository, relative to the workspace.")
    base_commit: str = Field(description="The commit the task's worktree starts from.")
    merge_with: str | None = Field(
        None,
        description="Conflict resolution: merge this commit (the integration head) into the "
        "worktree, leaving conflict markers for the agent to resolve.",
    )
    conflict_files: list[str] = Field(
        default_factory=list, description="Conflict resolution: the files that conflicted."
    )
    feedback: str | None = Field(
        None, description="What went wrong in the previous attempt (failed gates' output)."
    )
    branch: str
    timeout_s: int
    model: str | None = None
    max_turns: int | None = None
    allowed_tools: list[str] | None = None
    output_schema: dict[str, Any] | None = None
    read_only: bool = Field(
        False,
        description="A run that answers rather than changes (a planner): no setup command, "
        "no gates, no commit; what the agent writes in its worktree is discarded, and the "
        "final message comes back as `answer`.",
    )
    review: dict[str, Any] | None = Field(
        None,
        description="A review run (read-only, answers a verdict): the work it reviews — "
        "`task_key`, `title`, `prompt`, `acceptance`, `commit` (the builder's; the worktree "
        "starts there), `against` (the integration head: the diff is from their merge base), "
        "`round`, `max_rounds`, `rubric`, `builder_agent`.",
    )
    settings: dict[str, Any] = Field(default_factory=dict)
    handoffs: list[ParentHandoff] = Field(
        default_factory=list,
        description="The parents' handoffs (summary, notes), for the prompt and "
        "`.swarm/context.json`; bounded when queued.",
    )
    blackboard: list[BoardFact] = Field(
        default_factory=list,
        description="The session's blackboard as it stood when the task was queued (each "
        "key's latest value, the newest first; bounded).",
    )
    blackboard_omitted: int = Field(0, description="Facts left out of `blackboard` (bounds).")
    event_key: str | None = Field(
        None,
        repr=False,
        description="The attempt's secret key: the adapter proves every event about the "
        "attempt with it (`swarm_common.proofs`) and keeps it from its agent. An "
        "orchestrator drops events of an attempt that lack the proof.",
    )


class CancelRequest(Message):
    """Asks whoever runs `attempt` of `task_id` to stop it."""

    TYPE: ClassVar[str] = "task.cancel"

    task_id: UUID
    attempt: int
    reason: str = "cancelled"


class TaskEvent(Message):
    """Common fields of every event about one attempt."""

    session_id: UUID
    task_id: UUID
    attempt: int
    worker: str
    at: datetime = Field(default_factory=utcnow, description="When it happened, adapter clock.")


class TaskStarted(TaskEvent):
    TYPE: ClassVar[str] = "task.started"

    branch: str
    base_commit: str
    deliveries: int = Field(
        1,
        ge=1,
        description="Deliveries of its task message so far: more than 1 when the adapter took "
        "it over from one that vanished (counted in `swarm_reclaims_total`).",
    )


class TaskHeartbeat(TaskEvent):
    TYPE: ClassVar[str] = "task.heartbeat"


class TaskProgress(TaskEvent):
    """Something the agent did, for the timeline: a message, a tool call, a file change."""

    TYPE: ClassVar[str] = "task.progress"

    kind: str
    text: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class Began(BaseModel):
    """An attempt's start, sent inside its result (`_TaskOutcome.began`) when the attempt
    ended before its start went out: one report for both, which the orchestrator applies as
    the `TaskStarted` it stands for, then the result (a `noop` task's)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    at: datetime
    branch: str
    base_commit: str
    deliveries: int = Field(1, ge=1, description="As `TaskStarted.deliveries`.")


class _TaskOutcome(TaskEvent):
    began: Began | None = Field(
        None,
        description="The attempt's start, when it is reported with its result (`Began`); "
        "None when a `task.started` report of its own went out (or from an adapter that "
        "predates it).",
    )
    exit_code: int | None = None
    gates: list[dict[str, Any]] = Field(
        default_factory=list, description="Setup and quality gate results (GateResult)."
    )
    commit: str | None = Field(None, description="The task branch's head after the attempt.")
    changed_files: list[str] = Field(default_factory=list)
    duration_s: float = 0.0
    output_tail: str = Field("", description="The last part of the agent's output.")
    usage: dict[str, int] = Field(
        default_factory=dict, description="Tokens: input, cached_input, output (as reported)."
    )
    cost_usd: float | None = Field(
        None, description="What the CLI itself claimed the run cost (Claude does), if anything."
    )
    model: str | None = Field(
        None,
        description="The model the CLI ran on: what it said (its init event), else what it "
        "was asked to use; None when unknown (`shell`, or an adapter that predates it).",
    )
    transcript_path: str | None = Field(
        None, description="The raw transcript, relative to the workspace."
    )
    sandbox: dict[str, Any] | None = Field(
        None,
        description="Its sandbox (`swarm_adapter.sandbox`): `mode`, connections `allowed` and "
        "`refused` by its proxy, the first `refused_hosts`; None without one.",
    )


class TaskSucceeded(_TaskOutcome):
    TYPE: ClassVar[str] = "task.succeeded"

    answer: str | None = Field(
        None,
        max_length=MAX_ANSWER_CHARS,
        description="The agent's final message (for a task with an `output_schema`, the "
        "JSON that follows it); sent for `read_only` and `output_schema` tasks only.",
    )
    handoff: Handoff | None = Field(
        None,
        description="What the task hands the tasks after it, taken from the agent's final "
        "answer (`swarm_common.handoffs`); None from an adapter that predates it.",
    )


class TaskFailed(_TaskOutcome):
    TYPE: ClassVar[str] = "task.failed"

    reason: str = Field(
        description="Stable code: exit_code, timeout, crash, auth, rate_limited, turn_limit, "
        "model_unreachable, git_error, worktree_error, adapter_error, setup_failed, "
        "gate_failed, unresolved_conflict, dead_lettered, workspace_escape (the attempt "
        "wrote outside its worktree; never retried), invalid_task (a value the adapter may "
        "not pass to its agent)"
    )
    error: str = ""
    retry_at: datetime | None = Field(
        None, description="For `rate_limited`: when the provider's limit resets, if it said."
    )
    transcript_summary: str | None = Field(
        None,
        max_length=MAX_SUMMARY_CHARS,
        description="What the agent said last (its final messages, redacted, bounded): the "
        "context of the attempt that takes over, on another kind after a failover.",
    )


class TaskCancelled(_TaskOutcome):
    TYPE: ClassVar[str] = "task.cancelled"

    reason: str = "cancelled"


class WorkerOnline(Message):
    TYPE: ClassVar[str] = "worker.online"

    worker: str
    agent: str
    host: str
    pid: int
    concurrency: int
    models: list[str] = Field(
        default_factory=list,
        description="Models it may use (`SWARM_MODELS`, else its default model); empty: the "
        "CLI's own default, unknown.",
    )
    cli_version: str | None = Field(
        None, description="What `<cli> --version` said at start; None for `shell` or unknown."
    )
    capabilities: list[str] = Field(
        default_factory=list,
        description="What its runner can do (`swarm_common.capabilities`): `prose`, "
        "`structured_output`, `allowed_tools`, `read_only`.",
    )
    at: datetime = Field(default_factory=utcnow)


class WorkerOffline(Message):
    TYPE: ClassVar[str] = "worker.offline"

    worker: str
    reason: str = "stopped"
    at: datetime = Field(default_factory=utcnow)


EVENT_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        TaskStarted,
        TaskHeartbeat,
        TaskProgress,
        TaskSucceeded,
        TaskFailed,
        TaskCancelled,
        WorkerOnline,
        WorkerOffline,
    )
}
MESSAGE_TYPES: dict[str, type[Message]] = {
    **EVENT_TYPES,
    TaskMessage.TYPE: TaskMessage,
    CancelRequest.TYPE: CancelRequest,
}
