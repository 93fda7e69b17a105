"""Which timeline entries webhooks tell of, under which names, and the bodies they send.

The timeline is the source: each event below is an entry that a state change wrote in its
own transaction (`db.timeline`), so nothing is told that did not happen. `notified` names
the event of an entry, or None: a `task.failed` that will be retried is no event, nor is a
person's pause.

Bodies: `json` (the default) is the payload as stored with the delivery; `slack` is
`{"text": ...}`, which Slack's incoming webhooks (and Mattermost's, Discord's `/slack`)
post as a message.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from swarm_common.notifications import EVENTS, EventName
from swarm_common.redaction import Redactor

__all__ = ["EVENTS", "TEST_EVENT", "EventName", "Format", "notified", "payload", "render"]

TEST_EVENT = "webhook.test"
"""What `POST /v1/webhooks/{id}/test` sends: no timeline entry behind it."""
Format = Literal["json", "slack"]

_SAME = frozenset(
    {
        "session.finalized",
        "session.awaiting_review",
        "task.awaiting_approval",
        "checkpoint.passed",
        "checkpoint.failed",
        "session.budget_warning",
    }
)
BUDGET_EXHAUSTED = "budget_exhausted"  # graph.session_state.BUDGET_EXHAUSTED


def notified(entry_type: str, data: dict[str, Any]) -> str | None:
    """The webhook event of a timeline entry, or None when it is none."""
    if entry_type in _SAME:
        return entry_type
    if entry_type == "task.failed":
        return None if data.get("will_retry") else "task.failed"
    if entry_type == "session.suspended":
        if data.get("kinds"):  # graph.suspension: its agent kinds have no live adapter
            return "kind.lost"
        if data.get("reason") == BUDGET_EXHAUSTED:
            return "session.budget_exhausted"
    return None


def payload(
    *,
    delivery_id: uuid.UUID,
    type: str,
    at: datetime,
    event_id: int | None = None,
    session_id: uuid.UUID | None = None,
    session_title: str | None = None,
    tenant: str | None = None,
    task_id: uuid.UUID | None = None,
    task_key: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `json` body: the delivery id (as `X-Swarm-Delivery` says), the event, when it
    happened, the timeline entry it comes from, its session and task, and the entry's
    data."""
    return {
        "id": str(delivery_id),
        "type": type,
        "at": at.isoformat(),
        "event_id": event_id,
        "session_id": str(session_id) if session_id else None,
        "session_title": session_title,
        "tenant": tenant,
        "task_id": str(task_id) if task_id else None,
        "task_key": task_key,
        "data": data or {},
    }


def render(payload: dict[str, Any], fmt: str, *, redact: Redactor | None = None) -> bytes:
    """The request body of a delivery: its payload (with every configured secret
    redacted, as API responses are), in the webhook's format."""
    if redact is not None:
        payload = _redacted(payload, redact)
    body: dict[str, Any] = {"text": slack_text(payload)} if fmt == "slack" else payload
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _redacted(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, redact) for v in value]
    return value


def _esc(text: object) -> str:
    """Slack's mrkdwn takes `&`, `<` and `>` as markup: escaped, a title cannot ping
    `<!channel>` or make a link."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: object, most: int = 300) -> str:
    said = str(text)
    return said if len(said) <= most else said[: most - 1] + "…"


def _budget(d: dict[str, Any]) -> str:
    said = f"{d.get('percent')}% of its {d.get('limit')} limit"
    return f"{said} ({d.get('spent')} of {d.get('amount')})"


_TEXTS: dict[str, Callable[[dict[str, Any]], str]] = {
    "session.finalized": lambda d: (
        "is finalized" + (f" (tag `{_esc(d['tag'])}`)" if d.get("tag") else "")
    ),
    "session.awaiting_review": lambda d: (
        "waits for review" + (f": {_esc(_clip(d['reason']))}" if d.get("reason") else "")
    ),
    "task.awaiting_approval": lambda d: "waits for approval",
    "task.failed": lambda d: (
        f"failed for good ({_esc(d.get('reason', 'failed'))})"
        + (f": {_esc(_clip(d['error']))}" if d.get("error") else "")
    ),
    "checkpoint.passed": lambda d: (
        f"passed checkpoint {d.get('number')}"
        + (f" (tag `{_esc(d['tag'])}`)" if d.get("tag") else "")
    ),
    "checkpoint.failed": lambda d: (
        f"failed checkpoint {d.get('number')}"
        + (f": {_esc(_clip(d['error']))}" if d.get("error") else "")
    ),
    "kind.lost": lambda d: f"is suspended: {_esc(_clip(d.get('reason', 'an agent kind is gone')))}",
    "session.budget_warning": lambda d: f"spent {_esc(_budget(d))}",
    "session.budget_exhausted": lambda d: "is suspended: its budget is spent",
    TEST_EVENT: lambda d: "test delivery: the webhook works",
}


def slack_text(payload: dict[str, Any]) -> str:
    """One line: who (the task and its session, or the session) and what happened."""
    data = payload.get("data") or {}
    title = _esc(_clip(payload.get("session_title") or payload.get("session_id") or "", 120))
    who = f"Session *{title}*" if title else "Swarm"
    if payload.get("task_key"):
        who = f"Task `{_esc(payload['task_key'])}` of *{title}*"
    said = _TEXTS.get(payload.get("type", ""))
    what = said(data) if said is not None else _esc(payload.get("type"))
    return f"{who} {what}"
