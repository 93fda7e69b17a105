"""What the chaos scenarios share: a network partition to put between a process and
Redis, the agent processes of the workspace, and the audit of a finished run (every
task succeeded exactly once, nothing duplicated)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from swarm_cli.local.embedded import free_port
from swarm_common import git
from tests.waiting import eventually

__all__ = ["Partition", "RunAudit", "agent_pids", "audit_run", "graph", "wait_done"]


class Partition:
    """A TCP proxy to the Redis at `target_url` that can stop carrying bytes while keeping
    every connection open, as a network partition does (nothing is refused, nothing
    arrives)."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self.target = int(parts.port or 6379)
        self.port = free_port()
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        self.url = urlunsplit(parts._replace(netloc=netloc))
        self.cut = threading.Event()
        self._closed = threading.Event()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, dest: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self.cut.is_set() and not self._closed.is_set():
                    time.sleep(0.02)
                dest.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, dest):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._closed.set()
        self._server.close()


def agent_pids(workspace: Path) -> set[int]:
    """Processes run for attempts in `workspace`: every agent, gate and setup process
    carries `SWARM_WORKTREE=<workspace>/worktrees/...` in its environment."""
    needle = f"SWARM_WORKTREE={workspace.resolve()}/worktrees/".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if environ.startswith(needle) or b"\0" + needle in environ:
            found.add(int(entry.name))
    return {pid for pid in found if _alive(pid)}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def graph(count: int, *, prompt: str, width: int = 5) -> list[dict[str, Any]]:
    """`count` tasks in layers of `width`; each task after the first layer depends on one
    or two tasks of the layer before."""
    tasks = []
    for i in range(count):
        layer, slot = divmod(i, width)
        deps = []
        if layer:
            before = (layer - 1) * width
            deps = sorted({f"t{before + slot:03d}", f"t{before + (slot + 1) % width:03d}"})
        key = f"t{i:03d}"
        tasks.append({"key": key, "depends_on": deps, "title": key, "prompt": prompt})
    return tasks


@dataclass
class RunAudit:
    tasks: int
    succeeded: int
    attempts: Counter[str]
    lost_work: int
    duplicated: int
    ran_to_end: Counter[str]
    """How many times each task's agent reached its last line."""

    def summary(self) -> str:
        return json.dumps(
            {
                "tasks": self.tasks,
                "succeeded": self.succeeded,
                "attempts": dict(self.attempts),
                "lost_work": self.lost_work,
                "duplicated": self.duplicated,
                "reran_after_finishing": sum(n - 1 for n in self.ran_to_end.values() if n > 1),
            }
        )


def audit_run(
    client: httpx.Client, *, session_id: str, mirror: Path, end_log: Path | None = None
) -> RunAudit:
    """Check the invariants of a finished run and count what was lost or duplicated:

    - every task succeeded, with exactly one succeeded attempt;
    - its branch holds exactly one commit of the task since the base (no attempt committed
      twice) and that commit is the task's result;
    - the integration branch holds exactly one merge of each task;
    - an agent that reached its end more than once did so only in attempts that were lost
      (its adapter died after the agent finished, before it could report).
    """
    tasks = client.get(f"/v1/sessions/{session_id}/tasks").json()
    session = client.get(f"/v1/sessions/{session_id}").json()
    base = session["base_commit"]
    integration = f"swarm/{session_id}/integration"
    merged = Counter(
        line.removeprefix("Swarm-Task: ").strip()
        for line in git.git(
            "log", "--merges", "--format=%(trailers:key=Swarm-Task)", integration, git_dir=mirror
        ).stdout.splitlines()
        if line.strip()
    )
    ends: dict[str, list[int]] = {}
    if end_log is not None and end_log.exists():
        for line in end_log.read_text().splitlines():
            key, attempt = line.split()
            ends.setdefault(key, []).append(int(attempt))
    attempts: Counter[str] = Counter()
    lost_work = duplicated = 0
    for task in tasks:
        detail = client.get(f"/v1/tasks/{task['id']}").json()
        statuses = [a["status"] for a in detail["attempts"]]
        attempts.update(statuses)
        key = task["key"]
        if task["status"] != "succeeded" or statuses.count("succeeded") != 1:
            lost_work += task["status"] != "succeeded"
            duplicated += statuses.count("succeeded") > 1
            continue
        branch = f"swarm/{session_id}/task/{key}"
        own = git.git(
            "log",
            "--format=%H",
            "--grep",
            f"Swarm-Task: {key}$",
            f"{base}..{branch}",
            git_dir=mirror,
        ).stdout.split()
        duplicated += len(own) != 1 or own[0] != detail["result"]["commit"]
        duplicated += merged[key] != 1
        lost_attempts = {a["number"] for a in detail["attempts"] if a["status"] == "lost"}
        [won] = [a["number"] for a in detail["attempts"] if a["status"] == "succeeded"]
        ran = ends.get(key, [])
        if end_log is not None:
            duplicated += ran.count(won) != 1
            duplicated += any(n != won and n not in lost_attempts for n in ran)
            duplicated += len(ran) != len(set(ran))
    ran_to_end = Counter({k: len(v) for k, v in ends.items()})
    return RunAudit(
        tasks=len(tasks),
        succeeded=sum(t["status"] == "succeeded" for t in tasks),
        attempts=attempts,
        lost_work=lost_work,
        duplicated=duplicated,
        ran_to_end=ran_to_end,
    )


def wait_done(client: httpx.Client, session_id: str, timeout_s: float) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def done() -> dict[str, Any] | None:
        try:
            last.update(client.get(f"/v1/sessions/{session_id}").json())
        except httpx.TransportError:  # the orchestrator is restarting
            return None
        return last if last.get("done") else None

    return eventually(
        done,
        timeout_s=timeout_s,
        interval_s=0.2,
        message=lambda: f"session not done: {last.get('counts')}",
    )
