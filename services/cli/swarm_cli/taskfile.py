"""Task graph files for `swarm submit`: YAML (or JSON) holding a session and its tasks.

title: Add a CLI
repo: .            # a path relative to this file, an absolute path, or a git URL
base_ref: main
tasks:
  - key: parser
    prompt: "..."
  - key: docs
    prompt: "..."
    depends_on: [parser]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from swarm_cli.client import CliError

__all__ = ["dump_taskfile", "load_taskfile", "load_tasks"]

_URL_PREFIXES = ("http://", "https://", "ssh://", "git://", "file://")
_FIELDS = {
    "title",
    "goal",
    "repo",
    "base_ref",
    "target_branch",
    "settings",
    "idempotency_key",
    "tasks",
}


def _read(path: Path) -> Any:
    """The YAML (or JSON) at `path`, or a `CliError` that says why not."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"{path} is not valid YAML: {exc}") from None


def load_taskfile(path: Path) -> dict[str, Any]:
    """The body of `POST /v1/sessions` described by the file at `path`."""
    data = _read(path)
    if not isinstance(data, dict):
        raise CliError(f"{path} must hold a mapping with 'title', 'repo' and 'tasks'")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise CliError(
            f"{path}: unknown fields {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}"
        )
    if "repo" not in data:
        raise CliError(f"{path}: 'repo' is missing (a path or a git URL)")
    if not isinstance(data.get("tasks"), list) or not data["tasks"]:
        raise CliError(f"{path}: 'tasks' must be a non-empty list")
    repo = str(data["repo"])
    if not repo.startswith(_URL_PREFIXES) and "@" not in repo.split("/")[0]:
        repo = str((path.parent / repo).resolve())
    data["repo"] = repo
    data.setdefault("title", path.stem)
    return data


def load_tasks(path: Path) -> list[dict[str, Any]]:
    """The tasks a file at `path` holds, for `POST /v1/sessions/{id}/tasks`: a list of tasks,
    or a graph file's mapping (only its `tasks` are read)."""
    data = _read(path)
    tasks = data.get("tasks") if isinstance(data, dict) else data
    if not isinstance(tasks, list) or not tasks:
        raise CliError(f"{path} must hold a non-empty list of tasks (or a mapping with 'tasks')")
    return tasks


def dump_taskfile(graph: dict[str, Any], fmt: str) -> str:
    """A session's graph (`GET /v1/sessions/{id}/graph`) as the text of a file that
    `load_taskfile` reads back into the same body: YAML, or JSON."""
    if fmt == "json":
        return json.dumps(graph, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(graph, sort_keys=False, allow_unicode=True, width=100)
