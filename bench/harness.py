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
    forget_keys,
    run_sync,
    with_database,
)

from swarm_common.streams import Keys  # noqa: E402
from swarm_orchestrator.db.migrate import upgrade  # noqa: E402

__all__ = ["bench_stack"]


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
                with redis.Redis.from_url(servers.redis_url) as store:
                    forget_keys(store, Keys(stack.redis_prefix).all_match)
    finally:
        run_sync(lambda: drop_database(servers.pg_admin_url, database))
        servers.close()
