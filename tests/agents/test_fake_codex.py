"""The real Codex CLI (`codex exec --json`, pinned in `clis.py`) against the fake Responses
API of `fake_codex.py`, fully offline: a file edit lands in a git worktree, and each failure
mode ends the way the adapter will see it.

The setup here is the measured minimum for a quiet, isolated, bounded run:
- a clean environment: PATH, HOME and CODEX_HOME (fresh folders) and the provider's key;
- `config.toml` in CODEX_HOME turning off the update check, analytics (`ab.chatgpt.com`),
  plugins (`chatgpt.com`, `api.github.com`), the shell snapshot (it captured the whole
  environment, key included, into `CODEX_HOME/shell_snapshots/`), unbounded reconnects to a
  dead server, and passing *KEY*/*SECRET*/*TOKEN* variables to the agent's commands;
- a provider with `request_max_retries=0`, `stream_max_retries=0` so errors end at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.agents import fake_codex
from tests.agents.clis import install
from tests.agents.fakeserver import FakeModelServer, Scenario
from tests.waiting import eventually

log = logging.getLogger(__name__)

KEY = "sk-test-fakecodex-0123456789abcdef"
KEY_VAR = "SWARM_FAKE_OPENAI_KEY"
PROVIDER = "swarmfake"

CONFIG_TOML = """\
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false
shell_snapshot = false
unbounded_connection_retries = false

