"""How the benchmarks compute their figures, where that is more than a subtraction: the
adapter's `worktree ready` lines read back, spans from the adapter's own stamps, the merge
queue's busy time, the DAG's critical path and ideal, the git floors (real git), and the
default settings recovery puts back."""

from __future__ import annotations

import io
import json
import logging
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dag_scheduling import Dag, random_dag
from merge_queue import busy_per_merge
from recovery import defaults
from repos import merge_floor, small_repo, worktree_floor
from rest import Run, stamped_spans
from worktree_ready import ready_lines

from swarm_adapter.settings import AdapterSettings
from swarm_common.logs import KeyValueFormatter
from swarm_orchestrator.settings import OrchestratorSettings


def _logged(message: str, **fields: object) -> str:
    """A line as the adapter writes it (`swarm_common.logs`)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter())
    logger = logging.getLogger("bench-test.worktree")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(message, extra=fields)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_worktree_ready_lines_are_read_from_the_adapters_log_format() -> None:
    log = "".join(
        [
            _logged("attempt started", task_id="a"),
            _logged("worktree ready", elapsed_ms=12.5, reused=True, path="/tmp/a b"),
            _logged("worktree ready", elapsed_ms=900, reused=False),
            _logged("worktree ready soon", elapsed_ms=1),  # another message
            json.dumps({"message": "worktree ready", "elapsed_ms": 40, "reused": True}) + "\n",
        ]
    )
    lines = ready_lines(log)
    assert [line["elapsed_ms"] for line in lines] == ["12.5", "900", "40"]
    assert [line["reused"] for line in lines] == ["True", "False", "True"]
    assert lines[0]["path"] == "/tmp/a b"


def test_spans_come_from_the_adapters_stamps_not_from_when_reports_were_applied() -> None:
    def entry(kind: str, task: str, attempt: int, at: str | None) -> dict[str, object]:
        applied = "2026-12-05T10:00:00+00:00"  # both reports applied in one batch
        data = {"at": at} if at else {}
        return {
            "type": kind,
            "task_id": task,
            "attempt": attempt,
            "created_at": applied,
            "data": data,
        }

    events = [
        entry("task.started", "a", 1, "2026-12-05T09:59:59.900+00:00"),
        entry("task.succeeded", "a", 1, "2026-12-05T09:59:59.950+00:00"),
        entry("task.started", "b", 1, "2026-12-05T09:59:59.000+00:00"),  # no result yet
        entry("task.started", "c", 2, "2026-12-05T09:59:58.000+00:00"),
        entry("task.succeeded", "c", 2, "2026-12-05T09:59:58.250+00:00"),
        entry(
            "task.succeeded", "c", 2, "2026-12-05T09:59:59.000+00:00"
        ),  # redelivered: first counts
        entry("task.succeeded", "d", 1, None),  # no stamp: not counted
    ]
    assert sorted(round(s, 3) for s in stamped_spans(events, "task.started", "task.succeeded")) == [
        0.05,
        0.25,
    ]


def test_a_run_ends_at_its_last_success_stamp_not_when_a_poll_saw_it_done() -> None:
    def entry(kind: str, created_at: str) -> dict[str, object]:
        return {"type": kind, "task_id": "a", "attempt": 1, "created_at": created_at}

    events = [
        entry("task.succeeded", "2026-12-05T10:00:01+00:00"),
        entry("task.succeeded", "2026-12-05T10:00:04+00:00"),  # the last success
        entry("task.succeeded", "2026-12-05T10:00:02+00:00"),
        entry("session.finished", "2026-12-05T10:00:05+00:00"),  # not a success
    ]
    sent = datetime(2026, 12, 5, 10, 0, tzinfo=UTC).timestamp()
    run = Run(session_id="s", events=events, sent=sent)  # a poll saw it done later, say
    assert run.seconds == 4.0


def test_the_merge_queue_counts_busy_time_only() -> None:
    always_busy = busy_per_merge({"a": 0, "b": 0, "c": 0}, {"a": 1, "b": 2, "c": 3})
    assert always_busy == 1.0
    # b arrived long after a left: the queue's idle 9 s are not counted
    assert busy_per_merge({"a": 0, "b": 10}, {"a": 1, "b": 11}) == 1.0
    assert busy_per_merge({"a": 0, "b": 0.5}, {"b": 3, "a": 1}) == 1.5


def test_the_dag_is_seeded_and_its_ideal_is_a_lower_bound() -> None:
    dag = random_dag(300, seed=7)
    assert dag == random_dag(300, seed=7) and dag != random_dag(300, seed=8)
    for i, deps in enumerate(dag.depends_on):
        assert len(deps) <= 3 and all(j < i for j in deps)
    assert all(0.1 <= d <= 1.0 for d in dag.durations)
    assert any(len(deps) == 0 for deps in dag.depends_on[1:])
    assert any(len(deps) == 3 for deps in dag.depends_on)
    tasks = dag.tasks()
    assert tasks[5]["prompt"] == f"sleep {dag.durations[5]:.2f}"
    small = Dag(durations=[1.0, 2.0, 3.0, 0.5], depends_on=[[], [0], [0], [1, 2]])
    assert small.critical_path() == 4.5  # 0 → 2 → 3
    assert small.ideal(2) == 4.5 and small.ideal(1) == 6.5


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def test_the_merge_floor_really_merges(tmp_path: Path) -> None:
    repo = small_repo(tmp_path / "repo")
    times = merge_floor(repo, tmp_path / "floor", 3)
    assert len(times) == 3 and all(t > 0 for t in times)
    bare = tmp_path / "floor" / "merge-floor.git"
    files = _git(bare, "ls-tree", "-r", "--name-only", "integration").split()
    assert files == ["README.md", "bench-merge/t0.txt", "bench-merge/t1.txt", "bench-merge/t2.txt"]
    assert _git(bare, "rev-list", "--merges", "--count", "integration").strip() == "3"


def test_the_worktree_floor_commits_and_cleans_up(tmp_path: Path) -> None:
    repo = small_repo(tmp_path / "repo")
    times = worktree_floor(repo, tmp_path / "floor", 2)
    assert len(times) == 2 and all(t > 0 for t in times)
    clone = tmp_path / "floor" / "floor-clone"
    assert _git(clone, "worktree", "list").count("\n") == 1  # only the clone itself
    assert "floor-1.txt" in _git(clone, "ls-tree", "--name-only", "floor-1")


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (OrchestratorSettings, {"SWARM_SWEEP_INTERVAL_S": "5.0"}),
        (
            AdapterSettings,
            {
                "SWARM_HEARTBEAT_INTERVAL_S": str(
                    AdapterSettings.model_fields["heartbeat_interval_s"].default
                ),
                "SWARM_READ_BLOCK_MS": "2000",
            },
        ),
    ],
)
def test_recovery_puts_the_shortened_intervals_back_to_their_defaults(
    settings: type[OrchestratorSettings] | type[AdapterSettings], expected: dict[str, str]
) -> None:
    assert defaults(settings) == expected
