"""Sessions that finish (`graph/session_state.py`, `integration/checkpoints.py`): when every
task has ended a session settles (a final checkpoint, then `finalized`; or
`awaiting_review` with its reason), a person may finish it, archive it, and add tasks that
reopen it. Events are applied as the consumer would, the loops run one step at a time."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import git
from swarm_common.messages import TaskFailed, TaskSucceeded
from swarm_common.specs import TaskSpec
from swarm_common.streams import Keys
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Checkpoint
from swarm_orchestrator.graph import session_state, task_state
from swarm_orchestrator.graph.locking import lock_session
from tests.conftest import init_repo
from tests.orchestrator.helpers import (
    apply,
    count_rows,
    mirror_commit,
    new_session,
    outcome_event,
    task,
    task_ids,
)

SM = async_sessionmaker[AsyncSession]
FAILING_GATE = {"gates": {"mode": "strict", "test": "test -f ok.txt", "detect": False}}


async def _session(api: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    body: dict[str, Any] = (await api.get(f"/v1/sessions/{sid}")).json()
    return body


async def _checkpoints(api: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (await api.get(f"/v1/sessions/{sid}/checkpoints")).json()
    return rows


async def _types(api: httpx.AsyncClient, sid: str) -> list[str]:
    return [e["type"] for e in (await api.get(f"/v1/sessions/{sid}/events")).json()]


async def _succeed(
    sessionmaker: SM,
    keys: Keys,
    state: AppState,
    session: dict[str, Any],
    task_id: uuid.UUID,
    files: dict[str, str] | None = None,
    workspace: Path | None = None,
) -> None:
    """The task's attempt succeeds (with a commit writing `files`, else changing nothing)
    and the merge queue runs."""
    commit = None
    if files:
        assert workspace is not None
        head = session.get("integration_head")
        commit = mirror_commit(workspace, session, files, parent=head)
    event = outcome_event(TaskSucceeded, session["id"], task_id, exit_code=0, commit=commit)
    await apply(sessionmaker, keys, event)
    await state.background.merge_once()


async def _fail(sessionmaker: SM, keys: Keys, session: dict[str, Any], task_id: uuid.UUID) -> None:
    event = outcome_event(TaskFailed, session["id"], task_id, reason="exit_code", exit_code=1)
    await apply(sessionmaker, keys, event)


async def test_a_session_whose_tasks_all_merged_takes_a_final_checkpoint_then_is_finalized(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    session = await new_session(api, init_repo(workspace.parent / "p"), [task("a"), task("b")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    await _succeed(sessionmaker, keys, state, session, ids["a"], {"a.txt": "a"}, workspace)
    assert await _checkpoints(api, sid) == []  # b has not ended
    session = await _session(api, sid)
    await _succeed(sessionmaker, keys, state, session, ids["b"], {"b.txt": "b"}, workspace)
    # The transaction that merged the last task asked for the final checkpoint.
    [final] = await _checkpoints(api, sid)
    head = (await _session(api, sid))["integration_head"]
    assert (final["final"], final["status"], final["commit"]) == (True, "pending", head)
    assert final["requested_by"] == "system"
    body = await _session(api, sid)
    assert body["status"] == "active" and body["done"] and body["finished_at"]
    assert await state.background.checkpoints_once() == 1
    body = await _session(api, sid)
    assert body["status"] == "finalized" and body["review_reason"] is None
    types = await _types(api, sid)
    assert types[-4:] == [
        "session.finished",
        "checkpoint.requested",
        "checkpoint.passed",
        "session.finalized",
    ]
    mirror = workspace / "repos" / f"{sid}.git"
    assert git.resolve_commit(mirror, f"refs/tags/swarm/{sid}/checkpoint-1") == head
    # A finalized session takes no control action and no checkpoint.
    assert (await api.post(f"/v1/sessions/{sid}/pause")).json()["code"] == "session_closed"
    assert (await api.post(f"/v1/sessions/{sid}/checkpoints")).status_code == 409


async def test_a_failing_final_checkpoint_puts_the_session_in_review_and_finish_accepts_it(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    session = await new_session(
        api, init_repo(workspace.parent / "p"), [task("a")], settings=FAILING_GATE
    )
    sid = session["id"]
    await _succeed(sessionmaker, keys, state, session, (await task_ids(api, sid))["a"])
    assert await state.background.checkpoints_once() == 1
    body = await _session(api, sid)
    assert body["status"] == "awaiting_review"
    assert body["review_reason"].startswith("final checkpoint 1 failed: gate test failed")
    [failed] = await _checkpoints(api, sid)
    assert (failed["final"], failed["status"]) == (True, "failed")
    # A person finishes it: the failed final checkpoint of this head is accepted.
    finished = await api.post(f"/v1/sessions/{sid}/finish")
    assert finished.status_code == 200, finished.text
    assert finished.json()["status"] == "finalized"
    assert "final checkpoint 1 failed" in finished.json()["review_reason"]  # how it ended
    assert len(await _checkpoints(api, sid)) == 1
    events = (await api.get(f"/v1/sessions/{sid}/events")).json()
    assert events[-1]["type"] == "session.finalized"
    assert events[-1]["actor"] == "token:bootstrap"


async def test_failed_tasks_put_the_session_in_review_with_a_reason_and_a_retry_reopens_it(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    graph = [task("ok"), task("build"), task("test", "build"), task("deploy", "test")]
    session = await new_session(api, init_repo(workspace.parent / "p"), graph)
    sid = session["id"]
    ids = await task_ids(api, sid)
    await _succeed(sessionmaker, keys, state, session, ids["ok"])
    await _fail(sessionmaker, keys, session, ids["build"])
    body = await _session(api, sid)
    assert body["status"] == "awaiting_review"
    assert body["review_reason"] == (
        "3 of 4 tasks did not succeed and merge: 1 failed (build), 2 blocked (deploy, test)"
    )
    assert await _checkpoints(api, sid) == []  # nothing to check: it waits for a person
    events = (await api.get(f"/v1/sessions/{sid}/events")).json()
    review = [e for e in events if e["type"] == "session.awaiting_review"]
    assert review[-1]["data"]["reason"] == body["review_reason"]
    # A retry runs it again.
    assert (await api.post(f"/v1/tasks/{ids['build']}/retry")).status_code == 200
    body = await _session(api, sid)
    assert (body["status"], body["review_reason"], body["finished_at"]) == ("active", None, None)
    for key in ("build", "test", "deploy"):
        session = await _session(api, sid)
        attempt = 2 if key == "build" else 1
        event = outcome_event(TaskSucceeded, sid, ids[key], attempt=attempt, exit_code=0)
        await apply(sessionmaker, keys, event)
        await state.background.merge_once()
    assert [c["final"] for c in await _checkpoints(api, sid)] == [True]
    await state.background.checkpoints_once()
    assert (await _session(api, sid))["status"] == "finalized"


async def test_without_final_checkpoints_a_session_is_finalized_at_once(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    settings = {"checkpoint": {"on_finish": False}}
    session = await new_session(
        api, init_repo(workspace.parent / "p"), [task("a")], settings=settings
    )
    sid = session["id"]
    await _succeed(sessionmaker, keys, state, session, (await task_ids(api, sid))["a"])
    body = await _session(api, sid)
    assert body["status"] == "finalized"
    assert await _checkpoints(api, sid) == []
    assert (await _types(api, sid))[-2:] == ["session.finished", "session.finalized"]


async def test_finish_settles_a_session_whose_tasks_all_ended_and_only_then(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    session = await new_session(api, init_repo(workspace.parent / "p"), [task("a"), task("b")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    early = await api.post(f"/v1/sessions/{sid}/finish")
    assert (early.status_code, early.json()["code"]) == (409, "session_not_settled")
    assert "2 of 2 tasks have not ended" in early.json()["message"]
    await _fail(sessionmaker, keys, session, ids["a"])
    await _succeed(sessionmaker, keys, state, session, ids["b"])
    assert (await _session(api, sid))["status"] == "awaiting_review"
    # The failure is accepted; the merged work is checked first.
    finished = await api.post(f"/v1/sessions/{sid}/finish")
    assert finished.status_code == 202, finished.text
    assert finished.json()["status"] == "awaiting_review"
    again = await api.post(f"/v1/sessions/{sid}/finish")  # asked twice: one checkpoint
    assert again.status_code == 202
    [final] = await _checkpoints(api, sid)
    assert (final["final"], final["requested_by"]) == (True, "token:bootstrap")
    await state.background.checkpoints_once()
    body = await _session(api, sid)
    assert body["status"] == "finalized"
    assert "1 failed (a)" in body["review_reason"]
    # Finishing a finalized session changes nothing.
    count = len(await _types(api, sid))
    done = await api.post(f"/v1/sessions/{sid}/finish")
    assert (done.status_code, done.json()["status"]) == (200, "finalized")
    assert len(await _types(api, sid)) == count
    # A cancelled session is not finished; nor is an empty one.
    other = await new_session(api, init_repo(workspace.parent / "q"), [task("x")])
    assert (await api.post(f"/v1/sessions/{other['id']}/cancel")).status_code == 200
    refused = await api.post(f"/v1/sessions/{other['id']}/finish")
    assert (refused.status_code, refused.json()["code"]) == (409, "session_closed")
    draft = await new_session(api, init_repo(workspace.parent / "r"))
    empty = await api.post(f"/v1/sessions/{draft['id']}/finish")
    assert (empty.status_code, empty.json()["code"]) == (409, "session_not_settled")
    missing = await api.post(f"/v1/sessions/{uuid.uuid4()}/finish")
    assert (missing.status_code, missing.json()["code"]) == (404, "session_not_found")


async def test_finish_without_final_checkpoints_or_with_a_passed_one_finalizes_at_once(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    repo = init_repo(workspace.parent / "p")
    off = {"checkpoint": {"on_finish": False}}
    session = await new_session(api, repo, [task("a")], settings=off)
    await _fail(sessionmaker, keys, session, (await task_ids(api, session["id"]))["a"])
    finished = await api.post(f"/v1/sessions/{session['id']}/finish")
    assert (finished.status_code, finished.json()["status"]) == (200, "finalized")
    # A checkpoint of the head passed already: no second one.
    session = await new_session(api, repo, [task("a"), task("b")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    await _succeed(sessionmaker, keys, state, session, ids["a"], {"a.txt": "a"}, workspace)
    assert (await api.post(f"/v1/sessions/{sid}/checkpoints")).status_code == 202
    await state.background.checkpoints_once()
    await _fail(sessionmaker, keys, session, ids["b"])
    finished = await api.post(f"/v1/sessions/{sid}/finish")
    assert (finished.status_code, finished.json()["status"]) == (200, "finalized")
    assert [c["final"] for c in await _checkpoints(api, sid)] == [False]


async def test_archived_sessions_are_left_out_of_the_list_unless_asked(
    api: httpx.AsyncClient, workspace: Path
) -> None:
    repo = init_repo(workspace.parent / "p")
    kept = await new_session(api, repo, [task("a")])
    old = await new_session(api, repo, [task("a")])
    archived = await api.post(f"/v1/sessions/{old['id']}/archive")
    assert archived.status_code == 200 and archived.json()["archived_at"]
    again = await api.post(f"/v1/sessions/{old['id']}/archive")  # idempotent
    assert again.json()["archived_at"] == archived.json()["archived_at"]
    listed = [s["id"] for s in (await api.get("/v1/sessions")).json()]
    assert listed == [kept["id"]]
    only = [s["id"] for s in (await api.get("/v1/sessions", params={"archived": "true"})).json()]
    assert only == [old["id"]]
    # Kept in full: read by its id, with its tasks and timeline.
    body = await _session(api, old["id"])
    assert body["archived_at"] and body["total"] == 1
    assert (await _types(api, old["id"]))[-1] == "session.archived"
    assert (await api.post(f"/v1/sessions/{old['id']}/unarchive")).json()["archived_at"] is None
    assert (await api.post(f"/v1/sessions/{old['id']}/unarchive")).status_code == 200
    listed = {s["id"] for s in (await api.get("/v1/sessions")).json()}
    assert listed == {kept["id"], old["id"]}
    types = await _types(api, old["id"])
    assert types.count("session.archived") == types.count("session.unarchived") == 1


async def test_tasks_added_to_a_finalized_session_reopen_it_only_when_asked(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    session = await new_session(api, init_repo(workspace.parent / "p"), [task("a")])
    sid = session["id"]
    await _succeed(sessionmaker, keys, state, session, (await task_ids(api, sid))["a"])
    await state.background.checkpoints_once()
    assert (await _session(api, sid))["status"] == "finalized"
    refused = await api.post(f"/v1/sessions/{sid}/tasks", json=[task("more", "a")])
    assert (refused.status_code, refused.json()["code"]) == (409, "session_finalized")
    added = await api.post(
        f"/v1/sessions/{sid}/tasks", params={"reopen": "true"}, json=[task("more", "a")]
    )
    assert added.status_code == 201, added.text
    assert added.json()[0]["status"] == "queued"
    body = await _session(api, sid)
    assert (body["status"], body["finished_at"]) == ("active", None)
    events = (await api.get(f"/v1/sessions/{sid}/events")).json()
    reopened = [e for e in events if e["type"] == "session.reopened"]
    assert [e["actor"] for e in reopened] == ["token:bootstrap"]
    session = await _session(api, sid)
    more = (await task_ids(api, sid))["more"]
    await _succeed(sessionmaker, keys, state, session, more, {"more.txt": "more"}, workspace)
    assert [c["final"] for c in await _checkpoints(api, sid)] == [True, True]
    await state.background.checkpoints_once()
    assert (await _session(api, sid))["status"] == "finalized"


async def test_tasks_added_before_the_final_checkpoint_ends_make_it_settle_nothing(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    session = await new_session(api, init_repo(workspace.parent / "p"), [task("a")])
    sid = session["id"]
    await _succeed(sessionmaker, keys, state, session, (await task_ids(api, sid))["a"])
    assert [c["final"] for c in await _checkpoints(api, sid)] == [True]
    added = await api.post(f"/v1/sessions/{sid}/tasks", json=[task("more")])
    assert added.status_code == 201
    [demoted] = await _checkpoints(api, sid)
    assert demoted["final"] is False  # an ordinary checkpoint now: it still runs and tags
    await state.background.checkpoints_once()
    body = await _session(api, sid)
    assert body["status"] == "active" and not body["finished_at"]
    assert (await _checkpoints(api, sid))[0]["status"] == "passed"


async def test_a_session_paused_when_its_tasks_end_settles_on_resume(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    session = await new_session(api, init_repo(workspace.parent / "p"), [task("a")])
    sid = session["id"]
    assert (await api.post(f"/v1/sessions/{sid}/pause")).status_code == 200
    await _succeed(sessionmaker, keys, state, session, (await task_ids(api, sid))["a"])
    body = await _session(api, sid)
    assert (body["status"], bool(body["finished_at"])) == ("suspended", True)
    assert await _checkpoints(api, sid) == []
    assert (await api.post(f"/v1/sessions/{sid}/resume")).json()["status"] == "active"
    assert [c["final"] for c in await _checkpoints(api, sid)] == [True]
    await state.background.checkpoints_once()
    assert (await _session(api, sid))["status"] == "finalized"


async def test_planner_runs_are_no_part_of_whether_a_session_finished(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    session = await new_session(
        api,
        init_repo(workspace.parent / "p"),
        [task("a")],
        settings={"checkpoint": {"on_finish": False}},
    )
    sid = session["id"]
    async with sessionmaker() as db, db.begin():  # a planner's run that never ends
        run = task_state.NewTask(spec=TaskSpec(key="plan-1", prompt="plan"), kind="plan")
        locked = await lock_session(db, uuid.UUID(sid))
        assert locked is not None
        await task_state.create_tasks(db, session=locked, tasks=[run], ids={})
    await _succeed(sessionmaker, keys, state, session, (await task_ids(api, sid))["a"])
    assert (await _session(api, sid))["status"] == "finalized"


async def test_the_finish_noticed_twice_or_at_once_makes_one_final_checkpoint(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    session = await new_session(api, init_repo(workspace.parent / "p"), [task("a")])
    sid = session["id"]
    task_id = (await task_ids(api, sid))["a"]
    event = outcome_event(TaskSucceeded, sid, task_id, exit_code=0)
    once = str(uuid.uuid4())
    await apply(sessionmaker, keys, event, envelope_id=once)
    await apply(sessionmaker, keys, event, envelope_id=once)  # delivered twice
    await state.background.merge_once()
    await state.background.merge_once()

    async def notice() -> None:
        """What every change that may end a session does, in its own transaction."""
        async with sessionmaker() as db, db.begin():
            locked = await lock_session(db, uuid.UUID(sid))
            assert locked is not None
            await session_state.finish_or_reopen(db, locked)

    await asyncio.gather(*(notice() for _ in range(4)))
    finals = Checkpoint.session_id == uuid.UUID(sid), Checkpoint.final.is_(True)
    assert await count_rows(sessionmaker, Checkpoint, *finals) == 1
    await state.background.checkpoints_once()
    await notice()  # after it passed: the session is finalized, nothing more is asked
    assert await count_rows(sessionmaker, Checkpoint, Checkpoint.session_id == uuid.UUID(sid)) == 1
    assert (await _session(api, sid))["status"] == "finalized"
    async with sessionmaker() as db:
        numbers = (await db.scalars(select(Checkpoint.number))).all()
    assert list(numbers) == [1]