[shell_environment_policy]
ignore_default_excludes = false
"""


@pytest.fixture(scope="session")
def codex() -> Path:
    return install("codex")


def provider(
    base_url: str,
    *,
    request_retries: int = 0,
    stream_retries: int = 0,
    idle_timeout_ms: int = 10_000,
) -> str:
    return (
        f'{{name="Swarm fake",base_url="{base_url}",env_key="{KEY_VAR}",'
        f'wire_api="responses",request_max_retries={request_retries},'
        f"stream_max_retries={stream_retries},stream_idle_timeout_ms={idle_timeout_ms}}}"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Run:
    argv: list[str]
    env: dict[str, str]
    home: Path
    codex_home: Path
    worktree: Path
    proc: subprocess.Popen[str] | None = None
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None
    seconds: float = 0.0
    started: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    def start(self) -> Run:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: a kill takes the whole tree
        )
        return self

    def wait(self, timeout_s: float = 60) -> Run:
        assert self.proc is not None
        try:
            self.stdout, self.stderr = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            raise
        return self._finish()

    def kill(self, sig: signal.Signals = signal.SIGTERM) -> Run:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.stdout, self.stderr = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.stdout, self.stderr = self.proc.communicate()
        self.leftovers += kill_leftovers(self.worktree)
        return self._finish()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _finish(self) -> Run:
        assert self.proc is not None
        self.returncode = self.proc.returncode
        self.seconds = time.monotonic() - self.started
        self.events = [json.loads(line) for line in self.stdout.splitlines() if line.strip()]
        return self

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def items(self, kind: str, event: str = "item.completed") -> list[dict[str, Any]]:
        return [e["item"] for e in self.events if e["type"] == event and e["item"]["type"] == kind]

    def error_message(self) -> str:
        failed = [e for e in self.events if e["type"] == "turn.failed"]
        assert failed, self.stdout
        return str(failed[-1]["error"]["message"])


def kill_leftovers(worktree: Path) -> list[str]:
    """SIGKILL what a killed run left behind, returning the command lines.

    Codex's sandbox helper (`codex-linux-sandbox`, then `bwrap --new-session`) runs in
    sessions of its own, outside the process group that `Run.kill` signals. Rarely (seen once
    in ~20 suite runs) a kill during a tool call orphans it, blocked for good; the `bwrap`
    child is PID 1 of its namespace and ignores SIGTERM. Found by session: every process in
    a session whose member names the worktree on its command line.
    """
    marker = str(worktree).encode()
    sessions: dict[int, list[tuple[int, bytes]]] = {}
    named: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
            session = int(stat.rsplit(")", 1)[1].split()[3])
        except (OSError, ValueError, IndexError):
            continue
        sessions.setdefault(session, []).append((int(entry.name), cmdline))
        if marker in cmdline:
            named.add(session)
    killed = []
    for session in named:
        for pid, cmdline in sessions[session]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(cmdline.replace(b"\0", b" ").decode(errors="replace")[:200])
    return killed


@pytest.fixture
def make_run(codex: Path, tmp_path: Path) -> Any:
    runs: list[Run] = []

    def make(
        base_url: str,
        prompt: str = "Write the file.",
        *,
        extra: list[str] | None = None,
        provider_toml: str | None = None,
    ) -> Run:
        root = tmp_path / f"run{len(runs)}"
        home, codex_home, worktree = root / "home", root / "codex_home", root / "wt"
        for folder in (home, codex_home, worktree):
            folder.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", str(worktree)], check=True, timeout=30)
        (codex_home / "config.toml").write_text(CONFIG_TOML)
        argv = [
            str(codex), "exec", "--json", "--skip-git-repo-check", "--ephemeral",
            "-C", str(worktree), "--sandbox", "workspace-write", "-m", fake_codex.MODEL,
            "-c", f"model_provider={PROVIDER}",
            "-c", f"model_providers.{PROVIDER}={provider_toml or provider(base_url)}",
            *(extra or []), prompt,
        ]  # fmt: skip
        # A TMPDIR, as the adapter gives (`runners.base.task_env`): without one, Codex's own
        # sandbox, once it uses the system's bubblewrap (`make test` installs it), fails with
        # `bwrap: execvp codex-linux-sandbox: No such file or directory`.
        (root / "tmp").mkdir()
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(home),
            "TMPDIR": str(root / "tmp"),
            "CODEX_HOME": str(codex_home),
            KEY_VAR: KEY,
        }
        run = Run(argv, env, home, codex_home, worktree)
        runs.append(run)
        return run

    yield make
    for run in runs:
        if run.running():
            run.kill(signal.SIGKILL)
        else:
            run.leftovers += kill_leftovers(run.worktree)
        if run.leftovers:
            log.warning("killed leftover sandbox processes: %s", run.leftovers)


def assert_key_not_leaked(run: Run) -> None:
    assert KEY not in run.stdout
    assert KEY not in run.stderr
    for root in (run.home, run.codex_home):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert KEY.encode() not in path.read_bytes(), path


def assert_started(run: Run) -> None:
    assert run.types()[:2] == ["thread.started", "turn.started"], run.stdout
    assert run.events[0]["thread_id"]


# --- success -------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["apply_patch", "exec_command"])
def test_write_file(make_run: Any, monkeypatch: pytest.MonkeyPatch, tool: str) -> None:
    monkeypatch.setattr(fake_codex, "WRITE_TOOL", tool)
    scenario = Scenario(
        mode="write_file",
        file="notes/hello.txt" if tool == "apply_patch" else "hello.txt",
        content="hello from 'the' agent\nline 2\n",
    )
    with FakeModelServer(scenario) as server:
        run = make_run(f"{server.url}/v1").start().wait()
        requests = list(server.state.requests)

    assert run.returncode == 0, run.stderr
    assert (run.worktree / scenario.file).read_text() == scenario.content
    assert_started(run)
    if tool == "apply_patch":
        [change] = run.items("file_change")
        assert change["status"] == "completed"
        assert change["changes"] == [{"path": str(run.worktree / scenario.file), "kind": "add"}]
    else:
        [command] = run.items("command_execution")
        assert command["exit_code"] == 0
        assert command["status"] == "completed"
        assert "printf" in command["command"]
    [message] = run.items("agent_message")
    assert message["text"] == scenario.reply
    assert run.types()[-1] == "turn.completed"
    # Codex sums the usage of the turn's two model requests.
    assert run.events[-1]["usage"] == {
        "input_tokens": 2 * scenario.input_tokens,
        "cached_input_tokens": 2 * scenario.cached_tokens,
        "cache_write_input_tokens": 0,
        "output_tokens": 2 * scenario.output_tokens,
        "reasoning_output_tokens": 0,
    }

    # The wire: two streamed requests, the second carrying the tool result.
    assert [r["path"] for r in requests] == ["/v1/responses", "/v1/responses"]
    first, second = (r["body"] for r in requests)
    assert first["model"] == fake_codex.MODEL and first["stream"] is True
    assert not fake_codex.tool_outputs(first)
    [output] = fake_codex.tool_outputs(second)
    expected = "custom_tool_call_output" if tool == "apply_patch" else "function_call_output"
    assert output["type"] == expected
    assert requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert f"<cwd>{run.worktree}</cwd>" in json.dumps(first["input"])

    assert_key_not_leaked(run)
    assert not any(run.home.iterdir())  # Codex writes only under CODEX_HOME
    assert not list(run.codex_home.glob("sessions"))  # --ephemeral: no rollout files


def test_agent_commands_do_not_see_the_key(make_run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fake_codex, "shell_write_command", lambda _scenario: "env > env.txt")
    monkeypatch.setattr(fake_codex, "WRITE_TOOL", "exec_command")
    with FakeModelServer(Scenario(mode="write_file")) as server:
        run = make_run(f"{server.url}/v1").start().wait()
    assert run.returncode == 0, run.stderr
    seen = (run.worktree / "env.txt").read_text()
    assert "CODEX_HOME=" in seen
    assert KEY_VAR not in seen and KEY not in seen


def test_text_with_output_schema(make_run: Any, tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "summary": {"type": "string"}},
        "required": ["ok", "summary"],
        "additionalProperties": False,
    }
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    reply = json.dumps({"ok": True, "summary": "nothing to do"})
    scenario = Scenario(mode="text", reply=reply)
    with FakeModelServer(scenario) as server:
        run = (
            make_run(
                f"{server.url}/v1",
                "Check the repository.",
                extra=[
                    "--output-schema",
                    str(tmp_path / "schema.json"),
                    "-o",
                    str(tmp_path / "last.txt"),
                ],
            )
            .start()
            .wait()
        )
        requests = list(server.state.requests)

    assert run.returncode == 0, run.stderr
    assert run.types() == ["thread.started", "turn.started", "item.completed", "turn.completed"]
    assert json.loads(run.items("agent_message")[0]["text"]) == {
        "ok": True,
        "summary": "nothing to do",
    }
    assert (tmp_path / "last.txt").read_text() == reply
    assert run.events[-1]["usage"]["input_tokens"] == scenario.input_tokens
    assert run.events[-1]["usage"]["cached_input_tokens"] == scenario.cached_tokens
    assert run.events[-1]["usage"]["output_tokens"] == scenario.output_tokens
    [request] = requests
    assert request["body"]["text"]["format"] == {
        "type": "json_schema",
        "strict": True,
        "schema": schema,
        "name": "codex_output_schema",
    }


# --- failures ------------------------------------------------------------------------------


def assert_failed(run: Run) -> None:
    assert run.returncode == 1, (run.returncode, run.stdout, run.stderr)
    assert_started(run)
    assert run.types()[-2:] == ["error", "turn.failed"], run.stdout
    assert run.events[-2]["message"] == run.error_message()
    assert "turn.completed" not in run.types()
    assert_key_not_leaked(run)


def test_rate_limit(make_run: Any) -> None:
    with FakeModelServer(Scenario(mode="rate_limit", reset_after_s=1234)) as server:
        run = make_run(f"{server.url}/v1").start().wait()
        requests = len(server.state.requests)
    assert_failed(run)
    assert run.error_message() == "exceeded retry limit, last status: 429 Too Many Requests"
    assert "1234" not in run.stdout + run.stderr  # the reset time is not shown
    assert requests == 1


def test_rate_limit_waits_retry_after(make_run: Any) -> None:
    with FakeModelServer(Scenario(mode="rate_limit", reset_after_s=1)) as server:
        run = (
            make_run(
                f"{server.url}/v1", provider_toml=provider(f"{server.url}/v1", stream_retries=1)
            )
            .start()
            .wait()
        )
        requests = len(server.state.requests)
    assert_failed(run)
    assert requests == 2
    reconnect = [e["message"] for e in run.events if e["type"] == "error"]
    assert reconnect[0] == (
        "Reconnecting... 1/1 (exceeded retry limit, last status: 429 Too Many Requests)"
    )
    assert run.seconds >= 1.0  # it waited `retry-after` before the retry


def test_usage_limit_shows_reset_time(make_run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fake_codex, "RATE_LIMIT_STYLE", "chatgpt")
    with FakeModelServer(Scenario(mode="rate_limit", reset_after_s=3600)) as server:
        run = make_run(f"{server.url}/v1").start().wait()
    assert_failed(run)
    message = run.error_message()
    assert message.startswith("You’ve hit your usage limit."), message
    assert "try again at " in message


def test_auth_error(make_run: Any) -> None:
    with FakeModelServer(Scenario(mode="auth_error")) as server:
        run = make_run(f"{server.url}/v1").start().wait()
        requests = len(server.state.requests)
    assert_failed(run)
    message = run.error_message()
    assert message.startswith("unexpected status 401 Unauthorized: Incorrect API key provided")
    assert message.endswith(f"url: {server.url}/v1/responses")
    assert requests == 1


def test_server_error(make_run: Any) -> None:
    with FakeModelServer(Scenario(mode="server_error")) as server:
        run = make_run(f"{server.url}/v1").start().wait()
        requests = len(server.state.requests)
    assert_failed(run)
    # Codex replaces the server's message with its own.
    assert run.error_message() == (
        "We’re currently experiencing high demand, which may cause temporary errors."
    )
    assert requests == 1


def test_server_unreachable(make_run: Any) -> None:
    run = make_run(f"http://127.0.0.1:{free_port()}/v1").start().wait()
    assert_failed(run)
    assert run.error_message() == "Connection failed: error sending request"


def test_server_unreachable_with_unbounded_retries(make_run: Any) -> None:
    """Codex's default (feature `unbounded_connection_retries`): it never gives up."""
    run = make_run(
        f"http://127.0.0.1:{free_port()}/v1",
        extra=["--enable", "unbounded_connection_retries"],
    ).start()
    time.sleep(4)  # the point is that nothing happens: no deadline to wait for
    assert run.running()
    run.kill()
    assert "turn.failed" not in run.types()
    assert run.events[-1] == {
        "type": "error",
        "message": "Reconnecting... waiting for network (Connection failed: error sending request)",
    }


