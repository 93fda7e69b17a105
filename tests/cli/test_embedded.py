"""The embedded servers of `swarm up`: real PostgreSQL and Valkey from wheels, on loopback
ports with passwords, data kept across restarts."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, ResponseError

from swarm_cli.local.embedded import EmbeddedPostgres, EmbeddedValkey, ServerStartError
from tests.servers import run_sync


async def _query(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"), timeout=5)
    try:
        if sql.upper().startswith("SELECT"):
            return await conn.fetchval(sql)
        return await conn.execute(sql)
    finally:
        await conn.close()


def test_postgres_starts_keeps_its_data_and_requires_its_password(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path)
    try:
        url = server.start()
        assert url.startswith("postgresql+asyncpg://postgres:") and "@127.0.0.1:" in url
        run_sync(lambda: _query(url, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)"))
        without_password = url.replace(url.split("@")[0], "postgresql+asyncpg://postgres:wrong")
        with pytest.raises(asyncpg.InvalidPasswordError):
            run_sync(lambda: _query(without_password, "SELECT 1"))
        server.stop()
        assert not server.running
        url = server.start()
        assert run_sync(lambda: _query(url, "SELECT x FROM kept")) == 7
        assert (tmp_path / "postgres.password").stat().st_mode & 0o077 == 0
    finally:
        server.stop()


def test_valkey_starts_persists_and_requires_its_password(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path)
    try:
        url = server.start()
        client = Redis.from_url(url)
        client.xadd("s", {"k": "v"})
        client.close()
        anonymous = Redis(host="127.0.0.1", port=server.port)
        with pytest.raises((AuthenticationError, ResponseError)):
            anonymous.ping()
        anonymous.close()
        server.stop()
        url = server.start()
        client = Redis.from_url(url)
        assert client.xlen("s") == 1  # the append-only file kept the stream
        client.close()
    finally:
        server.stop()


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    first = EmbeddedValkey(tmp_path / "a")
    first.start()
    try:
        second = EmbeddedValkey(tmp_path / "b", port=first.port)
        with pytest.raises(ServerStartError, match="exited while starting"):
            second.start(timeout=10)
    finally:
        first.stop()
