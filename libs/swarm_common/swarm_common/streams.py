"""The stream protocol: every Redis stream, group and key name, and the message envelope.

A stream entry carries one field, `env`, holding a versioned JSON envelope
`{"v": 1, "type": ..., "id": ..., "ts": ..., "payload": {...}}`, and an adapter's event about
an attempt a second one, `proof`: the HMAC of `env`'s bytes with the attempt's key
(`swarm_common.proofs`; `prove()` adds it, `Envelope.proof` and `Envelope.raw` hold what the
reader checks). Readers decode with
`decode()`; whatever does not decode goes to the dead-letter stream with `dead_letter()` and
is acknowledged, so a bad message never stops a loop. Redis clients are used with
`decode_responses=False`: bytes that are not UTF-8 must reach `decode()`, not crash a read.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from swarm_common import proofs
from swarm_common.messages import MESSAGE_TYPES, Message, utcnow

__all__ = [
    "ADAPTERS_GROUP",
    "ENVELOPE_FIELD",
    "ORCHESTRATOR_GROUP",
    "PROOF_FIELD",
    "PROTOCOL_VERSION",
    "DecodeError",
    "Envelope",
    "Keys",
    "dead_letter",
    "decode",
    "encode",
    "ensure_group",
    "prove",
]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
ENVELOPE_FIELD = "env"
PROOF_FIELD = "proof"
"""Beside `env` in an adapter's event: `proofs.sign(<the attempt's key>, <env's bytes>)`."""
ADAPTERS_GROUP = "adapters"
"""Consumer group of the adapters on every `tasks:<agent>` stream."""
ORCHESTRATOR_GROUP = "orchestrator"
"""Consumer group of the orchestrators on the events stream."""
DEAD_MAXLEN = 100_000
MAX_DEAD_RAW_BYTES = 64 * 1024
MAX_ENVELOPE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Keys:
    """Names of every stream and key under one prefix (`swarm` unless configured)."""

    prefix: str = "swarm"

    def tasks(self, agent: str) -> str:
        """Task messages for one agent kind; group `adapters`."""
        return f"{self.prefix}:tasks:{agent}"

    @property
    def events(self) -> str:
        """Everything adapters report; group `orchestrator`."""
        return f"{self.prefix}:events"

    @property
    def dead(self) -> str:
        """Messages that failed to decode or to apply, or were delivered too often."""
        return f"{self.prefix}:dead"

    def worker(self, name: str) -> str:
        """Hash with a TTL: a live adapter and what it runs."""
        return f"{self.prefix}:worker:{name}"

    @property
    def workers_match(self) -> str:
        return f"{self.prefix}:worker:*"

    def cancel(self, task_id: uuid.UUID | str, attempt: int) -> str:
        """Set when someone asks to stop one attempt."""
        return f"{self.prefix}:cancel:{task_id}:{attempt}"

    @property
    def cancel_channel(self) -> str:
        """Pub/sub notice of a new cancel request, so runners need not poll for it."""
        return f"{self.prefix}:cancel"

    def claim(self, task_id: uuid.UUID | str, attempt: int) -> str:
        """Who claimed one attempt; `SET NX`, so a second claim of the same attempt fails."""
        return f"{self.prefix}:claim:{task_id}:{attempt}"

    def lease(self, task_id: uuid.UUID | str, attempt: int) -> str:
        """Expires unless the claiming worker renews it; see `swarm_common.leases`."""
        return f"{self.prefix}:lease:{task_id}:{attempt}"

    @property
    def control(self) -> str:
        """The system mode every adapter obeys (`running`, `draining`, `stopped`), as JSON."""
        return f"{self.prefix}:control"

    def ratelimit(self, subject: str) -> str:
        """The API's request budget of one token (or one client address): a hash."""
        return f"{self.prefix}:ratelimit:{subject}"

    @property
    def epoch(self) -> str:
        """Set by the orchestrator; its absence means Redis lost its data."""
        return f"{self.prefix}:epoch"

    @property
    def all_match(self) -> str:
        return f"{self.prefix}:*"


class DecodeError(ValueError):
    """A stream entry that is not a valid envelope of a known type and version."""


@dataclass(frozen=True)
class Envelope:
    v: int
    type: str
    id: str
    ts: datetime
    message: Message
    raw: bytes = field(default=b"", repr=False)
    """The `env` field's exact bytes, which a proof covers."""
    proof: str | None = field(default=None, repr=False)
    """The `proof` field, if the entry had one."""


