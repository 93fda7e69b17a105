"""The agent's sandbox (`swarm_adapter.sandbox`): an escape suite of hostile shell tasks, run
through the attempt pipeline with the sandbox on (each escape fails, the task is reported
failed as a command that failed) and off (each escape works: the suite can tell the
difference), and what the sandbox must still let through (git in the worktree, the home,
the allowed hosts, refused connections counted on the attempt)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from swarm_adapter.attempt import AttemptPipeline
from swarm_adapter.main import serve
from swarm_adapter.running import Running
from swarm_adapter.sandbox import Sandboxing, SandboxUnavailable
from swarm_adapter.settings import AdapterSettings
from swarm_common import git
from tests.adapter.helpers import Mirror, message
from tests.adapter.test_attempt import MemoryReporter, shell_pipeline
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(
    Sandboxing.detect("auto", environ=os.environ).mode != "bwrap",
    reason="bubblewrap cannot make a sandbox on this machine",
)

TOKEN = "mirror-remote-token-5f1c9e"
ESCAPED = "ESCAPED-TO-THE-HOST"


def pipeline_for(workspace: Path, reporter: MemoryReporter, mode: str) -> AttemptPipeline:
    sandboxing = Sandboxing.detect("required" if mode == "on" else "off", environ=os.environ)
    return shell_pipeline(workspace, reporter, sandboxing=sandboxing)


async def run(pipeline: AttemptPipeline, mirror: Mirror, prompt: str, **extra: Any) -> Any:
    msg = message(
        mirror, prompt, **{"settings": {"gates": {"lint": "", "test": "", "build": ""}}, **extra}
    )
    running = Running(message=msg, entry_id=b"1-0", worktree=pipeline.worktrees.path(msg))
    try:
        return await pipeline.run(running)
    finally:
        await pipeline.worktrees.remove(msg)


@pytest.fixture
def bystander() -> Iterator[int]:
    """Another process of the adapter's user, with a secret in its environment."""
    proc = subprocess.Popen(
        ["sleep", "300"], env={"PATH": os.environ["PATH"], "BYSTANDER_SECRET": "bystander-7d1"}
    )
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    """A loopback port that answers (the orchestrator's API, say)."""

    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.0 200 OK\r\n\r\nhello\n")
        await w.drain()
        w.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def hostile(workspace: Path, mirror: Mirror, bystander: int, port: int) -> dict[str, str]:
    """Each command prints `ESCAPED` only when its escape worked."""
    other = workspace / "worktrees" / str(mirror.session_id) / "other-1"
    other.mkdir(parents=True, exist_ok=True)
    (other / "secret.txt").write_text("another attempt's work\n")
    git.git(
        "config",
        "--file",
        str(mirror.path / "config"),
        "remote.origin.url",
        f"https://user:{TOKEN}@example.invalid/repo.git",
    )
    outside = Path("/var/tmp") / f"swarm-escape-{mirror.session_id}"
    return {
        "adapter environ": f"grep -qa PATH= /proc/{os.getpid()}/environ && echo {ESCAPED}",
        "other process environ": (
            f"grep -qa BYSTANDER_SECRET /proc/{bystander}/environ && echo {ESCAPED}"
        ),
        "other worktree": f"cat {other}/secret.txt && echo {ESCAPED}",
        "mirror config": f"grep -q {TOKEN} {mirror.path}/config && echo {ESCAPED}",
        "write outside": f"echo x > {outside} && echo {ESCAPED}",
        "write the mirror": f"echo x > {mirror.path}/escape.txt && echo {ESCAPED}",
        "write the root": f"echo x > /escape.txt && echo {ESCAPED}",
        "write a ref": f"echo {'0' * 40} > {mirror.path}/refs/heads/planted && echo {ESCAPED}",
        "move HEAD": (
            "printf 'ref: refs/heads/main\\n' > \"$(git rev-parse --git-dir)/HEAD\" "
            f"&& echo {ESCAPED}"
        ),
        "redis": f"exec 3<>/dev/tcp/127.0.0.1/6379 && echo {ESCAPED}",
        "postgres": f"exec 3<>/dev/tcp/127.0.0.1/5432 && echo {ESCAPED}",
        "api port": f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo {ESCAPED}",
        "any host": f"getent hosts pypi.org && exec 3<>/dev/tcp/pypi.org/443 && echo {ESCAPED}",
    }


