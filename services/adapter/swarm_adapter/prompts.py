"""The prompt an agent CLI gets: the task's own words, framed with what else it needs to
know (its title, role, the session's goal, acceptance criteria, expected files, what went
wrong in the previous attempt) and the rules of working inside Swarm."""

from __future__ import annotations

from swarm_common.messages import TaskMessage

__all__ = ["build_prompt"]

RULES = """\
## How to work
- You work in the current directory, a git worktree of the project made for this task.
  Change files only inside it.
- Do not commit, push or create branches: Swarm commits your changes when you finish.
- When you are done, reply with a short summary of what you changed."""


def build_prompt(message: TaskMessage) -> str:
    parts = [f"# Task: {message.title}"]
    if message.role:
        parts.append(f"You act as: {message.role}.")
    if message.context:
        parts.append(f"## Goal of the whole session\n{message.context}")
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
        parts.append(
            "## What went wrong in the previous attempt\n"
            "Fix this; the quality gates run again when you finish.\n\n" + message.feedback
        )
    parts.append(RULES)
    return "\n\n".join(parts)
