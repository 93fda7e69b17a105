"""The PostgreSQL schema: sessions, tasks, dependencies, attempts, timeline, outbox, workers.

PostgreSQL is the source of truth; Redis only carries messages. Status columns are text with
CHECK constraints (the values live in `swarm_common.states`), so adding a state is a plain
migration rather than an enum rewrite.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    Sequence,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import UserDefinedType

from swarm_common.personas import ROLE_NAMES
from swarm_common.states import AttemptStatus, MergeStatus, SessionStatus, TaskStatus

__all__ = [
    "MERGE_SEQ",
    "Attempt",
    "Base",
    "Checkpoint",
    "Event",
    "InventoryProject",
    "Outbox",
    "Persona",
    "PlanMessage",
    "PlanRevision",
    "Session",
    "SystemFlag",
    "Task",
    "TaskDependency",
    "ApiToken",
    "BlackboardFact",
    "BudgetWarning",
    "TenantBudget",
    "TaskProposal",
    "KindPause",
    "TimelineCursor",
    "Webhook",
    "WebhookDelivery",
    "Worker",
]


class XID8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (`pg_current_xact_id()`)."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "XID8"


ischema_names["xid8"] = XID8  # so reflection (and the migration check) knows the type

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _one_of(
    column: str, values: type[SessionStatus | TaskStatus | MergeStatus | AttemptStatus]
) -> str:
    listed = ", ".join(f"'{v.value}'" for v in values)
    return f"{column} IN ({listed})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB, uuid.UUID: UUID(as_uuid=True)}


MERGE_SEQ = Sequence("tasks_merge_seq", metadata=Base.metadata)
"""Orders the merge queue: the value is drawn when a task succeeds."""


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Session(Base):
    """One run of Swarm on one repository: a goal, a task graph, an integration branch."""

    __tablename__ = "sessions"
    __table_args__ = (
        CheckConstraint(_one_of("status", SessionStatus), name="status"),
        CheckConstraint(
            "plan_status IS NULL OR plan_status IN ('planning', 'ready', 'failed', 'approved')",
            name="plan_status",
        ),
        Index(
            "uq_sessions_tenant_idempotency_key",
            func.coalesce(text("tenant"), ""),
            "idempotency_key",
            unique=True,
        ),
        Index("ix_sessions_tenant_created_at", "tenant", "created_at"),
        Index("ix_sessions_cancelling", "id", postgresql_where=text("cancelling_by IS NOT NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(200))
    goal: Mapped[str] = mapped_column(Text, default="")
    repo: Mapped[str] = mapped_column(Text, doc="Where the repository came from, as given.")
    repo_path: Mapped[str] = mapped_column(Text, doc="The bare mirror, relative to the workspace.")
    base_ref: Mapped[str] = mapped_column(Text)
    base_commit: Mapped[str] = mapped_column(String(64))
    target_branch: Mapped[str | None] = mapped_column(Text)
    integration_head: Mapped[str | None] = mapped_column(
        String(64), doc="Head of `swarm/<session>/integration`, moved by merges and rollbacks."
    )
    dry_run_head: Mapped[str | None] = mapped_column(
        String(64),
        doc="A dry run's: head of `swarm/<session>/dry-run`, where its tasks' work is merged "
        "instead of the integration branch (`integration.dry_run`); later tasks start there.",
    )
    status: Mapped[str] = mapped_column(String(32), default=SessionStatus.DRAFT.value)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    """Unique per tenant."""
    tenant: Mapped[str | None] = mapped_column(
        String(100), doc="Only tokens of this tenant (or of none) see the session."
    )
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_reason: Mapped[str | None] = mapped_column(
        Text, doc="Why the session waits in `awaiting_review` (or how it ended)."
    )
    archived_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), doc="Hidden from lists (kept in full) since then."
    )
    plan_status: Mapped[str | None] = mapped_column(
        String(16), doc="`planning`, `ready`, `failed` or `approved`; null without a plan."
    )
    plan_revision: Mapped[int | None] = mapped_column(Integer, doc="The plan's newest revision.")
    plan_error: Mapped[str | None] = mapped_column(Text, doc="Why the last planning failed.")
    auto_approve: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false"), doc="Run the plan once made."
    )
    suspended_reason: Mapped[str | None] = mapped_column(
        Text,
        doc="Why the system suspended it (`no live claude adapter since …`, "
        "`budget_exhausted`); null when a person paused it.",
    )
    suspended_kinds: Mapped[list[Any] | None] = mapped_column(
        JSONB(none_as_null=True),
        doc="The agent kinds whose missing adapters suspended it; it resumes by itself when "
        "they are back. Null when it is not suspended, a person paused it, or its budget "
        "is spent.",
    )
    cancelling_by: Mapped[str | None] = mapped_column(
        String(200),
        doc="Who cancelled the session, while some of its tasks are still to be cancelled in "
        "the background (`graph.cancelling`); null otherwise.",
    )
    task_count: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default=text("0"),
        doc="How many tasks it holds, of every kind: raised in the transaction that inserts "
        "them (`graph.task_state.create_tasks`, the only writer of tasks and edges, which "
        "are never deleted but with their session); the session's limits are checked "
        "against it, not against a count of its rows.",
    )
    edge_count: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default=text("0"),
        doc="How many dependency edges its tasks have (kept as `task_count` is).",
    )

    tasks: Mapped[list[Task]] = relationship(back_populates="session", lazy="raise")


class Task(Base):
    """One node of a session's graph. `attempt` is the current attempt's number (the fencing
    token); 0 until the task is first queued."""

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("session_id", "key", name="uq_tasks_session_key"),
        CheckConstraint(_one_of("status", TaskStatus), name="status"),
        Index("ix_tasks_session_status", "session_id", "status"),
        Index("ix_tasks_retry_at", "retry_at", postgresql_where=text("status = 'pending'")),
        Index(  # `scheduler.queue_ready`: the first ready tasks in its order, not a sort of all
            "ix_tasks_pending_order",
            "session_id",
            text("priority DESC"),
            text("chain DESC"),
            "created_at",
            "key",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_tasks_in_flight_agent",
            "agent",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        Index("ix_tasks_running_agent", "agent", postgresql_where=text("status = 'running'")),
        Index(  # the reaper's walk, in id order, of what is in flight
            "ix_tasks_in_flight_id",
            "id",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        Index(
            "ix_tasks_merge_queue",
            "session_id",
            "merge_seq",
            postgresql_where=text("merge_status = 'pending'"),
        ),
        CheckConstraint(
            "merge_status IS NULL OR " + _one_of("merge_status", MergeStatus), name="merge_status"
        ),
        CheckConstraint("kind IN ('work', 'plan', 'review', 'race')", name="kind"),
        Index(
            "ix_tasks_reviews_task_id",
            "reviews_task_id",
            postgresql_where=text("reviews_task_id IS NOT NULL"),
        ),
        Index(
            "ix_tasks_races_task_id",
            "races_task_id",
            postgresql_where=text("races_task_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(500))
    prompt: Mapped[str] = mapped_column(Text)
    agent: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(
        String(8),
        default="work",
        server_default="work",
        doc="`work`: a node of the session's graph; `plan`: a run of the planning agent; "
        "`review`: a reviewer's run on a work task's attempt (both read-only, never merged); "
        "`race`: a contender of a best-of-N task. None is part of the graph; their spend "
        "counts.",
    )
    role: Mapped[str | None] = mapped_column(String(100))
    spec: Mapped[dict[str, Any]] = mapped_column(doc="The task as submitted (TaskSpec).")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    chain: Mapped[int] = mapped_column(
        Integer,
        default=1,
        server_default=text("1"),
        doc="The longest chain of tasks from this one to a task nothing depends on, itself "
        "included, in the graph it was added with: of two ready tasks of one priority, the "
        "longer chain goes out first (a graph's critical path starts early).",
    )
    timeout_s: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), default=TaskStatus.PENDING.value)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    base_commit: Mapped[str | None] = mapped_column(String(64))
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text, doc="Why the task failed or was blocked.")
    result: Mapped[dict[str, Any] | None] = mapped_column()
    merge_status: Mapped[str | None] = mapped_column(String(16))
    merge_seq: Mapped[int | None] = mapped_column(BigInteger)
    merge_commit: Mapped[str | None] = mapped_column(String(64))
    conflict_files: Mapped[list[Any] | None] = mapped_column()
    overlaps: Mapped[list[Any] | None] = mapped_column(
        doc="Tasks dispatched beside this one that expect to touch the same files."
    )
    feedback: Mapped[str | None] = mapped_column(
        Text, doc="What the next attempt's prompt is told about the last one (failed gates)."
    )
    resolves_task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"),
        doc="For a conflict-resolution task: the task whose work it brings in.",
    )
    handoff: Mapped[dict[str, Any] | None] = mapped_column(
        doc="What the task handed the tasks after it (`swarm_common.handoffs.Handoff`), "
        "kept when it succeeded (`graph/blackboard.py`).",
    )
    reviews_task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"),
        doc="For a review run (kind `review`): the task whose work it judges.",
    )
    races_task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"),
        doc="For a contender (kind `race`): the task it races for.",
    )
    review_round: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default=text("0"),
        doc="Reviews of its work so far (since a person last retried it).",
    )
    resume_commit: Mapped[str | None] = mapped_column(
        String(64),
        doc="Where its next attempt starts instead of the integration head: its own last "
        "commit, when a reviewer or a person sent it back to fix its work.",
    )
    approval_reason: Mapped[str | None] = mapped_column(
        Text,
        doc="Why its work waits (or waited) for a person's approval: the session policies "
        "it crosses (`integration.policies`). Null when none did.",
    )
    approved_commit: Mapped[str | None] = mapped_column(
        String(64),
        doc="The commit a person approved despite its policy violations: not checked again.",
    )
    would_merge: Mapped[dict[str, Any] | None] = mapped_column(
        doc="In a dry run: what its work would have merged (`integration.dry_run`).",
    )
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    session: Mapped[Session] = relationship(back_populates="tasks", lazy="raise")
    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="task", lazy="raise", order_by="Attempt.number"
    )


class TaskReview(Base):
    """A reviewer's verdict on one attempt of a task (`graph.reviews`)."""

    __tablename__ = "task_reviews"
    __table_args__ = (
        CheckConstraint("verdict IN ('PASS', 'FAIL')", name="verdict"),
        UniqueConstraint("review_task_id", "attempt", name="uq_task_reviews_review_task_id"),
        Index("ix_task_reviews_task_id_id", "task_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), doc="The task whose work was judged."
    )
    review_task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), doc="The reviewer's run."
    )
    round: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, doc="The attempt of the task it judged.")
    commit: Mapped[str | None] = mapped_column(String(64))
    agent: Mapped[str] = mapped_column(String(32))
    persona: Mapped[str | None] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(8))
    summary: Mapped[str] = mapped_column(Text, default="")
    critical_issues: Mapped[list[Any]] = mapped_column()
    recommendations: Mapped[list[Any]] = mapped_column()
    created_at: Mapped[datetime] = _now()


