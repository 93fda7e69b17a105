"""Chaos: processes die at random moments, servers restart, bad messages arrive — and every
task still ends exactly once, nothing accepted is lost, no result is applied twice.

Each scenario prints one `CHAOS {...}` line with what it did and what it counted (run with
`-s` to see them)."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from swarm_cli.local.embedded import EmbeddedPostgres, EmbeddedValkey
from swarm_common.streams import Keys
from swarm_orchestrator.db import migrate
from tests.chaos.conftest import ChaosStack
from tests.chaos.harness import (
    Partition,
    agent_pids,
    audit_run,
    graph,
    wait_done,
)
from tests.conftest import init_repo
from tests.e2e.stack import stopped_after
from tests.waiting import eventually


def _prompt(end_log: Path, seconds: str) -> str:
    """Work for a while, write the task's file, and note that the agent reached its end."""
    return (
        f"sleep {seconds}; mkdir -p out && echo $SWARM_TASK_KEY > out/$SWARM_TASK_KEY.txt; "
        f'echo "$SWARM_TASK_KEY $SWARM_ATTEMPT" >> {end_log}'
    )


def _submit(client: httpx.Client, repo: Path, tasks: list[dict[str, Any]]) -> str:
    created = client.post(
        "/v1/sessions",
        json={"title": "chaos", "repo": str(repo), "base_ref": "main", "tasks": tasks},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _report(scenario: str, **data: Any) -> None:
    print("CHAOS " + json.dumps({"scenario": scenario, **data}))  # noqa: T201 - the record


def _where(client: httpx.Client, session_id: str) -> str:
    """Where a run stands, for a failure's message: the task counts, the tasks that ended
    badly with their reasons, the last entries of the timeline."""
    counts = client.get(f"/v1/sessions/{session_id}").json().get("counts")
    tasks = client.get(f"/v1/sessions/{session_id}/tasks").json()
    bad = [
        f"{t['key']}: {t['status']} ({t.get('reason')})"
        for t in tasks
        if t["status"] in ("failed", "blocked", "cancelled")
    ]
    keys = {t["id"]: t["key"] for t in tasks}
    events = client.get(f"/v1/sessions/{session_id}/events", params={"limit": 5000}).json()
    tail = [
        f"{e['type']} {keys.get(e.get('task_id'), '')}#{e.get('attempt') or ''} "
        f"{(e.get('data') or {}).get('reason') or ''}".rstrip()
        for e in events[-15:]
    ]
    return f"counts {counts}; ended badly {bad}; timeline tail {tail}"


def _heard_from(client: httpx.Client, task_id: str) -> bool:
    """Whether the orchestrator had a heartbeat of the task's attempt after its start."""
    [attempt, *_] = client.get(f"/v1/tasks/{task_id}").json()["attempts"]
    beat, start = attempt["heartbeat_at"], attempt["started_at"]
    return bool(beat and start) and datetime.fromisoformat(beat) > datetime.fromisoformat(start)


def _busy_workers(stack: ChaosStack, names: list[str]) -> list[str]:
    """Adapters with an agent running now."""
    agents = agent_pids(stack.workspace)
    return [n for n in names if _descendants(stack.procs[n].pid) & agents]


def _descendants(pid: int) -> set[int]:
    children: dict[int, set[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, set()).add(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def test_kill_9_adapters_twenty_times_over_fifty_tasks(chaos: ChaosStack, tmp_path: Path) -> None:
    """4 adapters; 20 times, a random busy adapter is killed with SIGKILL in the middle of
    a task and replaced. Every task succeeds exactly once; no agent of a killed adapter
    survives it."""
    rng = random.Random(5)
    repo = init_repo(tmp_path / "project")
    end_log = tmp_path / "ends.log"
    chaos.start_orchestrator()
    names = [f"shell-{i}" for i in range(4)]
    for name in names:
        chaos.start_adapter(name)
    kills = orphans = 0
    started = time.monotonic()
    # A kill before an attempt's first heartbeat is a failed start (the start-up watchdog,
    # tests/orchestrator/test_watchdog.py): it counts against max_attempts, so give some.
    tasks = [{**t, "max_attempts": 3} for t in graph(50, prompt=_prompt(end_log, "1.5"))]
    with chaos.client() as client:
        session_id = _submit(client, repo, tasks)

        def busy() -> list[str]:
            found = _busy_workers(chaos, names)
            if not found:
                session = client.get(f"/v1/sessions/{session_id}").json()
                assert not session["done"], (
                    f"the run ended after only {kills} kills: {_where(client, session_id)}"
                )
            return found

        while kills < 20:
            victim = rng.choice(
                eventually(
                    busy,
                    timeout_s=started + 240 - time.monotonic(),
                    interval_s=0.05,
                    message=f"only {kills} kills before the deadline",
                )
            )
            time.sleep(rng.uniform(0.1, 0.9))  # somewhere in the middle of its task
            proc = chaos.procs[victim]
            doomed = _descendants(proc.pid)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            try:
                eventually(
                    lambda: not any(Path(f"/proc/{p}").exists() for p in doomed),  # noqa: B023 - called here
                    timeout_s=5,
                    message=f"the agent processes of {victim} die with it",
                )
            except AssertionError:
                orphans += 1
            replacement = f"shell-{len(chaos.procs)}"
            names[names.index(victim)] = replacement
            chaos.start_adapter(replacement)
        wait_done(client, session_id, timeout_s=240)
        elapsed = time.monotonic() - started
        mirror = chaos.workspace / "repos" / f"{session_id}.git"
        audit = audit_run(client, session_id=session_id, mirror=mirror, end_log=end_log)
    _report(
        "kill -9 adapters",
        kills=kills,
        orphans=orphans,
        seconds=round(elapsed, 1),
        **json.loads(audit.summary()),
    )
    assert orphans == 0
    assert audit.succeeded == audit.tasks == 50
    assert audit.lost_work == 0 and audit.duplicated == 0, audit.summary()
    assert audit.attempts["lost"] >= 1  # the kills did hit running attempts
    assert not agent_pids(chaos.workspace)


def test_orchestrator_restarts_and_redis_loses_its_data(
    chaos: ChaosStack, valkey: EmbeddedValkey, tmp_path: Path
) -> None:
    """The orchestrator is killed (SIGKILL) and later stopped (SIGTERM) during a run, and
    Redis restarts empty once: the run completes, nothing lost, nothing applied twice."""
    repo = init_repo(tmp_path / "project")
    end_log = tmp_path / "ends.log"
    chaos.start_orchestrator()
    for i in range(3):
        chaos.start_adapter(f"shell-{i}")
    with chaos.client() as client:
        session_id = _submit(client, repo, graph(30, prompt=_prompt(end_log, "0.8")))

        def progressed(n: int) -> bool:
            counts = client.get(f"/v1/sessions/{session_id}").json()["counts"]
            return counts.get("succeeded", 0) >= n

        started = time.monotonic()
        eventually(lambda: progressed(4), timeout_s=60, message="4 tasks done")
        chaos.procs["orchestrator"].send_signal(signal.SIGKILL)
        chaos.procs["orchestrator"].wait()
        chaos.start_orchestrator()
        eventually(lambda: progressed(10), timeout_s=60, message="10 tasks done")
        valkey.stop()  # it keeps nothing on disk: it comes back empty
        valkey.start()
        eventually(
            lambda: progressed(18),
            timeout_s=90,
            message=lambda: f"18 tasks done after Redis restarted: {_where(client, session_id)}",
        )
        chaos.procs["orchestrator"].send_signal(signal.SIGTERM)
        chaos.procs["orchestrator"].wait(timeout=30)
        chaos.start_orchestrator()
        wait_done(client, session_id, timeout_s=180)
        elapsed = time.monotonic() - started
        mirror = chaos.workspace / "repos" / f"{session_id}.git"
        audit = audit_run(client, session_id=session_id, mirror=mirror, end_log=end_log)
        timeline = client.get(f"/v1/sessions/{session_id}/events", params={"limit": 5000}).json()
    _report(
        "orchestrator x2 + Redis restart", seconds=round(elapsed, 1), **json.loads(audit.summary())
    )
    assert audit.succeeded == audit.tasks == 30
    assert audit.lost_work == 0 and audit.duplicated == 0, audit.summary()
    lost = [e for e in timeline if e["type"] == "attempt.lost"]
    assert any("Redis lost its data" in e["data"]["reason"] for e in lost) or not lost


def test_poison_messages_are_dead_lettered_and_the_run_goes_on(
    chaos: ChaosStack, tmp_path: Path
) -> None:
    repo = init_repo(tmp_path / "project")
    chaos.start_orchestrator()
    chaos.start_adapter("shell-0")
    keys = Keys(chaos.redis_prefix)
    r = redis.Redis.from_url(chaos.redis_url)
    envelope = {
        "v": 1,
        "type": "task.run",
        "id": "poison-1",
        "ts": "2026-11-21T00:00:00+00:00",
        "payload": {
            "session_id": "7d7f1c0e-0000-4000-8000-000000000001",
            "task_id": "7d7f1c0e-0000-4000-8000-000000000002",
            "task_key": "ghost",
            "attempt": 1,
            "agent": "shell",
            "title": "ghost",
            "prompt": "touch /tmp/swarm-poison-ran",
            "repo": "repos/7d7f1c0e-0000-4000-8000-000000000001.git",
            "base_commit": "0" * 40,
            "branch": "swarm/x/task/ghost",
            "timeout_s": 60,
        },
    }
    with chaos.client() as client:
        session_id = _submit(client, repo, graph(6, prompt="sleep 0.2; echo ok > ok.txt", width=3))
        r.xadd(keys.tasks("shell"), {"env": b"\xff\xfe not json"})
        r.xadd(keys.tasks("shell"), {"env": json.dumps(envelope)[:90]})
        r.xadd(keys.tasks("shell"), {"env": json.dumps(envelope)})
        r.xadd(keys.tasks("shell"), {"other": "field"})
        r.xadd(keys.events, {"env": b"{truncated"})
        event = {**envelope, "type": "task.started", "id": "poison-2"}
        event["payload"] = {
            "session_id": envelope["payload"]["session_id"],  # type: ignore[index]
            "task_id": envelope["payload"]["task_id"],  # type: ignore[index]
            "attempt": 1,
            "worker": "nobody",
            "branch": "b",
            "base_commit": "0" * 40,
        }
        r.xadd(keys.events, {"env": json.dumps(event)})
        session = wait_done(client, session_id, timeout_s=60)
        # The ghost task message is dead-lettered by the adapter, whose failure report for
        # it is then dead-lettered by the orchestrator, which knows no such task.
        eventually(lambda: r.xlen(keys.dead) >= 7, timeout_s=10, message="seven dead letters")
    dead = [
        {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
        for _, fields in r.xrange(keys.dead)
    ]
    reasons = sorted(d["reason"].split(":")[0] for d in dead)
    _report("poison messages", dead_letters=len(dead), reasons=reasons, counts=session["counts"])
    assert session["counts"] == {"succeeded": 6}
    assert reasons.count("undecodable") == 4
    assert reasons.count("unknown task") == 3
    assert not Path("/tmp/swarm-poison-ran").exists()
    for stream, group in ((keys.tasks("shell"), b"adapters"), (keys.events, b"orchestrator")):
        [info] = [g for g in r.xinfo_groups(stream) if g["name"] == group]
        assert info["pending"] == 0, stream


def test_sigterm_lets_the_running_task_finish(chaos: ChaosStack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "project")
    chaos.start_orchestrator()
    chaos.start_adapter("shell-0", SWARM_SHUTDOWN_GRACE_S="30")
    with chaos.client() as client:
        session_id = _submit(
            client, repo, [{"key": "long", "prompt": "sleep 3; echo done > done.txt"}]
        )
        [task] = client.get(f"/v1/sessions/{session_id}/tasks").json()
        eventually(
            lambda: client.get(f"/v1/tasks/{task['id']}").json()["status"] == "running",
            timeout_s=30,
            message="the task runs",
        )
        adapter = chaos.procs["shell-0"]
        adapter.send_signal(signal.SIGTERM)
        code = adapter.wait(timeout=30)
        eventually(
            lambda: client.get(f"/v1/tasks/{task['id']}").json()["status"] == "succeeded",
            timeout_s=10,
            message="the result applied",
        )
        detail = client.get(f"/v1/tasks/{task['id']}").json()
    attempts = [(a["number"], a["status"], a["worker"]) for a in detail["attempts"]]
    _report("SIGTERM during a long task", exit_code=code, attempts=attempts)
    assert code == 0
    # The adapter finished the attempt it ran, and published its result, before it exited.
    assert attempts == [(1, "succeeded", "shell-0")]


@pytest.mark.parametrize("how", ["api", "sigusr1"])
def test_emergency_stop_kills_every_agent_within_five_seconds(
    chaos: ChaosStack, tmp_path: Path, how: str
) -> None:
    """Stop with `POST /v1/system/stop` (or SIGUSR1 to the orchestrator): every agent
    process is gone within 5 s; after `resume` the interrupted tasks run again and finish."""
    repo = init_repo(tmp_path / "project")
    chaos.start_orchestrator()
    chaos.start_adapter("shell-0", concurrency=2)
    chaos.start_adapter("shell-1", concurrency=2)
    prompt = (
        'if [ "$SWARM_ATTEMPT" = 1 ]; then sleep 300 & sleep 300; fi; '
        "echo $SWARM_ATTEMPT > attempt.txt"
    )
    with chaos.client() as client:
        session_id = _submit(client, repo, [{"key": f"k{i}", "prompt": prompt} for i in range(4)])
        eventually(
            lambda: len(agent_pids(chaos.workspace)) >= 8,
            timeout_s=30,
            message="four agents running",
        )
        stopped_at = time.monotonic()
        if how == "api":
            assert client.post("/v1/system/stop").json()["mode"] == "stopped"
        else:
            os.kill(chaos.procs["orchestrator"].pid, signal.SIGUSR1)
        eventually(
            lambda: not agent_pids(chaos.workspace), timeout_s=5, message="every agent process gone"
        )
        gone_s = time.monotonic() - stopped_at
        eventually(
            lambda: client.get("/v1/system").json()["running"] == 0,
            timeout_s=10,
            message="no attempt running",
        )
        assert client.get("/v1/system").json()["mode"] == "stopped"
        assert client.post("/v1/system/resume").json()["mode"] == "running"
        session = wait_done(client, session_id, timeout_s=60)
        tasks = client.get(f"/v1/sessions/{session_id}/tasks").json()
        attempts = [
            [a["status"] for a in client.get(f"/v1/tasks/{t['id']}").json()["attempts"]]
            for t in tasks
        ]
    _report(f"emergency stop ({how})", seconds_to_no_agent=round(gone_s, 2), attempts=attempts)
    assert session["counts"] == {"succeeded": 4}
    for statuses in attempts:
        assert statuses[0] == "cancelled" and statuses[-1] == "succeeded"


def test_postgres_away_for_a_while(
    valkey: EmbeddedValkey, redis_prefix: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """PostgreSQL stops in the middle of a run: the API answers 503 (never 500), `/readyz`
    says so, no process crashes; once it is back the run completes, nothing lost."""
    postgres = EmbeddedPostgres(tmp_path / "pg")
    url = postgres.start()
    migrate.upgrade(url)
    stack = ChaosStack(
        database_url=url,
        redis_url=valkey.url,
        redis_prefix=redis_prefix,
        workspace=tmp_path / "workspace",
        logs=tmp_path / "logs",
    )
    repo = init_repo(tmp_path / "project")
    end_log = tmp_path / "ends.log"
    try:
        with stopped_after(stack, request):
            stack.start_orchestrator()
            stack.start_adapter("shell-0")
            stack.start_adapter("shell-1")
            with stack.client() as client:
                session_id = _submit(
                    client, repo, graph(12, prompt=_prompt(end_log, "0.5"), width=3)
                )
                eventually(
                    lambda: (
                        client.get(f"/v1/sessions/{session_id}")
                        .json()["counts"]
                        .get("succeeded", 0)
                        >= 3
                    ),
                    timeout_s=60,
                    message="3 tasks done",
                )
                log_path = stack.logs / "orchestrator.log"
                seen = len(log_path.read_text(errors="replace"))
                postgres.stop()
                down_at = time.monotonic()
                ready = client.get("/readyz")
                listed = client.get("/v1/sessions")
                alive = client.get("/healthz")
                # The loops notice, back off and say so; nothing exits.
                eventually(
                    lambda: (
                        log_path.read_text(errors="replace")[seen:].count("consumer waiting") >= 4
                    ),
                    timeout_s=30,
                    message="the event consumer backs off four times",
                )
                assert all(p.poll() is None for p in stack.procs.values())
                postgres.start()
                down_s = time.monotonic() - down_at
                session = wait_done(client, session_id, timeout_s=120)
                audit = audit_run(
                    client,
                    session_id=session_id,
                    mirror=stack.workspace / "repos" / f"{session_id}.git",
                    end_log=end_log,
                )
    finally:
        postgres.stop()
    _report(
        "PostgreSQL away",
        seconds_down=round(down_s, 1),
        readyz=ready.status_code,
        api=listed.status_code,
        **json.loads(audit.summary()),
    )
    assert ready.status_code == 503 and ready.json()["code"] == "not_ready"
    assert listed.status_code == 503 and alive.status_code == 200
    assert session["counts"] == {"succeeded": 12}
    assert audit.lost_work == 0 and audit.duplicated == 0, audit.summary()


def test_drain_finishes_running_work_and_takes_no_more(chaos: ChaosStack, tmp_path: Path) -> None:
    """`POST /v1/system/drain`: what runs finishes, nothing new starts; `resume` goes on."""
    repo = init_repo(tmp_path / "project")
    end_log = tmp_path / "ends.log"
    chaos.start_orchestrator()
    chaos.start_adapter("shell-0")
    chaos.start_adapter("shell-1")
    with chaos.client() as client:
        session_id = _submit(
            client, repo, [{"key": f"k{i}", "prompt": _prompt(end_log, "2")} for i in range(6)]
        )
        eventually(
            lambda: client.get("/v1/system").json()["running"] == 2,
            timeout_s=30,
            message="two running",
        )
        drained = client.post("/v1/system/drain").json()
        assert drained["mode"] == "draining"
        eventually(
            lambda: client.get("/v1/system").json()["running"] == 0, timeout_s=30, message="drained"
        )
        counts = client.get(f"/v1/sessions/{session_id}").json()["counts"]
        started_while_draining = len(end_log.read_text().splitlines())
        # Drained means quiet: nothing starts while the mode lasts (give the adapters a
        # few polls of the mode to prove it).
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert client.get("/v1/system").json()["running"] == 0
            time.sleep(0.1)
        assert client.post("/v1/system/resume").json()["mode"] == "running"
        session = wait_done(client, session_id, timeout_s=60)
    _report("drain", counts_when_drained=counts, finished_before_resume=started_while_draining)
    assert counts.get("succeeded", 0) >= 2 and counts.get("queued", 0) >= 1
    assert session["counts"] == {"succeeded": 6}
    attempts = [line.split()[1] for line in end_log.read_text().splitlines()]
    assert len(attempts) == 6


def test_a_worker_cut_off_from_redis_stops_its_agent_before_the_task_moves(
    chaos: ChaosStack, valkey: EmbeddedValkey, tmp_path: Path
) -> None:
    """Kill before reclaim: an adapter that loses Redis (a partition: connections open,
    nothing arrives) stops its agent on its own, before its lease lapses and the reaper
    hands the task to another adapter; when the partition heals, its late report is
    ignored and it has committed nothing."""
    repo = init_repo(tmp_path / "project")
    end_log = tmp_path / "ends.log"
    partition = Partition(valkey.url)
    try:
        chaos.start_orchestrator()
        chaos.start_adapter("cut-off", SWARM_REDIS_URL=partition.url)
        with chaos.client() as client:
            session_id = _submit(client, repo, [{"key": "long", "prompt": _prompt(end_log, "8")}])
            [task] = client.get(f"/v1/sessions/{session_id}/tasks").json()
            eventually(
                lambda: bool(agent_pids(chaos.workspace)), timeout_s=30, message="the agent runs"
            )
            # The other adapter is up before the cut (a process start can take longer than
            # the lease on a busy machine), and the attempt is cut off after it was heard
            # from: lost, not a failed start (tests/orchestrator/test_watchdog.py).
            chaos.start_adapter("healthy")
            eventually(
                lambda: "adapter started" in chaos.log("healthy"),
                timeout_s=30,
                message="the healthy adapter starts",
            )
            eventually(lambda: _heard_from(client, task["id"]), message="a heartbeat")
            partition.cut.set()
            cut_at = time.monotonic()
            eventually(
                lambda: not agent_pids(chaos.workspace),
                timeout_s=10,
                message="the cut-off agent stops",
            )
            agent_gone_s = time.monotonic() - cut_at
            eventually(
                lambda: len(client.get(f"/v1/tasks/{task['id']}").json()["attempts"]) == 2,
                timeout_s=15,
                message="the reaper hands the task on",
            )
            reclaimed_s = time.monotonic() - cut_at
            partition.cut.clear()
            wait_done(client, session_id, timeout_s=60)
            detail = client.get(f"/v1/tasks/{task['id']}").json()
            timeline = client.get(f"/v1/tasks/{task['id']}/events").json()
            mirror = chaos.workspace / "repos" / f"{session_id}.git"
            audit = audit_run(client, session_id=session_id, mirror=mirror, end_log=end_log)
            # The cut-off adapter reports once the partition heals; it is stale by then.
            eventually(
                lambda: "event=task.cancelled" in chaos.log("cut-off"),
                timeout_s=60,
                message="the late report",
            )
    finally:
        partition.close()
    attempts = [(a["number"], a["status"], a["worker"]) for a in detail["attempts"]]
    _report(
        "partition",
        agent_gone_s=round(agent_gone_s, 2),
        reclaimed_s=round(reclaimed_s, 2),
        attempt_history=attempts,
        **json.loads(audit.summary()),
    )
    assert agent_gone_s < reclaimed_s  # killed before the task moved on
    assert attempts == [(1, "lost", "cut-off"), (2, "succeeded", "healthy")]
    assert end_log.read_text().split() == ["long", "2"]  # attempt 1 never reached its end
    assert audit.lost_work == 0 and audit.duplicated == 0, audit.summary()
    assert [e["type"] for e in timeline if e["attempt"] == 1][-1] == "attempt.lost"