CASES = [
    "adapter environ",
    "other process environ",
    "other worktree",
    "mirror config",
    "write outside",
    "write the mirror",
    "write the root",
    "write a ref",
    "move HEAD",
    "redis",
    "postgres",
    "api port",
    "any host",
]


@pytest.mark.parametrize("case", CASES)
async def test_each_escape_fails_inside_the_sandbox(
    workspace: Path, mirror: Mirror, bystander: int, listener: int, case: str
) -> None:
    command = hostile(workspace, mirror, bystander, listener)[case]
    result = await run(pipeline_for(workspace, MemoryReporter(), "on"), mirror, command)
    assert ESCAPED not in result.output_tail, result.output_tail
    assert (result.TYPE, result.reason) == ("task.failed", "exit_code"), result
    assert result.sandbox["mode"] == "bwrap"
    assert not (Path("/var/tmp") / f"swarm-escape-{mirror.session_id}").exists()
    assert not (mirror.path / "escape.txt").exists()
    assert not (mirror.path / "refs" / "heads" / "planted").exists()


@pytest.mark.parametrize("case", CASES)
async def test_each_escape_works_without_the_sandbox(
    workspace: Path, mirror: Mirror, bystander: int, listener: int, case: str
) -> None:
    """The control: the same commands, sandbox off, get out (so the suite can tell)."""
    if case == "any host" and not _reaches("pypi.org", 443):
        pytest.skip("this machine reaches no outside host")
    command = hostile(workspace, mirror, bystander, listener)[case]
    if case == "write the root" and os.access("/", os.W_OK):
        pytest.skip("the adapter's user may write / itself (root): nothing to show")
    result = await run(pipeline_for(workspace, MemoryReporter(), "off"), mirror, command)
    assert ESCAPED in result.output_tail, result
    assert result.sandbox is None
    (Path("/var/tmp") / f"swarm-escape-{mirror.session_id}").unlink(missing_ok=True)


async def test_git_home_and_tmp_work_inside(workspace: Path, mirror: Mirror) -> None:
    """What the agent needs stays: git in its worktree (status, log, add, diff), its home
    and TMPDIR, /tmp, its own processes in /proc, the toolchains of its PATH; and what it
    wrote is committed."""
    command = (
        "set -e; git status --short; git log --oneline -1; echo made > made.txt; git add made.txt;"
        " git diff --cached --stat; echo h > $HOME/h; echo t > $TMPDIR/t; echo s > /tmp/s;"
        " test $(ls /proc | grep -c '^[0-9]') -lt 10; id -u; hostname;"
        " python3 -B -c 'print(6 * 7)'"
    )
    result = await run(pipeline_for(workspace, MemoryReporter(), "on"), mirror, command)
    assert result.TYPE == "task.succeeded", result
    assert result.changed_files == ["made.txt"]
    assert "1000" in result.output_tail and "swarm" in result.output_tail
    assert "42" in result.output_tail  # the PATH's python3 (a pyenv shim here) runs inside


