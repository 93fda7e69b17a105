"""Facts about JSON text before it is parsed: nesting depth fed in pieces, entries under a key,
and values clipped at a depth; each checked against the parsed value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm_common.jsontext import CLIPPED, Nesting, clipped, count_entries

# Strings full of what could fool a scanner: brackets, quotes, backslashes, the key itself.
TRICKY = st.text(alphabet='[]{}"\\,:ab \n\u00e9', max_size=8) | st.just('"depends_on": ["x"]')
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY, inner, max_size=4),
    max_leaves=30,
)


def depth(value: Any) -> int:
    """The reference: nesting depth of a parsed value (`[]` is 1, a scalar 0)."""
    best, stack = 0, [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, level = stack.pop()
        best = max(best, level)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, level + 1) for c in children if isinstance(c, dict | list))
    return best


@given(JSON_VALUES, st.booleans(), st.lists(st.integers(min_value=0), max_size=6))
def test_nesting_matches_the_parsed_depth_however_the_text_is_cut(
    value: Any, ascii_only: bool, cuts: list[int]
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).encode()
    nesting = Nesting()
    points = sorted({c % (len(text) + 1) for c in cuts} | {len(text)})
    start = 0
    for point in points:  # a cut may fall inside a string, an escape or a UTF-8 character
        nesting.feed(text[start:point])
        start = point
    assert nesting.peak == depth(value)


def test_nesting_counts_a_hundred_thousand_levels_without_recursion() -> None:
    assert Nesting().feed(b"[" * 100_000 + b"]" * 100_000) == 100_000
    assert Nesting().feed(b'{"a":' * 300 + b"1" + b"}" * 300) == 300


def test_brackets_in_strings_and_escapes_do_not_count() -> None:
    assert Nesting().feed(rb'["[[[[", "\\", "\"[[", {"k\\\"": "{{{"}]') == 2


@given(st.lists(st.lists(TRICKY, max_size=5), max_size=5), JSON_VALUES)
def test_count_entries_counts_the_strings_under_the_key(lists: list[list[str]], noise: Any) -> None:
    tasks = [{"key": "a", "depends_on": deps, "noise": noise} for deps in lists]
    text = json.dumps({"tasks": tasks, "prompt": '"depends_on": ["x", "y"]'}).encode()
    assert count_entries(text, "depends_on") == sum(len(d) for d in lists)


@pytest.mark.parametrize(
    ("text", "entries"),
    [
        (b'[{"depends_on" : [ "a" , "b" ]}]', 2),
        (b'[{"depends_on": []}, {"depends_on": ["x"]}]', 1),
        (b'{"title": "depends_on", "tasks": []}', 0),
        (b'[{"depends_on": [1]}]', 0),  # not strings: a lower bound
        (b'[{"depends_on": ["a", "b"', 0),  # cut short: never an overcount
    ],
)
def test_count_entries_cases(text: bytes, entries: int) -> None:
    assert count_entries(text, "depends_on") == entries


@given(JSON_VALUES, st.integers(min_value=1, max_value=4))
def test_clipped_cuts_at_the_depth_and_copies_only_when_it_must(value: Any, limit: int) -> None:
    cut = clipped(value, limit)
    assert depth(cut) <= limit
    if depth(value) <= limit:
        assert cut is value
    else:
        assert CLIPPED in json.dumps(cut, ensure_ascii=False)


def test_clipped_handles_any_depth() -> None:
    deep: list[Any] = []
    node = deep
    for _ in range(10_000):
        node.append([])
        node = node[0]
    assert depth(clipped(deep, 64)) == 64
