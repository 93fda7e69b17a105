"""What an agent's tokens cost: a price table per model, dated, and the cost of a usage.

Prices are US dollars per million tokens, for fresh input, cached input (a prompt cache
read) and output, as each vendor lists them for its API on `PRICES_AS_OF`. A model is
priced by the longest entry its name begins with (`claude-sonnet-4-5-20250929` is priced
as `claude-sonnet-4-5`); a model the table does not know, or none at all, is priced as its
kind's default model (`KIND_DEFAULT_MODEL`), and the cost says so (`Cost.priced_as`).
`shell` costs nothing.

Usage is what the adapter's runners report (`swarm_adapter.runners`): `input` counts every
input token including cached ones, `cached_input` the cached part, `output` the output.

Operators override or extend the table (their negotiated prices, a new model) with
`SWARM_PRICES`, a JSON object of `{"model-prefix": {"input": 3, "cached_input": 0.3,
"output": 15}}`, read by the orchestrator and the adapters alike (`prices_from_env`). The
orchestrator prices every attempt when its result arrives (an agent's own reported cost,
Claude's `total_cost_usd`, is kept beside it for comparison, not trusted for budgets); the
adapter prices the usage its CLI streams to hold a task to its own cap while it runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = [
    "KIND_DEFAULT_MODEL",
    "PRICES",
    "PRICES_AS_OF",
    "Cost",
    "Price",
    "PriceTable",
    "parse_prices",
    "prices_from_env",
]

PRICES_AS_OF = "2025-11-01"
"""When the built-in table was last checked against the vendors' price pages."""


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: Decimal
    cached_input: Decimal
    output: Decimal

    @classmethod
    def of(cls, input: float | str, cached_input: float | str, output: float | str) -> Price:
        return cls(Decimal(str(input)), Decimal(str(cached_input)), Decimal(str(output)))

    def as_dict(self) -> dict[str, float]:
        return {
            "input": float(self.input),
            "cached_input": float(self.cached_input),
            "output": float(self.output),
        }


PRICES: dict[str, Price] = {
    # Anthropic (cached input: a cache read; writes are priced as input here). Opus 4.6 to
    # 4.8 and Sonnet 4.6 as the Claude Code CLI (2.1.197) prices them in its own cost.
    "claude-opus-4-8": Price.of(5, 0.5, 25),
    "claude-opus-4-7": Price.of(5, 0.5, 25),
    "claude-opus-4-6": Price.of(5, 0.5, 25),
    "claude-sonnet-4-6": Price.of(3, 0.3, 15),
    "claude-opus-4-5": Price.of(5, 0.5, 25),
    "claude-opus-4": Price.of(15, 1.5, 75),
    "claude-sonnet-4-5": Price.of(3, 0.3, 15),
    "claude-sonnet-4": Price.of(3, 0.3, 15),
    "claude-3-7-sonnet": Price.of(3, 0.3, 15),
    "claude-haiku-4-5": Price.of(1, 0.1, 5),
    "claude-3-5-haiku": Price.of(0.8, 0.08, 4),
    # OpenAI
    "gpt-5-codex": Price.of(1.25, 0.125, 10),
    "gpt-5-mini": Price.of(0.25, 0.025, 2),
    "gpt-5-nano": Price.of(0.05, 0.005, 0.4),
    "gpt-5": Price.of(1.25, 0.125, 10),
    "gpt-4.1-mini": Price.of(0.4, 0.1, 1.6),
    "gpt-4.1": Price.of(2, 0.5, 8),
    "o4-mini": Price.of(1.1, 0.275, 4.4),
    "o3": Price.of(2, 0.5, 8),
    # Google (prompts up to 200k tokens)
    "gemini-2.5-pro": Price.of(1.25, 0.125, 10),
    "gemini-2.5-flash-lite": Price.of(0.1, 0.01, 0.4),
    "gemini-2.5-flash": Price.of(0.3, 0.03, 2.5),
    "gemini-2.0-flash": Price.of(0.1, 0.025, 0.4),
}

KIND_DEFAULT_MODEL: dict[str, str] = {
    "claude": "claude-sonnet-4-5",
    "codex": "gpt-5-codex",
    "gemini": "gemini-2.5-pro",
}
"""The model each CLI uses when none is named (what an unknown model is priced as)."""

_MILLION = Decimal(1_000_000)
_MAX_REMEMBERED = 1024
"""Answers of `PriceTable.entry` kept (model names come from adapters: bounded)."""
_CENTS = Decimal("0.000001")


@dataclass(frozen=True)
class Cost:
    usd: Decimal
    priced_as: str | None
    """The table entry used; None for `shell` (free) or a kind without a default."""


class PriceTable:
    """The built-in prices with an operator's overrides on top."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self.prices = {**PRICES, **(overrides or {})}
        # longest prefix first, so `gpt-5-mini` wins over `gpt-5`
        self._order = sorted(self.prices, key=len, reverse=True)
        self._entries: dict[tuple[str, str | None], str | None] = {}
        """What `entry` answered (every attempt asks; the models are few)."""

    def entry(self, kind: str, model: str | None) -> str | None:
        """The table entry `model` (of agent kind `kind`) is priced by."""
        key = (kind, model)
        if key not in self._entries:
            if len(self._entries) >= _MAX_REMEMBERED:
                self._entries.clear()
            self._entries[key] = self._look_up(kind, model)
        return self._entries[key]

    def _look_up(self, kind: str, model: str | None) -> str | None:
        if kind == "shell":
            return None
        name = (model or "").strip().lower()
        for prefix in self._order:
            if name.startswith(prefix.lower()):
                return prefix
        default = KIND_DEFAULT_MODEL.get(kind)
        return default if default in self.prices else None

    def cost(self, kind: str, model: str | None, usage: Mapping[str, Any] | None) -> Cost:
        """What `usage` cost on `model` (of agent kind `kind`); zero for none."""
        entry = self.entry(kind, model)
        if entry is None:
            return Cost(Decimal(0), None)
        price = self.prices[entry]
        tokens = {k: _count((usage or {}).get(k)) for k in ("input", "cached_input", "output")}
        cached = min(tokens["cached_input"], tokens["input"])
        usd = (
            (tokens["input"] - cached) * price.input
            + cached * price.cached_input
            + tokens["output"] * price.output
        ) / _MILLION
        return Cost(usd.quantize(_CENTS), entry)

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": PRICES_AS_OF,
            "models": {name: p.as_dict() for name, p in sorted(self.prices.items())},
            "defaults": dict(KIND_DEFAULT_MODEL),
        }


def parse_prices(text: str) -> dict[str, Price]:
    """`SWARM_PRICES`' JSON; a ValueError names what is wrong."""
    try:
        raw = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ValueError(f"SWARM_PRICES is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("SWARM_PRICES must be a JSON object of model prefix to prices")
    table = {}
    for name, entry in raw.items():
        if not isinstance(name, str) or not name or not isinstance(entry, dict):
            raise ValueError(f"SWARM_PRICES[{name!r}] must be an object of prices")
        values = {}
        for part in ("input", "cached_input", "output"):
            value = entry.get(part, entry.get("input") if part == "cached_input" else None)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"SWARM_PRICES[{name!r}].{part} must be a number >= 0")
            values[part] = value
        table[name] = Price.of(**values)
    return table


def prices_from_env(environ: Mapping[str, str] | None = None) -> PriceTable:
    """The price table with `SWARM_PRICES` applied."""
    env = os.environ if environ is None else environ
    return PriceTable(parse_prices(env.get("SWARM_PRICES", "")))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
