"""The prompt an agent CLI gets: the task's own words, framed with what else it needs to
know (its title, role, the persona it runs as and that persona's working style, the
session's goal, acceptance criteria, expected files, what went wrong in the previous
attempt) and the rules of working inside Swarm (for a read-only task, the rules of
answering)."""

from __future__ import annotations

from swarm_adapter import handoff, review
from swarm_common.messages import TaskMessage

__all__ = ["build_prompt"]

RULES = """\
## How to work
- You work in the current directory, a git worktree of the project made for this task.
  Change files only inside it.
- Do not commit, push or create branches: Swarm commits your changes when you finish.
- When you are done, reply with a short summary of what you changed."""

READ_ONLY_RULES = """\
## How to work
- You work in the current directory, a git worktree of the project, to read it. Change
  nothing: whatever you write is thrown away.
- Your final message is your answer: Swarm passes it on as it is."""


def build_prompt(message: TaskMessage) -> str:
    if message.review is not None:  # a reviewer's run asks for a verdict on another's work
        return review.review_prompt(message)
    parts = [f"# Task: {message.title}"]
    persona = message.persona or {}
    if persona.get("name"):
        who = f"You are {persona.get('author_name') or persona['name']}"
        parts.append(who + (f", {message.role}." if message.role else "."))
    elif message.role:
        parts.append(f"You act as: {message.role}.")
    if persona.get("style"):
        parts.append(f"## How you work\n{persona['style']}")
    if message.context:
        parts.append(f"## Goal of the whole session\n{message.context}")
    parts.extend(handoff.context_sections(message))
    parts.append(f"## What to do\n{message.prompt}")
    if message.acceptance:
        parts.append("## Acceptance criteria\n" + "\n".join(f"- {a}" for a in message.acceptance))
    if message.files:
        parts.append(
            "## Files you are expected to change\n" + "\n".join(f"- {f}" for f in message.files)
        )
    if message.skills:
        parts.append("## Skills to use\n" + ", ".join(message.skills))
    if message.feedback:
        again = (
            "Answer again, minding this."
            if message.read_only
            else "Fix this; the quality gates run again when you finish."
        )
        parts.append(f"## What went wrong in the previous attempt\n{again}\n\n{message.feedback}")
    parts.append(READ_ONLY_RULES if message.read_only else RULES)
    request = handoff.request_section(message)
    if request:
        parts.append(request)
    return "\n\n".join(parts)
