"""What an attempt's agent said last: its final few messages, kept as its run streams, for a
failed attempt's result (`TaskFailed.transcript_summary`). After a failover the attempt on
the next agent kind is told this (`graph.failover` in the orchestrator), beside the work
the failed attempt committed.

The messages come from the runner's observations, already redacted like every other output
(`runners.cli`); the summary is bounded (`MAX_SUMMARY_CHARS`), the newest kept."""

from __future__ import annotations

from collections import deque

from swarm_common.messages import MAX_SUMMARY_CHARS
from swarm_common.text import clean_text

__all__ = ["LastWords"]

KEEP_MESSAGES = 5
MAX_MESSAGE_CHARS = 1500


class LastWords:
    """The agent's last messages; `add` takes every observation (only `message`s count)."""

    def __init__(self, keep: int = KEEP_MESSAGES) -> None:
        self._said: deque[str] = deque(maxlen=keep)

    def add(self, kind: str, text: str) -> None:
        said = text.strip()
        if kind != "message" or not said:
            return
        if len(said) > MAX_MESSAGE_CHARS:
            said = said[:MAX_MESSAGE_CHARS] + "…"
        self._said.append(said)

    def summary(self) -> str | None:
        """Its last messages, oldest first, within `MAX_SUMMARY_CHARS`; None if it said
        nothing."""
        if not self._said:
            return None
        text = clean_text("\n\n".join(f"- {m}" for m in self._said))
        return text[-MAX_SUMMARY_CHARS:]
