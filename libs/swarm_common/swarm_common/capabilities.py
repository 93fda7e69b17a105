"""What an agent kind can do for a task, in words both sides share: adapters announce them
(`WorkerOnline.capabilities`, their liveness hash), routing (`swarm_orchestrator.graph.
routing`) rules out the kinds that cannot honour what a task needs.

- `prose`: the prompt is words for a model (every agent CLI); `shell` runs it as a command.
- `structured_output`: the CLI takes the task's `output_schema` as an option of its own
  (Claude `--json-schema`, Codex `--output-schema`); Gemini gets it only as words.
- `allowed_tools`: the CLI limits the agent to the task's `allowed_tools` (Claude
  `--allowedTools`, Gemini `tools.core`); Codex has no such list.
- `read_only`: a run that answers rather than changes (planners, reviewers): Claude with
  read-only tools, Codex's `read-only` sandbox, Gemini's `plan` mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ALLOWED_TOOLS",
    "KIND_CAPABILITIES",
    "PROSE",
    "READ_ONLY",
    "STRUCTURED_OUTPUT",
    "needs",
]

PROSE = "prose"
STRUCTURED_OUTPUT = "structured_output"
ALLOWED_TOOLS = "allowed_tools"
READ_ONLY = "read_only"

KIND_CAPABILITIES: dict[str, frozenset[str]] = {
    "shell": frozenset(),
    "claude": frozenset({PROSE, STRUCTURED_OUTPUT, ALLOWED_TOOLS, READ_ONLY}),
    "codex": frozenset({PROSE, STRUCTURED_OUTPUT, READ_ONLY}),
    "gemini": frozenset({PROSE, ALLOWED_TOOLS, READ_ONLY}),
}
"""What this version's runner of each kind can do (an adapter announces its runner's)."""


def needs(spec: Mapping[str, Any]) -> frozenset[str]:
    """The capabilities a task (its stored spec) needs of the kind that runs it."""
    found = {PROSE}
    if spec.get("output_schema") is not None:
        found.add(STRUCTURED_OUTPUT)
    if spec.get("verify") or spec.get("review_of"):  # a verdict, answered from a read-only run
        found |= {STRUCTURED_OUTPUT, READ_ONLY}
    if spec.get("allowed_tools") is not None:
        found.add(ALLOWED_TOOLS)
    return frozenset(found)
