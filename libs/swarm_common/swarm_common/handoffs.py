"""What a succeeded task hands the tasks after it, and the session's blackboard of facts.

A `Handoff` is taken from the agent's final answer by the adapter (`swarm_adapter.handoff`):
a summary, notes, facts for the session's blackboard and proposed follow-up tasks. It
travels in `task.succeeded`; the orchestrator keeps it on the task, writes its facts to the
blackboard and weighs its proposals (`settings.delegation`). A dependent's task message
carries its parents' handoffs (`ParentHandoff`) and the blackboard as it stood when the
dependent was queued (`BoardFact`); the adapter puts both in the prompt and in
`.swarm/context.json`.

Everything here is bounded: agents write what they like, and all of it is stored, sent
through Redis and put into prompts.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from swarm_common.specs import AgentKind, TaskKey

__all__ = [
    "CONTEXT_FILE",
    "FENCE_TAG",
    "MAX_BOARD_BYTES",
    "MAX_BOARD_FACTS",
    "MAX_FACTS",
    "MAX_FACT_KEY_CHARS",
    "MAX_FACT_VALUE_BYTES",
    "MAX_NOTES",
    "MAX_NOTE_CHARS",
    "MAX_PARENT_BYTES",
    "MAX_PROPOSALS",
    "MAX_SUMMARY_CHARS",
    "BoardFact",
    "Fact",
    "FactKey",
    "Handoff",
    "ParentHandoff",
    "Proposal",
    "check_fact_key",
    "clip",
    "value_size",
]

FENCE_TAG = "swarm-handoff"
"""The info string of the fenced block an agent ends its final message with."""
CONTEXT_FILE = ".swarm/context.json"
"""Where a task's worktree holds its parents' handoffs and the blackboard (never committed)."""

MAX_SUMMARY_CHARS = 4000
MAX_NOTES = 30
MAX_NOTE_CHARS = 1000
MAX_FACTS = 30
"""Facts one handoff (or one request of a person) writes."""
MAX_FACT_KEY_CHARS = 120
MAX_FACT_VALUE_BYTES = 4096
"""A fact's value as compact JSON."""
MAX_PROPOSALS = 10
MAX_PROPOSAL_PROMPT_CHARS = 16 * 1024
MAX_PROBLEMS = 10
MAX_BOARD_FACTS = 200
"""Facts of the blackboard a task message carries (the newest)."""
MAX_BOARD_BYTES = 64 * 1024
"""...and at most this much of them, as JSON."""
MAX_PARENT_BYTES = 128 * 1024
"""Parents' handoffs a task message carries, as JSON; those past it are named only."""

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


def check_fact_key(value: str) -> str:
    """A fact's key: letters, digits and `_ . : -`, starting with a letter or digit, at most
    120 characters (it goes into URLs and command lines)."""
    if len(value) > MAX_FACT_KEY_CHARS or not _KEY.fullmatch(value):
        raise ValueError(
            f"a fact key is 1 to {MAX_FACT_KEY_CHARS} letters, digits and '_ . : -', "
            "starting with a letter or digit"
        )
    return value


FactKey = Annotated[str, AfterValidator(check_fact_key)]


def value_size(value: Any) -> int:
    """A value's size as compact JSON, in bytes."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Fact(BaseModel):
    """One fact for the blackboard: a key and any JSON value (null clears the key)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: FactKey
    value: Any = None

    @field_validator("value")
    @classmethod
    def _small(cls, value: Any) -> Any:
        if value_size(value) > MAX_FACT_VALUE_BYTES:
            raise ValueError(f"a fact's value is at most {MAX_FACT_VALUE_BYTES} bytes of JSON")
        return value


class Proposal(BaseModel):
    """A follow-up task a handoff proposes (`settings.delegation` decides what becomes of
    it). Its dependencies name tasks of the session; the proposer is always one of them."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: TaskKey | None = Field(None, description="Made from the title when left out.")
    title: str = Field(min_length=1, max_length=500)
    prompt: str = Field(min_length=1, max_length=MAX_PROPOSAL_PROMPT_CHARS)
    role: str | None = Field(None, max_length=100)
    agent: AgentKind | None = Field(None, description="The proposer's agent when left out.")
    depends_on: list[TaskKey] = Field(default_factory=list, max_length=50)


class Handoff(BaseModel):
    """What a succeeded task leaves: a summary, notes, facts for the blackboard, proposed
    follow-ups; `source` says where it came from (`block`: the agent's handoff block,
    `answer`: its final message as it was, `none`: nothing), `problems` what was wrong with
    it (a block that is no JSON, a fact too large), for the timeline."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    summary: str = Field("", max_length=MAX_SUMMARY_CHARS)
    notes: list[Annotated[str, Field(max_length=MAX_NOTE_CHARS)]] = Field(
        default_factory=list, max_length=MAX_NOTES
    )
    facts: list[Fact] = Field(default_factory=list, max_length=MAX_FACTS)
    proposals: list[Proposal] = Field(default_factory=list, max_length=MAX_PROPOSALS)
    source: Literal["block", "answer", "none"] = "none"
    problems: list[Annotated[str, Field(max_length=500)]] = Field(
        default_factory=list, max_length=MAX_PROBLEMS
    )


class ParentHandoff(BaseModel):
    """A parent's handoff as its dependents get it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: str
    title: str = ""
    persona: str | None = None
    summary: str = ""
    notes: list[str] = Field(default_factory=list)


class BoardFact(BaseModel):
    """A fact of the blackboard as a task gets it: the key's latest value, who wrote it
    (`task:<key>` or a person's `token:<name>`) and when."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: str
    value: Any = None
    author: str = ""
    at: str = ""
