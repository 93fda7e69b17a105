"""Routing: which agent kind runs a task that asks for `agent: auto`, chosen each time it is
queued (`scheduler.queue_ready`), so a retry is routed again.

The choice, in order:

1. Candidates are the agent CLIs (`claude`, `codex`, `gemini`); never `shell`, which runs a
   prompt as a command.
2. What the task needs rules kinds out (`swarm_common.capabilities.needs`): an
   `output_schema` needs a kind whose CLI enforces one, `allowed_tools` one that limits its
   tools, a named `model` a kind whose live adapters list it (when they list any).
3. A kind needs a live adapter (`graph.fleet`) and must not be paused for its provider's
   limits (`graph.pauses`).
4. Among those left: a kind with a free slot (its adapters' concurrency not taken by
   queued or running tasks) before one without; then the persona's preference (its
   snapshot's `agents`, else its role's, else the task's role's); then price (`PRICES`, a
   relative cost per kind, `SWARM_AGENT_PRICES` overrides it); then the name.

The task's `agent` column carries the choice for the attempt about to be made (its spec
keeps `auto`), and a `task.routed` timeline entry says the choice, why, and every
candidate with what ruled it out. When no kind can take it, the task stays `pending` (it is
not queued into a stream nobody reads), its `reason` says why and a `task.unroutable`
entry says so once; the scheduler's sweep routes it again when the fleet changes.

The price table travels with the database session (`db.info[ROUTING_INFO]`, set by the
app's sessionmaker), since the scheduler is asked to queue from many places that hold a
database session and nothing else of the process.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common import personas
from swarm_common.capabilities import (
    ALLOWED_TOOLS,
    KIND_CAPABILITIES,
    PROSE,
    STRUCTURED_OUTPUT,
    needs,
)
from swarm_common.specs import AUTO_AGENT
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import Task
from swarm_orchestrator.graph import fleet
from swarm_orchestrator.graph.fleet import KindState

__all__ = [
    "CANDIDATES",
    "PRICES",
    "ROUTING_INFO",
    "UNROUTABLE",
    "Candidate",
    "Choice",
    "Router",
    "RoutingPolicy",
    "choose",
    "is_auto",
    "preferences",
]

log = logging.getLogger(__name__)

CANDIDATES = ("claude", "codex", "gemini")
"""The kinds an `auto` task may go to: every agent CLI (a prompt is no shell command)."""
PRICES: dict[str, float] = {"claude": 3.0, "codex": 2.0, "gemini": 1.5}
"""Relative cost of a task on each kind (list prices of their default models, roughly):
the last tie-breaker."""
ROUTING_INFO = "swarm.routing"
"""Where a database session carries the process's `RoutingPolicy` (`Session.info`)."""
UNROUTABLE = "no agent kind can take it now"
"""How the `reason` of a task routing left pending begins."""

_NEED_WORDS = {
    PROSE: "runs the prompt as a shell command",
    STRUCTURED_OUTPUT: "cannot enforce an output_schema",
    ALLOWED_TOOLS: "cannot limit the agent to allowed_tools",
}


@dataclass(frozen=True)
class RoutingPolicy:
    prices: Mapping[str, float] = field(default_factory=lambda: dict(PRICES))

    @classmethod
    def with_prices(cls, overrides: Mapping[str, float] | None) -> RoutingPolicy:
        return cls(prices={**PRICES, **(overrides or {})})


def policy_of(db: AsyncSession) -> RoutingPolicy:
    found = db.info.get(ROUTING_INFO)
    return found if isinstance(found, RoutingPolicy) else RoutingPolicy()


def is_auto(task: Task) -> bool:
    return (task.spec or {}).get("agent") == AUTO_AGENT


def preferences(spec: Mapping[str, Any], role: str | None) -> tuple[list[str], str]:
    """The kinds the task's persona prefers, the most preferred first, and whose
    preference it is (`persona ada-lovelace`, `role backend`); ([], "") for none."""
    snapshot = spec.get("assigned_persona") or {}
    if snapshot:
        agents = snapshot.get("agents")
        name = f"persona {snapshot.get('name', '?')}"
        if isinstance(agents, list) and agents:
            return [str(a) for a in agents], name
        known = personas.ROLES.get(str(snapshot.get("role")))
        if known is not None:
            return list(known.agents), name
    known = personas.ROLES.get(role or "")
    if known is not None:
        return list(known.agents), f"role {known.name}"
    return [], ""


@dataclass(frozen=True)
class Candidate:
    agent: str
    live: bool
    free: int
    price: float
    preference: int | None
    """Its place in the persona's preferences (0: the first); None: not listed."""
    ruled_out: str | None = None

    def public(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "agent": self.agent,
            "live": self.live,
            "free": self.free,
            "price": self.price,
            "preference": self.preference,
        }
        if self.ruled_out:
            shown["ruled_out"] = self.ruled_out
        return shown


