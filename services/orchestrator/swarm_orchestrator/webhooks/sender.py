"""Sending deliveries: at least once, signed, with back-off, and never one receiver's
slowness in another's way.

A pass claims due deliveries in a short transaction (under an advisory lock, so two
orchestrators never claim the same): each gets its attempt counted and a lease
(`lease_until`, the attempt's timeout and a margin) before any request is made, and no
transaction stays open during one. The requests run at once, each bounded by
`webhook_timeout_s` from resolving the host to reading the answer's status; their results
are recorded only if the lease is still the attempt's. 2xx is `delivered`; anything else
waits for the next attempt (`swarm_common.backoff`), until `webhook_max_attempts` make it
`failed`. An attempt whose process died before recording it is tried again once its lease
ends, with the same delivery id, so a receiver can drop what it already has.

Fairness: one orchestrator makes `webhook_concurrency` attempts at once, and a webhook
never has more than `webhook_receiver_concurrency` in flight across all of them, so a slow
or dead receiver holds a few slots and the others' deliveries go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import swarm_common
from swarm_common.backoff import Backoff, delay_s, sleep
from swarm_common.messages import utcnow
from swarm_common.redaction import Redactor
from swarm_orchestrator.db.advisory import try_xact_lock
from swarm_orchestrator.db.models import WebhookDelivery
from swarm_orchestrator.runtime.failures import log_retry
from swarm_orchestrator.settings import OrchestratorSettings
from swarm_orchestrator.webhooks import events, signing, targets

__all__ = ["Claimed", "Result", "Sender"]

log = logging.getLogger(__name__)

LOCK = "webhook-claim"
LEASE_MARGIN_S = 30.0
"""How long past its timeout an attempt's lease lasts: the time to record its result."""
ERROR_CHARS = 500
ANSWER_CHARS = 200
"""What of a refusing answer's body is kept as its error."""
USER_AGENT = f"swarm-webhooks/{swarm_common.__version__}"

_CLAIM = text(
    """
    WITH busy AS (
        SELECT webhook_id, count(*) AS n FROM webhook_deliveries
        WHERE status = 'pending' AND lease_until IS NOT NULL AND lease_until > now()
        GROUP BY webhook_id
    ), picked AS (
        SELECT due.id FROM webhooks w
        LEFT JOIN busy ON busy.webhook_id = w.id
        CROSS JOIN LATERAL (
            SELECT d.id, d.next_attempt_at,
                   row_number() OVER (ORDER BY d.next_attempt_at, d.id) AS rank
            FROM webhook_deliveries d
            WHERE d.webhook_id = w.id AND d.status = 'pending' AND d.next_attempt_at <= now()
            ORDER BY d.next_attempt_at, d.id
            LIMIT :per_hook
        ) due
        WHERE due.rank <= :per_hook - coalesce(busy.n, 0)
        ORDER BY due.next_attempt_at
        LIMIT :slots
    )
    UPDATE webhook_deliveries d
    SET attempts = d.attempts + 1,
        lease_until = now() + make_interval(secs => :lease_s),
        next_attempt_at = now() + make_interval(secs => :lease_s),
        last_attempt_at = now()
    FROM picked, webhooks w
    WHERE d.id = picked.id AND w.id = d.webhook_id
    RETURNING d.id, d.webhook_id, d.attempts, d.type, d.payload, w.url, w.secret, w.format
    """
)


@dataclass(frozen=True)
class Claimed:
    """One attempt of one delivery, leased to this process."""

    id: uuid.UUID
    webhook_id: uuid.UUID
    attempt: int
    type: str
    payload: dict[str, Any]
    url: str
    secret: str
    format: str

    def __repr__(self) -> str:  # never the secret, nor the URL (Slack's holds a token)
        return f"Claimed(id={self.id}, webhook_id={self.webhook_id}, attempt={self.attempt})"


@dataclass(frozen=True)
class Result:
    ok: bool
    status: int | None = None
    error: str | None = None


