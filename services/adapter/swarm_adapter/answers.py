"""An agent's final answer as Swarm reports it (`task.succeeded`'s `answer`, for read-only
and `output_schema` tasks): the runners take it from their CLI's output and unwrap it from a
Markdown code fence (`unfenced`); one longer than `MAX_ANSWER_CHARS` fails the attempt with
`answer_too_long` (`oversize`) rather than being cut, since a cut plan is no plan."""

from __future__ import annotations

import re

from swarm_common.messages import MAX_ANSWER_CHARS, TaskMessage

__all__ = ["ANSWER_TOO_LONG", "oversize", "reports_answer", "unfenced"]

ANSWER_TOO_LONG = "answer_too_long"

_FENCE = re.compile(r"\A\s*```[ \t]*(?:json)?[ \t]*\r?\n(.*?)\r?\n[ \t]*```\s*\Z", re.DOTALL)


def unfenced(text: str) -> str:
    """`text` without a ```` ```json ```` (or bare ```` ``` ````) fence around all of it, as
    models like to wrap JSON; any other text unchanged (a fence amid prose, a fence of
    another language, two fences)."""
    match = _FENCE.match(text)
    if match is None or "```" in match.group(1):
        return text
    return match.group(1).strip()


def oversize(answer: str) -> str | None:
    """Why `answer` cannot be reported (it is longer than `MAX_ANSWER_CHARS`); None when it
    can."""
    if len(answer) <= MAX_ANSWER_CHARS:
        return None
    return f"the answer has {len(answer)} characters; at most {MAX_ANSWER_CHARS} are reported"


def reports_answer(message: TaskMessage) -> bool:
    """Whether the task's success carries the agent's answer: a read-only run (a planner),
    or a task that asked for structured output."""
    return message.read_only or message.output_schema is not None
