"""What an attempt cost: its usage priced by the process's price table, once, when its
result arrives (`graph.reports`).

The cost Swarm keeps (`attempts.cost_usd`) is always its own: the tokens the adapter
reported, priced by `swarm_common.prices` with the operator's `SWARM_PRICES` on top, for
every agent kind alike (`shell` costs nothing, an attempt without usage nothing either).
What a CLI claims it cost (Claude's `total_cost_usd`) is kept beside it
(`reported_cost_usd`), for comparison only. A cost is set once: a result delivered again
changes nothing, so what budgets sum never moves under them.

The price table travels with the database session (`db.info[PRICES_INFO]`, set by the
app's sessionmaker from the settings), as the routing policy does; a session without one
prices by the built-in table.
"""

from __future__ import annotations

import logging
import math
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.prices import PriceTable
from swarm_orchestrator.db.models import Attempt
from swarm_orchestrator.observability import metrics

__all__ = ["PRICES_INFO", "price_attempt", "table_of"]

PRICES_INFO = "swarm.prices"
"""Where a database session carries the process's `PriceTable` (`Session.info`)."""

MAX_MODEL_CHARS = 200
"""As long as `attempts.model` holds."""

MAX_USD = Decimal("999999.999999")
"""The most `attempts.cost_usd` (numeric 12, 6) holds."""

_BUILT_IN = PriceTable()

log = logging.getLogger(__name__)


def table_of(db: AsyncSession) -> PriceTable:
    found = db.info.get(PRICES_INFO)
    return found if isinstance(found, PriceTable) else _BUILT_IN


def price_attempt(
    db: AsyncSession,
    attempt: Attempt,
    *,
    usage: dict[str, Any] | None,
    model: str | None,
    reported_usd: float | None,
    fallback_model: str | None = None,
) -> dict[str, Any]:
    """Price `attempt`'s usage on the model it ran on (else `fallback_model`, the one its
    task asked for; else its kind's default) and keep the CLI's own claim beside it, unless
    it has a cost already (the first report's figures stand). Return what the timeline
    entry says of it."""
    table = table_of(db)
    if attempt.cost_usd is None:
        attempt.model = model[:MAX_MODEL_CHARS] if model else None
        cost = table.cost(attempt.agent, attempt.model or fallback_model, usage)
        attempt.cost_usd = _bounded(cost.usd, attempt)
        attempt.reported_cost_usd = _claim(reported_usd)
        metrics.attempt_priced(db, agent=attempt.agent, usage=usage, cost_usd=attempt.cost_usd)
    said: dict[str, Any] = {
        "cost_usd": float(attempt.cost_usd),
        "priced_as": table.entry(attempt.agent, attempt.model or fallback_model),
    }
    if attempt.model:
        said["model"] = attempt.model
    if attempt.reported_cost_usd is not None:
        said["reported_cost_usd"] = float(attempt.reported_cost_usd)
    return said


def _bounded(usd: Decimal, attempt: Attempt) -> Decimal:
    """At most what the column holds: usage that absurd is an adapter's bug, logged."""
    if usd <= MAX_USD:
        return usd
    log.warning(
        "attempt cost beyond what is stored; kept as the most",
        extra={"task_id": str(attempt.task_id), "attempt": attempt.number, "usd": str(usd)},
    )
    return MAX_USD


def _claim(value: float | None) -> Decimal | None:
    """A CLI's claimed cost, when it is one the column can hold."""
    if value is None or not math.isfinite(value) or not 0 <= value <= float(MAX_USD):
        return None
    return Decimal(str(value)).quantize(Decimal("0.000001"))
