"""Swarm's services as real processes for end-to-end tests: the orchestrator (`swarm
server`) and adapters (`swarm adapter`), on the test's database, Redis prefix and workspace.
Their logs are kept under the test's folder and shown when a test fails."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from swarm_cli.local.embedded import free_port
from tests.waiting import eventually

__all__ = ["AUTH", "TEST_TOKEN", "Stack", "stopped_after"]

TEST_TOKEN = "swarm-e2e-admin-token-0123456789"
"""The orchestrator's bootstrap admin token (`SWARM_API_TOKEN`) in tests."""
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


@dataclass
class Stack:
    database_url: str
    redis_url: str
    redis_prefix: str
    workspace: Path
    logs: Path
    port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
        env.update(
            SWARM_DATABASE_URL=self.database_url,
            SWARM_REDIS_URL=self.redis_url,
            SWARM_REDIS_PREFIX=self.redis_prefix,
            SWARM_WORKSPACE=str(self.workspace),
            SWARM_LOCAL_REPO_ROOTS=str(self.workspace.parent),
            SWARM_SWEEP_INTERVAL_S="1",
            SWARM_HEARTBEAT_INTERVAL_S="1",
            SWARM_READ_BLOCK_MS="200",
            SWARM_API_TOKEN=TEST_TOKEN,
            SWARM_ALLOW_SHELL_AGENT="true",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def spawn(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "swarm_cli", *args],
                env=self.env(**env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def start_orchestrator(self, timeout_s: float = 30.0, **env: str) -> None:
        proc = self.spawn(
            "orchestrator", "server", "--host", "127.0.0.1", "--port", str(self.port), **env
        )

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"orchestrator exited:\n{self.log('orchestrator')}")
            try:
                return httpx.get(f"{self.api_url}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        eventually(
            ready,
            timeout_s=timeout_s,
            message=lambda: f"orchestrator not ready:\n{self.log('orchestrator')}",
        )

    def start_adapter(
        self, name: str, *, agent: str = "shell", concurrency: int = 1, **env: str
    ) -> None:
        """A `swarm adapter` process. A shell adapter runs without the sandbox unless `env`
        says otherwise: these tests' shell tasks leave marks (pids, logs) in the test's own
        folders, which the sandbox hides; the agent kinds run their real CLIs in it, as in
        production (`tests/adapter/test_sandbox.py` tests the sandbox itself)."""
        if agent == "shell":
            env.setdefault("SWARM_SANDBOX", "off")
        self.spawn(
            name,
            "adapter",
            "--agent",
            agent,
            "--concurrency",
            str(concurrency),
            SWARM_WORKER_NAME=name,
            **env,
        )

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url,
            timeout=30,
            headers=AUTH,
        )


@contextlib.contextmanager
def stopped_after(stack: Stack, request: pytest.FixtureRequest) -> Iterator[None]:
    """Stop every process of `stack` at the end, and print their logs if the test failed."""
    try:
        yield
    finally:
        stack.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for name in stack.procs:
                print(f"--- {name} ---\n{stack.log(name)}")  # noqa: T201 - shown on failure
