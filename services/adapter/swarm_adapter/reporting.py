"""The adapter's line to the orchestrator over Redis, the `running.Reporter` its attempts
and heartbeats use: events appended to `swarm:events` (every one through the redaction
filter; the ones that matter retried until Redis takes them) and cancel requests read from
`swarm:cancel:<task>:<attempt>`.

It also holds the secret keys of the attempts this adapter claimed (`hold_key`), in memory
only, and proves every event about such an attempt with its key (`swarm_common.proofs`):
the orchestrator drops events without that proof. The key never reaches the attempt's
pipeline, agent, files or log lines: the worker takes it off the task message first."""

from __future__ import annotations

import asyncio
import logging
import uuid

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from swarm_common.backoff import Backoff, sleep
from swarm_common.messages import Message, TaskMessage
from swarm_common.redaction import Redactor
from swarm_common.streams import Keys, encode, prove
from swarm_common.text import decoded

__all__ = ["EVENTS_MAXLEN", "RedisReporter"]

log = logging.getLogger(__name__)

EVENTS_MAXLEN = 1_000_000


class RedisReporter:
    def __init__(
        self, *, redis: Redis, keys: Keys, redact: Redactor, abandon: asyncio.Event
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.redact = redact
        self.abandon = abandon
        """Set when the adapter gives up on its work: retries stop."""
        self._event_keys: dict[tuple[uuid.UUID, int], str] = {}

    def hold_key(self, message: TaskMessage, key: str | None) -> None:
        """Prove the events of this (claimed) attempt with `key` until `release_key`."""
        if key:
            self._event_keys[(message.task_id, message.attempt)] = key

    def release_key(self, message: TaskMessage) -> None:
        self._event_keys.pop((message.task_id, message.attempt), None)

    async def publish(self, event: Message, *, retry: bool = True, key: str | None = None) -> None:
        """Append an event; with `retry`, keep trying (same envelope id and proof, so a
        duplicate is recognised) until Redis takes it or the adapter is abandoning its work.
        What goes out passes the redaction filter, then gets the proof made with the key of
        its attempt (held, or `key` for an attempt refused before it was claimed)."""
        fields = self.sealed(event, key=key)
        backoff = Backoff(base_s=0.2, cap_s=5.0)
        while True:
            try:
                await self.redis.xadd(
                    self.keys.events,
                    fields,  # type: ignore[arg-type]
                    maxlen=EVENTS_MAXLEN,
                    approximate=True,
                )
                return
            except (RedisError, OSError) as exc:
                if not retry or self.abandon.is_set():
                    log.warning(
                        "event not published", extra={"type": event.TYPE, "error": repr(exc)}
                    )
                    return
                delay = backoff.failed()
                log.warning(
                    "cannot publish event; retrying",
                    extra={"type": event.TYPE, "error": repr(exc), "retry_in_s": delay},
                )
                await sleep(delay)

    def sealed(self, event: Message, *, key: str | None = None) -> dict[str, bytes]:
        """The event's stream fields as they go out: through the redaction filter, then
        proven with the key of its attempt (held, or `key`)."""
        fields = {
            name: self.redact(value.decode()).encode() for name, value in encode(event).items()
        }
        key = key or self._key_of(event)
        return prove(fields, key) if key else fields

    def stage(self, pipe: Pipeline, event: Message, *, key: str | None = None) -> None:
        """Append the event in `pipe` (a batch of events sent in one round trip)."""
        pipe.xadd(
            self.keys.events,
            self.sealed(event, key=key),  # type: ignore[arg-type]
            maxlen=EVENTS_MAXLEN,
            approximate=True,
        )

    def _key_of(self, event: Message) -> str | None:
        task_id, attempt = getattr(event, "task_id", None), getattr(event, "attempt", None)
        if not isinstance(task_id, uuid.UUID) or not isinstance(attempt, int):
            return None  # worker.online, worker.offline: about no attempt
        return self._event_keys.get((task_id, attempt))

    async def cancel_request(self, message: TaskMessage) -> str | None:
        """The reason of the cancel request for this attempt; None when there is none."""
        reason = await self.redis.get(self.keys.cancel(message.task_id, message.attempt))
        if reason is None:
            return None
        return decoded(reason)
