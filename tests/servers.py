"""Which real PostgreSQL and Redis the tests use, found once per run.

In order: `SWARM_TEST_DATABASE_URL` / `SWARM_TEST_REDIS_URL`; a server answering on
127.0.0.1 (5432, trust auth; 6379); containers (testcontainers) where a Docker engine
answers; else the embedded servers of `swarm up`, started for the run
(`SWARM_TEST_SERVERS=embedded` goes straight to those). Each test then gets its own database
(cloned from a migrated template) and its own Redis key prefix.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from swarm_cli.local.embedded import EmbeddedPostgres, EmbeddedValkey
from swarm_common.settings import normalize_database_url, normalize_redis_url

T = TypeVar("T")

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
DB_PREFIX = "swarm_t"


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private loop in a thread (safe inside pytest's
    own loop handling)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, factory()).result()  # type: ignore[arg-type]


def forget_keys(store: SyncRedis, match: str) -> int:
    """Delete every key matching `match` (a test's or a benchmark's prefix), in pages;
    return how many there were."""
    found = list(store.scan_iter(match=match, count=1000))
    for start in range(0, len(found), 1000):
        store.unlink(*found[start : start + 1000])
    return len(found)


def docker_answers() -> bool:
    """Ask the engine's `/_ping` directly (docker-py leaks a socket when there is none)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    parts = urlsplit(host)
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: Any = parts.path
        elif parts.scheme == "tcp":
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (parts.hostname, parts.port or 2375)
        else:
            return False
        with sock:
            sock.settimeout(3)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(1024)
    except OSError:
        return False


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def _asyncpg_dsn(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))


class Servers:
    """The servers of one test run; `close()` stops the embedded ones."""

    def __init__(self) -> None:
        self._embedded: list[EmbeddedPostgres | EmbeddedValkey] = []
        self._containers: list[Any] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="swarm-test-servers-")
        self.embedded_only = os.environ.get("SWARM_TEST_SERVERS", "auto") == "embedded"
        self.pg_admin_url = self._postgres()
        self.redis_url = self._redis()

    def _postgres(self) -> str:
        url = os.environ.get("SWARM_TEST_DATABASE_URL")
        if url:
            return normalize_database_url(url)
        if self.embedded_only:
            return self._embedded_postgres()
        if _answers("127.0.0.1", 5432):
            try:
                run_sync(lambda: _ping_pg(normalize_database_url(LOCAL_PG)))
                return normalize_database_url(LOCAL_PG)
            except (OSError, asyncpg.PostgresError):
                pass
        if docker_answers():
            from testcontainers.postgres import PostgresContainer

            container = PostgresContainer("postgres:16-alpine", driver="asyncpg")
            container.start()
            self._containers.append(container)
            return normalize_database_url(container.get_connection_url())
        return self._embedded_postgres()

    def _embedded_postgres(self) -> str:
        server = EmbeddedPostgres(Path(self._tmp.name))
        self._embedded.append(server)
        return with_database(server.start(), "postgres")

    def _redis(self) -> str:
        url = os.environ.get("SWARM_TEST_REDIS_URL")
        if url:
            return normalize_redis_url(url)
        if self.embedded_only:
            return self._embedded_valkey()
        if _answers("127.0.0.1", 6379):
            try:
                client = SyncRedis.from_url(LOCAL_REDIS, socket_timeout=2)
                client.ping()
                client.close()
                return LOCAL_REDIS
            except RedisError:
                pass
        if docker_answers():
            from testcontainers.redis import RedisContainer

            container = RedisContainer("redis:7-alpine")
            container.start()
            self._containers.append(container)
            host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
            return f"redis://{host}:{port}/0"
        return self._embedded_valkey()

    def _embedded_valkey(self) -> str:
        server = EmbeddedValkey(Path(self._tmp.name))
        self._embedded.append(server)
        return server.start()

    def close(self) -> None:
        for server in reversed(self._embedded):
            server.stop()
        for container in reversed(self._containers):
            container.stop()
        self._tmp.cleanup()


async def _ping_pg(url: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=3)
    await conn.close()


async def create_database(admin_url: str, name: str, *, template: str | None = None) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=10)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def drop_stale_databases(admin_url: str) -> None:
    """Drop test databases left by runs whose process is gone (a crash, a kill -9)."""
    conn = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=10)
    try:
        names = [
            r["datname"]
            for r in await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{DB_PREFIX}%"
            )
        ]
        for name in names:
            pid = name.split("_")[2] if name.count("_") >= 3 else ""
            if pid.isdigit() and not _pid_alive(int(pid)):
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def database_name(kind: str) -> str:
    return f"{DB_PREFIX}_{os.getpid()}_{kind}{uuid.uuid4().hex[:10]}"
