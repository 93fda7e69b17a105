"""The real gemini CLI (`@google/gemini-cli`, pinned in `clis.py`) against the fake model
server (`fake_gemini.py`), offline: a file edit that lands, and how the CLI reports a rate
limit, a bad API key, a server error, an unreachable server, a turn limit and a hang.

Each run gets a clean environment (an allowlist), its own `HOME` and `TMPDIR`, stdin
`/dev/null` and its own process group, as `agent-clis.md` says for every run.
"""

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
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agents.clis import install
from tests.agents.fakeserver import FakeModelServer, Scenario
from tests.waiting import eventually

API_KEY = "AIzaTESTfakeKey0123456789abcdefghijklmno"
MODEL = "gemini-2.5-pro"
PROMPT = "Create the file the task asks for."
RUN_TIMEOUT_S = 60.0

# What the CLI needs to take the base URL with an API key, make no other traffic, and fail
# at once instead of retrying a 429/5xx/connection error 10 times with backoff (minutes).
BASE_SETTINGS: dict[str, Any] = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "telemetry": {"enabled": False},
    "privacy": {"usageStatisticsEnabled": False},
    "general": {"enableAutoUpdate": False, "maxAttempts": 1},
}


@dataclass
class Run:
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    elapsed_s: float
    home: Path
    pid: int  # also the process group id

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    @property
    def result(self) -> dict[str, Any]:
        results = self.of_type("result")
        assert len(results) == 1, self.stdout
        assert self.events[-1] == results[0], "the result is the last event"
        return results[0]


