"""A task's own spending cap while its agent runs (`settings.budget.per_task_usd`, which the
task message carries): the usage its CLI has streamed so far, priced as the orchestrator
prices it (`swarm_common.prices`, with this adapter's `SWARM_PRICES`), against the cap. The
CLI runner stops the agent once the cap is passed, as it does at a turn limit, and the
attempt fails with `budget_exhausted`, which the orchestrator never retries.

What counts is what the CLI has said: Claude Code says each model call's input as it is
made but its output only at the end, Codex each turn's whole usage, Gemini only its total at
the end. So a cap holds from the first call (or turn) that passes it; a run whose closing
event is the first to pass it has ended already and is not failed for it (its cost counts
against the session's budget as any other's).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from pydantic import ValidationError

from swarm_common.messages import TaskMessage
from swarm_common.prices import PriceTable, prices_from_env
from swarm_common.session_settings import BudgetConfig

__all__ = ["REASON", "SpendCap", "price_table"]

log = logging.getLogger(__name__)

REASON = "budget_exhausted"
"""The failure reason of an attempt stopped at its cap."""


def price_table(environ: Mapping[str, str]) -> PriceTable:
    """The prices with `SWARM_PRICES` from `environ`; the built-in ones when it does not
    parse (said once in the log: the orchestrator refuses to start with it)."""
    try:
        return prices_from_env(environ)
    except ValueError as exc:
        log.warning("SWARM_PRICES ignored by the spend cap: %s", exc)
        return PriceTable()


@dataclass(frozen=True)
class SpendCap:
    usd: Decimal
    kind: str
    """The agent kind whose default model prices an unknown one."""
    table: PriceTable

    @classmethod
    def of(cls, message: TaskMessage, *, kind: str, table: PriceTable) -> SpendCap | None:
        """The cap of the task `message` runs, or None when its session sets none."""
        raw = (message.settings or {}).get("budget")
        if not isinstance(raw, dict):
            return None
        try:
            cap = BudgetConfig.model_validate(raw).per_task_usd
        except ValidationError:
            return None
        return None if cap is None else cls(Decimal(str(cap)), kind, table)

    def cost(self, usage: Mapping[str, int], model: str | None) -> Decimal:
        return self.table.cost(self.kind, model, usage).usd

    def passed(self, usage: Mapping[str, int], model: str | None) -> str | None:
        """Why the run must stop (`usage` on `model` costs more than the cap), or None."""
        cost = self.cost(usage, model)
        if cost <= self.usd:
            return None
        return (
            f"spent ${cost:.4f} by the usage its CLI reported, more than the task's cap of "
            f"${self.usd} (settings.budget.per_task_usd)"
        )
