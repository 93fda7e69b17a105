"""`bench/cpu.py` against real processes: a group's CPU seconds are those spent between the
two reads, by its processes and the ones below them; PostgreSQL backends are found by the
database they serve; Redis says its own."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis as redis_client
from cpu import Meter, backends_of, per_task, tree

from tests.servers import run_sync

CHILD = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
"""A process that spends 0.3 s of CPU and ends."""

BURNER = textwrap.dedent(
    f"""
    import subprocess, sys, time

    for line in sys.stdin:
        what = line.split()
        if what[0] == "burn":
            end = time.process_time() + float(what[1])
            while time.process_time() < end:
                pass
        elif what[0] == "child":  # a child that burns, ended and waited for
            subprocess.run([sys.executable, "-c", {CHILD!r}], check=True)
        print("done", flush=True)
    """
)


@pytest.fixture
def burner() -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        [sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            yield proc
        finally:
            proc.kill()


def _ask(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_group_counts_what_its_processes_spent_between_the_reads(
    burner: subprocess.Popen[str],
) -> None:
    _ask(burner, "burn 0.5")  # before the meter starts: not counted
    meter = Meter(groups={"burner": [burner.pid]})
    meter.start()
    _ask(burner, "burn 0.3")
    _ask(burner, "child")  # 0.3 s more, in a child process that ended
    spent = meter.stop()
    assert 0.5 <= spent["burner"] < 1.0
    assert spent["client"] >= 0 and "postgres" not in spent and "redis" not in spent
    assert tree([burner.pid]) == {burner.pid}  # the child ended


def test_per_task_divides_each_group_and_their_sum() -> None:
    figures = per_task({"orchestrator": 2.0, "postgres": 1.0}, 1000)
    assert figures == {
        "cpu_orchestrator_s_per_task": 0.002,
        "cpu_postgres_s_per_task": 0.001,
        "cpu_s_per_task": 0.003,
    }


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_postgres_backends_are_found_by_their_database_and_redis_says_its_own(
    database_url: str, redis_url: str
) -> None:
    database = urlsplit(database_url).path.lstrip("/")
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")

    store = redis_client.Redis.from_url(redis_url)
    meter = Meter(database=database, redis=store)

    async def work() -> dict[str, float]:
        connection = await asyncpg.connect(dsn)
        try:
            pid = int(await connection.fetchval("SELECT pg_backend_pid()"))
            assert pid in backends_of(database)
            assert pid not in backends_of(database + "_other")
            meter.start()
            await connection.execute("SELECT count(*) FROM generate_series(1, 3000000)")
            store.ping()
            return meter.stop()
        finally:
            await connection.close()

    try:
        spent = run_sync(work)
    finally:
        store.close()
    assert spent["postgres"] >= 0.1  # counting 3,000,000 rows
    assert spent["redis"] >= 0