def encode(message: Message, *, envelope_id: str | None = None) -> dict[str, bytes]:
    """Stream fields for `message`. Pass the same `envelope_id` when re-sending a message so
    the reader can drop the duplicate."""
    body = {
        "v": PROTOCOL_VERSION,
        "type": message.TYPE,
        "id": envelope_id or str(uuid.uuid4()),
        "ts": utcnow().isoformat(),
        "payload": message.model_dump(mode="json"),
    }
    return {ENVELOPE_FIELD: json.dumps(body, separators=(",", ":")).encode()}


def prove(fields: dict[str, bytes], key: str) -> dict[str, bytes]:
    """`fields` (as `encode` made them, and as they will be sent) with the proof of their
    envelope under an attempt's `key`."""
    return {**fields, PROOF_FIELD: proofs.sign(key, fields[ENVELOPE_FIELD]).encode()}


def _field(fields: Mapping[Any, Any], name: str) -> Any:
    return fields.get(name.encode(), fields.get(name))


def decode(fields: Mapping[Any, Any]) -> Envelope:
    """Parse one stream entry; raise `DecodeError` for anything but a valid envelope."""
    raw = _field(fields, ENVELOPE_FIELD)
    if raw is None:
        raise DecodeError(f"entry has no {ENVELOPE_FIELD!r} field")
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise DecodeError(f"envelope of {len(raw)} bytes exceeds {MAX_ENVELOPE_BYTES}")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting
        raise DecodeError(f"envelope is not JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise DecodeError("envelope is not a JSON object")
    if body.get("v") != PROTOCOL_VERSION:
        raise DecodeError(f"unsupported envelope version {body.get('v')!r}")
    kind = body.get("type")
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise DecodeError(f"unknown message type {kind!r}")
    envelope_id, ts, payload = body.get("id"), body.get("ts"), body.get("payload")
    if not isinstance(envelope_id, str) or not envelope_id or len(envelope_id) > 200:
        raise DecodeError("envelope id missing or invalid")
    if not isinstance(payload, dict):
        raise DecodeError("envelope payload is not an object")
    try:
        when = datetime.fromisoformat(ts) if isinstance(ts, str) else None
        message = cls.model_validate(payload)
    except (ValueError, RecursionError) as exc:  # ValidationError is a ValueError
        detail = exc.errors(include_input=False) if isinstance(exc, ValidationError) else exc
        raise DecodeError(f"invalid {kind} payload: {str(detail)[:500]}") from None
    if when is None:
        raise DecodeError("envelope ts missing")
    return Envelope(
        v=PROTOCOL_VERSION,
        type=cls.TYPE,
        id=envelope_id,
        ts=when,
        message=message,
        raw=raw.encode() if isinstance(raw, str) else bytes(raw),
        proof=_proof(fields),
    )


def _proof(fields: Mapping[Any, Any]) -> str | None:
    value = _field(fields, PROOF_FIELD)
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str) or len(value) > proofs.MAX_PROOF_CHARS:
        return None
    return value


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create `group` on `stream` (and the stream) unless it exists."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def dead_letter(
    redis: Redis,
    keys: Keys,
    *,
    stream: str,
    entry_id: bytes | str,
    fields: Mapping[Any, Any],
    reason: str,
    group: str | None = None,
) -> None:
    """Copy an entry that cannot be processed to the dead-letter stream, with the reason.

    The caller acknowledges the original afterwards; keeping the copy first means a crash in
    between re-delivers rather than loses it.
    """
    raw = _field(fields, ENVELOPE_FIELD)
    if raw is None:
        raw = json.dumps({_text(k): _text(v) for k, v in fields.items()})
    if isinstance(raw, str):
        raw = raw.encode()
    entry = {
        "stream": stream,
        "entry_id": _text(entry_id),
        "group": group or "",
        "reason": reason[:2000],
        "raw": raw[:MAX_DEAD_RAW_BYTES],
        "ts": utcnow().isoformat(),
    }
    await redis.xadd(keys.dead, entry, maxlen=DEAD_MAXLEN, approximate=True)  # type: ignore[arg-type]
    log.warning(
        "dead-lettered stream entry",
        extra={"stream": stream, "entry_id": _text(entry_id), "reason": reason[:200]},
    )


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
