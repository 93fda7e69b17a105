"""`swarm submit --template NAME`: the body of `POST /v1/sessions` for a topology
(`swarm_common.templates`), from the command line's `--goal`, `--worker` and `--phase`, or
a graph file's tasks for `builder-validator`; `--dry-run` prints the graph it expands into
as a graph file, the same one the server would store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from swarm_cli.client import CliError
from swarm_cli.plans import _repo, _title
from swarm_common.templates import TEMPLATES, TemplateSpec, expand, parse_worker

__all__ = ["graph_file", "template_body"]


def template_body(
    name: str,
    *,
    source: str | None,
    goal: str | None,
    workers: list[str],
    phases: list[str],
    repo: str,
    base: str,
) -> dict[str, Any]:
    """The session to create: its title, goal, repository and the template to expand."""
    if name not in TEMPLATES:
        raise CliError(f"no template {name!r}: use {', '.join(TEMPLATES)}", code="bad_arguments")
    spec: dict[str, Any] = {"name": name, "goal": goal or ""}
    title = _title(goal or name)
    body: dict[str, Any] = {"repo": _repo(repo), "base_ref": base}
    try:
        if workers:
            spec["workers"] = [parse_worker(w).model_dump(exclude_none=True) for w in workers]
        if phases:
            spec["phases"] = [_phase(p) for p in phases]
        if source is not None:
            from swarm_cli.taskfile import load_taskfile

            graph = load_taskfile(Path(source))
            spec["tasks"] = graph["tasks"]
            body.update(repo=graph["repo"], base_ref=graph.get("base_ref", base))
            title = str(graph.get("title") or title)
        checked = TemplateSpec.model_validate(spec)  # the server checks it again
    except (ValidationError, ValueError) as exc:
        raise CliError(f"the {name} template: {_reason(exc)}", code="bad_arguments") from None
    return {"title": title, "goal": checked.goal, **body, "template": spec}


def graph_file(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with its template expanded into `tasks`: a graph file `swarm submit` reads."""
    spec = TemplateSpec.model_validate(body["template"])
    tasks = [t.model_dump(mode="json", exclude_defaults=True) for t in expand(spec)]
    rest = {k: v for k, v in body.items() if k != "template"}
    return {**rest, "tasks": tasks}


def _phase(text: str) -> dict[str, str]:
    head, sep, prompt = text.partition(":")
    if not sep or not prompt.strip():
        raise ValueError(f"a phase is NAME[@AGENT]:PROMPT, not {text!r}")
    name, _, agent = head.strip().partition("@")
    return {"name": name.strip(), "prompt": prompt.strip(), **({"agent": agent} if agent else {})}


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'template'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
    return str(exc)