async def test_allowed_hosts_pass_and_refusals_are_counted(workspace: Path, mirror: Mirror) -> None:
    """The proxy lets the session's allowed hosts through (curl reads `https_proxy`) and
    refuses the rest, counted on the attempt: a host not named, and this machine's Redis
    even when named."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    if not _reaches("pypi.org", 443):
        pytest.skip("this machine reaches no outside host")
    command = (
        "curl -sS -o /dev/null -w 'allowed:%{http_code}\\n' https://pypi.org/simple/six/ ; "
        "curl -sS -o /dev/null -w 'refused:%{http_code}\\n' http://example.com/ ; "
        "curl -sS -o /dev/null https://example.com/ || echo tls-refused; "
        "curl -sS -o /dev/null -w 'redis:%{http_code}' --noproxy '' http://127.0.0.1:6379/"
    )
    result = await run(
        pipeline_for(workspace, MemoryReporter(), "on"),
        mirror,
        command,
        settings={
            "gates": {"lint": "", "test": "", "build": ""},
            "sandbox": {"allow_hosts": ["pypi.org", "127.0.0.1:6379"]},
        },
    )
    assert result.TYPE == "task.succeeded", result
    assert "allowed:200" in result.output_tail, result.output_tail
    assert "refused:403" in result.output_tail and "tls-refused" in result.output_tail
    assert "redis:403" in result.output_tail
    assert result.sandbox["allowed"] == 1
    assert result.sandbox["refused"] == 3
    assert result.sandbox["refused_hosts"] == [
        "example.com:80",
        "example.com:443",
        "127.0.0.1:6379",
    ]


def test_required_refuses_to_start_without_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)
    with pytest.raises(SandboxUnavailable, match="not installed"):
        Sandboxing.detect("required", environ={"PATH": "/nonexistent"})
    assert Sandboxing.detect("auto", environ={"PATH": "/nonexistent"}).mode == "none"


def _reaches(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
        return True
    except OSError:
        return False


async def test_a_cancel_reaches_the_command_inside_which_may_end_gracefully(
    workspace: Path, mirror: Mirror
) -> None:
    """SIGTERM goes to the command, not to bubblewrap (which would take the whole sandbox
    down at once): a command that traps it says goodbye."""
    pipeline = pipeline_for(workspace, MemoryReporter(), "on")
    msg = message(
        mirror,
        "trap 'echo graceful-stop; exit 0' TERM; touch started; sleep 30 & wait",
        settings={"gates": {"lint": "", "test": "", "build": ""}},
    )
    running = Running(message=msg, entry_id=b"1-0", worktree=pipeline.worktrees.path(msg))
    task = asyncio.create_task(pipeline.run(running))
    try:
        await wait_until(lambda: (running.worktree / "started").exists(), timeout_s=20)
        running.request_cancel("stop it")
        result: Any = await asyncio.wait_for(task, timeout=20)
    finally:
        await pipeline.worktrees.remove(msg)
    assert (result.TYPE, result.reason) == ("task.cancelled", "stop it")
    assert "graceful-stop" in result.output_tail


async def test_a_timeout_ends_every_process_in_the_sandbox(workspace: Path, mirror: Mirror) -> None:
    """What the command left running in the background goes with it."""
    marker = "317.25"
    command = f"(sleep {marker} &); sleep {marker} & echo started; wait"
    result = await run(
        pipeline_for(workspace, MemoryReporter(), "on"), mirror, command, timeout_s=2
    )
    assert (result.TYPE, result.reason) == ("task.failed", "timeout")
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert left.stdout == "", left.stdout


async def test_no_credential_of_the_adapter_is_inside(
    workspace: Path, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither the agent's environment nor any process it can see holds what the adapter
    holds."""
    secrets = {
        "SWARM_REDIS_URL": "redis://adapter:redis-pass-91c@127.0.0.1:6379/0",
        "OPENAI_API_KEY": "sk-openai-not-for-shell-0123",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    command = "env; cat /proc/[0-9]*/environ | tr '\\0' '\\n'; ls /proc | grep -c '^[0-9]'"
    result = await run(pipeline_for(workspace, MemoryReporter(), "on"), mirror, command)
    assert result.TYPE == "task.succeeded", result
    for value in secrets.values():
        assert value not in result.output_tail
    assert f"SWARM_WORKTREE={workspace}" in result.output_tail


async def test_an_adapter_that_requires_a_sandbox_refuses_to_start_without_one(
    redis_url: str, workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """`SWARM_SANDBOX=required` where bubblewrap is missing: exit 2, saying why."""
    which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name == "bwrap" else which(name, *a, **k)
    )
    settings = AdapterSettings(
        agent="shell",
        redis_url=redis_url,
        workspace=workspace,
        allow_shell_agent=True,
        sandbox="required",
    )
    assert await serve(settings) == 2
    said = capsys.readouterr().err
    assert "SWARM_SANDBOX=required, but bubblewrap (`bwrap`) is not installed" in said