def test_hang_waits_forever(make_run: Any) -> None:
    """No response headers: neither retries nor `stream_idle_timeout_ms` (2 s here) apply."""
    with FakeModelServer(Scenario(mode="hang")) as server:
        run = make_run(
            f"{server.url}/v1", provider_toml=provider(f"{server.url}/v1", idle_timeout_ms=2000)
        ).start()
        eventually(lambda: len(server.state.requests) == 1, timeout_s=30, message="the request")
        time.sleep(4)
        assert run.running()
        run.kill()
    assert run.returncode == -signal.SIGTERM
    assert run.types() == ["thread.started", "turn.started"]


def test_loop_tools_has_no_turn_limit(make_run: Any) -> None:
    with FakeModelServer(Scenario(mode="loop_tools")) as server:
        run = make_run(f"{server.url}/v1").start()
        eventually(
            lambda: len(server.state.requests) >= 15, timeout_s=60, message="15 model requests"
        )
        assert run.running()
        run.kill()
    assert run.returncode == -signal.SIGTERM
    assert "turn.completed" not in run.types() and "turn.failed" not in run.types()
    commands = run.items("command_execution")
    assert len(commands) >= 14
    assert all(c["command"] == "/bin/bash -lc true" and c["exit_code"] == 0 for c in commands)


# --- the sandbox ---------------------------------------------------------------------------


def test_sandbox_denies_writes_outside_the_worktree(
    make_run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`workspace-write` works as root here. It lets the agent write /tmp too, unless told."""
    monkeypatch.setattr(fake_codex, "WRITE_TOOL", "exec_command")
    outside = tmp_path / "outside.txt"
    with FakeModelServer(Scenario(mode="write_file", file=str(outside))) as server:
        run = (
            make_run(
                f"{server.url}/v1",
                extra=[
                    "-c",
                    "sandbox_workspace_write.exclude_slash_tmp=true",
                    "-c",
                    "sandbox_workspace_write.exclude_tmpdir_env_var=true",
                ],
            )
            .start()
            .wait()
        )
        requests = list(server.state.requests)
    assert run.returncode == 0, run.stderr
    assert not outside.exists()
    [output] = fake_codex.tool_outputs(requests[-1]["body"])
    assert "Read-only file system" in output["output"]
    # A command the sandbox refused leaves no command_execution item on stdout.
    assert run.types() == ["thread.started", "turn.started", "item.completed", "turn.completed"]
