"""The Dockerfiles as the tests read them, with BuildKit's own parser (`dockerfile`): build
stages, the final stage's environment, command and health check, and how the command line of
a container maps onto this machine (the image's `/opt/swarm/bin` is this virtualenv's)."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile

ROOT = Path(__file__).resolve().parents[2]
ORCHESTRATOR = ROOT / "services/orchestrator/Dockerfile"
ADAPTER = ROOT / "services/adapter/Dockerfile"
DOCKERFILES = (ORCHESTRATOR, ADAPTER)
VENV_IN_IMAGE = "/opt/swarm"
"""Where the images keep Swarm's virtualenv; this machine's is `sys.prefix`."""


@dataclass
class Stage:
    base: str
    name: str | None
    commands: list[dockerfile.Command] = field(default_factory=list)

    def all(self, instruction: str) -> list[dockerfile.Command]:
        return [c for c in self.commands if c.cmd == instruction.upper()]

    def last(self, instruction: str) -> dockerfile.Command:
        found = self.all(instruction)
        assert found, f"no {instruction} in the stage FROM {self.base}"
        return found[-1]

    def args(self) -> dict[str, str]:
        """The stage's build arguments with their defaults."""
        found = {}
        for command in self.all("ARG"):
            name, _, default = command.value[0].partition("=")
            found[name] = default
        return found

    def env(self, args: dict[str, str] | None = None) -> dict[str, str]:
        """The stage's ENV, `$NAME` taken from the build arguments (then the earlier ENV)."""
        values = {**self.args(), **(args or {})}
        env: dict[str, str] = {}
        for command in self.all("ENV"):
            pairs = command.value
            for name, value in zip(pairs[::2], pairs[1::2], strict=True):
                env[name] = re.sub(
                    r"\$\{?(\w+)\}?", lambda m: env.get(m[1], values.get(m[1], m[0])), value
                )
        return env


def stages(path: Path) -> list[Stage]:
    found: list[Stage] = []
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "FROM":
            base, *rest = command.value
            name = rest[1] if len(rest) == 2 and rest[0].upper() == "AS" else None
            found.append(Stage(base=base, name=name))
        elif found:
            found[-1].commands.append(command)
    return found


def exec_form(command: dockerfile.Command) -> list[str]:
    """The argv of a CMD or HEALTHCHECK written in exec (JSON) form."""
    assert command.json, f"{command.original!r} is not in exec form"
    argv = list(command.value)
    return argv[1:] if command.cmd == "HEALTHCHECK" else argv


def host_env(image_env: dict[str, str], **overrides: str) -> dict[str, str]:
    """An image's environment for a process on this machine: its PATH with this
    virtualenv's bin folder for the image's, then this machine's PATH; nothing else of the
    test's own environment but HOME (npm and git want one)."""
    env = dict(image_env)
    path = env.get("PATH", "$PATH").replace(f"{VENV_IN_IMAGE}/bin", str(Path(sys.prefix, "bin")))
    env["PATH"] = path.replace("$PATH", os.environ["PATH"])
    env["HOME"] = os.environ.get("HOME", "/root")
    env.update(overrides)
    return env
