"""CPU seconds a run costs, by the processes that spent them: how much work a task is, beside
how fast it went. A figure that does not depend on how loaded or how quick the machine was
the way a rate does, and that says where Swarm's time goes against Celery's.

Read on Linux, from the same host as the servers (`/proc/<pid>/stat`: user and system time
of each process, and of its children that ended and were waited for), in groups:

- the processes a bench started (`Stack.procs`: the orchestrator, each adapter; the Celery
  worker and its pool) with every process below them;
- the PostgreSQL backends serving the run's database (found by their process title, which
  names the database; the server's shared background processes are left out);
- Redis (or Valkey), from its own `INFO cpu` (all its clients' work: the machine is
  otherwise quiet during a bench);
- the bench itself (the client: building and sending requests, polling), from `getrusage`.

A group is missing when it cannot be read (PostgreSQL on another host, no `/proc`).
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis as redis_client

if TYPE_CHECKING:
    from tests.e2e.stack import Stack

__all__ = ["Meter", "backends_of", "per_task", "process_seconds", "stack_meter", "tree"]

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    """The fields of `/proc/<pid>/stat` after the command name (the third field first)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def process_seconds(pid: int) -> float | None:
    """User and system seconds of `pid` and of its children that it waited for."""
    fields = _stat(pid)
    if fields is None:
        return None
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / TICKS


def _below() -> dict[int, list[int]]:
    """Each process's children now (one read of `/proc`)."""
    found: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            found.setdefault(int(fields[1]), []).append(int(entry.name))
    return found


def tree(roots: Iterable[int], below: Mapping[int, list[int]] | None = None) -> set[int]:
    """The roots and every process below them now (`below`: a `_below()` already read)."""
    below = _below() if below is None else below
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(below.get(pid, ()))
    return found


def backends_of(database: str) -> set[int]:
    """The PostgreSQL backends connected to `database`: their title is `postgres: <user>
    <database> <client> <state>`, with the cluster's name after `postgres:` when it has one
    (Debian: `postgres: 15/main: <user> <database> …`)."""
    found: set[int] = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        words = title.split()
        if words[:1] == ["postgres:"] and database in words[2:4]:
            found.add(int(entry.name))
    return found


def _redis_seconds(redis: Any) -> float:
    info = redis.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Meter:
    """CPU seconds by group between `start()` and `stop()`.

    `groups` maps a group's name to the pids whose trees it holds (read again at each end,
    so processes started meanwhile count); `database` names the PostgreSQL database whose
    backends are the `postgres` group; `redis` is a synchronous client of the server."""

    groups: Mapping[str, Iterable[int]] = field(default_factory=dict)
    database: str | None = None
    redis: Any = None
    _start: dict[str, dict[int, float]] = field(default_factory=dict, init=False)
    _redis: float = field(default=0.0, init=False)
    _own: float = field(default=0.0, init=False)

    def _read(self) -> dict[str, dict[int, float]]:
        below = _below()
        pids = {name: tree(roots, below) for name, roots in self.groups.items()}
        if self.database is not None:
            pids["postgres"] = backends_of(self.database)
        return {
            name: {pid: s for pid in group if (s := process_seconds(pid)) is not None}
            for name, group in pids.items()
        }

    def start(self) -> None:
        self._start = self._read()
        self._redis = _redis_seconds(self.redis) if self.redis is not None else 0.0
        self._own = _own_seconds()

    def stop(self) -> dict[str, float]:
        """Seconds by group: `client`, `redis`, each of `groups`, `postgres` (when any
        backend was found). A process that ended between the two reads and was not waited
        for by one of the group's is missed."""
        spent: dict[str, float] = {"client": _own_seconds() - self._own}
        if self.redis is not None:
            spent["redis"] = _redis_seconds(self.redis) - self._redis
        for name, now in self._read().items():
            before = self._start.get(name, {})
            if name == "postgres" and not now:
                continue
            spent[name] = sum(s - before.get(pid, 0.0) for pid, s in now.items())
        return spent


def per_task(spent: Mapping[str, float], tasks: int) -> dict[str, float]:
    """`cpu_s_per_task` (every group) and `cpu_<group>_s_per_task` for each group."""
    figures = {f"cpu_{name}_s_per_task": s / tasks for name, s in spent.items()}
    figures["cpu_s_per_task"] = sum(spent.values()) / tasks
    return figures


@contextlib.contextmanager
def stack_meter(stack: Stack) -> Iterator[Meter]:
    """A meter of a running stack: `orchestrator`, `adapters` (every other process it
    started), `postgres` (its database's backends), `redis`, `client`."""
    store = redis_client.Redis.from_url(stack.redis_url)
    try:
        yield Meter(
            groups={
                "orchestrator": [p.pid for n, p in stack.procs.items() if n == "orchestrator"],
                "adapters": [p.pid for n, p in stack.procs.items() if n != "orchestrator"],
            },
            database=urlsplit(stack.database_url).path.lstrip("/"),
            redis=store,
        )
    finally:
        store.close()
