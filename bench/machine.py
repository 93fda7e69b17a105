"""The machine a run measured: CPU, cores, memory, load at the start, kernel, Python, git,
PostgreSQL, Redis and Celery versions, and the commit of the code measured."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers import Servers, run_sync  # noqa: E402

__all__ = ["describe", "summary"]

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _run(*args: str) -> str:
    try:
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return proc.stdout.strip()


def _libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _servers() -> dict[str, str]:
    import asyncpg

    servers = Servers()
    try:

        async def pg() -> str:
            conn = await asyncpg.connect(_libpq(servers.pg_admin_url), timeout=10)
            try:
                return str(await conn.fetchval("SHOW server_version"))
            finally:
                await conn.close()

        client = redis.Redis.from_url(servers.redis_url)
        try:
            info = client.info("server")
        finally:
            client.close()
        name = "Valkey" if "valkey_version" in info else "Redis"
        return {
            "postgresql": run_sync(pg),
            "redis": f"{name} {info.get('valkey_version') or info.get('redis_version')}",
        }
    finally:
        servers.close()


def describe() -> dict[str, Any]:
    try:
        from celery import __version__ as celery_version  # type: ignore[import-untyped]
    except ImportError:
        celery_version = None
    dirty = bool(_run("git", "status", "--porcelain", "--untracked-files=no"))
    return {
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.platform(),
        "python": platform.python_version(),
        "git": _run("git", "--version").removeprefix("git version "),
        "celery": celery_version,
        "commit": _run("git", "rev-parse", "--short", "HEAD") + (" (modified)" if dirty else ""),
        **_servers(),
    }


def summary(machine: dict[str, Any]) -> str:
    """One line for the Markdown report."""
    return (
        f"{machine['cores']} cores ({machine['cpu']}), {machine['memory_gb']} GB, "
        f"load {machine['load_at_start'][0]} at start; {machine['kernel']}; "
        f"Python {machine['python']}, git {machine['git']}, PostgreSQL "
        f"{machine['postgresql']}, {machine['redis']}, Celery {machine['celery']}; "
        f"commit {machine['commit']}"
    )
