"""What every benchmark starts from: the servers the tests use (SWARM_TEST_* URLs, else
127.0.0.1, else embedded), a fresh migrated database, a Redis prefix and a workspace of its
own, and a `Stack` whose processes are stopped, whose database is dropped and whose Redis keys
are deleted afterwards."""

from __future__ import annotations

import contextlib
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import run_sync_blocking  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402
from tests.servers import (  # noqa: E402
    Servers,
    create_database,
    database_name,
    drop_database,
    run_sync,
    with_database,
)

from swarm_orchestrator.db.migrate import upgrade  # noqa: E402

__all__ = ["bench_stack", "forget_keys"]


@contextlib.contextmanager
def bench_stack(name: str = "bench") -> Iterator[tuple[Stack, Path]]:
    """A stack with no process started yet, and a scratch folder for the run."""
    servers = Servers()
    database = database_name(name)
    run_sync(lambda: create_database(servers.pg_admin_url, database))
    try:
        url = with_database(servers.pg_admin_url, database)
        run_sync_blocking(upgrade, url)
        with tempfile.TemporaryDirectory(prefix=f"swarm-{name}-") as tmp:
            root = Path(tmp)
            stack = Stack(
                database_url=url,
                redis_url=servers.redis_url,
                redis_prefix=f"swarm{name}-{uuid.uuid4().hex[:8]}",
                workspace=root / "workspace",
                logs=root / "logs",
            )
            try:
                yield stack, root
            finally:
                stack.stop()
                forget_keys(servers.redis_url, stack.redis_prefix)
    finally:
        run_sync(lambda: drop_database(servers.pg_admin_url, database))
        servers.close()


def forget_keys(redis_url: str, prefix: str) -> int:
    """Delete every Redis key of a run (its streams alone hold tens of thousands of entries);
    return how many there were."""
    store = redis.Redis.from_url(redis_url)
    try:
        found = list(store.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(found), 1000):
            store.unlink(*found[start : start + 1000])
        return len(found)
    finally:
        store.close()
