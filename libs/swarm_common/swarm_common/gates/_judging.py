"""What gate results mean: whether they fail the attempt, and the text that tells the agent's
next attempt what went wrong."""

from __future__ import annotations

import re
from collections.abc import Sequence

from swarm_common.gates._model import FAILING, GateMode, GateResult


def blocking_failures(results: Sequence[GateResult], mode: GateMode) -> list[GateResult]:
    """The results that fail an attempt: a failed or timed-out gate, in strict mode only."""
    if mode != "strict":
        return []
    return [result for result in results if result.status in FAILING]


_MAX_COMMAND_SHOWN = 200
_CUT = "…"


def _code_span(text: str) -> str:
    """`text` as inline Markdown code, whatever backticks it holds."""
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{ticks} {text} {ticks}" if "`" in text else f"`{text}`"


def _header(result: GateResult) -> str:
    if result.status == "timeout":
        verdict = result.reason or "timed out"
    elif result.exit_code is not None:
        verdict = f"failed (exit {result.exit_code})"
    else:
        verdict = f"failed ({result.reason})" if result.reason else "failed"
    command = result.command
    if len(command) > _MAX_COMMAND_SHOWN:
        command = command[: _MAX_COMMAND_SHOWN - 1] + _CUT
    return f"### Gate `{result.name}` {verdict}: {_code_span(command)}"


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0)
    return "`" * max(3, longest + 1)


def _shares(lengths: list[int], budget: int) -> list[int]:
    """Split `budget` characters among texts of `lengths`: short texts keep all of theirs,
    long ones share what is left equally."""
    shares = [0] * len(lengths)
    left = max(budget, 0)
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for position, index in enumerate(order):
        shares[index] = min(lengths[index], left // (len(order) - position))
        left -= shares[index]
    return shares


def _keep_end(text: str, chars: int) -> str:
    if len(text) <= chars:
        return text
    if chars <= len(_CUT):
        return ""
    return _CUT + text[len(text) - chars + len(_CUT) :]


def feedback(results: Sequence[GateResult], *, limit: int = 8000) -> str:
    """What a retry prompt says about the gates that failed or timed out: for each, a
    heading with the command and the end of its output, where errors are. At most `limit`
    characters: outputs are cut from the front to fit. Empty when no gate failed."""
    failing = [result for result in results if result.status in FAILING]
    if not failing:
        return ""
    tails = [result.output_tail.rstrip() or "(no output)" for result in failing]
    headers = [_header(result) for result in failing]
    fences = [_fence(tail) for tail in tails]
    # each section: header \n fence \n tail \n fence; sections joined by a blank line
    overhead = sum(len(h) + 2 * len(f) + 3 for h, f in zip(headers, fences, strict=True))
    overhead += 2 * (len(failing) - 1)
    shares = _shares([len(tail) for tail in tails], limit - overhead)
    sections = [
        f"{header}\n{fence}\n{_keep_end(tail, share)}\n{fence}"
        for header, fence, tail, share in zip(headers, fences, tails, shares, strict=True)
    ]
    return "\n\n".join(sections)[:limit]
