"""Changes a person makes to a plan (`PATCH /v1/sessions/{id}/plan`), applied to a list of
task dicts. Pure functions; the result is validated as a whole graph by the caller.

    {"op": "add",    "task": {...}}
    {"op": "remove", "key": "k"}                     dependents inherit k's dependencies
    {"op": "update", "key": "k", "set": {...}}       any task field; a new `key` renames
    {"op": "split",  "key": "k", "into": [{...}, ...]}
        a part without `depends_on` takes k's; k's dependents wait for every part
    {"op": "merge",  "keys": ["a", "b"], "into": {...}}
        `into` without `depends_on` takes the union of theirs; their dependents wait for it
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from swarm_orchestrator.errors import Invalid

__all__ = ["CHANGE_OPS", "add_unique", "apply", "describe"]

CHANGE_OPS = ("add", "remove", "update", "split", "merge")
MAX_CHANGES = 1000


def apply(
    tasks: Sequence[dict[str, Any]], changes: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`tasks` with `changes` applied in order (copies: the input is not changed)."""
    if len(changes) > MAX_CHANGES:
        raise Invalid(f"at most {MAX_CHANGES} changes at once", code="invalid_change")
    result = [dict(t) for t in tasks]
    for i, change in enumerate(changes):
        op = change.get("op")
        try:
            if op == "add":
                result.append(dict(_task(change, "task")))
            elif op == "remove":
                result = _remove(result, _key(change))
            elif op == "update":
                result = _update(result, _key(change), _fields(change, "set"))
            elif op == "split":
                result = _split(result, _key(change), _parts(change))
            elif op == "merge":
                result = _merge(result, _keys(change), dict(_task(change, "into")))
            else:
                raise ValueError(f"op must be one of {', '.join(CHANGE_OPS)}")
        except ValueError as exc:
            raise Invalid(
                f"change {i + 1} ({op}): {exc}", code="invalid_change", details={"change": i}
            ) from exc
    return result


def add_unique(
    tasks: Sequence[dict[str, Any]], new: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`tasks` plus `new`, whose keys (and their dependencies on each other) are renamed
    where they clash with a key already there."""
    taken = {t["key"] for t in tasks}
    renamed: dict[str, str] = {}
    added = []
    for task in new:
        key = task["key"]
        unique, n = key, 2
        while unique in taken:
            suffix = f"-{n}"
            unique, n = key[: 64 - len(suffix)] + suffix, n + 1
        taken.add(unique)
        renamed[key] = unique
        added.append({**task, "key": unique})
    for task in added:
        task["depends_on"] = [renamed.get(d, d) for d in task.get("depends_on") or []]
    return [*tasks, *added]


def describe(before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]]) -> str:
    """What an edit changed, in words (the revision's summary when the editor gave none)."""
    old = {t["key"]: t for t in before}
    new = {t["key"]: t for t in after}
    added = sorted(new.keys() - old.keys())
    removed = sorted(old.keys() - new.keys())
    changed = sorted(k for k in new.keys() & old.keys() if new[k] != old[k])
    parts = [
        f"{label} {', '.join(keys[:10])}{' …' if len(keys) > 10 else ''}"
        for label, keys in (("added", added), ("removed", removed), ("changed", changed))
        if keys
    ]
    return "; ".join(parts) or "no change"


def _key(change: dict[str, Any]) -> str:
    key = change.get("key")
    if not isinstance(key, str):
        raise ValueError('"key" must name a task')
    return key


def _keys(change: dict[str, Any]) -> list[str]:
    keys = change.get("keys")
    if not isinstance(keys, list) or len(keys) < 2 or not all(isinstance(k, str) for k in keys):
        raise ValueError('"keys" must name two or more tasks')
    return keys


def _fields(change: dict[str, Any], name: str) -> dict[str, Any]:
    value = change.get(name)
    if not isinstance(value, dict):
        raise ValueError(f'"{name}" must be an object')
    return value


def _task(change: dict[str, Any], name: str) -> dict[str, Any]:
    value = _fields(change, name)
    if not isinstance(value.get("key"), str):
        raise ValueError(f'"{name}" must be a task with a "key"')
    return value


def _parts(change: dict[str, Any]) -> list[dict[str, Any]]:
    parts = change.get("into")
    if not isinstance(parts, list) or len(parts) < 2:
        raise ValueError('"into" must list two or more tasks')
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("key"), str):
            raise ValueError('each part of "into" must be a task with a "key"')
    return [dict(p) for p in parts]


def _find(tasks: list[dict[str, Any]], key: str) -> dict[str, Any]:
    for task in tasks:
        if task.get("key") == key:
            return task
    raise ValueError(f"no task {key!r} in the plan")


def _deps(task: dict[str, Any]) -> list[str]:
    return list(task.get("depends_on") or [])


def _rewire(tasks: list[dict[str, Any]], gone: set[str], to: list[str]) -> None:
    """Whoever depended on a key in `gone` depends on `to` instead."""
    for task in tasks:
        deps = _deps(task)
        if gone.intersection(deps):
            kept = [d for d in deps if d not in gone]
            task["depends_on"] = list(dict.fromkeys(kept + [t for t in to if t != task["key"]]))


def _remove(tasks: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    gone = _find(tasks, key)
    rest = [t for t in tasks if t is not gone]
    _rewire(rest, {key}, _deps(gone))
    return rest


def _update(tasks: list[dict[str, Any]], key: str, fields: dict[str, Any]) -> list[dict[str, Any]]:
    task = _find(tasks, key)
    task.update(fields)
    new_key = task.get("key")
    if new_key != key:
        if not isinstance(new_key, str):
            raise ValueError('"key" must be a string')
        _rewire([t for t in tasks if t is not task], {key}, [new_key])
    return tasks


def _split(
    tasks: list[dict[str, Any]], key: str, parts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    whole = _find(tasks, key)
    for part in parts:
        part.setdefault("depends_on", _deps(whole))
        for name in ("agent", "phase", "epic", "priority"):
            if name in whole:
                part.setdefault(name, whole[name])
    at = tasks.index(whole)
    rest = tasks[:at] + parts + tasks[at + 1 :]
    _rewire([t for t in rest if all(t is not p for p in parts)], {key}, [p["key"] for p in parts])
    return rest


def _merge(
    tasks: list[dict[str, Any]], keys: list[str], into: dict[str, Any]
) -> list[dict[str, Any]]:
    merged = [_find(tasks, k) for k in keys]
    gone = set(keys)
    if "depends_on" not in into:
        parents = [d for m in merged for d in _deps(m) if d not in gone]
        into["depends_on"] = list(dict.fromkeys(parents))
    at = tasks.index(merged[0])
    rest = [t for t in tasks[:at] if all(t is not m for m in merged)] + [into]
    rest += [t for t in tasks[at:] if all(t is not m for m in merged)]
    _rewire([t for t in rest if t is not into], gone, [into["key"]])
    return rest
