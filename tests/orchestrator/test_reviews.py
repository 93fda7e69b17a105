"""Reviews with verdicts and comments (`graph.reviews`), through the API and the events an
adapter sends: a succeeded attempt waits in `reviewing` while a read-only review run judges
it; FAIL sends the builder back from its own commit with the issues as feedback, PASS lets
the work merge; invalid verdicts get a repair round; a person's comment with
`request_changes` sends a task back."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import git
from swarm_common.messages import TaskMessage, TaskSucceeded
from swarm_common.streams import Keys
from swarm_common.verdicts import VERDICT_SCHEMA
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Task, TaskComment, TaskReview
from swarm_orchestrator.graph.reports import Outcome
from tests.orchestrator.helpers import (
    apply,
    assert_counted,
    count_rows,
    mirror_commit,
    new_session,
    outcome_event,
    succeed_attempt,
    task,
    task_ids,
    task_messages,
    task_states,
)

REVIEW = {"agent": "codex", "max_rounds": 2, "rubric": "No TODOs left."}


def verdict(kind: str, *issues: str, summary: str = "judged") -> str:
    return json.dumps(
        {
            "verdict": kind,
            "summary": summary,
            "critical_issues": list(issues),
            "recommendations": ["name things well"],
        }
    )


async def run_builder(
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    sid: str,
    task_id: uuid.UUID,
    attempt: int,
    commit: str,
) -> None:
    await succeed_attempt(
        sessionmaker, keys, sid, task_id, attempt, commit=commit, changed_files=["a.txt"]
    )


async def under_review(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    repo: Path,
    workspace: Path,
    *,
    review: dict[str, Any] = REVIEW,
    files: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, uuid.UUID], Task]:
    """A session of task `a` (and `b` after it) whose first attempt committed `files` and
    waits for its review: the session, the task ids and the review run."""
    session = await new_session(
        api, repo, [task("a", agent="claude", review=review), task("b", "a")]
    )
    ids = await task_ids(api, session["id"])
    commit = mirror_commit(workspace, session, files or {})
    await run_builder(sessionmaker, keys, session["id"], ids["a"], 1, commit)
    [run] = await review_runs(sessionmaker, ids["a"])
    return session, ids, run


async def review_runs(
    sessionmaker: async_sessionmaker[AsyncSession], builder: uuid.UUID
) -> list[Task]:
    async with sessionmaker() as db:
        rows = await db.scalars(
            select(Task).where(Task.reviews_task_id == builder).order_by(Task.created_at)
        )
        return list(rows.all())


async def answer(
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    sid: str,
    run: uuid.UUID,
    text: str,
    *,
    attempt: int = 1,
    envelope_id: str | None = None,
) -> Outcome:
    message = outcome_event(TaskSucceeded, sid, run, attempt, exit_code=0, answer=text)
    return await apply(sessionmaker, keys, message, envelope_id)


async def detail(api: httpx.AsyncClient, task_id: uuid.UUID) -> dict[str, Any]:
    response = await api.get(f"/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_fail_sends_the_builder_back_from_its_commit_and_a_pass_lets_it_merge(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    git_repo: Path,
    state: AppState,
    workspace: Path,
) -> None:
    session = await new_session(
        api, git_repo, [task("a", agent="claude", review=REVIEW), task("b", "a")]
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    first = mirror_commit(workspace, session, {"a.txt": "TODO"})
    await run_builder(sessionmaker, keys, sid, ids["a"], 1, first)

    assert await task_states(api, sid) == {"a": ("reviewing", 1), "b": ("pending", 0)}
    assert await state.background.merge_once() == 0  # nothing merges before the verdict
    [run] = await review_runs(sessionmaker, ids["a"])
    assert (run.kind, run.agent, run.status) == ("review", "codex", "queued")
    [message] = await task_messages(sessionmaker, run.id)
    assert message.read_only and message.output_schema == VERDICT_SCHEMA
    assert message.base_commit == first  # the reviewer's worktree holds the work
    assert message.review is not None
    assert message.review["commit"] == first
    assert message.review["against"] == session["base_commit"]
    assert (message.review["round"], message.review["max_rounds"]) == (1, 2)
    assert message.review["rubric"] == "No TODOs left."
    assert message.review["builder_agent"] == "claude"
    listed = (await api.get(f"/v1/sessions/{sid}/tasks", params={"kind": "review"})).json()
    assert [t["reviews_task_id"] for t in listed] == [str(ids["a"])]

    assert await answer(sessionmaker, keys, sid, run.id, verdict("FAIL", "a.txt holds a TODO")) == (
        Outcome.APPLIED
    )
    # Back to work at once, from its own commit, told what to fix.
    assert (await task_states(api, sid))["a"] == ("queued", 2)
    second_message = (await task_messages(sessionmaker, ids["a"]))[-1]
    assert second_message.attempt == 2
    assert second_message.base_commit == first
    assert second_message.feedback is not None
    assert "a.txt holds a TODO" in second_message.feedback
    assert "FAIL" in second_message.feedback

    second = mirror_commit(workspace, session, {"a.txt": "done"}, parent=first)
    await run_builder(sessionmaker, keys, sid, ids["a"], 2, second)
    assert (await task_states(api, sid))["a"] == ("reviewing", 2)
    runs = await review_runs(sessionmaker, ids["a"])
    assert len(runs) == 2
    [again] = await task_messages(sessionmaker, runs[1].id)
    assert again.review is not None
    assert (again.review["commit"], again.review["round"]) == (second, 2)

    assert await answer(sessionmaker, keys, sid, runs[1].id, verdict("PASS")) == Outcome.APPLIED
    assert await task_states(api, sid) == {"a": ("succeeded", 2), "b": ("pending", 0)}
    assert await state.background.merge_once() == 1
    assert await task_states(api, sid) == {"a": ("succeeded", 2), "b": ("queued", 1)}

    shown = await detail(api, ids["a"])
    assert [(r["round"], r["verdict"], r["agent"]) for r in shown["reviews"]] == [
        (1, "FAIL", "codex"),
        (2, "PASS", "codex"),
    ]
    assert shown["reviews"][0]["critical_issues"] == ["a.txt holds a TODO"]
    assert shown["reviews"][0]["commit"] == first
    assert shown["review_round"] == 2
    events = (await api.get(f"/v1/tasks/{ids['a']}/events")).json()
    reviewed = [e["data"] for e in events if e["type"] == "task.reviewed"]
    assert [(d["verdict"], d.get("will_retry")) for d in reviewed] == [
        ("FAIL", True),
        ("PASS", None),
    ]
    # The review runs are no part of the graph: the session counts two tasks.
    progress = (await api.get(f"/v1/sessions/{sid}/progress")).json()
    assert progress["total"] == 2
    assert await assert_counted(sessionmaker, sid) == (4, 1)  # against its limits, they are


async def test_the_last_round_fails_the_task_with_its_verdict_and_blocks_its_dependents(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    git_repo: Path,
    workspace: Path,
) -> None:
    review = {**REVIEW, "max_rounds": 1}
    session, ids, run = await under_review(
        api, sessionmaker, keys, git_repo, workspace, review=review
    )
    sid = session["id"]
    result = await answer(
        sessionmaker, keys, sid, run.id, verdict("FAIL", "no tests", summary="untested")
    )
    assert result == Outcome.APPLIED
    assert await task_states(api, sid) == {"a": ("failed", 1), "b": ("blocked", 0)}
    shown = await detail(api, ids["a"])
    assert "review failed (1 of 1 rounds): untested" in shown["reason"]
    session_now = (await api.get(f"/v1/sessions/{sid}")).json()
    assert session_now["status"] == "awaiting_review"


async def test_an_invalid_verdict_gets_one_repair_round_then_the_task_fails(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    git_repo: Path,
    workspace: Path,
) -> None:
    session, ids, run = await under_review(api, sessionmaker, keys, git_repo, workspace)
    sid = session["id"]

    assert await answer(sessionmaker, keys, sid, run.id, verdict("FAIL")) == Outcome.APPLIED
    # The repair round runs at once (nothing transient went wrong), told the errors.
    [_, repair] = await task_messages(sessionmaker, run.id)
    assert repair.attempt == 2
    assert repair.feedback is not None
    assert "at least one critical issue" in repair.feedback
    assert (await task_states(api, sid))["a"] == ("reviewing", 1)  # still waits

    assert await answer(sessionmaker, keys, sid, run.id, "looks fine to me", attempt=2) == (
        Outcome.APPLIED
    )
    assert (await task_states(api, sid))["a"] == ("failed", 1)
    shown = await detail(api, ids["a"])
    assert shown["reason"].startswith("review did not complete")
    assert shown["reviews"] == []


async def test_a_verdict_delivered_twice_is_kept_once(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    git_repo: Path,
    workspace: Path,
) -> None:
    session, ids, run = await under_review(api, sessionmaker, keys, git_repo, workspace)
    sid = session["id"]
    text = verdict("FAIL", "broken")
    assert await answer(sessionmaker, keys, sid, run.id, text, envelope_id="1-1") == Outcome.APPLIED
    assert await answer(sessionmaker, keys, sid, run.id, text, envelope_id="1-1") == (
        Outcome.DUPLICATE
    )
    assert await count_rows(sessionmaker, TaskReview, TaskReview.task_id == ids["a"]) == 1
    assert (await task_states(api, sid))["a"] == ("queued", 2)


async def test_cancelling_a_task_under_review_cancels_its_review_run(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    git_repo: Path,
    workspace: Path,
) -> None:
    session, ids, run = await under_review(api, sessionmaker, keys, git_repo, workspace)
    sid = session["id"]
    cancelled = await api.post(f"/v1/tasks/{ids['a']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    [run] = await review_runs(sessionmaker, ids["a"])
    assert run.status == "cancelled"
    # Its verdict, arriving late, is stale: the run's attempt ended.
    late = await answer(sessionmaker, keys, sid, run.id, verdict("PASS"))
    assert late in (Outcome.IGNORED, Outcome.STALE)
    assert (await task_states(api, sid))["a"] == ("cancelled", 1)


async def test_the_session_reviews_every_task_unless_one_opts_out(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    git_repo: Path,
    workspace: Path,
) -> None:
    session = await new_session(
        api,
        git_repo,
        [task("a", agent="claude"), task("b", agent="claude", review=False)],
        settings={"review": {"agent": "gemini", "max_rounds": 3}},
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    for key in ("a", "b"):
        commit = mirror_commit(workspace, session, {f"{key}.txt": key})
        await run_builder(sessionmaker, keys, sid, ids[key], 1, commit)
    assert await task_states(api, sid) == {"a": ("reviewing", 1), "b": ("succeeded", 1)}
    [run] = await review_runs(sessionmaker, ids["a"])
    assert run.agent == "gemini"
    [message] = await task_messages(sessionmaker, run.id)
    assert message.review is not None and message.review["max_rounds"] == 3


async def test_a_review_persona_missing_from_the_catalogue_is_refused_at_submission(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    body = {
        "title": "t",
        "repo": str(git_repo),
        "base_ref": "main",
        "tasks": [task("a", agent="claude", review={"persona": "nobody-here"})],
    }
    response = await api.post("/v1/sessions", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "persona_not_found"


async def test_a_comment_is_kept_and_request_changes_sends_the_task_back_with_it(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    git_repo: Path,
    workspace: Path,
) -> None:
    session = await new_session(
        api, git_repo, [task("a", agent="claude", requires_approval=True), task("b", "a")]
    )
    sid = session["id"]
    ids = await task_ids(api, sid)

    early = await api.post(
        f"/v1/tasks/{ids['b']}/comments", json={"body": "redo", "request_changes": True}
    )
    assert early.status_code == 409, early.text
    assert early.json()["code"] == "changes_not_requestable"
    assert await count_rows(sessionmaker, TaskComment) == 0  # nothing kept

    work = mirror_commit(workspace, session, {"a.txt": "a"})
    await run_builder(sessionmaker, keys, sid, ids["a"], 1, work)
    assert (await task_states(api, sid))["a"] == ("awaiting_approval", 1)

    plain = await api.post(f"/v1/tasks/{ids['a']}/comments", json={"body": "Nice start."})
    assert plain.status_code == 201, plain.text
    assert plain.json()["task"]["status"] == "awaiting_approval"

    sent = await api.post(
        f"/v1/tasks/{ids['a']}/comments",
        json={"body": "Name the file b.txt instead.", "request_changes": True},
    )
    assert sent.status_code == 201, sent.text
    assert sent.json()["comment"]["request_changes"] is True
    assert sent.json()["task"]["status"] == "queued"
    message: TaskMessage = (await task_messages(sessionmaker, ids["a"]))[-1]
    assert (message.attempt, message.base_commit) == (2, work)
    assert message.feedback is not None
    assert "Name the file b.txt instead." in message.feedback

    listed = (await api.get(f"/v1/tasks/{ids['a']}/comments")).json()
    assert [(c["body"], c["request_changes"]) for c in listed] == [
        ("Nice start.", False),
        ("Name the file b.txt instead.", True),
    ]
    assert [c["body"] for c in (await detail(api, ids["a"]))["comments"]] == [
        "Nice start.",
        "Name the file b.txt instead.",
    ]
    events = (await api.get(f"/v1/tasks/{ids['a']}/events")).json()
    assert any(e["type"] == "task.changes_requested" for e in events)

    blank = await api.post(f"/v1/tasks/{ids['a']}/comments", json={"body": ""})
    assert blank.status_code == 422


async def test_merged_work_is_not_sent_back(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    git_repo: Path,
    state: AppState,
    workspace: Path,
) -> None:
    session = await new_session(api, git_repo, [task("a", agent="claude"), task("b", "a")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    await run_builder(
        sessionmaker, keys, sid, ids["a"], 1, mirror_commit(workspace, session, {"a.txt": "a"})
    )
    assert await state.background.merge_once() == 1
    refused = await api.post(
        f"/v1/tasks/{ids['a']}/comments", json={"body": "again", "request_changes": True}
    )
    assert refused.status_code == 409
    assert "merged" in refused.json()["message"]
    assert await count_rows(sessionmaker, TaskComment) == 0


async def test_work_sent_back_that_changes_nothing_more_still_merges_its_earlier_commit(
    api: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: Keys,
    git_repo: Path,
    state: AppState,
    workspace: Path,
) -> None:
    session, ids, run = await under_review(
        api, sessionmaker, keys, git_repo, workspace, files={"a.txt": "a"}
    )
    sid = session["id"]
    work = run.spec["review_of"]["commit"]
    await answer(sessionmaker, keys, sid, run.id, verdict("FAIL", "explain yourself"))
    # The second attempt starts from `work` and commits nothing new: its commit is `work`.
    await run_builder(sessionmaker, keys, sid, ids["a"], 2, work)
    runs = await review_runs(sessionmaker, ids["a"])
    await answer(sessionmaker, keys, sid, runs[1].id, verdict("PASS"))
    assert await state.background.merge_once() == 1
    merged = await detail(api, ids["a"])
    assert merged["merge_status"] == "merged"
    mirror = workspace / "repos" / f"{sid}.git"
    head = (await api.get(f"/v1/sessions/{sid}")).json()["integration_head"]
    assert git.git("show", f"{head}:a.txt", git_dir=mirror).stdout == "a"
