"""Topologies over the API: a template expands into an ordinary graph (`POST
/v1/templates/expand` shows it, `POST /v1/sessions` stores it), and a fan-out's verifier
reads the merged work and answers a verdict that decides whether the synthesizer runs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.streams import Keys
from swarm_common.verdicts import VERDICT_SCHEMA
from swarm_orchestrator.api.deps import AppState
from tests.orchestrator.helpers import (
    mirror_commit,
    succeed_attempt,
    task_ids,
    task_messages,
    task_states,
)

FAN_OUT = {
    "name": "fan-out",
    "goal": "Build a greeting app",
    "workers": [
        {"who": "backend", "agent": "claude", "prompt": "Write api.txt", "key": "api"},
        {"who": "frontend", "agent": "codex", "prompt": "Write ui.txt", "key": "ui"},
    ],
    "root": {"agent": "claude"},
    "verifier": {"agent": "claude", "rubric": "ui.txt names the API"},
    "synthesizer": {"agent": "codex"},
}


async def _session(api: httpx.AsyncClient, repo: Path) -> dict[str, Any]:
    body = {"title": "fan", "repo": str(repo), "base_ref": "main", "template": FAN_OUT}
    created = await api.post("/v1/sessions", json=body)
    assert created.status_code == 201, created.text
    session: dict[str, Any] = created.json()
    return session


async def _run_to_the_verifier(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    state: AppState,
    workspace: Path,
    session: dict[str, Any],
) -> dict[str, uuid.UUID]:
    sid = session["id"]
    ids = await task_ids(api, sid)
    root = mirror_commit(workspace, session, {"README.md": "root\n"})
    await succeed_attempt(sessionmaker, keys, sid, ids["root"], commit=root)
    assert await state.background.merge_once() == 1
    for key in ("api", "ui"):
        work = mirror_commit(workspace, session, {f"{key}.txt": key}, parent=root)
        await succeed_attempt(sessionmaker, keys, sid, ids[key], commit=work)
    assert await state.background.merge_once() == 2
    return ids


def _verdict(kind: str, *issues: str) -> str:
    return json.dumps(
        {
            "verdict": kind,
            "summary": "read it all",
            "critical_issues": list(issues),
            "recommendations": [],
        }  # fmt: skip
    )


async def test_the_fan_out_runs_in_order_and_the_verifiers_pass_lets_the_synthesizer_run(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    git_repo: Path,
    state: AppState,
    workspace: Path,
) -> None:
    session = await _session(api, git_repo)
    sid = session["id"]
    assert session["goal"] == "Build a greeting app"
    assert await task_states(api, sid) == {
        "root": ("queued", 1),
        "api": ("pending", 0),
        "ui": ("pending", 0),
        "verify": ("pending", 0),
        "synthesize": ("pending", 0),
    }
    ids = await _run_to_the_verifier(api, sessionmaker, keys, state, workspace, session)
    states = await task_states(api, sid)
    assert states["verify"] == ("queued", 1) and states["synthesize"] == ("pending", 0)

    [message] = await task_messages(sessionmaker, ids["verify"])
    head = (await api.get(f"/v1/sessions/{sid}")).json()["integration_head"]
    assert message.read_only and message.output_schema == VERDICT_SCHEMA
    assert message.base_commit == head  # it reads the workers' merged work
    assert message.review is not None and message.review["verify"] is True
    assert (message.review["commit"], message.review["against"]) == (head, session["base_commit"])
    assert message.review["acceptance"] == ["ui.txt names the API"]

    await succeed_attempt(sessionmaker, keys, sid, ids["verify"], answer=_verdict("PASS"))
    states = await task_states(api, sid)
    assert states["verify"] == ("succeeded", 1)
    assert states["synthesize"] == ("queued", 1)  # what waited for the verdict runs
    verify = (await api.get(f"/v1/tasks/{ids['verify']}")).json()
    assert verify["merge_status"] == "empty"
    assert [(r["verdict"], r["attempt"]) for r in verify["reviews"]] == [("PASS", 1)]


async def test_a_verifiers_fail_blocks_the_synthesizer(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    git_repo: Path,
    state: AppState,
    workspace: Path,
) -> None:
    session = await _session(api, git_repo)
    sid = session["id"]
    ids = await _run_to_the_verifier(api, sessionmaker, keys, state, workspace, session)
    await succeed_attempt(
        sessionmaker,
        keys,
        sid,
        ids["verify"],
        answer=_verdict("FAIL", "ui.txt never calls the API"),
    )
    states = await task_states(api, sid)
    assert states["verify"] == ("failed", 1)
    assert states["synthesize"] == ("blocked", 0)
    verify = (await api.get(f"/v1/tasks/{ids['verify']}")).json()
    assert verify["reason"] == "the verifier's verdict is FAIL: read it all"
    assert verify["reviews"][0]["critical_issues"] == ["ui.txt never calls the API"]
    assert verify["attempts"][0]["reason"] == "verdict_fail"
    assert (await api.get(f"/v1/sessions/{sid}")).json()["status"] == "awaiting_review"


async def test_a_template_is_shown_before_it_is_stored_and_refused_when_incomplete(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    listed = (await api.get("/v1/templates")).json()
    assert [t["name"] for t in listed] == ["fan-out", "builder-validator", "pipeline"]
    shown = await api.post("/v1/templates/expand", json=FAN_OUT)
    assert shown.status_code == 200, shown.text
    assert [t["key"] for t in shown.json()["tasks"]] == [
        "root",
        "api",
        "ui",
        "verify",
        "synthesize",
    ]

    bad = await api.post("/v1/templates/expand", json={"name": "pipeline"})
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    both = await api.post(
        "/v1/sessions",
        json={
            "title": "t",
            "repo": str(git_repo),
            "template": FAN_OUT,
            "tasks": [{"key": "a", "prompt": "true"}],
        },
    )
    assert both.status_code == 422 and both.json()["code"] == "validation_error"
