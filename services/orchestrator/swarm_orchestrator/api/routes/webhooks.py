"""`/v1/webhooks`: subscriptions to a tenant's or a session's events (operators create and
remove them, viewers read them), their deliveries with status, attempts and last error, and
a test delivery. The secret that signs deliveries is answered once, by the creation."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from swarm_orchestrator.api.deps import DbDep, StateDep
from swarm_orchestrator.api.schemas import MAX_INT, error_responses
from swarm_orchestrator.api.security import Operator, Viewer
from swarm_orchestrator.webhooks import subscriptions
from swarm_orchestrator.webhooks.events import EVENTS, EventName, Format
from swarm_orchestrator.webhooks.targets import MAX_URL_CHARS

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

_ERRORS = error_responses(404, 409)
_ONE = error_responses(404)

DeliveryStatus = Literal["pending", "delivered", "failed"]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_CHARS,
        description="An http:// or https:// URL of a public address (any address with "
        "`SWARM_WEBHOOK_ALLOW_PRIVATE`); no credentials in it.",
    )
    events: list[EventName] = Field(
        default_factory=lambda: list(EVENTS),
        min_length=1,
        max_length=len(EVENTS),
        description="The events to receive; left out, all of them.",
    )
    session_id: uuid.UUID | None = Field(
        None, description="Only this session's events; left out, every session of your tenant."
    )
    format: Format = Field(
        "json", description='`json`: the event as an object; `slack`: `{"text": ...}`.'
    )
    secret: str | None = Field(
        None,
        min_length=16,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Signs each delivery (HMAC-SHA256); left out, one is made. Answered only "
        "by this request.",
    )


class WebhookPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tenant: str | None = Field(description="Whose sessions it hears of; null: every tenant's.")
    session_id: uuid.UUID | None = Field(description="Null: every session of the tenant.")
    url: str
    events: list[str]
    format: str
    created_by: str
    created_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="Keep it now: it is not shown again.")


class DeliveryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The delivery id: the same on every attempt.")
    webhook_id: uuid.UUID
    event_id: int | None = Field(description="The timeline entry; null for a test delivery.")
    type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = Field(description="While pending: when it is tried.")
    last_attempt_at: datetime | None
    last_status: int | None = Field(description="The HTTP status of the last answer.")
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="The event as the `json` format sends it.")


def _delivery(row: Any) -> DeliveryPublic:
    public = DeliveryPublic.model_validate(row)
    if public.status != "pending":
        public.next_attempt_at = None
    return public


@router.post("", status_code=201, responses=_ERRORS)
async def create_webhook(
    body: WebhookCreate, db: DbDep, state: StateDep, who: Operator
) -> WebhookCreated:
    """Subscribe a URL to events of your tenant's sessions, or of one session. Deliveries
    are POSTed at least once, signed (`X-Swarm-Signature`), with `X-Swarm-Delivery` (the
    same on a retry) and `X-Swarm-Event`."""
    hook, secret = await subscriptions.create(
        db,
        who=who,
        url=body.url,
        names=body.events,
        fmt=body.format,
        secret=body.secret,
        session_id=body.session_id,
        allow_private=state.settings.webhook_allow_private,
    )
    return WebhookCreated(**WebhookPublic.model_validate(hook).model_dump(), secret=secret)


@router.get("", responses=_ERRORS)
async def list_webhooks(
    db: DbDep, who: Viewer, session_id: uuid.UUID | None = None
) -> list[WebhookPublic]:
    """Your tenant's webhooks (a token without a tenant: all), oldest first."""
    rows = await subscriptions.list_webhooks(db, who=who, session_id=session_id)
    return [WebhookPublic.model_validate(row) for row in rows]


@router.get("/{webhook_id}", responses=_ONE)
async def get_webhook(webhook_id: uuid.UUID, db: DbDep, who: Viewer) -> WebhookPublic:
    return WebhookPublic.model_validate(await subscriptions.get(db, webhook_id, who=who))


@router.delete("/{webhook_id}", responses=_ONE)
async def delete_webhook(webhook_id: uuid.UUID, db: DbDep, who: Operator) -> WebhookPublic:
    """Remove a webhook and its deliveries (pending ones are not sent); answers it as it
    was."""
    return WebhookPublic.model_validate(await subscriptions.delete(db, webhook_id, who=who))


@router.get("/{webhook_id}/deliveries", responses=_ONE)
async def list_deliveries(
    webhook_id: uuid.UUID,
    db: DbDep,
    who: Viewer,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> list[DeliveryPublic]:
    """The webhook's deliveries, newest first: status, attempts, the last answer or error."""
    rows = await subscriptions.deliveries(
        db, webhook_id, who=who, status=status, limit=limit, offset=offset
    )
    return [_delivery(row) for row in rows]


@router.post("/{webhook_id}/test", status_code=202, responses=_ONE)
async def test_webhook(
    webhook_id: uuid.UUID, db: DbDep, state: StateDep, who: Operator
) -> DeliveryPublic:
    """Send a `webhook.test` delivery now; follow it in the deliveries."""
    row = await subscriptions.test(db, webhook_id, who=who)
    state.background.webhooks.wake.set()
    return _delivery(row)
