"""`swarm up` on the embedded default: the demo flows to completion, Ctrl-C stops every
process it started, and a supervisor killed outright takes its children with it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from swarm_cli.local.embedded import free_port
from tests.waiting import eventually, pid_alive

TOKEN = "swarm-up-admin-token-0123456789abcdef"
"""`SWARM_API_TOKEN` of the `swarm up` under test: the orchestrator gets it, adapters must not."""


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (from /proc), including those in other sessions."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def _servers(pids: set[int]) -> list[int]:
    """The embedded PostgreSQL and Valkey among `pids`."""
    return [p for p in pids if any(n in _cmdline(p) for n in (b"postgres", b"valkey-server"))]


def _start_up(tmp_path: Path, port: int, *args: str) -> tuple[subprocess.Popen[str], Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env.update(COLUMNS="200", PYTHONUNBUFFERED="1", SWARM_API_TOKEN=TOKEN)
    output = tmp_path / "up.out"
    with open(output, "w") as handle:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "swarm_cli",
                "up",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / ".swarm"),
                *args,
            ],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    return proc, output


def _wait_for_text(proc: subprocess.Popen[str], output: Path, text: str, timeout_s: float) -> str:
    def printed() -> str | None:
        content = output.read_text()
        if text in content:
            return content
        if proc.poll() is not None:
            raise AssertionError(f"swarm up exited ({proc.returncode}):\n{content}")
        return None

    return eventually(
        printed,
        timeout_s=timeout_s,
        interval_s=0.2,
        message=lambda: f"{text!r} not printed:\n{output.read_text()}",
    )


def test_up_runs_the_demo_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    proc, output = _start_up(tmp_path, port, "--demo", "--adapters", "shell=2")
    try:
        text = _wait_for_text(proc, output, "Swarm keeps serving", timeout_s=120)
        assert f"Swarm is up: http://127.0.0.1:{port}" in text
        assert "PostgreSQL   embedded" in text and "Valkey       embedded" in text
        assert "Demo finished: 6/6 tasks succeeded" in text
        assert "password" not in text.lower()
        children = _descendants(proc.pid)
        assert len(children) >= 5  # postgres, valkey, orchestrator, two adapters
        adapters = [p for p in children if b"adapter" in _cmdline(p)]
        assert len(adapters) == 2
        for pid in adapters:
            assert _environ(pid)["SWARM_ALLOW_SHELL_AGENT"] == "true"
        [orchestrator] = [p for p in children if b"swarm_cli\x00server\x00" in _cmdline(p)]
        data = tmp_path / ".swarm"
        secrets = [TOKEN, (data / "postgres.password").read_text().strip()]
        for user in ("orchestrator", "adapter"):  # the Redis passwords are never printed
            password = (data / f"valkey-{user}.password").read_text().strip()
            assert len(password) >= 24 and password not in text
            secrets.append(password)
        # No Swarm process keeps a secret where another process of the user can read it:
        # the bootstrap token, the database and Redis passwords were taken out of each
        # one's environment (swarm_common.concealed), swarm up's own included.
        for pid in [proc.pid, orchestrator, *adapters, *_servers(children)]:
            raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
            held = [name for name in ("SWARM_API_TOKEN", "SWARM_REDIS_URL") if name in raw]
            assert held == [] and not any(s in raw for s in secrets), (pid, held)
        sessions = httpx.get(
            f"http://127.0.0.1:{port}/v1/sessions", headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()
        assert sessions[0]["counts"] == {"succeeded": 6}
        # The admin token swarm up made for the local user: kept 0600, never printed, and
        # what `swarm` commands run beside it use (the demo submitted with it).
        token_file = tmp_path / ".swarm" / "admin.token"
        admin = token_file.read_text().strip()
        assert token_file.stat().st_mode & 0o777 == 0o600 and admin not in text
        assert str(token_file) in text
        who = httpx.get(
            f"http://127.0.0.1:{port}/v1/whoami", headers={"Authorization": f"Bearer {admin}"}
        )
        assert who.json() == {"name": "local-admin", "role": "admin", "tenant": None}
        events = httpx.get(
            f"http://127.0.0.1:{port}/v1/sessions/{sessions[0]['id']}/events",
            headers={"Authorization": f"Bearer {admin}"},
        ).json()
        assert events[0]["actor"] == "token:local-admin"
        status = subprocess.run(
            [sys.executable, "-m", "swarm_cli", "status", "--json"],
            env={k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
            | {"SWARM_API_URL": f"http://127.0.0.1:{port}"},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert status.returncode == 0, status.stderr

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0
        assert "Stopped." in output.read_text()
        alive = [pid for pid in children if pid_alive(pid)]
        assert alive == [], f"left running: {alive}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_supervisor_killed_outright_takes_its_children_with_it(tmp_path: Path) -> None:
    port = free_port()
    proc, output = _start_up(tmp_path, port, "--adapters", "shell=1")
    try:
        _wait_for_text(proc, output, "Swarm is up", timeout_s=120)
        children = _descendants(proc.pid)
        assert len(children) >= 4
        proc.kill()
        proc.wait()
        eventually(
            lambda: not any(pid_alive(p) for p in children),
            timeout_s=30,
            interval_s=0.2,
            message=lambda: f"still alive: {[p for p in children if pid_alive(p)]}",
        )
    finally:
        for pid in _descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _swarm_up_once(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`swarm up` expected to refuse its arguments and exit at once."""
    return subprocess.run(
        [sys.executable, "-m", "swarm_cli", "up", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("SWARM_")},
    )


def test_up_refuses_a_bad_adapters_flag(tmp_path: Path) -> None:
    result = _swarm_up_once(tmp_path, "--adapters", "robot=2")
    assert result.returncode == 1
    assert "unknown agent kind 'robot'" in result.stderr
    assert not (tmp_path / ".swarm").exists()


def test_up_says_so_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _swarm_up_once(tmp_path, "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert not (tmp_path / ".swarm" / "postgres").exists()
