"""One owner for each piece of state: only `graph/task_state.py` changes a task's `status`
or `merge_status` (or an attempt's `status`), only `graph/session_state.py` a session's.

Read from the source, so a new writer anywhere fails here before it ships: an assignment
to one of these columns, a new `Task`, `Attempt` or `Session` row (`Task(...)`,
`insert(Task)`: a row starts with a status), a `status=`/`merge_status=` given to an
`update()` of their tables, a `setattr` of them, or SQL text that updates or inserts into
`tasks`, `attempts` or `sessions`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    ROOT / "services/orchestrator/swarm_orchestrator",
    ROOT / "services/adapter/swarm_adapter",
    ROOT / "services/cli/swarm_cli",
    ROOT / "libs/swarm_common/swarm_common",
]
OWNERS = {
    "swarm_orchestrator/graph/task_state.py",
    "swarm_orchestrator/graph/session_state.py",
}
COLUMNS = {"status", "merge_status"}
TABLES = {"Task", "Attempt", "Session"}
OTHER_STATUSES = {
    # A status of something else than a task, an attempt or a session.
    "swarm_orchestrator/integration/checkpoints.py": {"checkpoint.status"},
    "swarm_orchestrator/graph/delegation.py": {"proposal.status"},  # a proposed task's
    "swarm_orchestrator/errors.py": {"self.status"},  # an error's HTTP status
    "swarm_cli/client.py": {"self.status"},  # an error's HTTP status
    "swarm_cli/watch.py": {"row.status"},  # the CLI's copy of what the server said
}
_SQL = re.compile(r"\b(UPDATE|INSERT\s+INTO)\s+(tasks|attempts|sessions)\b", re.IGNORECASE)


def _table_of(call: ast.Call) -> str | None:
    """`Task` for `update(Task)...` / `insert(Task)...` / `Task(...)`, following a chain of
    method calls (`update(Task).where(...).values(...)`)."""
    node: ast.expr = call
    while isinstance(node, ast.Call | ast.Attribute):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                if func.id in TABLES:
                    return func.id
                if func.id in ("update", "insert") and node.args:
                    first = node.args[0]
                    return first.id if isinstance(first, ast.Name) and first.id in TABLES else None
            node = func
        else:
            node = node.value
    return None


def writers(source: str, allowed: frozenset[str] = frozenset()) -> list[str]:
    """Every place in `source` that writes a status column of a task, attempt or session."""
    found = []
    for node in ast.walk(ast.parse(source)):
        found += _assignments(node, allowed)
        if isinstance(node, ast.Call):
            found += _call_writes(node)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = _SQL.search(node.value)
            if match:
                found.append(f"{node.lineno}: SQL {match.group(0)}")
    return found


def _assignments(node: ast.AST, allowed: frozenset[str]) -> list[str]:
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        targets = [node.target]
    return [
        f"{node.lineno}: {ast.unparse(t)} = …"  # type: ignore[attr-defined]
        for t in targets
        if isinstance(t, ast.Attribute) and t.attr in COLUMNS and ast.unparse(t) not in allowed
    ]


def _new_row(node: ast.Call) -> str | None:
    """`Task` for `Task(...)` or `insert(Task)`: a new row starts with a status."""
    func = node.func
    if not isinstance(func, ast.Name):
        return None
    if func.id in TABLES:
        return func.id
    first = node.args[0] if node.args else None
    if func.id == "insert" and isinstance(first, ast.Name) and first.id in TABLES:
        return first.id
    return None


def _call_writes(node: ast.Call) -> list[str]:
    new = _new_row(node)
    if new is not None:
        return [f"{node.lineno}: a new {new} row"]
    found = []
    table = _table_of(node)
    for keyword in node.keywords:
        if keyword.arg in COLUMNS and table is not None:
            found.append(f"{node.lineno}: {keyword.arg}= in a write of {table}")
    func = node.func
    if (
        isinstance(func, ast.Name)
        and func.id == "setattr"
        and len(node.args) > 1
        and isinstance(node.args[1], ast.Constant)
        and node.args[1].value in COLUMNS
    ):
        found.append(f"{node.lineno}: setattr(…, {node.args[1].value!r})")
    return found


def _modules() -> list[tuple[str, Path]]:
    return [
        (str(path.relative_to(folder.parent)), path)
        for folder in SOURCES
        for path in sorted(folder.rglob("*.py"))
    ]


@pytest.mark.parametrize(
    "name,path", [m for m in _modules() if m[0] not in OWNERS], ids=lambda v: str(v)
)
def test_no_module_but_the_owners_writes_a_status(name: str, path: Path) -> None:
    allowed = frozenset(OTHER_STATUSES.get(name, ()))
    assert writers(path.read_text(), allowed) == []


def test_the_owners_exist_and_write_the_states() -> None:
    """The owners are where the writes went (the check above would pass vacuously if they
    had been renamed)."""
    names = {name for name, _ in _modules()}
    assert names >= OWNERS
    task_state = (
        ROOT / "services/orchestrator" / "swarm_orchestrator/graph/task_state.py"
    ).read_text()
    found = writers(task_state)
    assert any("task.status" in w for w in found)
    assert any("task.merge_status" in w for w in found)
    assert any("attempt.status" in w for w in found)
    assert any("SQL UPDATE tasks" in w for w in found)


@pytest.mark.parametrize(
    "snippet",
    [
        "task.status = TaskStatus.FAILED",
        "ctx.task.merge_status = 'pending'",
        "row.status: str = 'lost'",
        "setattr(task, 'merge_status', None)",
        "Task(id=x, status='pending')",
        "db.add(Attempt(task_id=t, number=1))",
        "await db.execute(insert(Task), rows)",
        "await db.execute(update(Task).where(Task.id == x).values(status='failed'))",
        "await db.execute(update(Attempt).values(merge_status='merged'))",
        "insert(Session).values(status='active')",
        "SQL = text('UPDATE tasks SET reason = NULL')",
        "SQL = '''insert into attempts (id) values (1)'''",
    ],
)
def test_each_kind_of_write_is_found(snippet: str) -> None:
    assert writers(snippet), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "checkpoint.status = 'passed'",  # allowed in checkpoints.py only
        "update(Worker).values(status='offline')",
        "select(Task).where(Task.status == 'pending')",
        "TaskPublic(status=task.status)",
        "SQL = 'SELECT status FROM tasks'",
        "status = 'queued'",
    ],
)
def test_reads_and_other_rows_are_not_writes(snippet: str) -> None:
    assert writers(snippet, frozenset({"checkpoint.status"})) == [], snippet
