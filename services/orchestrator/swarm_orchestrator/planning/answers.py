"""What a planning agent is asked and how its answer is read: the plan's JSON schema, the
planner's prompt, and the check that turns an answer into a valid task graph (or into the
errors its repair round is told).

Pure functions: no database, no agent. `planning.plans` runs them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from swarm_common.specs import MAX_PROMPT_CHARS, TaskSpec
from swarm_orchestrator.errors import SwarmError
from swarm_orchestrator.graph.validation import validate_graph

__all__ = [
    "PLAN_SCHEMA",
    "PLANNER_AGENTS",
    "PlanInvalid",
    "planner_prompt",
    "read_answer",
    "validate_plan",
]

PLANNER_AGENTS = ("claude", "codex", "gemini")
"""Agent kinds that plan (a shell command has no model to plan with)."""
MAX_ERRORS = 50
"""Errors an invalid answer's repair round is told about (the first ones)."""

_NULLABLE_STRING = {"type": ["string", "null"]}
_STRINGS = {"type": "array", "items": {"type": "string"}}

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary", "tasks"],
    "properties": {
        "summary": {"type": "string", "description": "The plan in two or three sentences."},
        "tasks": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": [
                    "key",
                    "title",
                    "prompt",
                    "agent",
                    "depends_on",
                    "priority",
                    "phase",
                    "epic",
                    "estimated_hours",
                    "files",
                    "acceptance",
                ],
                "properties": {
                    "key": {
                        "type": "string",
                        "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                        "maxLength": 64,
                        "description": "Unique; letters, digits, '_', '-', '.'.",
                    },
                    "title": {"type": "string", "maxLength": 500},
                    "prompt": {
                        "type": "string",
                        "description": "Everything the agent needs to do the task alone.",
                    },
                    "agent": {
                        "type": "string",
                        "enum": ["claude", "codex", "gemini", "shell", "auto"],
                    },
                    "depends_on": {**_STRINGS, "description": "Keys of tasks that go first."},
                    "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
                    "phase": _NULLABLE_STRING,
                    "epic": _NULLABLE_STRING,
                    "estimated_hours": {"type": ["number", "null"], "minimum": 0},
                    "files": {**_STRINGS, "description": "Files the task expects to touch."},
                    "acceptance": {**_STRINGS, "description": "How to tell it is done."},
                },
            },
        },
    },
}
"""What a planning agent answers (Claude `--json-schema`, Codex `--output-schema`; Gemini
is shown it in the prompt). Every property is required and nullable where optional, as the
strict structured-output modes of the model APIs want."""


class PlanInvalid(SwarmError):
    """An answer (or an edited plan) that is no valid task graph; `errors` lists why, one
    line each, for a person or for the planner's repair round."""

    status = 422
    code = "invalid_plan"

    def __init__(self, errors: Sequence[str]) -> None:
        shown = list(errors)[:MAX_ERRORS]
        super().__init__(
            f"the plan is not a valid task graph: {shown[0] if shown else 'no tasks'}",
            details={"errors": shown},
        )
        self.errors = shown


def read_answer(answer: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The summary and the raw tasks of a planner's final message; `PlanInvalid` when it is
    no JSON object with a list of tasks (a bare list of tasks is taken too)."""
    text = (answer or "").strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    if not text:
        raise PlanInvalid(["the answer is empty: answer one JSON object that follows the schema"])
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise PlanInvalid([f"the answer is not JSON ({exc}): answer only the JSON object"]) from exc
    if isinstance(value, list):
        value = {"summary": "", "tasks": value}
    if not isinstance(value, dict) or not isinstance(value.get("tasks"), list):
        raise PlanInvalid(['the answer must be a JSON object with a "tasks" array'])
    tasks = value["tasks"]
    if not all(isinstance(t, dict) for t in tasks):
        raise PlanInvalid(['every item of "tasks" must be an object'])
    summary = value.get("summary")
    return (summary if isinstance(summary, str) else "")[:4000], tasks


def validate_plan(
    tasks: Sequence[dict[str, Any]], *, max_tasks: int, max_edges: int | None = None
) -> list[TaskSpec]:
    """Each task checked like a submitted one, then the graph as a whole (unique keys, known
    dependencies, no cycle, size); the tasks in dependency order. `PlanInvalid` lists every
    task's errors at once (a repair round fixes them together)."""
    if not tasks:
        raise PlanInvalid(["the plan has no tasks"])
    specs: list[TaskSpec] = []
    errors: list[str] = []
    for i, raw in enumerate(tasks):
        cleaned = {k: v for k, v in raw.items() if v is not None}
        try:
            specs.append(TaskSpec.model_validate(cleaned))
        except ValidationError as exc:
            name = raw.get("key") if isinstance(raw.get("key"), str) else f"#{i + 1}"
            for err in exc.errors(include_url=False, include_input=False):
                where = ".".join(str(p) for p in err["loc"]) or "task"
                errors.append(f"task {name}: {where}: {err['msg']}")
    if errors:
        raise PlanInvalid(errors)
    try:
        return validate_graph(specs, max_tasks=max_tasks, max_edges=max_edges)
    except SwarmError as exc:
        raise PlanInvalid([f"{exc.message} ({exc.code}): {_brief(exc.details)}"]) from exc


def _brief(details: Any) -> str:
    return json.dumps(details, sort_keys=True)[:1000] if details else ""


def planner_prompt(
    *,
    goal: str,
    inventory: dict[str, Any] | None,
    agents: Sequence[str],
    current: Sequence[dict[str, Any]] | None = None,
    conversation: Sequence[tuple[str, str]] = (),
) -> str:
    """The planning agent's prompt: the goal, what the repository holds, the agents that can
    run tasks, and — when it revises — the current plan and the conversation so far."""
    parts = [
        "You are the planner of Swarm, which runs many AI coding agents on one repository at "
        "once. Break the goal below into a graph of tasks. Each task is done by one agent "
        "alone in its own git worktree of this repository, and merged when it passes; tasks "
        "that do not depend on each other run side by side, so prefer tasks that touch "
        "different files. A task depends on the tasks whose work it needs.",
        "Read the repository as you need (do not change it). Then answer with ONE JSON object "
        "that follows the schema at the end, and nothing else.",
        "",
        "## Goal",
        goal.strip() or "(no goal text)",
    ]
    if inventory:
        parts += ["", "## The repository", json.dumps(inventory, indent=1, sort_keys=True)[:20_000]]
    parts += [
        "",
        "## Agents",
        f"Agents that can run tasks here: {', '.join(agents) or 'shell'}. Use `shell` only for "
        "a task that is one command; `auto` lets Swarm choose an agent CLI when the task "
        "runs (by its role, what it needs, which agents are free, and price).",
    ]
    if current is not None:
        parts += [
            "",
            "## The current plan",
            "Revise this plan as the conversation below asks; keep the keys of tasks you keep.",
            json.dumps({"tasks": list(current)}, indent=1)[:100_000],
        ]
    if conversation:
        parts += ["", "## Conversation"]
        parts += [f"{role}: {text}" for role, text in conversation]
    parts += [
        "",
        "## Answer schema",
        "Every task needs: key, title, prompt (complete instructions), agent, depends_on "
        "(keys), priority (higher runs first), phase, epic, estimated_hours (null if unsure), "
        "files, acceptance.",
        json.dumps(PLAN_SCHEMA, separators=(",", ":")),
    ]
    return "\n".join(parts)[: MAX_PROMPT_CHARS - 1000]
