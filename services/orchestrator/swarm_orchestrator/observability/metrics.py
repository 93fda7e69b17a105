"""Swarm's Prometheus metrics: every series `GET /metrics` serves is named here or in
`observability.gauges`, and moved only through the small functions below.

Two kinds of figure:

- **What happened** (attempts ended, by outcome and reason; how long they waited and ran;
  retries; merges and conflicts; checkpoints; rollbacks; lost attempts; reclaimed stream
  entries; adapters that went silent; tokens and cost; budget warnings; events handled):
  counters and histograms of this process (`REGISTRY`), moved where the orchestrator applies
  those events. Each counts once what this replica committed: an observation made inside a
  transaction waits for its commit (`after_commit`) and is dropped with a rollback, so a
  transaction tried again, or a report delivered twice, counts nothing twice. Replicas count
  their own shares: add them up (`sum(rate(swarm_attempts_total[5m]))`); a restart starts
  from zero, which `rate()` and `increase()` take as a counter reset.
- **How things stand** (tasks by state, stream lag, held messages, live adapters and free
  slots, dead letters): read when scraped, from PostgreSQL and Redis
  (`observability.gauges`); every replica reports the same values, so take `max`, not `sum`.

What adapters measure reaches these figures through the events they already send (a
result's usage and times, a start's delivery count, the liveness hash's slots): no adapter
is scraped.

Label values come from bounded sets: an agent kind or a failure reason is kept only when it
looks like an identifier, and at most `MAX_LABEL_VALUES` distinct ones per label (then
`other`), so no report can make series without end.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction, object_session

from swarm_common.messages import EVENT_TYPES
from swarm_common.specs import AGENT_KINDS
from swarm_orchestrator.db.models import Attempt

__all__ = [
    "MAX_LABEL_VALUES",
    "REGISTRY",
    "adapters_lost",
    "after_commit",
    "attempt_ended",
    "attempt_lost",
    "attempt_priced",
    "attempts_queued",
    "attempt_started",
    "budget_exhausted",
    "budget_warned",
    "checkpoint_ended",
    "event_handled",
    "merged",
    "reclaimed",
    "rolled_back",
]

REGISTRY = CollectorRegistry(auto_describe=True)
"""Swarm's own registry (not the library's global one): these series, and the process's
CPU, memory, file descriptors and garbage collection."""
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

MAX_LABEL_VALUES = 64
OTHER = "other"
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_.-]{0,63}")

_WAIT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400)
_RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
_CHECKPOINT_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

ATTEMPTS = Counter(
    "swarm_attempts",
    "Attempts ended, by agent kind, outcome (succeeded, failed, rate_limited, cancelled, "
    "lost) and reason (gate_failed, timeout, startup_failed, ...; none for a success).",
    ["agent", "outcome", "reason"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "swarm_retries",
    "Attempts queued after a task's first (after a failure, a loss, a hand-back, a "
    "person's retry), by agent kind.",
    ["agent"],
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "swarm_attempt_queue_wait_seconds",
    "From an attempt's queueing to its start by an adapter, by agent kind.",
    ["agent"],
    buckets=_WAIT_BUCKETS,
    registry=REGISTRY,
)
RUN_TIME = Histogram(
    "swarm_attempt_run_seconds",
    "From an attempt's start to its end, by agent kind and outcome.",
    ["agent", "outcome"],
    buckets=_RUN_BUCKETS,
    registry=REGISTRY,
)
MERGES = Counter(
    "swarm_merges",
    "Tasks' work leaving the merge queue, by result: merged, empty (nothing to merge), "
    "conflict, failed (git refused the merge).",
    ["result"],
    registry=REGISTRY,
)
CHECKPOINTS = Counter(
    "swarm_checkpoints",
    "Checkpoints finished, by result (passed, failed).",
    ["result"],
    registry=REGISTRY,
)
CHECKPOINT_TIME = Histogram(
    "swarm_checkpoint_seconds",
    "How long checkpoints ran (gates, tag, push), by result.",
    ["result"],
    buckets=_CHECKPOINT_BUCKETS,
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "swarm_rollbacks",
    "Integration branches rolled back to a checkpoint.",
    registry=REGISTRY,
)
LOST = Counter(
    "swarm_attempts_lost",
    "Attempts declared lost (their lease lapsed, their claim or Redis's data vanished, "
    "their report could not be applied), by agent kind.",
    ["agent"],
    registry=REGISTRY,
)
RECLAIMS = Counter(
    "swarm_reclaims",
    "Stream entries taken over from a consumer that vanished: `events` by this "
    "orchestrator, `tasks` by an adapter (as the attempt's start says).",
    ["stream"],
    registry=REGISTRY,
)
ADAPTERS_LOST = Counter(
    "swarm_adapters_lost",
    "Adapters that went silent (their liveness key lapsed without a goodbye), by agent kind.",
    ["agent"],
    registry=REGISTRY,
)
TOKENS = Counter(
    "swarm_tokens",
    "Tokens agents reported, by agent kind and type (input, cached_input, output); "
    "input includes cached_input.",
    ["agent", "type"],
    registry=REGISTRY,
)
COST = Counter(
    "swarm_cost_usd",
    "What agents' usage cost by the price table, in US dollars, by agent kind.",
    ["agent"],
    registry=REGISTRY,
)
BUDGET_WARNINGS = Counter(
    "swarm_budget_warnings",
    "Budget warnings given (80% of a limit), by limit (session.usd, tenant.tokens, ...).",
    ["limit"],
    registry=REGISTRY,
)
BUDGET_EXHAUSTED = Counter(
    "swarm_budget_exhausted",
    "Sessions suspended because a budget was spent, by limit.",
    ["limit"],
    registry=REGISTRY,
)
EVENTS = Counter(
    "swarm_events",
    "Adapter events this orchestrator handled, by type and outcome (applied, duplicate, "
    "stale, ignored, rejected, dead).",
    ["type", "outcome"],
    registry=REGISTRY,
)

_TOKEN_TYPES = ("input", "cached_input", "output")
_LIMITS = frozenset(f"{s}.{u}" for s in ("session", "tenant") for u in ("usd", "tokens"))


_CHILDREN: dict[tuple[Any, tuple[str, ...]], Any] = {}


def _child(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, kept: the client takes a lock and builds a key on every
    call, and a run of reports asks for the same few children thousands of times. As many
    as the metric has (its label values are bounded: `_Values`)."""
    key = (metric, values)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*values)
    return found