@pytest.fixture(scope="module")
def gemini() -> Path:
    try:
        return install("gemini")
    except RuntimeError as error:
        if "npm is needed" in str(error):
            pytest.skip(str(error))
        raise


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    (path / "README.md").write_text("# test repo\n")
    identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "--quiet"], ["add", "--all"], [*identity, "commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)
    return path


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def run_gemini(
    binary: Path,
    base_url: str,
    repo: Path,
    *,
    settings: dict[str, Any] | None = None,
    timeout_s: float = RUN_TIMEOUT_S,
) -> Run:
    """One headless run in `repo`; on timeout the whole process group is killed."""
    home = repo.parent / "home"
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / "tmp").mkdir(exist_ok=True)
    merged = _merge(BASE_SETTINGS, settings or {})
    (home / ".gemini" / "settings.json").write_text(json.dumps(merged))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),  # its error reports (with the conversation) go here
        "GEMINI_API_KEY": API_KEY,
        "GOOGLE_GEMINI_BASE_URL": base_url,
        "GEMINI_CLI_NO_RELAUNCH": "true",  # no second node process (saves ~1 s)
    }
    argv = [
        str(binary),
        "-p",
        PROMPT,
        "--output-format",
        "stream-json",
        "--approval-mode",
        "yolo",
        "--skip-trust",
        "-m",
        MODEL,
    ]
    started = time.monotonic()
    with subprocess.Popen(
        argv,
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        returncode: int | None
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
            returncode = proc.returncode
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            stdout, stderr = proc.communicate()
            returncode = None
        finally:
            _kill_group(proc.pid)  # nothing of the run outlives it
    return Run(returncode, stdout, stderr, time.monotonic() - started, home, proc.pid)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _files_under(path: Path) -> Iterator[Path]:
    return (p for p in path.rglob("*") if p.is_file())


def assert_key_not_leaked(run: Run) -> None:
    assert API_KEY not in run.stdout
    assert API_KEY not in run.stderr
    for file in _files_under(run.home):
        assert API_KEY not in file.read_text(errors="replace"), file


def assert_error_result(run: Run, *needles: str) -> dict[str, Any]:
    result = run.result
    assert result["status"] == "error", result
    for needle in needles:
        assert needle in result["error"]["message"], result
    return result


def test_write_file(gemini: Path, repo: Path) -> None:
    scenario = Scenario(mode="write_file", file="notes/hello.txt", content="hi from gemini\n")
    with FakeModelServer(scenario) as server:
        run = run_gemini(gemini, server.url, repo)
        requests = list(server.state.requests)

    assert run.returncode == 0, run.stderr
    assert (repo / "notes" / "hello.txt").read_text() == "hi from gemini\n"

    kinds = [event["type"] for event in run.events]
    assert kinds == ["init", "message", "tool_use", "tool_result", "message", "result"]
    init = run.events[0]
    assert init["model"] == MODEL and init["session_id"]
    (tool_use,) = run.of_type("tool_use")
    assert tool_use["tool_name"] == "write_file"
    assert tool_use["parameters"] == {
        "file_path": str(repo / "notes" / "hello.txt"),
        "content": "hi from gemini\n",
    }
    (tool_result,) = run.of_type("tool_result")
    assert tool_result["tool_id"] == tool_use["tool_id"]
    assert tool_result["status"] == "success"
    assistant = [e for e in run.of_type("message") if e["role"] == "assistant"]
    assert "".join(e["content"] for e in assistant) == scenario.reply

    result = run.result
    assert result["status"] == "success"
    stats = result["stats"]
    # Two model calls, each reporting the scenario's usage; the CLI sums them.
    assert stats["input_tokens"] == 2 * scenario.input_tokens
    assert stats["cached"] == 2 * scenario.cached_tokens
    assert stats["input"] == 2 * (scenario.input_tokens - scenario.cached_tokens)
    assert stats["output_tokens"] == 2 * scenario.output_tokens
    assert stats["total_tokens"] == 2 * (scenario.input_tokens + scenario.output_tokens)
    assert stats["tool_calls"] == 1
    assert set(stats["models"]) == {MODEL}
    assert "cost" not in json.dumps(result)

    assert [r["path"] for r in requests] == [f"/v1beta/models/{MODEL}:streamGenerateContent"] * 2
    assert all(r["headers"]["x-goog-api-key"] == API_KEY for r in requests)
    last = requests[-1]["body"]["contents"]
    assert "functionResponse" in last[-1]["parts"][0]
    assert_key_not_leaked(run)


def test_text(gemini: Path, repo: Path) -> None:
    with FakeModelServer(Scenario(mode="text", reply="Nothing to do.")) as server:
        run = run_gemini(gemini, server.url, repo)
        requests = len(server.state.requests)

    assert run.returncode == 0, run.stderr
    assert run.of_type("tool_use") == []
    assistant = [e for e in run.of_type("message") if e["role"] == "assistant"]
    assert [e["content"] for e in assistant] == ["Nothing to do."]
    assert run.result["status"] == "success"
    assert run.result["stats"]["tool_calls"] == 0
    assert requests == 1


def test_rate_limit_fails_at_once_with_the_retry_delay(gemini: Path, repo: Path) -> None:
    with FakeModelServer(Scenario(mode="rate_limit", reset_after_s=30)) as server:
        run = run_gemini(gemini, server.url, repo)
        requests = len(server.state.requests)

    assert run.returncode == 429 & 0xFF  # the HTTP status, as an exit code (173)
    result = assert_error_result(run, "Suggested retry after 30s.", "Please retry in 30s.")
    assert result["error"]["type"] == "unknown"
    assert "Max attempts reached" in run.stderr
    assert requests == 1  # general.maxAttempts = 1: no retry, no 30 s wait
    assert run.elapsed_s < 30
    assert list(run.home.joinpath("tmp").glob("gemini-client-error-*.json"))
    assert_key_not_leaked(run)


def test_auth_error_is_not_retried(gemini: Path, repo: Path) -> None:
    # Even with the default 10 attempts, a 400 API_KEY_INVALID is final.
    settings = {"general": {"maxAttempts": 10}}
    with FakeModelServer(Scenario(mode="auth_error")) as server:
        run = run_gemini(gemini, server.url, repo, settings=settings)
        requests = len(server.state.requests)

    assert run.returncode == 400 & 0xFF  # 144
    assert_error_result(run, "API key not valid", "API_KEY_INVALID")
    assert requests == 1
    assert_key_not_leaked(run)


def test_server_error(gemini: Path, repo: Path) -> None:
    with FakeModelServer(Scenario(mode="server_error")) as server:
        run = run_gemini(gemini, server.url, repo)
        requests = len(server.state.requests)

    assert run.returncode == 500 & 0xFF  # 244
    assert_error_result(run, '"code":500', "INTERNAL")
    assert "Max attempts reached" in run.stderr
    assert requests == 1


def test_unreachable_server(gemini: Path, repo: Path) -> None:
    run = run_gemini(gemini, f"http://127.0.0.1:{_closed_port()}", repo)

    assert run.returncode == 1
    assert_error_result(run, "fetch failed sending request")
    assert [event["type"] for event in run.events] == ["init", "message", "result"]


def test_loop_tools_hits_the_turn_limit(gemini: Path, repo: Path) -> None:
    settings = {"model": {"maxSessionTurns": 3}}
    scenario = Scenario(mode="loop_tools")
    with FakeModelServer(scenario) as server:
        run = run_gemini(gemini, server.url, repo, settings=settings)
        requests = len(server.state.requests)

    assert run.returncode == 53
    result = assert_error_result(run, "Reached max session turns")
    assert result["error"]["type"] == "FatalTurnLimitedError"
    assert requests == 3
    assert [e["tool_name"] for e in run.of_type("tool_use")] == ["list_directory"] * 3
    assert {e["status"] for e in run.of_type("tool_result")} == {"success"}
    assert result["stats"]["tool_calls"] == 3
    assert result["stats"]["input_tokens"] == 3 * scenario.input_tokens
    assert run.of_type("error") == []  # no "Loop detected": each call's arguments differ


def test_hang_is_silent_until_killed(gemini: Path, repo: Path) -> None:
    with FakeModelServer(Scenario(mode="hang")) as server:
        run = run_gemini(gemini, server.url, repo, timeout_s=8)
        requests = len(server.state.requests)

    assert run.returncode is None  # still waiting at the timeout: the caller must time out
    assert [event["type"] for event in run.events] == ["init", "message"]
    assert requests == 1
    eventually(lambda: not _group_alive(run.pid), timeout_s=5, message="the group is gone")


def test_fake_answers_the_other_calls_without_the_cli() -> None:
    """The calls the CLI 0.61.0 does not make headless are answered too, never left waiting."""
    with FakeModelServer(Scenario(mode="text", reply="ok")) as server:
        base = f"{server.url}/v1beta/models"
        with httpx.Client(timeout=5) as client:
            listing = client.get(base).json()
            assert f"models/{MODEL}" in [m["name"] for m in listing["models"]]
            assert client.get(f"{base}/{MODEL}").json()["name"] == f"models/{MODEL}"
            body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
            counted = client.post(f"{base}/{MODEL}:countTokens", json=body).json()
            assert counted == {"totalTokens": 120}
            answer = client.post(f"{base}/{MODEL}:generateContent", json=body).json()
            assert answer["candidates"][0]["content"]["parts"] == [{"text": "ok"}]
            assert answer["usageMetadata"]["cachedContentTokenCount"] == 20
            unknown = client.post(f"{base}/{MODEL}:somethingElse", json=body)
            assert unknown.status_code == 404
            assert unknown.json()["error"]["status"] == "NOT_FOUND"
            server.scenario = Scenario(mode="rate_limit", reset_after_s=7)
            limited = client.post(f"{base}/{MODEL}:streamGenerateContent?alt=sse", json=body)
            assert limited.status_code == 429
            assert limited.headers["retry-after"] == "7"
            details = limited.json()["error"]["details"]
            retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
            assert retry in details
