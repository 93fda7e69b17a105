"""Which adapters `swarm up` starts: shell always, an agent only with its CLI and key."""

from __future__ import annotations

import os
from pathlib import Path

from swarm_orchestrator.up import plan_adapters


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
    assert start == {"shell": 2, "claude": 1}
    assert "npm install -g @openai/codex" in skipped["codex"]
    assert skipped["gemini"] == "GEMINI_API_KEY is not set"


def test_an_explicit_list_is_kept_but_still_checked(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path)}
    start, skipped = plan_adapters({"shell": 1, "claude": 2, "codex": 0}, env)
    assert start == {"shell": 1}
    assert list(skipped) == ["claude"]


def test_each_child_gets_only_its_own_credentials() -> None:
    from swarm_orchestrator.up import environment_for

    env = {
        "PATH": "/bin",
        "SWARM_DATABASE_URL": "postgresql://db",
        "SWARM_REDIS_URL": "r",
        "ANTHROPIC_API_KEY": "a",
        "ANTHROPIC_BASE_URL": "u",
        "OPENAI_API_KEY": "o",
        "GEMINI_API_KEY": "g",
    }
    assert environment_for(None, env) == {
        "PATH": "/bin",
        "SWARM_DATABASE_URL": "postgresql://db",
        "SWARM_REDIS_URL": "r",
    }
    assert environment_for("claude", env) == {
        "PATH": "/bin",
        "SWARM_REDIS_URL": "r",
        "ANTHROPIC_API_KEY": "a",
        "ANTHROPIC_BASE_URL": "u",
    }
    assert environment_for("shell", env) == {"PATH": "/bin", "SWARM_REDIS_URL": "r"}
