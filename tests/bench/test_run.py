"""The runner's outputs from a recorded run (`bench/run.py --render`): the JSON again, the
Markdown report with its table, the two plots, and the results section of a README
replaced between its markers (and nothing else of it). Needs the `bench` extra
(matplotlib)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

import run  # noqa: E402
from report import Runs, evaluate, record  # noqa: E402
from targets import BENCHMARKS, TARGETS  # noqa: E402

MACHINE = {
    "cpu": "test CPU",
    "cores": 2,
    "memory_gb": 4.0,
    "load_at_start": [0.1, 0.2, 0.3],
    "kernel": "Linux",
    "python": "3.11",
    "git": "2.39",
    "postgresql": "15",
    "redis": "Redis 7",
    "celery": "5.7.0",
    "commit": "abc1234",
}


def _recorded(path: Path) -> Path:
    """A run in which Swarm's every figure is 1 and every baseline's 2, three times."""
    results = {b.name: Runs(b.name, b.title) for b in BENCHMARKS}
    figures: dict[str, dict[str, float]] = {b.name: {} for b in BENCHMARKS}
    for t in TARGETS:
        figures[t.swarm.benchmark][t.swarm.key] = 1.0
        if t.baseline is not None:
            figures[t.baseline.benchmark][t.baseline.key] = 2.0
    for name, found in figures.items():
        results[name].runs = [dict(found) for _ in range(3)]
        results[name].seconds = [1.0, 1.0, 1.0]
    results["recovery"].errors.append("repetition 4: RuntimeError: boom")
    data = record(
        results=results,
        outcomes=[evaluate(t, results) for t in TARGETS],
        machine=MACHINE,
        options={"reps": 3, "quick": False, "only": None},
        started_at="2026-01-02T03:04:05+00:00",
        elapsed_s=600.0,
    )
    path.write_text(json.dumps(data))
    return path


def test_a_recorded_run_is_written_as_json_markdown_and_plots(tmp_path: Path) -> None:
    source = _recorded(tmp_path / "2026-01-02.json")
    out = tmp_path / "out"
    assert run.main(["--render", str(source), "--out", str(out), "--no-readme"]) == 1  # boom
    report = (out / "2026-01-02.md").read_text()
    assert "| 7. Recovery after kill -9 | 1.00 s (1.00–1.00) | bound 15.0 s |" in report
    assert "| 2. Durable throughput, 20,000 noop tasks | 1.00 tasks/s (1.00–1.00) |" in report
    assert "- recovery: repetition 4: RuntimeError: boom" in report
    assert "test CPU" in report and "commit abc1234" in report
    for plot in ("2026-01-02-figures.png", "2026-01-02-margins.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({plot})" in report
    again = json.loads((out / "2026-01-02.json").read_text())
    assert (
        again["benchmarks"]["growth"]["runs"]
        == json.loads(source.read_text())["benchmarks"]["growth"]["runs"]
    )
    verdicts = {t["key"]: t["met"] for t in again["targets"]}
    assert verdicts["throughput"] is False and verdicts["dispatch_p99"] is True
    assert verdicts["peak_rss"] is None


def test_the_readme_results_section_is_replaced_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Bench\n\nbefore\n\n{run.START}\nold table\n{run.END}\n\nafter\n")
    monkeypatch.setattr(run, "README", readme)
    source = _recorded(tmp_path / "2026-01-02.json")
    run.main(["--render", str(source), "--out", str(tmp_path / "out"), "--readme"])
    text = readme.read_text()
    assert text.startswith("# Bench\n\nbefore\n\n") and text.endswith(f"{run.END}\n\nafter\n")
    assert "old table" not in text
    assert "| 8. Growth, tasks/s at 10,000 vs 1,000 |" in text
    assert "2026-01-02-figures.png)" in text
