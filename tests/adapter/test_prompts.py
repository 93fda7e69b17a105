"""The prompt an agent gets carries the task's title, body, criteria, files and context."""

from __future__ import annotations

import uuid

from swarm_adapter.prompts import build_prompt
from swarm_common.messages import TaskMessage


def _message(key: str, **fields: object) -> TaskMessage:
    """A task message for `key` with the fields a prompt does not depend on filled in."""
    return TaskMessage.model_validate(
        {
            "session_id": uuid.uuid4(),
            "task_id": uuid.uuid4(),
            "task_key": key,
            "attempt": 1,
            "agent": "claude",
            "repo": "repos/x.git",
            "base_commit": "a" * 40,
            "branch": f"swarm/x/task/{key}",
            "timeout_s": 60,
            **fields,
        }
    )


def test_the_prompt_frames_the_task() -> None:
    message = _message(
        "api",
        title="Add the /health route",
        prompt="Add GET /health returning ok.",
        role="backend engineer",
        acceptance=["returns 200", "has a test"],
        files=["app/routes.py"],
        context="Make the service observable.",
        skills=["fastapi"],
    )
    prompt = build_prompt(message)
    for part in (
        "# Task: Add the /health route",
        "You act as: backend engineer.",
        "Make the service observable.",
        "Add GET /health returning ok.",
        "- returns 200",
        "- has a test",
        "- app/routes.py",
        "fastapi",
        "Do not commit",
    ):
        assert part in prompt
    assert prompt.index("Goal of the whole session") < prompt.index("What to do")


def test_a_read_only_task_is_told_to_answer_and_change_nothing() -> None:
    message = _message(
        "plan",
        attempt=2,
        title="Plan the session",
        prompt="List the tasks.",
        read_only=True,
        feedback="The answer was no JSON.",
    )
    prompt = build_prompt(message)
    assert "Change\n  nothing" in prompt and "Your final message is your answer" in prompt
    assert "Answer again, minding this.\n\nThe answer was no JSON." in prompt
    assert "Swarm commits" not in prompt and "quality gates" not in prompt


def test_a_persona_says_who_the_agent_is_and_how_it_works() -> None:
    message = _message(
        "api",
        title="Add the /health route",
        prompt="Add GET /health returning ok.",
        role="backend",
        persona={
            "name": "ada-lovelace",
            "style": "Writes the failing test first.",
            "author_name": "Ada Lovelace",
            "author_email": "ada@example.com",
        },
    )
    prompt = build_prompt(message)
    assert "You are Ada Lovelace, backend." in prompt
    assert "## How you work\nWrites the failing test first." in prompt
    assert "ada@example.com" not in prompt
    assert prompt.index("How you work") < prompt.index("What to do")
