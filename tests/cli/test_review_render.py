"""How `swarm task` shows a task's persona, review, verdicts and comments, and how the
timeline reads a verdict."""

from __future__ import annotations

from rich.console import Console

from swarm_cli import render

TASK = {
    "id": "t",
    "session_id": "s",
    "key": "api",
    "title": "api",
    "status": "reviewing",
    "agent": "claude",
    "role": "backend",
    "attempt": 2,
    "max_attempts": 1,
    "review_round": 2,
    "spec": {
        "assigned_persona": {
            "name": "ada-lovelace",
            "author_name": "Ada Lovelace",
            "role": "backend",
        },
        "review": {"agent": "codex", "max_rounds": 3},
    },
}
REVIEWS = [
    {
        "round": 1,
        "attempt": 1,
        "agent": "codex",
        "persona": "grace-hopper",
        "verdict": "FAIL",
        "summary": "Close, not yet.",
        "critical_issues": ["no test for /health"],
        "recommendations": ["name the handler"],
        "created_at": "2026-12-03T18:00:00Z",
    }
]


def _text(renderable: object) -> str:
    console = Console(width=200, record=True)
    console.print(renderable)
    return console.export_text()


def test_the_task_panel_names_its_persona_and_its_review() -> None:
    shown = _text(render.task_panel(TASK))
    assert "Ada Lovelace (ada-lovelace, backend)" in shown
    assert "codex reviewer, round 2 of 3" in shown


def test_verdicts_and_comments_are_tables() -> None:
    shown = _text(render.reviews_table(REVIEWS))
    assert "FAIL" in shown and "codex (grace-hopper)" in shown
    assert "✗ no test for /health" in shown and "· name the handler" in shown
    comments = [
        {"author": "token:alice", "body": "Call it health.py", "request_changes": True,
         "created_at": "2026-12-03T18:05:00Z"}
    ]  # fmt: skip
    shown = _text(render.comments_table(comments))
    assert "token:alice" in shown and "requested" in shown and "Call it health.py" in shown


def test_a_verdict_on_the_timeline_says_what_it_decided() -> None:
    event = {
        "type": "task.reviewed",
        "data": {"verdict": "FAIL", "reviewer": "codex", "round": 1, "max_rounds": 3,
                 "summary": "Close", "critical_issues": ["x"], "will_retry": True},
    }  # fmt: skip
    assert render.event_state(event) == "pending"
    assert "1 critical issue(s)" in render.event_summary(event)
    passed = {"type": "task.reviewed", "data": {"verdict": "PASS"}}
    assert render.event_state(passed) == "succeeded"
    final = {"type": "task.reviewed", "data": {"verdict": "FAIL", "will_retry": False}}
    assert render.event_state(final) == "failed"