def _start_at_zero() -> None:
    """Make the series alerts watch exist from the start, at 0: a counter that appears
    already at 1 looks unchanged to `increase()`, and its first event would go unseen."""
    for result in ("merged", "empty", "conflict", "failed"):
        _child(MERGES, result)
    for result in ("passed", "failed"):
        _child(CHECKPOINTS, result)
        _child(CHECKPOINT_TIME, result)
    for kind in AGENT_KINDS:
        for counter in (RETRIES, LOST, ADAPTERS_LOST, COST):
            _child(counter, kind)
    for stream in ("events", "tasks"):
        _child(RECLAIMS, stream)
    for limit in _LIMITS:
        _child(BUDGET_WARNINGS, limit)
        _child(BUDGET_EXHAUSTED, limit)
    for event_type in EVENT_TYPES:
        _child(EVENTS, event_type, "rejected")


_start_at_zero()


class _Values:
    """The values one label took in this process: identifiers only, at most
    `MAX_LABEL_VALUES` of them; anything else is `other`."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if value in self._seen:
            return value  # only identifiers get in
        if not value or not _IDENTIFIER.fullmatch(value) or len(self._seen) >= MAX_LABEL_VALUES:
            return OTHER
        self._seen.add(value)
        return value


_agent = _Values()
_reason = _Values()
_event_type = _Values()


# -- counting once, after the commit --------------------------------------------------------

_PENDING = "swarm.metrics.pending"
"""Where a database session keeps the observations its transaction made (`Session.info`)."""


def after_commit(db: AsyncSession | Session | None, observe: Callable[[], None]) -> None:
    """Run `observe` once `db`'s transaction commits (at once outside a transaction); a
    rollback drops it."""
    sync = db.sync_session if isinstance(db, AsyncSession) else db
    if sync is None or not sync.in_transaction():
        observe()
        return
    sync.info.setdefault(_PENDING, []).append(observe)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    for observe in session.info.pop(_PENDING, ()):
        observe()


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # a rollback of the whole transaction: nothing happened
        session.info.pop(_PENDING, None)


def _count_each(db: AsyncSession | None, counters: list[Any]) -> None:
    """One more in each of `counters` (labelled children), once `db` commits."""

    def observe() -> None:
        for counter in counters:
            counter.inc()

    if counters:
        after_commit(db, observe)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    """`end - start` in seconds, never below 0 (clocks of two machines); None if unknown."""
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


# -- attempts ------------------------------------------------------------------------------


def attempts_queued(db: AsyncSession, retried: list[str]) -> None:
    """New attempts were queued (`task_state.queue`); `retried`: the agent kind of each
    that is a retry (not its task's first)."""
    _count_each(db, [_child(RETRIES, _agent(agent)) for agent in retried])


def attempt_started(attempt: Attempt, *, at: datetime) -> None:
    """An adapter started `attempt` at `at` (`task_state.start`)."""
    waited = _seconds(attempt.created_at, at)
    if waited is not None:
        histogram = _child(QUEUE_WAIT, _agent(attempt.agent))
        after_commit(object_session(attempt), lambda: histogram.observe(waited))


def attempt_ended(attempt: Attempt, *, at: datetime) -> None:
    """`attempt` ended at `at` with its status and reason (`task_state.end_attempt`)."""
    agent, outcome = _agent(attempt.agent), str(attempt.status)
    reason = "none" if attempt.reason is None else _reason(attempt.reason)
    counter = _child(ATTEMPTS, agent, outcome, reason)
    ran = _seconds(attempt.started_at, at)
    histogram = _child(RUN_TIME, agent, outcome)

    def observe() -> None:
        counter.inc()
        if ran is not None:
            histogram.observe(ran)

    after_commit(object_session(attempt), observe)


def attempt_lost(db: AsyncSession, *, agent: str) -> None:
    """An attempt of `agent` was declared lost (`runtime.reaper.declare_lost`)."""
    after_commit(db, _child(LOST, _agent(agent)).inc)


def attempt_priced(
    db: AsyncSession, *, agent: str, usage: Mapping[str, Any] | None, cost_usd: Decimal
) -> None:
    """An attempt's usage was priced, once (`graph.pricing`): its tokens and cost count."""
    kind = _agent(agent)
    counts = [(t, _count((usage or {}).get(t))) for t in _TOKEN_TYPES]
    amounts = [(_child(TOKENS, kind, t), n) for t, n in counts if n]
    cost = float(cost_usd)

    def observe() -> None:
        for counter, amount in amounts:
            counter.inc(amount)
        if cost > 0:
            _child(COST, kind).inc(cost)

    after_commit(db, observe)


def _count(value: object) -> int:
    """A token count as an adapter reported it; 0 for anything that is not one."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, str) and value.isdigit() and len(value) <= 18:
        return int(value)
    return 0


# -- integration ---------------------------------------------------------------------------


def merged(db: AsyncSession, *, result: str) -> None:
    """A task's work left the merge queue (`integration.merges`): `merged`, `empty`,
    `conflict` or `failed`."""
    after_commit(db, _child(MERGES, result).inc)


def checkpoint_ended(db: AsyncSession, *, result: str, seconds: float | None) -> None:
    """A checkpoint finished (`integration.checkpoints`), `passed` or `failed`."""
    counter, histogram = _child(CHECKPOINTS, result), _child(CHECKPOINT_TIME, result)

    def observe() -> None:
        counter.inc()
        if seconds is not None:
            histogram.observe(max(seconds, 0.0))

    after_commit(db, observe)


def rolled_back(db: AsyncSession) -> None:
    """An integration branch was rolled back to a checkpoint (`integration.rollback`)."""
    after_commit(db, ROLLBACKS.inc)


# -- transport and fleet -------------------------------------------------------------------


def reclaimed(db: AsyncSession | None, *, stream: str, count: int = 1) -> None:
    """`count` entries of `stream` (`events` or `tasks`) were taken over from a consumer
    that vanished."""
    if count > 0:
        after_commit(db, lambda: _child(RECLAIMS, stream).inc(count))


def adapters_lost(db: AsyncSession, *, agents: Iterable[str]) -> None:
    """Adapters of these kinds (one entry each) went silent (`graph.fleet.mirror`)."""
    _count_each(db, [_child(ADAPTERS_LOST, _agent(agent)) for agent in agents])


def event_handled(event_type: str | None, outcome: str) -> None:
    """The consumer handled an event (its transaction is over): applied, duplicate, stale,
    ignored, rejected, or dead (dead-lettered)."""
    _child(EVENTS, _event_type(event_type), outcome).inc()


# -- budgets -------------------------------------------------------------------------------


def budget_warned(db: AsyncSession, *, limit: str) -> None:
    """A session was warned at 80% of `limit` (`session.usd`, ...; `graph.budgets`)."""
    after_commit(db, _child(BUDGET_WARNINGS, limit if limit in _LIMITS else OTHER).inc)


def budget_exhausted(db: AsyncSession, *, limits: Iterable[str]) -> None:
    """A session was suspended because these limits are spent (`graph.budgets`)."""
    _count_each(db, [_child(BUDGET_EXHAUSTED, x if x in _LIMITS else OTHER) for x in limits])