class Sender:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: OrchestratorSettings,
        redact: Redactor | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        s = settings
        self._allow_private = s.webhook_allow_private
        self._timeout_s = s.webhook_timeout_s
        self._concurrency = s.webhook_concurrency
        self._per_hook = s.webhook_receiver_concurrency
        self._max_attempts = s.webhook_max_attempts
        self._base_s = s.webhook_retry_base_s
        self._cap_s = s.webhook_retry_max_s
        self._poll_s = s.webhook_interval_s
        self._retention_s = s.webhook_retention_s
        self._redact = redact
        self.wake = asyncio.Event()
        """Set when deliveries may be due: the loop claims at once."""
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout_s,
                follow_redirects=False,
                trust_env=False,  # no proxy: the address checked is the one reached
                limits=httpx.Limits(max_connections=self._concurrency, max_keepalive_connections=0),
                headers={"User-Agent": USER_AGENT},
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def claim(self, slots: int) -> list[Claimed]:
        """Lease up to `slots` due deliveries, oldest first, within each webhook's share."""
        if slots <= 0:
            return []
        async with self._sessionmaker() as db, db.begin():
            if not await try_xact_lock(db, LOCK):
                return []
            rows = await db.execute(
                _CLAIM,
                {
                    "per_hook": self._per_hook,
                    "slots": slots,
                    "lease_s": self._timeout_s + LEASE_MARGIN_S,
                },
            )
            return [Claimed(*row) for row in rows.all()]

    async def attempt(self, item: Claimed) -> Result:
        """POST the delivery once; never raises for what the receiver or network does."""
        body = events.render(item.payload, item.format, redact=self._redact)
        headers = {
            "Content-Type": "application/json",
            "X-Swarm-Delivery": str(item.id),
            "X-Swarm-Event": item.type,
            "X-Swarm-Attempt": str(item.attempt),
            signing.HEADER: signing.signature_header(item.secret, body),
        }
        try:
            async with asyncio.timeout(self._timeout_s):
                target = await targets.resolve(item.url, allow_private=self._allow_private)
                request = self._http().build_request(
                    "POST",
                    target.url,
                    content=body,
                    headers={**headers, **target.headers},
                    extensions=target.extensions,
                )
                response = await self._http().send(request, stream=True)
                try:
                    answer = await _beginning(response) if not response.is_success else ""
                finally:
                    await response.aclose()
        except TimeoutError:
            return Result(False, error=f"no answer within {self._timeout_s:g}s")
        except targets.Refused as exc:
            return Result(False, error=f"refused: {exc}"[:ERROR_CHARS])
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            return Result(False, error=f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])
        except Exception as exc:  # a failed attempt all the same: logged, and tried again
            log.exception("webhook attempt broke", extra={"delivery_id": str(item.id)})
            return Result(False, error=f"{type(exc).__name__}"[:ERROR_CHARS])
        if response.is_success:
            return Result(True, response.status_code)
        said = f": {answer}" if answer else ""
        return Result(False, response.status_code, f"HTTP {response.status_code}{said}")

    async def record(self, item: Claimed, result: Result) -> bool:
        """Save an attempt's result, if its lease is still its own (a later attempt of the
        same delivery records its own). True when saved."""
        now = utcnow()
        values: dict[str, Any] = {
            "lease_until": None,
            "last_status": result.status,
            "last_error": None if result.ok else result.error,
        }
        if result.ok:
            values.update(status="delivered", delivered_at=now)
        elif item.attempt >= self._max_attempts:
            values.update(status="failed")
        else:
            wait = delay_s(item.attempt, base_s=self._base_s, cap_s=self._cap_s)
            values.update(next_attempt_at=now + timedelta(seconds=wait))
        async with self._sessionmaker() as db, db.begin():
            done = await db.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == item.id,
                    WebhookDelivery.attempts == item.attempt,
                    WebhookDelivery.status == "pending",
                )
                .values(**values)
            )
        saved = bool(done.rowcount)  # type: ignore[attr-defined]
        extra = {
            "webhook_id": str(item.webhook_id),
            "delivery_id": str(item.id),
            "session_id": item.payload.get("session_id"),
            "task_id": item.payload.get("task_id"),
            "attempt": item.attempt,
            "status": result.status,
        }
        if result.ok:
            log.info("webhook delivered", extra=extra)
        else:
            final = values.get("status") == "failed"
            log.warning(
                "webhook delivery failed for good" if final else "webhook attempt failed",
                extra={**extra, "error": result.error},
            )
        return saved

    async def deliver(self, item: Claimed) -> Result:
        """One attempt, sent and recorded (the recording shielded from a cancel)."""
        result = await self.attempt(item)
        try:
            await asyncio.shield(self.record(item, result))
        except Exception:  # the database is away: the lease ends, and it is sent again
            log.exception("webhook attempt not recorded", extra={"delivery_id": str(item.id)})
        return result

    async def send_once(self) -> int:
        """Claim what is due (up to `webhook_concurrency`), send it all and wait: a burst,
        for tests and tools. The number of attempts made."""
        claimed = await self.claim(self._concurrency)
        await asyncio.gather(*(self.deliver(item) for item in claimed))
        return len(claimed)

    async def run(self, stop: asyncio.Event) -> None:
        """Claim into free slots whenever woken, a slot frees, or `webhook_interval_s`
        passed; on stop, let the attempts in flight end."""
        flying: set[asyncio.Task[Result]] = set()
        backoff = Backoff(base_s=0.5, cap_s=30.0)

        def landed(task: asyncio.Task[Result]) -> None:
            flying.discard(task)
            self.wake.set()

        try:
            while not stop.is_set():
                self.wake.clear()
                free = self._concurrency - len(flying)
                try:
                    claimed = await self.claim(free)
                    backoff.succeeded()
                except Exception as exc:
                    delay = backoff.failed()
                    log_retry(log, "webhook sender", exc, delay)
                    await sleep(delay, stop)
                    continue
                for item in claimed:
                    task = asyncio.create_task(self.deliver(item), name=f"webhook-{item.id}")
                    flying.add(task)
                    task.add_done_callback(landed)
                if claimed and len(claimed) == free:
                    continue  # there may be more due: claim again as slots free
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_either(stop, self.wake), timeout=self._poll_s)
            if flying:
                await asyncio.wait(flying)
        finally:
            for task in flying:
                task.cancel()
            await asyncio.gather(*flying, return_exceptions=True)
            await self.aclose()

    async def prune_once(self) -> int:
        """Remove delivered and failed deliveries older than `webhook_retention_s`."""
        before = utcnow() - timedelta(seconds=self._retention_s)
        async with self._sessionmaker() as db, db.begin():
            done = await db.execute(
                delete(WebhookDelivery).where(
                    WebhookDelivery.status != "pending", WebhookDelivery.created_at < before
                )
            )
        return int(done.rowcount)  # type: ignore[attr-defined]


async def _beginning(response: httpx.Response) -> str:
    """The first characters of a refusing answer's body (a receiver may say why)."""
    read = b""
    async for chunk in response.aiter_raw():
        read += chunk
        if len(read) >= ANSWER_CHARS:
            break
    return read[:ANSWER_CHARS].decode("utf-8", "replace").strip()


async def _either(*flags: asyncio.Event) -> None:
    waiters = [asyncio.create_task(flag.wait()) for flag in flags]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
