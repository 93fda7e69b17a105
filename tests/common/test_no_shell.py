"""No shell between Swarm and the programs it runs: every child process gets an argv list.

The sources under `services/` and `libs/` are read with `ast` (not run), so a shell cannot
slip in where no test happens to go: no `shell=True`, no `asyncio.create_subprocess_shell`,
`os.system`, `os.popen` or `subprocess.getoutput`, and a `sh -c` / `bash -c` argv only
where a shell command is the very point (`ALLOWED_SHELL_C`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("services", "libs")

ALLOWED_SHELL_C = {
    # The shell agent: a task's prompt *is* a shell command. Adapters run it only with
    # SWARM_ALLOW_SHELL_AGENT=true.
    "services/adapter/swarm_adapter/runners/shell.py": 1,
    # Quality gates and the setup command: shell commands the session's operator
    # configured (`settings.gates`, `settings.setup.command`; `preparation.py` runs the
    # setup command through `run_gates`).
    "libs/swarm_common/swarm_common/gates/_running.py": 1,
}
"""Files allowed a `<shell> -c` argv, and how many."""

SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "ash"}
_SHELL_C = re.compile(r"-[a-z]*c[a-z]*")  # -c, -lc, -ec, ...
_FORBIDDEN_CALLS = {
    ("os", "system"),
    ("os", "popen"),
    ("asyncio", "create_subprocess_shell"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
}


def _looks_like_shell(node: ast.expr) -> bool:
    """`"bash"`, `"/bin/sh"`, `self._shell or "/bin/sh"`, `shell_path`, ..."""
    for inner in ast.walk(node):
        if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
            text = inner.value.rsplit("/", 1)[-1]
        elif isinstance(inner, ast.Name):
            text = inner.id
        elif isinstance(inner, ast.Attribute):
            text = inner.attr
        else:
            continue
        if text in SHELLS or "shell" in text.lower():
            return True
    return False


def _dotted(node: ast.expr) -> tuple[str, str] | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id, node.attr
    return None


def shell_uses(source: str) -> tuple[list[str], int]:
    """(forbidden uses with their line, count of `<shell> -c` argvs) in `source`."""
    found: list[str] = []
    shell_c = 0
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    found.append(f"line {node.lineno}: shell={ast.unparse(keyword.value)}")
            name = _dotted(node.func)
            if name in _FORBIDDEN_CALLS:
                found.append(f"line {node.lineno}: {'.'.join(name)}()")
            if isinstance(node.func, ast.Name) and node.func.id == "create_subprocess_shell":
                found.append(f"line {node.lineno}: create_subprocess_shell()")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if (node.module, alias.name) in _FORBIDDEN_CALLS:
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.List | ast.Tuple) and node.elts:
            flags = [
                e.value
                for e in node.elts[1:]
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            ]
            if _looks_like_shell(node.elts[0]) and any(_SHELL_C.fullmatch(f) for f in flags):
                shell_c += 1
    return found, shell_c


def _sources() -> list[Path]:
    files = []
    for top in SOURCES:
        files += [p for p in (ROOT / top).rglob("*.py") if ".egg-info" not in str(p)]
    return sorted(files)


def test_no_shell_in_the_services_and_libraries() -> None:
    files = _sources()
    assert len(files) > 20  # the walk found the code
    problems = []
    counted = {}
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        found, shell_c = shell_uses(path.read_text(encoding="utf-8"))
        problems += [f"{rel} {what}" for what in found]
        if shell_c:
            counted[rel] = shell_c
    assert problems == []
    unexpected = {k: v for k, v in counted.items() if ALLOWED_SHELL_C.get(k) != v}
    assert unexpected == {}, "a `<shell> -c` argv outside the allowlist (or a new one in it)"
    assert counted == ALLOWED_SHELL_C, "the allowlist names a shell use that is gone"


def test_the_check_finds_each_kind_of_shell_use() -> None:
    sample = """
import asyncio, os, subprocess
from os import system
from asyncio import create_subprocess_shell
subprocess.run("ls", shell=True)
subprocess.run(["ls"], shell=flag)
subprocess.run(["ls"], shell=False)
os.system("ls")
os.popen("ls")
subprocess.getoutput("ls")
asyncio.create_subprocess_shell("ls")
create_subprocess_shell("ls")
run(["bash", "-c", command])
run(["/bin/sh", "-ec", command])
run([self._shell or "/bin/sh", "-c", "--", prompt])
run(["git", "-c", "core.hooksPath=/dev/null", "status"])
run(["postgres", "-c", "max_connections=200"])
"""
    found, shell_c = shell_uses(sample)
    assert len(found) == 9, found
    assert shell_c == 3
