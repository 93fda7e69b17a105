"""The stack on servers in containers (testcontainers), where a Docker engine answers.

Without one (as on this project's CI machines) the test is skipped, never an error."""

from __future__ import annotations

import pytest

from tests.servers import docker_answers


@pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers here")
def test_migrate_and_publish_on_container_servers() -> None:
    from redis import Redis
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    from swarm_orchestrator.db.migrate import upgrade

    with PostgresContainer("postgres:16-alpine") as pg, RedisContainer("redis:7-alpine") as rd:
        upgrade(pg.get_connection_url().replace("psycopg2", "asyncpg"))
        client = Redis(host=rd.get_container_host_ip(), port=int(rd.get_exposed_port(6379)))
        try:
            client.xadd("swarm:events", {"env": b"{}"})
            assert client.xlen("swarm:events") == 1
        finally:
            client.close()
