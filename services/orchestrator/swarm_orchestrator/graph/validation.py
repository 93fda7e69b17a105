"""Validation of a task graph before anything is stored: unique keys, known dependencies,
no cycle, size limits (tasks, and dependency edges: a dense graph costs seconds to check and
store). Pure functions, so they are easy to test exhaustively.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection, Sequence

from swarm_common.specs import TaskSpec
from swarm_orchestrator.errors import Conflict, Invalid

__all__ = ["check_edges", "find_cycle", "topological_order", "validate_graph"]


def validate_graph(
    specs: Sequence[TaskSpec],
    *,
    existing_keys: Collection[str] = (),
    existing_count: int | None = None,
    max_tasks: int,
    max_total: int | None = None,
    max_edges: int | None = None,
    existing_edges: int = 0,
    max_total_edges: int | None = None,
) -> list[TaskSpec]:
    """Check `specs` as an addition to a session that already holds `existing_keys` and
    `existing_edges` dependency edges. `existing_count`: how many tasks the session holds,
    when `existing_keys` names only those of its keys that `specs` use.

    Returns the specs in a dependency order (parents first). Raises `Invalid` or `Conflict`
    with a stable code; nothing is stored by the caller when this raises.
    """
    existing = len(existing_keys) if existing_count is None else existing_count
    _check_size(specs, existing=existing, max_tasks=max_tasks, max_total=max_total)
    check_edges(
        sum(len(s.depends_on) for s in specs),
        max_edges=max_edges,
        existing=existing_edges,
        max_total=max_total_edges,
    )
    counts = Counter(s.key for s in specs)
    seen = set(counts)
    duplicates = sorted(k for k, n in counts.items() if n > 1)
    if duplicates:
        raise Invalid(
            "task keys must be unique",
            code="duplicate_task_key",
            details={"keys": duplicates[:100]},
        )
    clashing = sorted(seen.intersection(existing_keys))
    if clashing:
        raise Conflict(
            "the session already has tasks with these keys",
            code="task_key_exists",
            details={"keys": clashing[:100]},
        )
    known = seen.union(existing_keys)
    unknown = {s.key: sorted(set(s.depends_on) - known) for s in specs}
    unknown = {k: v for k, v in unknown.items() if v}
    if unknown:
        raise Invalid(
            "tasks depend on keys that exist neither in the graph nor the session",
            code="unknown_dependency",
            details={"unknown": dict(sorted(unknown.items())[:100])},
        )
    edges = {s.key: [d for d in s.depends_on if d in seen] for s in specs}
    order = topological_order(edges)
    if order is None:
        cycle = find_cycle(edges)
        raise Invalid(
            f"the task graph has a cycle: {' -> '.join(cycle)}",
            code="dependency_cycle",
            details={"cycle": cycle},
        )
    by_key = {s.key: s for s in specs}
    return [by_key[k] for k in order]


def _check_size(
    specs: Sequence[TaskSpec], *, existing: int, max_tasks: int, max_total: int | None
) -> None:
    if not specs:
        raise Invalid("a task graph needs at least one task", code="empty_graph")
    if len(specs) > max_tasks:
        raise Invalid(
            f"a task graph may hold at most {max_tasks} tasks, got {len(specs)}",
            code="graph_too_large",
            details={"limit": max_tasks, "got": len(specs)},
        )
    if max_total is not None and existing + len(specs) > max_total:
        raise Invalid(
            f"a session may hold at most {max_total} tasks",
            code="graph_too_large",
            details={"limit": max_total, "existing": existing},
        )


def check_edges(
    edges: int, *, max_edges: int | None, existing: int = 0, max_total: int | None = None
) -> None:
    """Refuse a graph of `edges` dependency edges (`depends_on` entries) over `max_edges`, or
    one that takes a session holding `existing` edges over `max_total`."""
    if max_edges is not None and edges > max_edges:
        raise Invalid(
            f"a task graph may hold at most {max_edges} dependency edges, got {edges}",
            code="graph_too_dense",
            details={"limit": max_edges, "got": edges},
        )
    if max_total is not None and existing + edges > max_total:
        raise Invalid(
            f"a session may hold at most {max_total} dependency edges; it holds {existing} "
            f"and the graph adds {edges}",
            code="graph_too_dense",
            details={"limit": max_total, "existing": existing, "got": edges},
        )


def topological_order(parents: dict[str, list[str]]) -> list[str] | None:
    """Kahn's algorithm over `{node: [parents]}`; None when there is a cycle. Among ready
    nodes the smallest key comes first, so the order is deterministic."""
    children: dict[str, list[str]] = {k: [] for k in parents}
    indegree = dict.fromkeys(parents, 0)
    for node, deps in parents.items():
        for dep in set(deps):
            children[dep].append(node)
            indegree[node] += 1
    ready = [k for k, n in indegree.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for child in children[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, child)
    return order if len(order) == len(parents) else None


def find_cycle(parents: dict[str, list[str]]) -> list[str]:
    """One cycle of the graph as `[a, b, ..., a]` (each depends on the next); [] if none."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in sorted(parents):
        if state.get(root):
            continue
        path: list[str] = [root]
        iters = [iter(sorted(set(parents[root])))]
        state[root] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(set(parents[nxt]))))
    return []
