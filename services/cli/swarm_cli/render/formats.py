"""The small formats every view shares: times, ages and durations, token counts, costs,
failure reasons, and text cut to one line."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ago",
    "between",
    "clock",
    "duration",
    "failure",
    "local_time",
    "money",
    "one_line",
    "parse_time",
    "short",
    "tokens",
    "usage_line",
]


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `2h04m`, `3d02h`; `-` when unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def between(start: object, end: object = None, *, now: datetime | None = None) -> float | None:
    """Seconds from `start` to `end` (to now when `end` is missing)."""
    begin = parse_time(start)
    if begin is None:
        return None
    finish = parse_time(end) or now or datetime.now(UTC)
    return (finish - begin).total_seconds()


def ago(value: object, *, now: datetime | None = None) -> str:
    seconds = between(value, now=now)
    return "-" if seconds is None else f"{duration(seconds)} ago"


def local_time(value: object) -> str:
    """A server timestamp as local date and time; `-` when there is none."""
    parsed = parse_time(value)
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S") if parsed else "-"


def clock(value: object) -> str:
    """A server timestamp as local time of day, for timeline lines."""
    parsed = parse_time(value)
    return parsed.astimezone().strftime("%H:%M:%S") if parsed else "--:--:--"


def tokens(value: object) -> str:
    """A token count (an int, or a usage mapping of input/output counts) as `12.3k`."""
    if isinstance(value, Mapping):
        total = sum(int(value.get(k) or 0) for k in ("input", "output"))
        if not total:
            total = sum(int(v) for v in value.values() if isinstance(v, int))
    elif isinstance(value, int | float):
        total = int(value)
    else:
        return "-"
    if total <= 0:
        return "-"
    if total < 1000:
        return str(total)
    if total < 1_000_000:
        return f"{total / 1000:.1f}k"
    return f"{total / 1_000_000:.2f}M"


def money(value: object) -> str:
    try:
        amount = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    return f"${amount:.4f}" if amount < 1 else f"${amount:.2f}"


def usage_line(spend: Mapping[str, Any]) -> str:
    """`tokens 12.3k  cost $0.42` of a session or a task; empty when nothing was reported."""
    parts = []
    count = tokens(spend.get("tokens") or spend.get("usage"))
    if count != "-":
        parts.append(f"tokens {count}")
    if spend.get("cost_usd") is not None:
        parts.append(f"cost {money(spend.get('cost_usd'))}")
    return "  ".join(parts)


def failure(reason: object, error: object) -> str:
    """`reason: error`, without saying the same twice (`exit_code: exited with code 3`)."""
    reason, error = str(reason or ""), str(error or "")
    if not error or reason == error:
        return reason
    if not reason or reason == "exit_code":
        return error
    return f"{reason}: {error}"


def short(value: object, n: int = 10) -> str:
    """The first `n` characters of an id or a commit; `-` when there is none."""
    return str(value)[:n] if value else "-"


def one_line(value: object, limit: int = 80) -> str:
    """`value` with its whitespace folded into single spaces, cut to `limit` characters."""
    text = " ".join(str(value or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