class TaskComment(Base):
    """What a person wrote on a task; with `request_changes` it sent the task back."""

    __tablename__ = "task_comments"
    __table_args__ = (Index("ix_task_comments_task_id_id", "task_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    author: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    request_changes: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _now()


class TaskDependency(Base):
    """Edge of the graph: `task_id` waits for `depends_on_id`."""

    __tablename__ = "task_dependencies"
    __table_args__ = (
        CheckConstraint("task_id <> depends_on_id", name="not_self"),
        Index("ix_task_dependencies_depends_on", "depends_on_id"),
    )

    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    depends_on_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )


class Attempt(Base):
    """One try of a task, from queueing to its outcome."""

    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("task_id", "number", name="uq_attempts_task_number"),
        CheckConstraint(_one_of("status", AttemptStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), default=AttemptStatus.QUEUED.value)
    agent: Mapped[str] = mapped_column(
        String(32), doc="The agent kind it ran on (its task's may change on a failover)."
    )
    worker: Mapped[str | None] = mapped_column(String(200))
    base_commit: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    commit: Mapped[str | None] = mapped_column(String(64))
    changed_files: Mapped[list[Any] | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    output_tail: Mapped[str | None] = mapped_column(Text)
    usage: Mapped[dict[str, Any] | None] = mapped_column()
    model: Mapped[str | None] = mapped_column(
        String(200), doc="The model its CLI said it ran on (or was asked to); None: unknown."
    )
    cost_usd: Mapped[Decimal | None] = mapped_column(
        Numeric(12, 6),
        doc="What its usage cost by the price table (`graph.pricing`), set once when its "
        "result arrives; 0 for `shell`. None: no result was reported.",
    )
    reported_cost_usd: Mapped[Decimal | None] = mapped_column(
        Numeric(12, 6), doc="What the agent CLI itself claimed it cost (Claude's), if anything."
    )
    transcript_path: Mapped[str | None] = mapped_column(Text)
    gates: Mapped[list[Any] | None] = mapped_column(doc="Setup and quality gate results.")
    sandbox: Mapped[dict[str, Any] | None] = mapped_column(
        doc="Its sandbox as its adapter reported it: mode, connections allowed and refused."
    )
    event_key: Mapped[str | None] = mapped_column(
        String(64),
        doc="Secret: the key the attempt's adapter proves its events with "
        "(`swarm_common.proofs`). Never shown: not in the API, the timeline or a log line.",
    )

    task: Mapped[Task] = relationship(back_populates="attempts", lazy="raise")


class Checkpoint(Base):
    """A request to check the integration branch and, if its gates pass, fast-forward the
    target branch and tag it. A runner leases it (`lease_until`), so a checkpoint whose
    orchestrator died is run again."""

    __tablename__ = "checkpoints"
    __table_args__ = (
        UniqueConstraint("session_id", "number", name="uq_checkpoints_session_number"),
        CheckConstraint("status IN ('pending', 'running', 'passed', 'failed')", name="status"),
        Index(
            "ix_checkpoints_open", "id", postgresql_where=text("status IN ('pending', 'running')")
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    commit: Mapped[str] = mapped_column(String(64), doc="The integration head it checks.")
    target_branch: Mapped[str | None] = mapped_column(Text)
    tag: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(200))
    gates: Mapped[list[Any] | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    pushed: Mapped[bool | None] = mapped_column(Boolean)
    final: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        server_default=text("false"),
        doc="Taken because every task finished: its outcome settles the session.",
    )
    runs: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PlanRevision(Base):
    """One numbered version of a draft session's plan: the whole task graph as submitted
    (TaskSpec dicts, parents first). Revisions are never changed; an edit adds one."""

    __tablename__ = "plan_revisions"
    __table_args__ = (UniqueConstraint("session_id", "number", name="uq_plan_revisions_number"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    tasks: Mapped[list[Any]] = mapped_column()
    source: Mapped[str] = mapped_column(
        String(16), doc="`planner`, `heuristic`, `edit` or `feedback`."
    )
    actor: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="", doc="What this revision changed.")
    created_at: Mapped[datetime] = _now()


class PlanMessage(Base):
    """The planning conversation: a person's feedback and the planner's answers, in order."""

    __tablename__ = "plan_messages"
    __table_args__ = (Index("ix_plan_messages_session_id_id", "session_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16), doc="`user`, `planner` or `system`.")
    author: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    revision: Mapped[int | None] = mapped_column(
        Integer, doc="The revision it was written about (or that answered it)."
    )
    created_at: Mapped[datetime] = _now()


class InventoryProject(Base):
    """One project an inventory scan found (`swarm_common.inventory`; written by
    `planning/inventory.py`). A tenant's newest scan of a root replaces what its earlier
    scans of that root found; a path is stored once per tenant."""

    __tablename__ = "inventory_projects"
    __table_args__ = (
        CheckConstraint("kind IN ('git', 'build')", name="kind"),
        Index(
            "uq_inventory_projects_tenant_path",
            func.coalesce(text("tenant"), ""),
            "path",
            unique=True,
        ),
        Index("ix_inventory_projects_tenant_scanned_at", "tenant", "scanned_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant: Mapped[str | None] = mapped_column(
        String(100), doc="Only tokens of this tenant (or of none) see the project."
    )
    root: Mapped[str] = mapped_column(Text, doc="The scanned folder it was found under.")
    path: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(8), doc="`git` or `build` (a build file, no git).")
    languages: Mapped[list[Any]] = mapped_column(doc="[{name, files, share}], most used first.")
    build_systems: Mapped[list[Any]] = mapped_column()
    files: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    commits_30d: Mapped[int | None] = mapped_column(Integer)
    readme: Mapped[str] = mapped_column(Text, default="")
    max_depth: Mapped[int] = mapped_column(Integer, doc="The scan's depth limit.")
    scanned_by: Mapped[str] = mapped_column(String(200))
    scanned_at: Mapped[datetime] = _now()


class Persona(Base):
    """One persona of a tenant's catalogue (`swarm_common.personas`; written by
    `graph/personas.py`): who a logical agent is and the identity its commits carry. A name
    is stored once per tenant; storing it again replaces it."""

    __tablename__ = "personas"
    __table_args__ = (
        CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLE_NAMES)})", name="role"),
        CheckConstraint("source IN ('manual', 'generated')", name="source"),
        Index("uq_personas_tenant_name", func.coalesce(text("tenant"), ""), "name", unique=True),
        Index("ix_personas_tenant_role", "tenant", "role"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant: Mapped[str | None] = mapped_column(
        String(100), doc="Only tokens of this tenant see it; null: the shared catalogue."
    )
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    skills: Mapped[list[Any]] = mapped_column()
    agents: Mapped[list[Any]] = mapped_column(doc="Preferred agent kinds, the likeliest first.")
    style: Mapped[str] = mapped_column(Text, default="")
    author_name: Mapped[str] = mapped_column(String(100))
    author_email: Mapped[str] = mapped_column(String(254))
    source: Mapped[str] = mapped_column(String(16), doc="`manual` or `generated`.")
    seed: Mapped[int | None] = mapped_column(BigInteger, doc="The seed it was generated from.")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Event(Base):
    """The session timeline: every transition and control action, in order.

    `id` names an entry (it is the SSE event id). Entries are read in `(tx, id)` order, `tx`
    being the id of the transaction that wrote them, and only once every transaction with a
    smaller id has ended (see `swarm_orchestrator.db.timeline`): ids are taken when a row is
    written, not when it commits, so id order alone could show entry 7 before entry 6
    commits. `source_id` is the envelope id of the stream message that caused the entry,
    unique, so a re-delivered message is applied once.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_task_id_id", "task_id", "id"),
        Index("ix_events_session_id_tx_id", "session_id", "tx", "id"),
        Index("ix_events_tx_id", "tx", "id"),  # every session's entries in stream order
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    task_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    attempt: Mapped[int | None] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200), default="system")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = _now()
    tx: Mapped[int] = mapped_column(
        XID8(), server_default=text("pg_current_xact_id()"), deferred=True
    )


class Outbox(Base):
    """A message to publish to Redis, written in the transaction that decided it.

    `kind` is `xadd` (append `payload` to the stream `target`) or `cancel` (set the cancel key
    `target` and announce it). The relay publishes unsent rows in `id` order, but for task
    messages (`task_id` set): those are held until their agent stream has a free slot, and
    then go out by fair share and priority (`runtime.dispatch`).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint("kind IN ('xadd', 'cancel')", name="kind"),
        Index(
            "ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL AND task_id IS NULL")
        ),
        Index(
            "ix_outbox_held",
            "target",
            "session_id",
            text("priority DESC"),
            text("chain DESC"),
            "id",
            postgresql_where=text("sent_at IS NULL AND task_id IS NOT NULL"),
        ),
        Index("ix_outbox_outstanding", "target", postgresql_where=text("outstanding")),
        Index(  # the reaper's probe: is this attempt's message still held?
            "ix_outbox_held_attempt",
            "task_id",
            "attempt",
            postgresql_where=text("sent_at IS NULL AND task_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = _now()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When it was published, or dropped (a held task message whose attempt is no longer
    queued: `publish_count` 0)."""
    publish_count: Mapped[int] = mapped_column(Integer, default=0)
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        doc="For a task message: its task (the row is held for dispatch)."
    )
    attempt: Mapped[int | None] = mapped_column(Integer, doc="For a task message: its attempt.")
    session_id: Mapped[uuid.UUID | None] = mapped_column(doc="For a task message: its session.")
    priority: Mapped[int | None] = mapped_column(
        Integer, doc="For a task message: its task's priority."
    )
    chain: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default=text("0"),
        doc="For a task message: its task's `chain` (after priority, the longer goes first).",
    )
    outstanding: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        server_default=text("false"),
        doc="A task message published whose attempt was still queued when the relay last "
        "looked: it waits in its stream for a slot.",
    )


class Worker(Base):
    """An adapter process the orchestrator has heard from: what it announced, and whether it
    is alive (mirrored from its Redis liveness key by `runtime.registry`; `graph.fleet`
    reads it)."""

    __tablename__ = "workers"
    __table_args__ = (CheckConstraint("status IN ('online', 'offline')", name="status"),)

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    agent: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int | None] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(
        String(16), default="online", doc="Its liveness key in Redis exists (`online`) or not."
    )
    started_at: Mapped[datetime] = _now()
    last_seen_at: Mapped[datetime] = _now()
    busy: Mapped[int] = mapped_column(
        Integer, default=0, server_default=text("0"), doc="Attempts it ran when last seen."
    )
    models: Mapped[list[Any]] = mapped_column(
        default=list, server_default=text("'[]'::jsonb"), doc="Models it may use (announced)."
    )
    cli_version: Mapped[str | None] = mapped_column(
        String(200), doc="What its CLI's `--version` said at start; null for shell."
    )
    capabilities: Mapped[list[Any]] = mapped_column(
        default=list,
        server_default=text("'[]'::jsonb"),
        doc="What its runner can do (`swarm_common.capabilities`).",
    )


class KindPause(Base):
    """An agent kind that kept hitting its provider's limits (`graph.pauses`): its recent
    rate-limited attempts, the latest reset they reported, and, once `pause_after` of them
    fell within the window, until when it is paused (no task is sent to it, and tasks with
    fallbacks move on; `graph.failover`). An expired pause is ignored."""

    __tablename__ = "kind_pauses"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    paused_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text, doc="Why it is (or was last) paused.")
    hits: Mapped[list[Any]] = mapped_column(
        default=list,
        server_default=text("'[]'::jsonb"),
        doc="When its latest rate-limited attempts were reported (ISO times, the newest "
        "last; only those within the window are kept).",
    )
    reset_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), doc="The latest reset its rate-limited attempts reported."
    )
    updated_at: Mapped[datetime] = _now()


class SystemFlag(Base):
    """A switch of the whole deployment; `mode` holds the system mode (see
    `swarm_common.system`), which the reaper mirrors to Redis for the adapters."""

    __tablename__ = "system_flags"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column()
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = _now()


class ApiToken(Base):
    """A bearer token of the API: its role, its tenant, and the SHA-256 digest of the token
    (the token itself is shown once, at creation). Revoked tokens stay, for the audit."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("role IN ('viewer', 'operator', 'admin')", name="role"),
        Index(
            "uq_api_tokens_active_name",
            func.coalesce(text("tenant"), ""),
            "name",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    tenant: Mapped[str | None] = mapped_column(String(100))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), doc="The token's first characters.")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BlackboardFact(Base):
    """One value written to a session's blackboard (`graph/blackboard.py`): by a task through
    its handoff or by a person. A key's latest row is its value (null: cleared); the older
    rows are its history."""

    __tablename__ = "blackboard_facts"
    __table_args__ = (Index("ix_blackboard_facts_session_id_key_id", "session_id", "key", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(120))
    value: Mapped[Any] = mapped_column(JSONB, nullable=True)
    author: Mapped[str] = mapped_column(
        String(200), doc="`task:<key>` (and its persona) or the person's actor."
    )
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="SET NULL"), doc="The task whose handoff wrote it."
    )
    created_at: Mapped[datetime] = _now()


class TaskProposal(Base):
    """A follow-up task a handoff proposed (`graph/delegation.py`): `proposed` until a person
    accepts or refuses it (`settings.delegation: approve`), `accepted` once it became a task,
    `refused` with the reason (policy `off`, too deep, too many, invalid, a person)."""

    __tablename__ = "task_proposals"
    __table_args__ = (
        UniqueConstraint("task_id", "number", name="uq_task_proposals_task_number"),
        CheckConstraint("status IN ('proposed', 'accepted', 'refused')", name="status"),
        Index("ix_task_proposals_session_id_id", "session_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), doc="The task whose handoff proposed it."
    )
    number: Mapped[int] = mapped_column(Integer, doc="Its place in that handoff, from 1.")
    key: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(doc="The task it would be (TaskSpec).")
    depth: Mapped[int] = mapped_column(Integer, doc="1 for a proposal of a task people gave.")
    status: Mapped[str] = mapped_column(String(16), default="proposed")
    reason: Mapped[str | None] = mapped_column(Text, doc="Why it was refused.")
    decided_by: Mapped[str | None] = mapped_column(String(200))
    created_task_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="SET NULL"), doc="The task it became."
    )
    created_at: Mapped[datetime] = _now()
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TenantBudget(Base):
    """What a tenant may spend over all its sessions (`graph/budgets.py`): null limits are
    none. Set by a system admin (`PUT /v1/tenants/{tenant}/budget`)."""

    __tablename__ = "tenant_budgets"

    tenant: Mapped[str] = mapped_column(String(100), primary_key=True)
    usd: Mapped[Decimal | None] = mapped_column(Numeric(12, 6), doc="Most US dollars.")
    tokens: Mapped[int | None] = mapped_column(BigInteger, doc="Most tokens (input + output).")
    updated_at: Mapped[datetime] = _now()
    updated_by: Mapped[str | None] = mapped_column(String(200))


class BudgetWarning(Base):
    """A budget warning a session was given (`graph/budgets.py`), one per limit and amount
    (`session.usd=10`, `tenant.tokens=500000`): a result delivered again, or a second
    orchestrator, finds it here and does not warn again; a raised limit warns anew."""

    __tablename__ = "budget_warnings"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    limit: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime] = _now()


class TimelineCursor(Base):
    """Where a reader of every session's timeline is (`db.timeline.Cursor`: the last entry
    it handled), kept in the transaction that handles the entries, so each is handled once.
    `webhooks` is the webhook fan-out's (`webhooks/fanout.py`)."""

    __tablename__ = "timeline_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    tx: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = _now()


class Webhook(Base):
    """A webhook subscription (`webhooks/`): the chosen events of a tenant's sessions (of
    every session, when it has no tenant), or of one session, POSTed to `url` as `format`
    and signed with `secret`, which is shown once, when it is created."""

    __tablename__ = "webhooks"
    __table_args__ = (CheckConstraint("format IN ('json', 'slack')", name="format"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str | None] = mapped_column(String(100))
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE")
    )
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[Any]] = mapped_column(doc="The event names it receives.")
    format: Mapped[str] = mapped_column(String(16), default="json")
    secret: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()


class WebhookDelivery(Base):
    """One event for one webhook (`webhooks/sender.py`): its `id` is the delivery id every
    attempt carries, so a receiver that got it twice knows. `pending` until a receiver
    answered 2xx (`delivered`) or the attempts ran out (`failed`); an attempt in flight holds
    it until `lease_until`, and one that died with its process is tried again after it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        UniqueConstraint("webhook_id", "event_id", name="uq_webhook_deliveries_webhook_event"),
        Index(
            "ix_webhook_deliveries_due",
            "webhook_id",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_webhook_deliveries_leased",
            "webhook_id",
            postgresql_where=text("status = 'pending' AND lease_until IS NOT NULL"),
        ),
        Index("ix_webhook_deliveries_webhook_id_created_at", "webhook_id", "created_at"),
        Index(
            "ix_webhook_deliveries_ended",
            "created_at",
            postgresql_where=text("status <> 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[int | None] = mapped_column(
        BigInteger, doc="The timeline entry; null for a test delivery."
    )
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(doc="What is sent (the `json` format).")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = _now()
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer, doc="The last answer's HTTP status.")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
