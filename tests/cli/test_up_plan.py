"""Which adapters `swarm up` starts (shell always, an agent only with its CLI and key) and
what each child it starts gets: its own credentials and its own Redis user."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from swarm_cli.client import CliError
from swarm_cli.local.plan import environment_for, plan_adapters
from swarm_cli.local.up import start_valkey


def _fake_cli(folder: Path, name: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\necho 1.0\n")
    path.chmod(0o755)


def test_agents_start_only_with_their_cli_and_key(tmp_path: Path) -> None:
    _fake_cli(tmp_path, "claude")
    _fake_cli(tmp_path, "gemini")
    env = {
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "ANTHROPIC_API_KEY": "sk-ant-x" * 3,
        "OPENAI_API_KEY": "sk-x" * 6,
    }
    start, skipped = plan_adapters(None, env)
    assert start == {"shell": 2, "noop": 1, "claude": 1}  # noop needs nothing installed
    assert "npm install -g @openai/codex" in skipped["codex"]
    assert skipped["gemini"] == "GEMINI_API_KEY is not set"


def test_an_explicit_list_is_kept_but_still_checked(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path)}
    start, skipped = plan_adapters({"shell": 1, "claude": 2, "codex": 0}, env)
    assert start == {"shell": 1}
    assert list(skipped) == ["claude"]


def test_each_child_gets_only_its_own_credentials() -> None:
    env = {
        "PATH": "/bin",
        "SWARM_DATABASE_URL": "postgresql://db",
        "SWARM_API_TOKEN": "admin-token",
        "SWARM_REDIS_URL": "r",
        "ANTHROPIC_API_KEY": "a",
        "ANTHROPIC_BASE_URL": "u",
        "OPENAI_API_KEY": "o",
        "GEMINI_API_KEY": "g",
    }
    assert environment_for(None, env) == {
        "PATH": "/bin",
        "SWARM_DATABASE_URL": "postgresql://db",
        "SWARM_API_TOKEN": "admin-token",
        "SWARM_REDIS_URL": "r",
    }
    assert environment_for("claude", env) == {
        "PATH": "/bin",
        "SWARM_REDIS_URL": "r",
        "ANTHROPIC_API_KEY": "a",
        "ANTHROPIC_BASE_URL": "u",
        "SWARM_ALLOW_COMMANDS": "true",
    }
    assert environment_for("shell", env) == {
        "PATH": "/bin",
        "SWARM_REDIS_URL": "r",
        "SWARM_ALLOW_SHELL_AGENT": "true",
        "SWARM_ALLOW_COMMANDS": "true",
    }


def test_only_shell_adapters_are_allowed_shell_tasks_and_a_user_may_say_no() -> None:
    assert environment_for("shell", {})["SWARM_ALLOW_SHELL_AGENT"] == "true"
    for kind in ("claude", "codex", "gemini", None):
        assert "SWARM_ALLOW_SHELL_AGENT" not in environment_for(kind, {})
    refused = {"SWARM_ALLOW_SHELL_AGENT": "false", "SWARM_ALLOW_COMMANDS": "false"}
    assert environment_for("shell", refused)["SWARM_ALLOW_SHELL_AGENT"] == "false"
    assert environment_for("claude", refused)["SWARM_ALLOW_COMMANDS"] == "false"


def test_swarm_up_starts_shell_adapters_unless_the_user_turned_them_off(tmp_path: Path) -> None:
    assert plan_adapters({"shell": 2}, {"PATH": str(tmp_path)}) == ({"shell": 2}, {})
    start, skipped = plan_adapters(
        {"shell": 2}, {"PATH": str(tmp_path), "SWARM_ALLOW_SHELL_AGENT": "false"}
    )
    assert start == {} and "SWARM_ALLOW_SHELL_AGENT" in skipped["shell"]


def test_the_shell_kind_is_planned_with_shell_tasks_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm_adapter import runners

    seen: dict[str, dict[str, str]] = {}

    def unavailable(agent: str, environ: dict[str, str] | None = None) -> str | None:
        seen[agent] = dict(environ or {})
        return None

    monkeypatch.setattr(runners, "unavailable", unavailable)
    start, _ = plan_adapters({"shell": 2, "claude": 1}, {"PATH": str(tmp_path)})
    assert start == {"shell": 2, "claude": 1}
    commands = {"PATH": str(tmp_path), "SWARM_ALLOW_COMMANDS": "true"}
    assert seen["shell"] == {**commands, "SWARM_ALLOW_SHELL_AGENT": "true"}
    assert seen["claude"] == commands


def test_the_embedded_valkey_gives_each_child_its_own_user(tmp_path: Path) -> None:
    valkey, urls = start_valkey(tmp_path, "swarm")
    try:
        assert urlsplit(urls.orchestrator).username == "orchestrator"
        assert urlsplit(urls.adapter).username == "adapter"
        assert urls.orchestrator != urls.adapter
        assert urlsplit(urls.adapter).password == valkey.password_of("adapter")
    finally:
        valkey.stop()
    with pytest.raises(CliError, match="cannot be used in ACL rules"):
        start_valkey(tmp_path, "bad(prefix)")
