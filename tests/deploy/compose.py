"""docker-compose.yml and .env.example as the tests read them: the file loaded, values
interpolated as Compose does, the services that run Swarm, and the settings class behind
each Swarm command."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic_settings import BaseSettings

from swarm_adapter.settings import AdapterSettings
from swarm_orchestrator.settings import OrchestratorSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

SETTINGS_OF: dict[str, type[BaseSettings]] = {
    "server": OrchestratorSettings,
    "migrate": OrchestratorSettings,
    "adapter": AdapterSettings,
}
"""The settings class each Swarm command a container runs reads its environment with."""

_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


class MissingVariable(KeyError):
    """A `${NAME:?message}` whose variable is unset or empty."""


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """`value` as Compose makes it from `env`: `${NAME}`, `${NAME:-default}`,
    `${NAME-default}`, `${NAME:?error}`, `${NAME?error}`, `$NAME`; `$$` is a `$`."""
    env = env or {}

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name = match[1] or match[4]
        operator, argument = match[2], match[3] or ""
        value = env.get(name)
        unset = value is None or (value == "" and operator in (":-", ":?"))
        if operator in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {argument}")
        if operator in (":-", "-") and unset:
            return argument
        return value or ""

    return _VARIABLE.sub(one, value)


def variables(text: str) -> set[str]:
    """The variables a text interpolates."""
    return {m[1] or m[4] for m in _VARIABLE.finditer(text) if m[0] != "$$"}


def environment(service: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment, interpolated from `env`."""
    raw = service.get("environment") or {}
    assert isinstance(raw, dict), "environment is written as a mapping"
    return {name: interpolate(str(value), env) for name, value in raw.items()}


def swarm_command(service: dict[str, Any]) -> list[str] | None:
    """The `swarm ...` command a service runs, when it runs one."""
    command = service.get("command")
    if isinstance(command, list) and command and command[0] == "swarm":
        return [str(part) for part in command]
    return None


def swarm_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if swarm_command(s)}


def adapters(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The adapter services by agent kind."""
    found = {}
    for service in swarm_services(compose).values():
        command = swarm_command(service)
        if command is not None and command[1] == "adapter":
            found[service["environment"]["SWARM_AGENT"]] = service
    return found


def env_example() -> dict[str, str]:
    """`.env.example` as Compose reads a `.env` file (NAME=value lines, # comments)."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"not NAME=value: {line!r}"
            values[name.strip()] = value.strip()
    return values


def localised(url: str, port: int) -> str:
    """`url` with the Compose host `redis` or `postgres` replaced by a local server's port."""
    parts = urlsplit(url)
    netloc = re.sub(r"@(redis|postgres):\d+$", f"@127.0.0.1:{port}", parts.netloc)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
