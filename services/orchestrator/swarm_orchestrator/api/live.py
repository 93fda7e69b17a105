"""Live timelines: which sessions' timelines just grew, for the SSE streams of this process.

PostgreSQL says so itself: a trigger on `events` sends `NOTIFY swarm_events, '<session>'`
when a transaction that added entries commits (migration 0005), whichever replica or
process wrote them. `TimelineWatch` keeps one connection that listens (reconnecting when it
drops) and wakes the streams of that session. The notice is only a hint to read now:
streams read the timeline itself (see `timeline.read`), and poll when no listener is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from swarm_common.backoff import Backoff

__all__ = ["CHANNEL", "TimelineWatch", "asyncpg_dsn"]

log = logging.getLogger(__name__)

CHANNEL = "swarm_events"
PROBE_INTERVAL_S = 15.0
"""How often an idle listening connection is checked (a dead peer sends no FIN)."""
RECONNECT_MAX_S = 10.0


def asyncpg_dsn(url: str) -> str:
    """A plain `postgresql://` DSN for asyncpg from the SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class TimelineWatch:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._waiters: defaultdict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.listening = False
        """A listener is up: notices arrive, so streams may poll rarely."""
        self.notices = 0

    @contextlib.contextmanager
    def watch(self, session_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set whenever `session_id`'s timeline may have grown; clear it before
        reading, so a notice that arrives during the read is not lost."""
        wake = asyncio.Event()
        self._waiters[session_id].add(wake)
        try:
            yield wake
        finally:
            waiters = self._waiters.get(session_id)
            if waiters is not None:
                waiters.discard(wake)
                if not waiters:
                    del self._waiters[session_id]

    @property
    def watchers(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    def wake(self, session_id: uuid.UUID | None = None) -> None:
        """Wake the streams of one session, or all of them."""
        groups = self._waiters.values() if session_id is None else [self._waiters.get(session_id)]
        for waiters in groups:
            for event in waiters or ():
                event.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="timeline-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.wake()

    def _on_notice(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.notices += 1
        try:
            self.wake(uuid.UUID(payload))
        except ValueError:
            log.warning("timeline notice with a bad payload", extra={"payload": payload[:100]})

    async def _run(self) -> None:
        backoff = Backoff(base_s=0.5, cap_s=RECONNECT_MAX_S)
        while True:
            try:
                await self._listen()
                backoff.succeeded()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: poll until it is back
                log.warning("timeline listener down", extra={"error": repr(exc)})
            self.listening = False
            self.wake()  # notices may have been missed: every stream reads once
            await backoff.wait()

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=10,
            server_settings={"application_name": "swarm-orchestrator-listen"},
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._on_notice)
            self.listening = True
            self.wake()  # entries written before the listener was up
            log.info("timeline listener up")
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), timeout=PROBE_INTERVAL_S)
                if not lost.is_set():
                    await conn.fetchval("SELECT 1", timeout=5)
        finally:
            self.listening = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)
