"""The runner's arithmetic and its record: percentiles, spreads over repetitions, each
target's ratio and verdict, the Markdown table, and which benchmarks a selection needs."""

from __future__ import annotations

import math

import pytest
from report import Runs, evaluate, fmt_value, markdown_table, record, runs_from, summarise
from stats import percentile, spread
from targets import BENCHMARKS, TARGETS, Figure, Target, needed


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert percentile([5, 7], 0) == 5 and percentile([5, 7], 100) == 7
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_spread_over_repetitions_leaves_out_missing_figures() -> None:
    runs = Runs("x", "x", runs=[{"a": 3.0, "b": 1.0}, {"a": 1.0}, {"a": 2.0, "b": math.nan}])
    found = summarise(runs)
    assert found["a"] == spread([1.0, 2.0, 3.0])
    assert (found["a"].median, found["a"].min, found["a"].max, found["a"].n) == (2, 1, 3, 3)
    assert found["b"].n == 1


def _results(**figures: list[dict[str, float]]) -> dict[str, Runs]:
    return {name: Runs(name, name, runs=runs) for name, runs in figures.items()}


LOWER = Target("t", "time", "s", Figure("swarm", "s"), Figure("base", "s"), "base", factor=3.0)


def test_a_lower_is_better_target_compares_medians() -> None:
    results = _results(
        swarm=[{"s": 1.0}, {"s": 2.0}, {"s": 9.0}], base=[{"s": 1.0}, {"s": 0.5}, {"s": 1.5}]
    )
    outcome = evaluate(LOWER, results)
    assert outcome.ratio == 2.0 and outcome.met is True
    tighter = Target("t", "time", "s", Figure("swarm", "s"), Figure("base", "s"), factor=1.5)
    assert evaluate(tighter, results).met is False


def test_a_higher_is_better_target_needs_the_ratio_at_least_its_factor() -> None:
    target = Target(
        "r", "rate", "tasks/s", Figure("swarm", "r"), Figure("base", "r"), better="higher"
    )
    assert evaluate(target, _results(swarm=[{"r": 500.0}], base=[{"r": 1000.0}])).met is False
    assert evaluate(target, _results(swarm=[{"r": 1000.0}], base=[{"r": 1000.0}])).met is True


def test_a_bound_is_the_baseline() -> None:
    target = Target("b", "recovery", "s", Figure("swarm", "s"), bound=15.0)
    outcome = evaluate(target, _results(swarm=[{"s": 30.0}, {"s": 29.0}, {"s": 31.0}]))
    assert outcome.ratio == 2.0 and outcome.met is False
    assert evaluate(target, _results(swarm=[{"s": 15.0}])).met is True
    assert target.text() == "≤ 15 s"


def test_a_missing_figure_or_a_reported_only_one_has_no_verdict() -> None:
    assert evaluate(LOWER, _results(swarm=[{"s": 1.0}])).met is None  # no baseline ran
    assert evaluate(LOWER, _results(base=[{"s": 1.0}])).met is None
    reported = Target("m", "memory", "MB", Figure("swarm", "mb"), factor=None)
    outcome = evaluate(reported, _results(swarm=[{"mb": 100.0}]))
    assert outcome.met is None and outcome.swarm is not None and reported.text() == "reported"


def test_values_are_shown_in_fitting_units() -> None:
    assert fmt_value(0.0079, "s") == "7.90 ms"
    assert fmt_value(12.345, "s") == "12.3 s"
    assert fmt_value(1234.6, "tasks/s") == "1,235 tasks/s"


def test_the_table_gives_median_range_ratio_and_verdict() -> None:
    results = _results(swarm=[{"s": 1.0}, {"s": 2.0}, {"s": 9.0}], base=[{"s": 0.5}])
    results["gone"] = Runs("gone", "gone", skipped="bench/gone.py is missing")
    gone = Target("g", "gone", "s", Figure("gone", "s"), bound=2.0)
    tight = Target("t2", "tight", "s", Figure("swarm", "s"), Figure("base", "s"), "base")
    table = markdown_table([evaluate(t, results) for t in (LOWER, tight, gone)], results)
    lines = table.splitlines()
    assert lines[0].startswith("| benchmark | Swarm median (min–max) | baseline median |")
    assert lines[2] == "| time | 2.00 s (1.00–9.00) | 500 ms (base) | 4.00× | ≤ 3× base | **no** |"
    assert "| tight |" in lines[3] and lines[3].endswith("| **no** |")
    assert "skipped: bench/gone.py is missing" in lines[4] and lines[4].endswith("| — |")


def test_a_reported_figure_beside_a_baseline_shows_both_and_their_ratio_but_no_verdict() -> None:
    results = _results(swarm=[{"s": 0.003}], base=[{"s": 0.002}])
    beside = Target("c", "cpu", "s", Figure("swarm", "s"), Figure("base", "s"), "base", factor=None)
    alone = Target("m", "memory", "MB", Figure("swarm", "s"), factor=None)
    lines = markdown_table([evaluate(t, results) for t in (beside, alone)], results).splitlines()
    assert lines[2] == "| cpu | 3.00 ms | 2.00 ms (base) | 1.50× | reported | — |"
    assert lines[3] == "| memory | 0.00300 MB | — | — | reported | — |"


def test_a_record_gives_back_its_repetitions() -> None:
    results = _results(swarm=[{"s": 1.0}, {"s": 2.0}], base=[{"s": 0.5}])
    results["swarm"].errors.append("repetition 3: RuntimeError: boom")
    data = record(
        results=results,
        outcomes=[evaluate(LOWER, results)],
        machine={},
        options={},
        started_at="now",
        elapsed_s=1.0,
    )
    assert data["met"] == 1 and data["missed"] == 0
    assert data["benchmarks"]["swarm"]["summary"]["s"]["median"] == 1.5
    again = runs_from(data)
    assert again["swarm"].runs == results["swarm"].runs
    assert again["swarm"].errors == ["repetition 3: RuntimeError: boom"]


def test_a_selection_brings_the_baselines_its_targets_need() -> None:
    assert needed(["throughput"]) == ["celery", "throughput"]
    assert needed(["dispatch", "git"]) == ["celery", "dispatch", "git"]
    assert needed(["git"]) == ["git"]
    with pytest.raises(ValueError, match="nonesuch"):
        needed(["nonesuch"])


def test_every_target_names_figures_of_known_benchmarks() -> None:
    names = {b.name for b in BENCHMARKS}
    assert len({t.key for t in TARGETS}) == len(TARGETS)
    for target in TARGETS:
        assert target.swarm.benchmark in names
        assert target.baseline is None or target.baseline.benchmark in names
        assert target.baseline is None or target.bound is None
        if target.factor is not None:  # a target compares with a baseline or a bound
            assert (target.baseline is None) == (target.bound is not None)
