"""The simulated list scheduler of `bench/dag_orders.py`: its makespans meet the bounds any
schedule has, the chains are those `Task.chain` would hold, and on the benchmark's own graph
the order of dispatch alone decides whether 1.05× the ideal is within reach."""

from __future__ import annotations

import pytest
from dag_orders import ORDERS, chains, makespan, remaining
from dag_scheduling import SLOTS, Dag, random_dag

SMALL = Dag(durations=[1.0, 2.0, 3.0, 0.5, 4.0], depends_on=[[], [0], [0], [1, 2], []])
"""0 → 1, 0 → 2, (1, 2) → 3; 4 alone."""


def test_chains_and_remaining_paths_count_the_tasks_waiting_on_each() -> None:
    assert chains(SMALL) == [3, 2, 2, 1, 1]
    assert remaining(SMALL) == [4.5, 2.5, 3.5, 0.5, 4.0]


@pytest.mark.parametrize("order", ORDERS)
def test_one_slot_runs_all_the_work_and_enough_slots_the_critical_path(order: str) -> None:
    assert makespan(SMALL, 1, order) == pytest.approx(sum(SMALL.durations))
    assert makespan(SMALL, 5, order) == pytest.approx(SMALL.critical_path())
    dag = random_dag(200)
    assert makespan(dag, 200, order) == pytest.approx(dag.critical_path())
    assert makespan(dag, 8, order) >= dag.ideal(8) - 1e-9
    # A slot held longer and a later start cost time, never save it.
    assert makespan(dag, 8, order, overhead_s=0.05, hop_s=0.1) > makespan(dag, 8, order)


def test_on_two_slots_the_order_decides_which_task_waits() -> None:
    # Two single tasks, older, and a line of three: by age the line starts last.
    dag = Dag(durations=[1.0] * 5, depends_on=[[], [], [], [2], [3]])
    assert makespan(dag, 2, "age") == pytest.approx(4.0)
    assert makespan(dag, 2, "chain") == pytest.approx(3.0)  # the ideal: the line's length
    assert makespan(dag, 2, "critical_path") == pytest.approx(3.0)


def test_on_the_benchmark_graph_age_alone_misses_the_target_and_the_chain_does_not() -> None:
    dag = random_dag(1000)
    ideal = dag.ideal(SLOTS)
    assert makespan(dag, SLOTS, "age") / ideal > 1.1
    assert makespan(dag, SLOTS, "chain") / ideal < 1.05
    assert makespan(dag, SLOTS, "critical_path") <= makespan(dag, SLOTS, "chain")
