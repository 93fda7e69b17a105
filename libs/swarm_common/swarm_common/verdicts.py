"""The verdict a reviewer or a verifier answers: its JSON schema (what the runners pass to
the CLIs that take one) and how an answer is checked.

`FAIL` must name at least one critical issue (the builder has something to fix) and `PASS`
none (a critical issue blocks by definition); recommendations never block.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["MAX_ITEMS", "MAX_ITEM_CHARS", "VERDICT_SCHEMA", "Verdict", "parse_verdict"]

MAX_ITEMS = 50
MAX_ITEM_CHARS = 4000

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["verdict", "summary", "critical_issues", "recommendations"],
    "properties": {
        "verdict": {"type": "string", "enum": ["PASS", "FAIL"]},
        "summary": {"type": "string", "description": "The judgement in one or two sentences."},
        "critical_issues": {
            "type": "array",
            "items": {"type": "string"},
            "description": "What must change before the work can merge; empty for PASS.",
        },
        "recommendations": {
            "type": "array",
            "items": {"type": "string"},
            "description": "What would make it better; never blocks.",
        },
    },
}
"""What a reviewer must answer (Claude's `--json-schema`, Codex's `--output-schema`; strict
mode wants every property required and no others)."""


class Verdict(BaseModel):
    """A reviewer's or verifier's answer, as its schema says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verdict: Literal["PASS", "FAIL"]
    summary: str = Field(max_length=MAX_ITEM_CHARS)
    critical_issues: list[str] = Field(max_length=MAX_ITEMS)
    recommendations: list[str] = Field(max_length=MAX_ITEMS)

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"


def parse_verdict(answer: str | None) -> tuple[Verdict | None, list[str]]:
    """The verdict in a review run's final message, or why it is none."""
    if not answer or not answer.strip():
        return None, ["the answer is empty: answer one JSON object that follows the schema"]
    try:
        raw = json.loads(answer)
    except json.JSONDecodeError as exc:
        return None, [f"the answer is not JSON: {exc.msg} (line {exc.lineno})"]
    try:
        verdict = Verdict.model_validate(raw)
    except ValidationError as exc:
        return None, [
            f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}"
            for e in exc.errors()[:20]
        ]
    issues = [i for i in verdict.critical_issues if i.strip()]
    if verdict.verdict == "FAIL" and not issues:
        return None, ["a FAIL verdict names at least one critical issue for the builder to fix"]
    if verdict.passed and issues:
        return None, [
            "a PASS verdict has no critical issues: answer FAIL, or move them to recommendations"
        ]
    return verdict, []