@dataclass(frozen=True)
class Choice:
    agent: str | None
    """The chosen kind; None when no kind can take the task now."""
    reason: str
    candidates: list[Candidate]

    def public(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "reason": self.reason,
            "candidates": [c.public() for c in self.candidates],
        }


def choose(
    spec: Mapping[str, Any],
    *,
    role: str | None,
    kinds: Mapping[str, KindState],
    policy: RoutingPolicy,
) -> Choice:
    """The kind for a task (its stored spec and role) as the fleet stands (`kinds`); pure,
    so every rule can be tried without adapters."""
    prefer, whose = preferences(spec, role)
    wanted = needs(spec)
    model = spec.get("model")
    candidates = []
    for agent in CANDIDATES:
        state = kinds.get(agent) or KindState(
            kind=agent, capabilities=KIND_CAPABILITIES.get(agent, frozenset())
        )
        candidates.append(
            Candidate(
                agent=agent,
                live=state.live,
                free=state.free,
                price=float(policy.prices.get(agent, 1.0)),
                preference=prefer.index(agent) if agent in prefer else None,
                ruled_out=_ruled_out(state, wanted, model),
            )
        )
    able = [c for c in candidates if c.ruled_out is None]
    if not able:
        why = "; ".join(f"{c.agent} {c.ruled_out}" for c in candidates)
        return Choice(agent=None, reason=f"{UNROUTABLE}: {why}", candidates=candidates)
    best = min(able, key=lambda c: _rank(c, len(prefer)))
    return Choice(agent=best.agent, reason=_why(best, able, prefer, whose), candidates=candidates)


def _ruled_out(state: KindState, wanted: frozenset[str], model: object) -> str | None:
    lacking = sorted(wanted - state.capabilities)
    if lacking:
        return ", ".join(_NEED_WORDS.get(n, f"lacks {n}") for n in lacking)
    if not state.live:
        return f"has no live adapter ({state.missing_since()})"
    if state.paused:
        return f"is {state.paused_text()}"
    if isinstance(model, str) and state.models and model not in state.models:
        return f"serves no model {model!r} (only {', '.join(sorted(state.models))})"
    return None


def _rank(c: Candidate, unlisted: int) -> tuple[int, int, float, str]:
    return (
        0 if c.free > 0 else 1,
        c.preference if c.preference is not None else unlisted,
        c.price,
        c.agent,
    )


def _why(best: Candidate, able: Sequence[Candidate], prefer: list[str], whose: str) -> str:
    parts = []
    if best.free > 0:
        parts.append(f"{best.free} free slot{'s' if best.free != 1 else ''}")
    else:
        parts.append("live, every slot of every live kind taken")
    if prefer:
        place = "first" if best.preference == 0 else "preferred"
        parts.append(f"{whose}'s {place} choice of {', '.join(prefer)}")
    rivals = [c for c in able if c is not best and _rank(c, 99)[:2] == _rank(best, 99)[:2]]
    if rivals:
        parts.append(f"cheapest of {', '.join(sorted([best.agent, *(c.agent for c in rivals)]))}")
    return f"{best.agent}: " + "; ".join(parts)


class Router:
    """Routes the `auto` tasks of one scheduling pass: reads the fleet once, and counts
    each task it routes against its kind's free slots, so a burst spreads out."""

    def __init__(self, db: AsyncSession) -> None:
        self.db = db
        self.policy = policy_of(db)
        self._kinds: dict[str, KindState] | None = None

    async def fleet(self) -> dict[str, KindState]:
        """The fleet as this pass sees it (read once, then counting what it routed)."""
        if self._kinds is None:
            self._kinds = await fleet.kinds(self.db)
        return self._kinds

    async def route(self, task: Task) -> bool:
        """Set the kind of `task`'s next attempt and say so on its timeline; False (the task
        stays pending, and says why) when no kind can take it now."""
        kinds = await self.fleet()
        choice = choose(task.spec or {}, role=task.role, kinds=kinds, policy=self.policy)
        if choice.agent is None:
            self._unroutable(task, choice)
            return False
        kinds[choice.agent] = kinds[choice.agent].took()
        task.agent = choice.agent
        if (task.reason or "").startswith(UNROUTABLE):
            task.reason = None
        timeline.record(
            self.db,
            session_id=task.session_id,
            task_id=task.id,
            attempt=task.attempt + 1,
            type="task.routed",
            data=choice.public(),
        )
        log.info(
            "task routed",
            extra={"task_id": str(task.id), "task_key": task.key, "agent": choice.agent},
        )
        return True

    def _unroutable(self, task: Task, choice: Choice) -> None:
        if task.reason == choice.reason:
            return  # said already; the sweep asks again on every pass
        task.reason = choice.reason
        timeline.record(
            self.db,
            session_id=task.session_id,
            task_id=task.id,
            attempt=task.attempt,
            type="task.unroutable",
            data=choice.public(),
        )
        log.warning(
            "no agent kind can take the task now; it waits",
            extra={"task_id": str(task.id), "task_key": task.key, "reason": choice.reason},
        )
