"""Edits of a plan (`planning/edits.py`) over generated graphs: removing or splitting a task
leaves no dangling dependency and no cycle, and keeps every order the plan had among the
tasks that remain; merging leaves no dangling dependency; a bad change says which."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm_orchestrator.errors import Invalid
from swarm_orchestrator.graph.validation import topological_order
from swarm_orchestrator.planning import edits


@st.composite
def dags(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Tasks t0..tn, each depending on some of the ones before it."""
    n = draw(st.integers(1, 12))
    tasks = []
    for i in range(n):
        parents = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        tasks.append({"key": f"t{i}", "prompt": "x", "depends_on": [f"t{p}" for p in parents]})
    return tasks


def _edges(tasks: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {t["key"]: list(t.get("depends_on") or []) for t in tasks}


def _reach(tasks: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(ancestor, descendant) pairs."""
    parents = _edges(tasks)
    pairs: set[tuple[str, str]] = set()

    def up(key: str, seen: set[str]) -> set[str]:
        for p in parents.get(key, []):
            if p not in seen:
                seen.add(p)
                up(p, seen)
        return seen

    for key in parents:
        pairs |= {(a, key) for a in up(key, set())}
    return pairs


def _sound(tasks: list[dict[str, Any]]) -> None:
    keys = {t["key"] for t in tasks}
    assert len(keys) == len(tasks)
    assert all(set(t.get("depends_on") or []) <= keys - {t["key"]} for t in tasks)
    assert topological_order(_edges(tasks)) is not None


@settings(max_examples=150, deadline=None)
@given(dags(), st.data())
def test_removing_keeps_the_order_among_what_remains(
    tasks: list[dict[str, Any]], data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from([t["key"] for t in tasks]))
    after = edits.apply(tasks, [{"op": "remove", "key": gone}])
    _sound(after)
    assert {(a, b) for a, b in _reach(tasks) if gone not in (a, b)} <= _reach(after)


@settings(max_examples=150, deadline=None)
@given(dags(), st.data())
def test_splitting_puts_every_part_where_the_task_was(
    tasks: list[dict[str, Any]], data: st.DataObject
) -> None:
    whole = data.draw(st.sampled_from([t["key"] for t in tasks]))
    parts = [{"key": "part-a", "prompt": "a"}, {"key": "part-b", "prompt": "b"}]
    after = edits.apply(tasks, [{"op": "split", "key": whole, "into": parts}])
    _sound(after)
    before, reach = _reach(tasks), _reach(after)
    assert {(a, b) for a, b in before if whole not in (a, b)} <= reach
    for part in ("part-a", "part-b"):
        assert {(a, part) for a, b in before if b == whole} <= reach
        assert {(part, b) for a, b in before if a == whole} <= reach


@settings(max_examples=150, deadline=None)
@given(dags(), st.data())
def test_merging_leaves_no_dangling_dependency(
    tasks: list[dict[str, Any]], data: st.DataObject
) -> None:
    if len(tasks) < 2:
        return
    keys = data.draw(
        st.lists(st.sampled_from([t["key"] for t in tasks]), min_size=2, max_size=3, unique=True)
    )
    after = edits.apply(
        tasks, [{"op": "merge", "keys": keys, "into": {"key": "merged", "prompt": "m"}}]
    )
    left = {t["key"] for t in after}
    assert left == ({t["key"] for t in tasks} - set(keys)) | {"merged"}
    assert all(set(t.get("depends_on") or []) <= left - {t["key"]} for t in after)


def test_the_input_is_not_changed_and_a_rename_follows_dependents() -> None:
    tasks = [{"key": "a", "prompt": "x"}, {"key": "b", "prompt": "y", "depends_on": ["a"]}]
    after = edits.apply(tasks, [{"op": "update", "key": "a", "set": {"key": "first"}}])
    assert _edges(after) == {"first": [], "b": ["first"]}
    assert _edges(tasks) == {"a": [], "b": ["a"]}
    assert edits.describe(tasks, after) == "added first; removed a; changed b"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"op": "remove", "key": "ghost"}, "no task 'ghost'"),
        ({"op": "fly"}, "op must be one of"),
        ({"op": "split", "key": "a", "into": [{"key": "only"}]}, "two or more tasks"),
        ({"op": "merge", "keys": ["a"], "into": {"key": "m"}}, "two or more tasks"),
        ({"op": "update", "key": "a", "set": "prompt"}, '"set" must be an object'),
        ({"op": "add", "task": {"prompt": "no key"}}, 'with a "key"'),
    ],
)
def test_a_bad_change_says_which_and_what(change: dict[str, Any], says: str) -> None:
    with pytest.raises(Invalid) as raised:
        edits.apply([{"key": "a", "prompt": "x"}], [{"op": "add", "task": {"key": "z"}}, change])
    assert raised.value.code == "invalid_change"
    assert raised.value.message.startswith("change 2 (")
    assert says in raised.value.message
