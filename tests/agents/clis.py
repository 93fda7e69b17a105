"""The real agent CLIs for the tests: installed from npm at pinned versions into a cache
folder shared by test runs (`SWARM_TEST_CACHE`, default `~/.cache/swarm-tests`), once.

    claude = install("claude")   # -> Path to the `claude` binary
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CLIS", "Cli", "cache_dir", "install"]


@dataclass(frozen=True)
class Cli:
    agent: str
    package: str
    version: str
    binary: str


CLIS = {
    "claude": Cli("claude", "@anthropic-ai/claude-code", "2.1.197", "claude"),
    "codex": Cli("codex", "@openai/codex", "0.169.0", "codex"),
    "gemini": Cli("gemini", "@google/gemini-cli", "0.61.0", "gemini"),
}


def cache_dir() -> Path:
    root = os.environ.get("SWARM_TEST_CACHE") or str(Path.home() / ".cache" / "swarm-tests")
    return Path(root)


def install(agent: str, *, timeout_s: float = 600) -> Path:
    """The binary of `agent`'s CLI, installing it first if this cache lacks it."""
    cli = CLIS[agent]
    prefix = cache_dir() / "npm" / f"{cli.agent}-{cli.version}"
    binary = prefix / "node_modules" / ".bin" / cli.binary
    if binary.exists():
        return binary
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix.parent / f".{cli.agent}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs install once
        if binary.exists():
            return binary
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to install the agent CLIs for the tests")
        result = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                f"{cli.package}@{cli.version}",
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if result.returncode != 0 or not binary.exists():
            raise RuntimeError(
                f"npm install {cli.package}@{cli.version} failed:\n{result.stderr[-3000:]}"
            )
    return binary
