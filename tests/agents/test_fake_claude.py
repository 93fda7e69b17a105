"""The real Claude Code CLI (pinned in `clis.py`) against the fake Anthropic API of
`fake_claude.py`, fully offline: one headless run per scenario in a fresh git repository,
with a clean environment, its own HOME and CLAUDE_CONFIG_DIR, stdin /dev/null and its own
process group. The assertions pin down how the CLI reports each outcome on stdout (JSON lines)
and by exit code, which is what the adapter relies on."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agents.clis import install
from tests.agents.fakeserver import FakeModelServer, Scenario
from tests.waiting import eventually

API_KEY = "sk-ant-test-0123456789abcdefSECRET"
RUN_TIMEOUT_S = 60
ALLOWED_TOOLS = "Write Edit Read Bash"


@pytest.fixture(scope="module")
def claude() -> Path:
    return install("claude")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    repo: Path
    home: Path
    config: Path

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def result(self) -> dict[str, Any]:
        last = self.events[-1]
        assert last["type"] == "result", last
        return last

    def of_type(self, kind: str, subtype: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["type"] == kind and (subtype is None or e.get("subtype") == subtype)
        ]


def _workspace(tmp_path: Path) -> tuple[Path, Path, Path]:
    repo, home, config = tmp_path / "repo", tmp_path / "home", tmp_path / "config"
    for folder in (repo, home, config):
        folder.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
    return repo, home, config


def _env(home: Path, config: Path, base_url: str, extra: dict[str, str] | None) -> dict[str, str]:
    """The allowlisted environment: nothing of the test process leaks in."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(config),
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": base_url,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        **(extra or {}),
    }


