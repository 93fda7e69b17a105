"""A session as a task graph file (`GET /v1/sessions/{id}/graph`, `swarm export`): export →
submit → export gives the same file, in YAML and JSON, over generated graphs; read-only
fields are ignored on submit; a status filter exports a graph that can be submitted."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx

from swarm_cli.taskfile import dump_taskfile, load_taskfile
from tests.orchestrator.helpers import new_session

Json = dict[str, Any]


def _random_graph(rng: random.Random, size: int) -> list[Json]:
    """`size` tasks, each depending on some of the ones before, with optional fields set
    at random (and some set to their defaults, which an export leaves out)."""
    tasks: list[Json] = []
    for i in range(size):
        task: Json = {"key": f"t{i}-{rng.randrange(1000)}", "prompt": f"echo {i}\nline two"}
        earlier = [t["key"] for t in tasks]
        task["depends_on"] = rng.sample(earlier, k=min(len(earlier), rng.randrange(3)))
        optional: dict[str, Any] = {
            "title": f"Task {i}: ünïcode",
            "agent": rng.choice(["shell", "claude", "codex"]),
            "role": "backend",
            "skills": ["python", "sql"],
            "priority": rng.randrange(-5, 6),
            "timeout_s": rng.choice([60, 1800]),
            "max_attempts": rng.randrange(1, 4),
            "acceptance": ["tests pass"],
            "files": ["src/app.py"],
            "requires_approval": rng.random() < 0.3,
            "gates": ["test"],
            "phase": rng.choice(["Phase 1: Model", "API"]),
            "epic": "accounts",
            "estimated_hours": rng.choice([0.5, 2, 13.25]),
        }
        for name, value in optional.items():
            if rng.random() < 0.5:
                task[name] = value
        tasks.append(task)
    return tasks


async def _graph(api: httpx.AsyncClient, sid: str, **params: Any) -> Json:
    response = await api.get(f"/v1/sessions/{sid}/graph", params=params)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def test_export_then_submit_then_export_gives_the_same_file(
    api: httpx.AsyncClient, git_repo: Path, tmp_path: Path
) -> None:
    rng = random.Random(20261203)
    settings = {"gates": {"detect": False, "test": "pytest -q"}, "push": False}
    for n in range(12):
        tasks = _random_graph(rng, rng.randrange(1, 15))
        first = await new_session(api, git_repo, tasks, settings=settings, goal=f"goal {n}")
        exported = await _graph(api, first["id"])
        assert [t["key"] for t in exported["tasks"]] == sorted(t["key"] for t in tasks)
        for fmt in ("yaml", "json"):
            path = tmp_path / f"graph-{n}.{fmt}"
            path.write_text(dump_taskfile(exported, fmt))
            again = await api.post("/v1/sessions", json=load_taskfile(path))
            assert again.status_code == 201, again.text
            assert dump_taskfile(await _graph(api, again.json()["id"]), fmt) == path.read_text()


async def test_read_only_fields_are_ignored_and_a_filtered_export_can_be_submitted(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    tasks = [
        {"key": "a", "prompt": "true"},
        {"key": "b", "prompt": "true", "depends_on": ["a"]},
        {"key": "c", "prompt": "true", "depends_on": ["a", "b"]},
    ]
    session = await new_session(api, git_repo, tasks)
    everything = await _graph(api, session["id"])
    states = {t["key"]: t["status"] for t in everything["tasks"]}
    assert states == {"a": "queued", "b": "pending", "c": "pending"}
    assert all(t["result"] is None and t["merge_status"] is None for t in everything["tasks"])

    pending = await _graph(api, session["id"], status="pending")
    assert {t["key"]: t.get("depends_on", []) for t in pending["tasks"]} == {"b": [], "c": ["b"]}
    again = await api.post("/v1/sessions", json=pending)  # status fields and all
    assert again.status_code == 201, again.text
    statuses = {t["key"]: t["status"] for t in (await _graph(api, again.json()["id"]))["tasks"]}
    assert statuses == {"b": "queued", "c": "pending"}

    bad = await api.get(f"/v1/sessions/{session['id']}/graph", params={"status": "nonsense"})
    assert bad.status_code == 422
