"""Task graph validation: unique keys, known dependencies, no cycle, size limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm_common.specs import TaskSpec
from swarm_orchestrator.errors import Conflict, Invalid
from swarm_orchestrator.graph.validation import find_cycle, topological_order, validate_graph


def spec(key: str, *deps: str) -> TaskSpec:
    return TaskSpec(key=key, prompt="true", depends_on=list(deps))


def test_order_puts_parents_first() -> None:
    graph = [spec("d", "b", "c"), spec("b", "a"), spec("c", "a"), spec("a")]
    order = [s.key for s in validate_graph(graph, max_tasks=10)]
    assert order == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("graph", "code"),
    [
        ([], "empty_graph"),
        ([spec("a"), spec("a")], "duplicate_task_key"),
        ([spec("a", "ghost")], "unknown_dependency"),
        ([spec("a", "b"), spec("b", "a")], "dependency_cycle"),
        ([spec("a", "c"), spec("b", "a"), spec("c", "b"), spec("d")], "dependency_cycle"),
        ([spec(f"t{i}") for i in range(11)], "graph_too_large"),
    ],
)
def test_refusals_have_stable_codes(graph: list[TaskSpec], code: str) -> None:
    with pytest.raises(Invalid) as caught:
        validate_graph(graph, max_tasks=10)
    assert caught.value.code == code
    assert caught.value.status == 422


def test_cycle_is_reported_as_a_path() -> None:
    with pytest.raises(Invalid) as caught:
        validate_graph([spec("a", "c"), spec("b", "a"), spec("c", "b")], max_tasks=10)
    cycle = caught.value.details["cycle"]
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_additions_may_depend_on_existing_tasks_but_not_reuse_their_keys() -> None:
    order = validate_graph([spec("new", "old")], existing_keys={"old"}, max_tasks=10)
    assert [s.key for s in order] == ["new"]
    with pytest.raises(Conflict) as caught:
        validate_graph([spec("old")], existing_keys={"old"}, max_tasks=10)
    assert caught.value.code == "task_key_exists"
    with pytest.raises(Invalid) as too_many:
        validate_graph([spec("x")], existing_keys={"a", "b"}, max_tasks=10, max_total=2)
    assert too_many.value.code == "graph_too_large"


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    """Random DAGs: node i may depend only on nodes with a smaller index."""
    n = draw(st.integers(1, 30))
    return {
        f"n{i}": sorted(
            set(
                draw(st.lists(st.sampled_from([f"n{j}" for j in range(i)]), max_size=4))
                if i
                else []
            )
        )
        for i in range(n)
    }


@given(dags())
def test_every_dag_has_an_order_that_respects_dependencies(graph: dict[str, list[str]]) -> None:
    order = topological_order(graph)
    assert order is not None and sorted(order) == sorted(graph)
    position = {k: i for i, k in enumerate(order)}
    assert all(position[d] < position[k] for k, deps in graph.items() for d in deps)
    assert find_cycle(graph) == []


@given(dags(), st.data())
def test_a_back_edge_makes_a_cycle_that_is_found(
    graph: dict[str, list[str]], data: st.DataObject
) -> None:
    keys = sorted(graph, key=lambda k: int(k[1:]))
    if len(keys) < 2:
        return
    low = data.draw(st.integers(0, len(keys) - 2))
    high = data.draw(st.integers(low + 1, len(keys) - 1))
    # Make a path high -> low exist, then add low -> high.
    graph[keys[high]] = sorted({*graph[keys[high]], keys[low]})
    graph[keys[low]] = sorted({*graph[keys[low]], keys[high]})
    assert topological_order(graph) is None
    cycle = find_cycle(graph)
    assert cycle and cycle[0] == cycle[-1]
    for node, parent in zip(cycle, cycle[1:], strict=False):
        assert parent in graph[node]


def test_dependency_edges_are_limited_per_graph_and_per_session() -> None:
    graph = [spec("a"), spec("b", "a"), spec("c", "a", "b")]  # 3 edges
    assert len(validate_graph(graph, max_tasks=10, max_edges=3)) == 3
    with pytest.raises(Invalid) as caught:
        validate_graph(graph, max_tasks=10, max_edges=2)
    assert (caught.value.code, caught.value.details) == ("graph_too_dense", {"limit": 2, "got": 3})
    with pytest.raises(Invalid) as caught:
        validate_graph(graph, max_tasks=10, existing_edges=8, max_total_edges=10)
    assert caught.value.code == "graph_too_dense"
    assert caught.value.details == {"limit": 10, "existing": 8, "got": 3}
    assert len(validate_graph(graph, max_tasks=10, existing_edges=7, max_total_edges=10)) == 3
