"""Cleaning agent output for storage: NUL never reaches PostgreSQL."""

from __future__ import annotations

from swarm_common.text import clean, clean_text, has_nul


def test_nul_is_replaced_everywhere() -> None:
    assert clean_text("a\x00b") == "a\ufffdb"
    value = {"k\x00": ["x\x00", {"y": "z\x00"}], "n": 1}
    cleaned = clean(value)
    assert cleaned == {"k\ufffd": ["x\ufffd", {"y": "z\ufffd"}], "n": 1}
    assert has_nul(value) and not has_nul(cleaned)
    assert clean("plain") == "plain"
