"""Waiting for a condition with a deadline, instead of sleeping and hoping.

- `eventually(condition)` in a synchronous test;
- `await wait_until(condition)` in an async test, with a synchronous condition;
- `await wait_until_async(condition)` in an async test, with an async condition;
- `await pid_in(path)` for the pid a shell wrote with `echo $! > path`, once the whole
  line is there (the shell creates the file before it writes to it).

Each calls `condition` until it returns something truthy, returns that value, and fails
the test with an `AssertionError` when `timeout_s` passes first. `message` says what was
awaited; it may be a function, called only on a failure (to show a log or the last state).
An exception raised by `condition` ends the wait at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = [
    "eventually",
    "pid_alive",
    "pid_in",
    "transactions_settled",
    "wait_until",
    "wait_until_async",
]

T = TypeVar("T")
Message = str | Callable[[], str]


def _failure(timeout_s: float, message: Message) -> AssertionError:
    said = message() if callable(message) else message
    return AssertionError(f"condition not met in {timeout_s}s {said}".strip())


def eventually(
    condition: Callable[[], T],
    *,
    timeout_s: float = 10.0,
    interval_s: float = 0.1,
    message: Message = "",
) -> T:
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise _failure(timeout_s, message)
        time.sleep(interval_s)
    return result


async def wait_until(
    condition: Callable[[], T],
    *,
    timeout_s: float = 10.0,
    interval_s: float = 0.02,
    message: Message = "",
) -> T:
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise _failure(timeout_s, message)
        await asyncio.sleep(interval_s)
    return result


async def wait_until_async(
    condition: Callable[[], Awaitable[T]],
    *,
    timeout_s: float = 10.0,
    interval_s: float = 0.05,
    message: Message = "",
) -> T:
    deadline = time.monotonic() + timeout_s
    while not (result := await condition()):
        if time.monotonic() > deadline:
            raise _failure(timeout_s, message)
        await asyncio.sleep(interval_s)
    return result


async def pid_in(path: Path, *, timeout_s: float = 10.0) -> int:
    """The pid written to `path`, once the file holds a whole line."""

    def written() -> str | None:
        try:
            line = path.read_text()
        except FileNotFoundError:
            return None
        return line if line.endswith("\n") else None

    return int(await wait_until(written, timeout_s=timeout_s, message=str(path)))


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, which is dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


async def transactions_settled(
    sessionmaker: async_sessionmaker[AsyncSession], *, timeout_s: float = 30.0
) -> None:
    """Wait until every transaction of the PostgreSQL cluster that began before this call
    has ended. Timeline readers return only *settled* entries (`swarm_orchestrator.db.
    timeline`): an entry shows once every older transaction, in any database of the cluster,
    has ended. Tests that run beside others on one server (`make test-fast` runs two workers)
    wait for this before they read a timeline page and expect all of it."""
    async with sessionmaker() as db, db.begin():
        mark = int(await db.scalar(text("SELECT pg_current_xact_id()::text::bigint")) or 0)

    async def passed() -> bool:
        async with sessionmaker() as db:
            xmin = await db.scalar(
                text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            )
        return int(xmin or 0) > mark

    await wait_until_async(passed, timeout_s=timeout_s, interval_s=0.01, message="transactions")
