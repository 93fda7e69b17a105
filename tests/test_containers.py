"""The stack on servers in containers (testcontainers), where a Docker engine answers.

Without one (as on this project's CI machines) the test is skipped, never an error."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest


def _docker_answers() -> bool:
    """Ask the engine's `/_ping` directly: docker-py leaks a socket when there is none."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    parts = urlsplit(host)
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: object = parts.path
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


@pytest.mark.skipif(not _docker_answers(), reason="no Docker engine answers here")
def test_migrate_and_publish_on_container_servers() -> None:
    from redis import Redis
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    from swarm_orchestrator.migrate import upgrade

    with PostgresContainer("postgres:16-alpine") as pg, RedisContainer("redis:7-alpine") as rd:
        upgrade(pg.get_connection_url().replace("psycopg2", "asyncpg"))
        client = Redis(host=rd.get_container_host_ip(), port=int(rd.get_exposed_port(6379)))
        try:
            client.xadd("swarm:events", {"env": b"{}"})
            assert client.xlen("swarm:events") == 1
        finally:
            client.close()
