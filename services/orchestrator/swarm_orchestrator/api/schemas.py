"""Request and response bodies of the REST API (v1). Fields may grow; none are renamed."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from swarm_common.session_settings import SessionSettings
from swarm_common.specs import TaskSpec, Text
from swarm_common.templates import TemplateSpec, expand
from swarm_orchestrator.access.tokens import Role, check_name

__all__ = [
    "AttemptPublic",
    "CheckpointPublic",
    "DiffFile",
    "DiffPublic",
    "PlanEdit",
    "PlanFeedback",
    "PlanPublic",
    "PlanRequest",
    "RollbackPublic",
    "RollbackRequest",
    "ErrorBody",
    "error_responses",
    "EventPublic",
    "SessionCreate",
    "SessionPublic",
    "SystemPublic",
    "TaskDetail",
    "TaskPublic",
    "TokenCreate",
    "TokenCreated",
    "TokenPublic",
    "WhoAmI",
    "WorkerPublic",
]

MAX_INT = 2**63 - 1
"""Largest value of a query number (PostgreSQL's bigint)."""


class ErrorBody(BaseModel):
    code: str = Field(description="Stable, machine-readable error code.")
    message: str
    details: Any = None


def error_responses(*extra: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, for the OpenAPI document: every route may answer 400
    (bad JSON), 401, 403, 413 (body too large), 422, 429 (rate limited) and 503; `extra`
    adds the route's own (404, 409, ...)."""
    codes = sorted({400, 401, 403, 413, 422, 429, 503, *extra})
    return {code: {"model": ErrorBody} for code in codes}


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Text = Field(min_length=1, max_length=200)
    goal: Text = Field("", max_length=64 * 1024)
    repo: Text = Field(
        min_length=1,
        max_length=4096,
        description="An absolute path to a git repository, or a git URL.",
    )
    base_ref: Text = Field("HEAD", min_length=1, max_length=200)
    target_branch: Text | None = Field(None, max_length=200)
    settings: SessionSettings = Field(
        default_factory=SessionSettings,
        description="Worktree setup, quality gates, conflict policy, pushing.",
    )
    idempotency_key: Text | None = Field(None, min_length=1, max_length=200)
    tasks: list[TaskSpec] = Field(
        default_factory=list, description="Optional task graph, stored with the session."
    )
    plan: bool = Field(
        False,
        description="Plan the goal into a task graph (`settings.planner.agent`): the session "
        "stays a `draft` until its plan is approved (`POST /v1/sessions/{id}/approve`).",
    )
    auto_approve: bool = Field(
        False, description="Run the plan as soon as the planner made it, without review."
    )
    template: TemplateSpec | None = Field(
        None,
        description="A topology (`fan-out`, `builder-validator`, `pipeline`) to expand into "
        "the session's graph, stored as ordinary tasks (see `POST /v1/templates/expand`); "
        "its goal is the session's when the session gives none.",
    )

    @model_validator(mode="after")
    def _plan_or_tasks(self) -> SessionCreate:
        if self.template is not None:
            if self.tasks or self.plan:
                raise ValueError("give one of `tasks`, `plan: true` or `template`")
            self.tasks = expand(self.template)
            self.goal = self.goal or self.template.goal
            self.template = None  # what it stood for is the graph now
        if self.plan and self.tasks:
            raise ValueError("give either `tasks` or `plan: true`, not both")
        if self.plan and not self.goal.strip():
            raise ValueError("`plan: true` needs a `goal` to plan")
        return self


class SessionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    goal: str
    repo: str
    base_ref: str
    base_commit: str
    target_branch: str | None
    integration_branch: str = ""
    integration_head: str | None
    status: str
    settings: dict[str, Any]
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    review_reason: str | None = Field(
        None,
        description="Why the session waits in `awaiting_review` (failed tasks, a failed final "
        "checkpoint, a merge conflict); once finalized, what a person accepted.",
    )
    suspended_reason: str | None = Field(
        None,
        description="Why the system suspended it: `no live claude adapter since …` (it "
        "resumes by itself when an adapter of that kind comes), or `budget_exhausted` (it "
        "resumes when its budget is raised). Null when a person paused it.",
    )
    suspended_kinds: list[str] | None = Field(
        None, description="The agent kinds it waits for, when the system suspended it."
    )
    archived_at: datetime | None = Field(
        None, description="Archived then: left out of `GET /v1/sessions` (kept in full)."
    )
    cancelling_by: str | None = Field(
        None,
        description="Who cancelled it, while the background still cancels the tasks that "
        "could no longer start (a large session's cancel is answered at once); null once "
        "every task is cancelled (`session.cancel_completed` on its timeline).",
    )
    plan_status: str | None = Field(
        None, description="`planning`, `ready`, `failed` or `approved`; null without a plan."
    )
    plan_revision: int | None = None
    auto_approve: bool = False
    counts: dict[str, int] = Field(default_factory=dict, description="Tasks by status.")
    total: int = 0
    done: bool = Field(False, description="Every task has ended.")


class TaskPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    session_id: uuid.UUID
    key: str
    title: str
    agent: str
    kind: str = Field(
        "work",
        description="`plan`: a run of the planning agent; `review`: a reviewer's run on a "
        "work task's attempt (neither is part of the graph).",
    )
    role: str | None
    status: str
    attempt: int
    max_attempts: int
    priority: int
    timeout_s: int
    depends_on: list[str] = Field(default_factory=list)
    branch: str = ""
    base_commit: str | None
    reason: str | None
    result: dict[str, Any] | None
    merge_status: str | None = Field(
        None,
        description="pending, merged, empty, conflict, resolved, rolled_back, abandoned or "
        "dry_run (a dry run's: merged nothing, see `would_merge`); null until the task "
        "succeeds.",
    )
    merge_commit: str | None = None
    conflict_files: list[Any] | None = None
    overlaps: list[Any] | None = Field(
        None, description="Tasks dispatched beside it that expect to touch the same files."
    )
    resolves_task_id: uuid.UUID | None = None
    reviews_task_id: uuid.UUID | None = Field(
        None, description="For a review run: the task whose work it judges."
    )
    races_task_id: uuid.UUID | None = Field(
        None, description="For a contender (kind `race`): the task it races for."
    )
    review_round: int = Field(0, description="Reviews of its work so far.")
    approval_reason: str | None = Field(
        None,
        description="Why its work waits (or waited) for a person's approval: the session "
        "policies it crosses (`settings.policy`).",
    )
    would_merge: dict[str, Any] | None = Field(
        None,
        description="In a dry run, what its work would have merged (in a task's own view; "
        "`GET /v1/sessions/{id}/dry-run` lists every task's).",
    )
    retry_at: datetime | None
    created_at: datetime
    updated_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    usage: dict[str, int] | None = Field(
        None,
        description="Tokens the agent reported, summed over attempts (`input`, "
        "`cached_input`, `output`).",
    )
    tokens: int | None = Field(None, description="Input plus output tokens, over attempts.")
    cost_usd: float | None = Field(None, description="Cost the agent reported, over attempts.")


class AttemptPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    status: str
    agent: str = Field(description="The agent kind it ran on.")
    worker: str | None
    base_commit: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    commit: str | None
    changed_files: list[Any] | None
    reason: str | None
    error: str | None
    output_tail: str | None
    usage: dict[str, Any] | None
    model: str | None = Field(description="The model its CLI ran on, as its adapter said.")
    cost_usd: Decimal | None = Field(
        description="Its usage priced by the price table (`GET /v1/prices`); 0 for `shell` "
        "or no usage; null until it reports a result."
    )
    reported_cost_usd: Decimal | None = Field(
        description="What the agent CLI itself claimed it cost (Claude does), if anything."
    )
    transcript_path: str | None
    gates: list[Any] | None
    sandbox: dict[str, Any] | None = Field(
        None,
        description="Its sandbox, as its adapter reported it: `mode` (`bwrap`), the "
        "connections its proxy `allowed` and `refused`, the first `refused_hosts`; null when "
        "it ran without one.",
    )


class ReviewPublic(BaseModel):
    """A reviewer's verdict on one attempt of a task."""

    model_config = ConfigDict(from_attributes=True)

    round: int
    attempt: int = Field(description="The attempt of the task it judged.")
    commit: str | None
    agent: str
    persona: str | None
    review_task_id: uuid.UUID = Field(description="The reviewer's run (a task of kind `review`).")
    verdict: Literal["PASS", "FAIL"]
    summary: str
    critical_issues: list[str]
    recommendations: list[str]
    created_at: datetime


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Text = Field(min_length=1, max_length=20_000)
    request_changes: bool = Field(
        False,
        description="Send the task back with the comment as feedback: its next attempt "
        "starts from its own last commit. For a task awaiting approval, reviewing, failed, "
        "or succeeded and not yet merged (else 409 `changes_not_requestable`).",
    )


class CommentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    task_id: uuid.UUID
    author: str
    body: str
    request_changes: bool
    created_at: datetime


class CommentAnswer(BaseModel):
    comment: CommentPublic
    task: TaskPublic


class TaskDetail(TaskPublic):
    prompt: str
    spec: dict[str, Any]
    feedback: str | None
    handoff: dict[str, Any] | None = Field(
        None,
        description="What it handed the tasks after it once it succeeded: `summary`, "
        "`notes`, `facts` (written to the blackboard), `proposals` (follow-up tasks), "
        "`source` (`block`, `answer`, `none`), `problems`.",
    )
    attempts: list[AttemptPublic] = Field(default_factory=list)
    reviews: list[ReviewPublic] = Field(
        default_factory=list, description="Reviewers' verdicts on its work, oldest first."
    )
    comments: list[CommentPublic] = Field(default_factory=list)


class DiffFile(BaseModel):
    path: str
    additions: int | None = Field(description="Lines added; null for a binary file.")
    deletions: int | None


class DiffPublic(BaseModel):
    task_id: uuid.UUID
    attempt: int
    base_commit: str
    commit: str
    files: list[DiffFile]
    patch: str
    truncated: bool = Field(description="The patch was cut at `max_bytes`.")


class CheckpointPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    session_id: uuid.UUID
    number: int
    status: str = Field(description="pending, running, passed or failed")
    commit: str = Field(
        description="The integration head it checks (a dry run's: its dry-run branch's head)."
    )
    target_branch: str | None
    tag: str | None
    requested_by: str
    final: bool = Field(
        False, description="Taken because every task had ended: its outcome settles the session."
    )
    gates: list[Any] | None
    error: str | None
    pushed: bool | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class DryRunTask(BaseModel):
    """One task of a dry run and what its work would have merged."""

    id: uuid.UUID
    key: str
    title: str
    status: str
    merge_status: str | None
    would_merge: dict[str, Any] | None = Field(
        None,
        description="`commit`, `base`, `into` (the dry-run head it merged into), `clean`, "
        "`conflicts`, `head`, `diffstat`, `files` (path, status, added, deleted), and any "
        "`violations` of the session's policy. Null until its work reached the merge queue.",
    )


class DryRunPublic(BaseModel):
    """What a session's tasks would have merged; the integration and target branches are
    where they were."""

    session_id: uuid.UUID
    dry_run: bool = Field(description="False: the session merges for real; nothing here.")
    status: str
    base_commit: str
    integration_branch: str
    integration_head: str | None = Field(description="Unchanged by a dry run.")
    target_branch: str | None
    dry_run_branch: str | None = Field(
        None, description="Where the tasks' work was merged instead (the mirror's only)."
    )
    dry_run_head: str | None = None
    summary: dict[str, int] = Field(
        default_factory=dict,
        description="`tasks` reported, `clean`, `conflicted`, `files`, `added`, `deleted`.",
    )
    tasks: list[DryRunTask] = Field(default_factory=list)


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint: int | None = Field(
        None, ge=1, le=2**31 - 1, description="A passed checkpoint's number; the newest if null."
    )


class RollbackPublic(BaseModel):
    session_id: uuid.UUID
    checkpoint: int
    integration_head: str
    rolled_back: list[str] = Field(description="Tasks whose merges were undone.")


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    session_id: uuid.UUID
    task_id: uuid.UUID | None
    attempt: int | None
    type: str
    actor: str
    data: dict[str, Any]
    created_at: datetime


class SessionProgress(BaseModel):
    """How far a session is: done / total, elapsed, an estimate of time left, spend."""

    session_id: uuid.UUID
    status: str
    total: int
    ended: int = Field(description="Tasks that ended (succeeded, failed, cancelled, blocked).")
    percent: float
    counts: dict[str, int] = Field(description="Tasks by status.")
    running: int
    queued: int
    created_at: datetime
    started_at: datetime | None = Field(description="When the first attempt started.")
    finished_at: datetime | None
    elapsed_s: float = Field(description="Since the session was created, until it finished.")
    eta_s: float | None = Field(
        description="Estimated seconds left: tasks left ÷ the rate tasks ended at so far; "
        "null until one task has ended."
    )
    mean_task_s: float | None = Field(description="Mean duration of the attempts that ended.")
    usage: dict[str, int] = Field(default_factory=dict)
    tokens: int | None
    cost_usd: float | None
    last_event_id: int | None = Field(
        None,
        description="The newest timeline entry this answer reflects: stream the events after "
        "it (`Last-Event-ID`) to follow on from here without replaying the history.",
    )


class WorkerTask(BaseModel):
    """An attempt a worker runs now."""

    task_id: uuid.UUID
    session_id: uuid.UUID
    task_key: str
    attempt: int
    started_at: datetime | None
    heartbeat_at: datetime | None


class WorkerPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    agent: str
    host: str
    pid: int | None
    concurrency: int
    status: str = Field(
        description="`online` or `offline`, as the registry mirror last saw its liveness key."
    )
    alive: bool = Field(False, description="Its liveness key in Redis has not expired.")
    busy: int = Field(0, description="Attempts it ran when last seen.")
    models: list[str] = Field(
        default_factory=list, description="Models it may use; empty: its CLI's default."
    )
    cli_version: str | None = Field(None, description="What its CLI's `--version` said.")
    capabilities: list[str] = Field(
        default_factory=list,
        description="What it can do for a task: `prose`, `structured_output`, "
        "`allowed_tools`, `read_only`.",
    )
    started_at: datetime
    last_seen_at: datetime
    last_heartbeat_at: datetime | None = Field(
        None, description="The newest heartbeat of the worker or of an attempt it runs."
    )
    running: list[WorkerTask] = Field(default_factory=list, description="What it runs now.")
    kind_paused_until: datetime | None = Field(
        None,
        description="Its agent kind is paused until then: it kept hitting its provider's "
        "limits, so no task goes to it and tasks with `fallback` kinds move on.",
    )
    kind_pause_reason: str | None = Field(None, description="Why its kind is paused.")


class SystemPublic(BaseModel):
    mode: str = Field(
        description="`running`; `draining` (adapters take no new work and finish what they "
        "run); `stopped` (emergency stop: agents killed, attempts run again on resume)."
    )
    changed_by: str = Field("", description="Who set the mode last.")
    changed_at: datetime | None = None
    running: int = Field(description="Attempts running now.")
    queued: int = Field(description="Attempts waiting for an adapter.")
    workers_alive: int = Field(description="Adapters whose liveness key has not expired.")


def _tenant_name(value: str) -> str:
    return check_name(value, "tenant")


Name = Annotated[str, AfterValidator(check_name)]
TenantName = Annotated[str, AfterValidator(_tenant_name)]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Shown in audit entries; unique among active tokens.")
    role: Role = Field(
        description="`viewer` reads; `operator` also submits, retries, cancels and approves; "
        "`admin` also manages tokens and drains or stops the system."
    )
    tenant: TenantName | None = Field(
        None,
        description="Scope the token to a tenant: it sees only that tenant's sessions. "
        "A tenant's admin can only create tokens of its own tenant.",
    )
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    role: str
    tenant: str | None
    prefix: str = Field(description="The token's first characters, to tell tokens apart.")
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    last_used_at: datetime | None


class TokenCreated(TokenPublic):
    token: str = Field(description="The bearer token. It is shown only this once.")


class WhoAmI(BaseModel):
    name: str
    role: str
    tenant: str | None


PlannerAgent = Literal["heuristic", "claude", "codex", "gemini"]


class PlanRequest(BaseModel):
    """`POST /v1/sessions/{id}/plan`: plan (or plan again) a draft's goal."""

    model_config = ConfigDict(extra="forbid")

    goal: Text | None = Field(
        None, max_length=64 * 1024, description="A new goal; the session's own when left out."
    )
    agent: PlannerAgent | None = Field(
        None, description="Who plans; the session's `settings.planner.agent` when left out."
    )


class PlanEdit(BaseModel):
    """`PATCH /v1/sessions/{id}/plan`: one new revision, from the whole task list or from
    changes to the base revision."""

    model_config = ConfigDict(extra="forbid")

    base_revision: int = Field(
        ge=0, le=MAX_INT, description="The revision the edit was made on (0: no plan yet)."
    )
    tasks: list[dict[str, Any]] | None = Field(
        None, max_length=20_000, description="The whole plan, replacing the base revision's."
    )
    changes: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=1000,
        description="Applied in order: `{op: add, task}`, `{op: remove, key}`, "
        "`{op: update, key, set}`, `{op: split, key, into: [tasks]}`, "
        "`{op: merge, keys, into: task}`.",
    )
    summary: Text = Field("", max_length=4000, description="What the edit changes.")

    @model_validator(mode="after")
    def _something(self) -> PlanEdit:
        if self.tasks is None and not self.changes:
            raise ValueError("give `tasks` or `changes`")
        return self


class PlanFeedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Text = Field(min_length=1, max_length=64 * 1024)


class PlanRevisionPublic(BaseModel):
    number: int
    source: str
    actor: str
    summary: str
    created_at: datetime
    tasks: int


class PlanMessagePublic(BaseModel):
    id: int
    role: str
    author: str
    text: str
    revision: int | None
    created_at: datetime


class PlanRunPublic(BaseModel):
    id: uuid.UUID
    key: str
    agent: str
    status: str
    attempt: int
    reason: str | None


class PlanPublic(BaseModel):
    session_id: uuid.UUID
    status: str | None = Field(description="`planning`, `ready`, `failed`, `approved` or null.")
    revision: int | None = Field(description="The revision shown.")
    latest_revision: int | None
    source: str | None
    summary: str
    tasks: list[dict[str, Any]] = Field(description="The revision's task graph (TaskSpec).")
    error: str | None = Field(description="Why the last planning failed.")
    auto_approve: bool
    revisions: list[PlanRevisionPublic]
    messages: list[PlanMessagePublic]
    runs: list[PlanRunPublic] = Field(description="The planning agent's runs (tasks of kind plan).")
