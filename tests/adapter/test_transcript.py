"""What an agent said last (`swarm_adapter.transcript`): its final few messages, bounded,
for a failed attempt's result."""

from __future__ import annotations

from swarm_adapter.transcript import MAX_MESSAGE_CHARS, LastWords
from swarm_common.messages import MAX_SUMMARY_CHARS


def test_only_its_last_messages_are_kept_oldest_first() -> None:
    words = LastWords(keep=2)
    assert words.summary() is None
    for i in range(5):
        words.add("message", f"step {i}")
        words.add("tool_call", f"Write f{i}.txt")  # what it did is in its commit, not here
    words.add("message", "   ")
    assert words.summary() == "- step 3\n\n- step 4"


def test_the_summary_is_bounded_and_keeps_no_nul() -> None:
    words = LastWords(keep=10)
    for _ in range(10):
        words.add("message", "x" * (MAX_MESSAGE_CHARS * 2))
    summary = words.summary()
    assert summary is not None and len(summary) == MAX_SUMMARY_CHARS
    words.add("message", "said\x00this")  # PostgreSQL stores no NUL
    assert (words.summary() or "").endswith("- said\ufffdthis")
