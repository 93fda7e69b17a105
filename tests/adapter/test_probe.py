"""`swarm adapter --check-health` (`swarm_adapter.probe`): healthy when Redis answers the
adapter's user, its runner can run and the workspace is a folder; each problem named, with
no password in it. The image's own health check runs it as a process in
`tests/deploy/test_entrypoints.py`."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from swarm_adapter.probe import check_health, problems
from swarm_adapter.settings import AdapterSettings
from swarm_cli.local.embedded import free_port


def _claude(folder: Path, *, executable: bool = True) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "claude"
    path.write_text('#!/bin/sh\necho "2.1.197 (Claude Code)"\n')
    path.chmod(0o755 if executable else 0o644)
    return path


def _url(url: str, *, netloc: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def test_a_working_shell_adapter_is_healthy(adapter_settings: AdapterSettings) -> None:
    assert await problems(adapter_settings) == []


async def test_a_wrong_password_is_named_but_not_shown(adapter_settings: AdapterSettings) -> None:
    host = urlsplit(adapter_settings.require_redis_url()).netloc.rpartition("@")[2]
    wrong = _url(adapter_settings.require_redis_url(), netloc=f"adapter:s3cret-wrong@{host}")
    settings = AdapterSettings(**{**adapter_settings.model_dump(), "redis_url": wrong})
    [problem] = await problems(settings)
    assert "AuthenticationError" in problem
    assert "s3cret-wrong" not in problem and "adapter:***@" in problem


async def test_an_unreachable_redis_fails_within_the_deadline(
    adapter_settings: AdapterSettings,
) -> None:
    gone = f"redis://127.0.0.1:{free_port()}/0"
    settings = AdapterSettings(**{**adapter_settings.model_dump(), "redis_url": gone})
    started = time.monotonic()
    [problem] = await problems(settings, deadline_s=2)
    assert "does not answer" in problem
    assert time.monotonic() - started < 2.5


async def test_the_shell_agent_must_be_allowed(adapter_settings: AdapterSettings) -> None:
    settings = AdapterSettings(**{**adapter_settings.model_dump(), "allow_shell_agent": False})
    [problem] = await problems(settings)
    assert "SWARM_ALLOW_SHELL_AGENT=true" in problem


async def test_an_agent_needs_its_cli_and_its_key(
    adapter_settings: AdapterSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    claude = AdapterSettings(**{**adapter_settings.model_dump(), "agent": "claude"})
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    [missing] = await problems(claude)
    assert "the `claude` CLI is not installed" in missing

    monkeypatch.setenv("PATH", f"{_claude(tmp_path / 'bin').parent}:/usr/bin:/bin")
    assert await problems(claude) == []

    monkeypatch.delenv("ANTHROPIC_API_KEY")
    [keyless] = await problems(claude)
    assert "ANTHROPIC_API_KEY is not set" in keyless

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    broken = _claude(tmp_path / "other", executable=False)
    configured = AdapterSettings(**{**claude.model_dump(), "claude_path": broken})
    [problem] = await problems(configured)
    assert "is not executable" in problem


async def test_a_missing_workspace_is_unhealthy(
    adapter_settings: AdapterSettings, tmp_path: Path
) -> None:
    gone = AdapterSettings(**{**adapter_settings.model_dump(), "workspace": tmp_path / "none"})
    [problem] = await problems(gone)
    assert "is not a folder" in problem


def test_the_command_says_why_and_exits_1(
    adapter_settings: AdapterSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = AdapterSettings(
        **{
            **adapter_settings.model_dump(),
            "workspace": tmp_path / "none",
            "allow_shell_agent": False,
        }
    )
    assert check_health(broken) == 1
    said = capsys.readouterr()
    assert said.err.count("unhealthy: ") == 2 and not said.out
    assert check_health(adapter_settings) == 0
    assert capsys.readouterr().out.startswith("healthy: ")