def _argv(claude: Path, max_turns: int, prompt: str) -> list[str]:
    return [
        str(claude),
        "-p",
        prompt,
        "--output-format",
        "stream-json",
        "--verbose",
        "--max-turns",
        str(max_turns),
        "--permission-mode",
        "acceptEdits",
        "--allowedTools",
        ALLOWED_TOOLS,
    ]


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def run_claude(
    claude: Path,
    tmp_path: Path,
    base_url: str,
    *,
    max_turns: int = 3,
    env: dict[str, str] | None = None,
    prompt: str = "Write the file.",
) -> Run:
    repo, home, config = _workspace(tmp_path)
    started = time.monotonic()
    with subprocess.Popen(
        _argv(claude, max_turns, prompt),
        cwd=repo,
        env=_env(home, config, base_url, env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.communicate()
            pytest.fail(f"claude did not finish within {RUN_TIMEOUT_S} s")
        finally:
            _kill_group(process)  # whatever the CLI left behind in its group
    run = Run(process.returncode, stdout, stderr, time.monotonic() - started, repo, home, config)
    _assert_no_key_leak(run)
    return run


def _files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        yield from (p for p in root.rglob("*") if p.is_file())


def _assert_no_key_leak(run: Run) -> None:
    assert API_KEY not in run.stdout
    assert API_KEY not in run.stderr
    for path in _files(run.home, run.config):
        assert API_KEY.encode() not in path.read_bytes(), path


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _messages_requests(server: FakeModelServer) -> list[dict[str, Any]]:
    return [r for r in server.state.requests if r["path"] == "/v1/messages"]


# --- the real CLI ---------------------------------------------------------------------------


def test_write_file_lands_in_the_worktree(claude: Path, tmp_path: Path) -> None:
    scenario = Scenario(mode="write_file", file="notes/hello.txt", content="hi there\n")
    with FakeModelServer(scenario) as server:
        run = run_claude(claude, tmp_path, server.url)

    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert (run.repo / "notes" / "hello.txt").read_text() == "hi there\n"

    init = run.events[0]
    assert (init["type"], init["subtype"]) == ("system", "init")
    assert init["cwd"] == str(run.repo)
    assert init["permissionMode"] == "acceptEdits"
    assert init["apiKeySource"] == "ANTHROPIC_API_KEY"
    assert init["claude_code_version"] == "2.1.197"

    tool_use = run.of_type("assistant")[0]["message"]["content"][0]
    assert tool_use["type"] == "tool_use"
    assert tool_use["name"] == "Write"
    assert tool_use["input"]["file_path"] == str(run.repo / "notes" / "hello.txt")
    tool_result = run.of_type("user")[0]["message"]["content"][0]
    assert tool_result["type"] == "tool_result"
    assert tool_result["tool_use_id"] == tool_use["id"]
    assert "is_error" not in tool_result or tool_result["is_error"] is False

    result = run.result
    assert result["subtype"] == "success"
    assert result["is_error"] is False
    assert result["result"] == scenario.reply
    assert result["num_turns"] == 2
    assert result["stop_reason"] == "end_turn"
    assert result["terminal_reason"] == "completed"
    # Summed over the two model calls; output tokens come from message_delta.
    usage = result["usage"]
    assert usage["input_tokens"] == 2 * scenario.input_tokens
    assert usage["cache_read_input_tokens"] == 2 * scenario.cached_tokens
    assert usage["output_tokens"] == 2 * scenario.output_tokens
    assert result["total_cost_usd"] > 0

    # Exactly the two model calls, streamed, authenticated with the key.
    calls = _messages_requests(server)
    assert len(calls) == 2
    assert all(c["body"]["stream"] is True for c in calls)
    assert all(c["headers"]["x-api-key"] == API_KEY for c in calls)
    assert all(r["path"].startswith("/v1/messages") for r in server.state.requests)

    # State goes to CLAUDE_CONFIG_DIR only; HOME stays empty.
    assert list(run.home.iterdir()) == []
    assert (run.config / ".claude.json").is_file()
    transcripts = list((run.config / "projects").glob("*/*.jsonl"))
    assert [t.stem for t in transcripts] == [init["session_id"]]


def test_text_only_answer(claude: Path, tmp_path: Path) -> None:
    with FakeModelServer(Scenario(mode="text", reply="Nothing to do.")) as server:
        run = run_claude(claude, tmp_path, server.url, prompt="Say something.")

    assert run.returncode == 0
    assert run.result["is_error"] is False
    assert run.result["result"] == "Nothing to do."
    assert run.result["num_turns"] == 1
    assert [e["type"] for e in run.events] == ["system", "assistant", "result"]
    assert list(run.repo.iterdir()) == [run.repo / ".git"]


def test_rate_limit_is_an_error_result_without_the_reset_time(claude: Path, tmp_path: Path) -> None:
    scenario = Scenario(mode="rate_limit", reset_after_s=3600)
    with FakeModelServer(scenario) as server:
        run = run_claude(claude, tmp_path, server.url)

    assert run.returncode == 1
    assert run.stderr == ""
    result = run.result
    # An API error still has subtype "success": is_error and api_error_status tell.
    assert result["subtype"] == "success"
    assert result["is_error"] is True
    assert result["api_error_status"] == 429
    assert result["result"].startswith("API Error: Request rejected (429) · ")
    assert "exceed the rate limit" in result["result"]
    assert result["total_cost_usd"] == 0
    assert run.of_type("assistant")[-1]["error"] == "rate_limit"
    assert run.of_type("assistant")[-1]["message"]["model"] == "<synthetic>"
    assert len(_messages_requests(server)) == 1
    # With retries off, the reset time (retry-after or anthropic-ratelimit-*-reset) is
    # nowhere in what the CLI says: no api_retry event, and not in the error text.
    assert run.of_type("system", "api_retry") == []
    reset = datetime.now(UTC) + timedelta(seconds=scenario.reset_after_s)
    said = result["result"] + json.dumps(run.of_type("assistant")[-1]["message"]["content"])
    for needle in ("3600", "retry", "reset", reset.strftime("%Y-%m-%dT%H")):
        assert needle not in said.lower()


def test_rate_limit_retry_after_shows_in_api_retry_events(claude: Path, tmp_path: Path) -> None:
    """With retries on, the CLI waits `retry-after` seconds and says so in an `api_retry`
    event (retry_delay_ms); the anthropic-ratelimit-*-reset headers play no part."""
    with FakeModelServer(Scenario(mode="rate_limit", reset_after_s=2)) as server:
        run = run_claude(claude, tmp_path, server.url, env={"CLAUDE_CODE_MAX_RETRIES": "1"})

    assert run.returncode == 1
    [retry] = run.of_type("system", "api_retry")
    assert retry["attempt"] == 1
    assert retry["max_retries"] == 1
    assert retry["error_status"] == 429
    assert retry["error"] == "rate_limit"
    assert retry["retry_delay_ms"] == 2000
    assert run.result["api_error_status"] == 429
    assert len(_messages_requests(server)) == 2
    assert run.seconds >= 2


def test_auth_error(claude: Path, tmp_path: Path) -> None:
    with FakeModelServer(Scenario(mode="auth_error")) as server:
        run = run_claude(claude, tmp_path, server.url)

    assert run.returncode == 1
    assert run.result["subtype"] == "success"
    assert run.result["is_error"] is True
    assert run.result["api_error_status"] == 401
    assert run.result["result"] == "Invalid API key · Fix external API key"
    assert run.of_type("assistant")[-1]["error"] == "authentication_failed"
    assert len(_messages_requests(server)) == 1


def test_server_error(claude: Path, tmp_path: Path) -> None:
    with FakeModelServer(Scenario(mode="server_error")) as server:
        run = run_claude(claude, tmp_path, server.url)

    assert run.returncode == 1
    assert run.result["is_error"] is True
    assert run.result["api_error_status"] == 500
    assert run.result["result"].startswith("API Error: 500 Internal server error.")
    assert run.of_type("assistant")[-1]["error"] == "server_error"
    assert len(_messages_requests(server)) == 1


def test_server_unreachable(claude: Path, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{_closed_port()}"
    run = run_claude(claude, tmp_path, closed)

    assert run.returncode == 1
    assert run.stderr == ""
    assert run.result["is_error"] is True
    assert run.result["api_error_status"] is None
    assert run.result["result"] == "API Error: Unable to connect to API (ConnectionRefused)"
    assert run.of_type("assistant")[-1]["error"] == "server_error"


def test_turn_limit(claude: Path, tmp_path: Path) -> None:
    scenario = Scenario(mode="loop_tools")
    with FakeModelServer(scenario) as server:
        run = run_claude(claude, tmp_path, server.url, max_turns=2)

    assert run.returncode == 1
    result = run.result
    assert result["subtype"] == "error_max_turns"
    assert result["is_error"] is True
    assert result["terminal_reason"] == "max_turns"
    assert result["errors"] == ["Reached maximum number of turns (2)"]
    assert "result" not in result
    assert result["num_turns"] == 3
    assert result["usage"]["output_tokens"] == 2 * scenario.output_tokens
    assert len(_messages_requests(server)) == 2
    assert [b["name"] for e in run.of_type("assistant") for b in e["message"]["content"]] == [
        "Bash",
        "Bash",
    ]


def test_hang_ends_with_api_timeout(claude: Path, tmp_path: Path) -> None:
    """A server that never answers: API_TIMEOUT_MS bounds the wait (default 600 s)."""
    with FakeModelServer(Scenario(mode="hang")) as server:
        run = run_claude(claude, tmp_path, server.url, env={"API_TIMEOUT_MS": "2000"})

    assert run.returncode == 1
    assert run.result["is_error"] is True
    assert run.result["api_error_status"] is None
    assert run.result["result"] == "Request timed out"
    assert 2 <= run.seconds < 30
    assert len(_messages_requests(server)) == 1


def test_hang_then_sigterm_leaves_no_result(claude: Path, tmp_path: Path) -> None:
    """Cancelling a run: SIGTERM to its process group ends it at once with exit code 143
    and no result event, so the caller decides the outcome."""
    repo, home, config = _workspace(tmp_path)
    with (
        FakeModelServer(Scenario(mode="hang")) as server,
        subprocess.Popen(
            _argv(claude, 2, "Write the file."),
            cwd=repo,
            env=_env(home, config, server.url, None),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as process,
    ):
        try:

            def called() -> bool:
                assert process.poll() is None, "claude exited before calling the model"
                return bool(_messages_requests(server))

            eventually(called, timeout_s=RUN_TIMEOUT_S, message="claude never called the model")
            os.killpg(process.pid, signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
        finally:
            _kill_group(process)
    assert process.returncode == 143
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert [e["type"] for e in events] == ["system"]
    assert API_KEY not in stdout + stderr


# --- the fake server on its own -------------------------------------------------------------


def test_fake_rate_limit_headers() -> None:
    with FakeModelServer(Scenario(mode="rate_limit", reset_after_s=30)) as server:
        before = datetime.now(UTC).replace(microsecond=0)
        with httpx.Client(base_url=server.url) as client:
            response = client.post("/v1/messages", json={"model": "m", "messages": []})
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "30"
    reset = datetime.fromisoformat(response.headers["anthropic-ratelimit-requests-reset"])
    assert before + timedelta(seconds=29) <= reset <= before + timedelta(seconds=32)
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert "anthropic-ratelimit-tokens-reset" in response.headers


def test_fake_non_streaming_and_count_tokens() -> None:
    scenario = Scenario(mode="write_file", file="a.txt", content="x")
    messages: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    body: dict[str, Any] = {
        "model": "claude-test",
        "system": [{"type": "text", "text": "Primary working directory: /w/repo\nmore"}],
        "tools": [{"name": "Write"}],
        "messages": messages,
    }
    with FakeModelServer(scenario) as server, httpx.Client(base_url=server.url) as client:
        first = client.post("/v1/messages", json=body).json()
        messages += [
            {"role": "assistant", "content": first["content"]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": first["content"][0]["id"],
                        "content": "ok",
                    }
                ],
            },
        ]
        second = client.post("/v1/messages", json=body).json()
        counted = client.post("/v1/messages/count_tokens", json=body).json()
    assert first["stop_reason"] == "tool_use"
    assert first["content"][0]["input"] == {"file_path": "/w/repo/a.txt", "content": "x"}
    assert first["usage"]["input_tokens"] == scenario.input_tokens
    assert first["usage"]["cache_read_input_tokens"] == scenario.cached_tokens
    assert first["usage"]["output_tokens"] == scenario.output_tokens
    assert second["stop_reason"] == "end_turn"
    assert second["content"] == [{"type": "text", "text": scenario.reply}]
    assert counted == {"input_tokens": scenario.input_tokens}
