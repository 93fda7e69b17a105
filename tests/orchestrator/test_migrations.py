"""Migrations: the newest revision matches the models, and it goes down and up again."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from swarm_orchestrator.db.migrate import alembic_config
from swarm_orchestrator.db.models import Base
from tests.conftest import run_sync_blocking
from tests.servers import (
    Servers,
    create_database,
    database_name,
    drop_database,
    run_sync,
    with_database,
)


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_the_newest_revision_matches_the_models(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == []


@pytest.fixture
def empty_database(servers: Servers) -> Iterator[str]:
    name = database_name("mig")
    run_sync(lambda: create_database(servers.pg_admin_url, name))
    yield with_database(servers.pg_admin_url, name)
    run_sync(lambda: drop_database(servers.pg_admin_url, name))


@pytest.mark.e2e  # runs `swarm migrate` as a real process
def test_swarm_migrate_upgrades_then_downgrade_and_upgrade_again(empty_database: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env["SWARM_DATABASE_URL"] = empty_database
    for _ in range(2):  # a second run is a no-op
        done = subprocess.run(
            [sys.executable, "-m", "swarm_cli", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "newest schema" in done.stderr

    from alembic import command

    config = alembic_config(empty_database)
    run_sync_blocking(command.downgrade, config, "base")
    assert run_sync(lambda: _table_names(empty_database)) == {"alembic_version"}
    run_sync_blocking(command.upgrade, config, "head")
    tables = run_sync(lambda: _table_names(empty_database))
    assert tables == {"alembic_version", *Base.metadata.tables}
    assert {"sessions", "tasks", "attempts", "events", "outbox", "plan_revisions"} <= tables


async def _table_names(url: str) -> set[str]:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()
