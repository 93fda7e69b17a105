"""`/v1/sessions/{id}/blackboard` and `/v1/sessions/{id}/proposals`: a session's blackboard
of facts (read by every task queued after a write; people write it here, tasks through
their handoffs) and the follow-up tasks handoffs proposed, which a person accepts or
refuses when the session's `settings.delegation` is `approve`."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from swarm_common.handoffs import MAX_FACTS, Fact, FactKey
from swarm_common.redaction import looks_secret
from swarm_common.specs import Text
from swarm_orchestrator.api.deps import DbDep, StateDep
from swarm_orchestrator.api.schemas import error_responses
from swarm_orchestrator.api.security import Operator, Viewer
from swarm_orchestrator.db.models import BlackboardFact, TaskProposal
from swarm_orchestrator.errors import Invalid
from swarm_orchestrator.graph import blackboard, delegation, sessions

router = APIRouter(prefix="/v1/sessions/{session_id}", tags=["blackboard"])

_ERRORS = error_responses(404)
_DECIDE = error_responses(404, 409)


class FactPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str
    value: Any = Field(description="Any JSON; null: the key was cleared.")
    author: str = Field(description="`task:<key> (persona)` or the person's `token:<name>`.")
    task_id: uuid.UUID | None = Field(description="The task whose handoff wrote it.")
    created_at: datetime


class BoardPublic(BaseModel):
    session_id: uuid.UUID
    facts: list[FactPublic] = Field(description="Each key's latest value, the newest first.")
    total: int = Field(description="Keys that hold a value (`facts` shows up to `limit`).")


class FactWrite(BaseModel):
    """One fact (`key`, `value`), or several (`facts`); a null value clears a key."""

    model_config = ConfigDict(extra="forbid")

    key: FactKey | None = None
    value: Any = None
    facts: list[Fact] | None = Field(None, min_length=1, max_length=MAX_FACTS)

    @field_validator("value")
    @classmethod
    def _small(cls, value: Any) -> Any:
        return Fact(key="value", value=value).value  # the same bound as a handoff's facts

    @model_validator(mode="after")
    def _one_form(self) -> FactWrite:
        if (self.key is None) == (self.facts is None):
            raise ValueError("give either `key` and `value`, or `facts`")
        return self

    def written(self) -> list[Fact]:
        facts = self.facts if self.facts is not None else [Fact(key=self.key, value=self.value)]
        for fact in facts:  # people's values travel to every later task: no credentials
            found = looks_secret(json.dumps(fact.value))
            if found is not None:
                raise Invalid(
                    f"the value of {fact.key} holds what looks like a credential ({found[:6]}…)",
                    code="secret_in_value",
                )
        return facts


class ProposalPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    session_id: uuid.UUID
    task_id: uuid.UUID = Field(description="The task whose handoff proposed it.")
    number: int
    key: str
    spec: dict[str, Any] = Field(description="The task it becomes once accepted.")
    depth: int = Field(description="1 for a follow-up of a task people gave, and so on.")
    status: str = Field(description="proposed, accepted or refused")
    reason: str | None
    decided_by: str | None
    created_task_id: uuid.UUID | None
    created_at: datetime
    decided_at: datetime | None


class ProposalRefuse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text = Field("", max_length=2000)


def _facts(rows: list[BlackboardFact]) -> list[FactPublic]:
    return [FactPublic.model_validate(row) for row in rows]


@router.get("/blackboard", responses=_ERRORS)
async def read_blackboard(
    session_id: uuid.UUID,
    db: DbDep,
    who: Viewer,
    limit: Annotated[int, Query(ge=1, le=blackboard.MAX_LISTED)] = blackboard.MAX_LISTED,
) -> BoardPublic:
    """The blackboard: each key's latest value (cleared keys left out), the newest first."""
    await sessions.get_session(db, session_id, seen_by=who)
    rows, total = await blackboard.read_board(db, session_id=session_id, limit=limit)
    return BoardPublic(session_id=session_id, facts=_facts(rows), total=total)


@router.post("/blackboard", status_code=201, responses=_ERRORS)
async def write_blackboard(
    session_id: uuid.UUID, body: FactWrite, db: DbDep, who: Operator
) -> list[FactPublic]:
    """Write facts (later values win; the history is kept); every task queued from now on
    reads them."""
    await sessions.get_session(db, session_id, seen_by=who)
    rows = await blackboard.write(db, session_id=session_id, facts=body.written(), author=who.actor)
    await db.commit()
    return _facts(rows)


@router.get("/blackboard/{key}", responses=_ERRORS)
async def fact_history(
    session_id: uuid.UUID,
    key: Annotated[str, Path(max_length=200)],
    db: DbDep,
    who: Viewer,
    limit: Annotated[int, Query(ge=1, le=blackboard.MAX_LISTED)] = 100,
) -> list[FactPublic]:
    """Every value `key` had, the newest first (empty for a key never written)."""
    await sessions.get_session(db, session_id, seen_by=who)
    rows = await blackboard.history(db, session_id=session_id, key=key, limit=limit)
    return _facts(rows)


@router.get("/proposals", responses=_ERRORS)
async def list_proposals(
    session_id: uuid.UUID,
    db: DbDep,
    who: Viewer,
    status: Literal["proposed", "accepted", "refused"] | None = None,
) -> list[ProposalPublic]:
    """Follow-up tasks the session's handoffs proposed, oldest first."""
    await sessions.get_session(db, session_id, seen_by=who)
    rows = await delegation.list_proposals(db, session_id=session_id, status=status)
    return [ProposalPublic.model_validate(row) for row in rows]


@router.post("/proposals/{proposal_id}/accept", responses=_DECIDE)
async def accept_proposal(
    session_id: uuid.UUID, proposal_id: int, db: DbDep, state: StateDep, who: Operator
) -> ProposalPublic:
    """The proposal becomes a task of the session (409 `proposal_decided` once decided)."""
    await sessions.get_session(db, session_id, seen_by=who)
    row = await delegation.accept(
        db, session_id=session_id, proposal_id=proposal_id, keys=state.keys, actor=who.actor
    )
    state.notify()
    return _proposal(row)


@router.post("/proposals/{proposal_id}/refuse", responses=_DECIDE)
async def refuse_proposal(
    session_id: uuid.UUID, proposal_id: int, body: ProposalRefuse, db: DbDep, who: Operator
) -> ProposalPublic:
    """The proposal is refused, with the reason given."""
    await sessions.get_session(db, session_id, seen_by=who)
    row = await delegation.refuse(
        db, session_id=session_id, proposal_id=proposal_id, actor=who.actor, reason=body.reason
    )
    return _proposal(row)


def _proposal(row: TaskProposal) -> ProposalPublic:
    return ProposalPublic.model_validate(row)
