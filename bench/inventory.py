"""Inventory speed and correctness: `swarm_common.inventory.scan` over a generated tree of git
repositories (no servers needed).

    .venv/bin/python bench/inventory.py --repos 1000

The tree: `--repos` small repositories in groups of 20 (`gNN/rNNNN`, depth 2), copies of
five templates made once with `git fast-import` (Python, Node, Rust, Go, C/C++; commits
inside and outside the last 30 days), each with an untracked file that counts and ignored
folders that do not (`build/`, `node_modules/`, `target/`); every 10th has links out of the
root (a folder and a file), every 50th an untracked clone inside it (a project of its own),
every 100th is an empty repository; each group also has one folder with a build file outside
git. Every project the scan reports is checked against what was generated.

Prints one JSON line: projects, files, seconds to generate; the baseline (`os.walk` of the
whole tree, `.git` folders included, no git run) and the scan with the default thread pool
and with one worker, best of `--runs`, and the ratios scan / baseline and one worker /
pool. `correct` is false (and the mismatches are listed) when any project is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm_common import inventory

DAY_S = 86400
IDENTITY = "Bench <bench@example.com>"


@dataclass(frozen=True)
class Template:
    name: str
    files: dict[str, str]
    recent: int
    """Commits in the last 30 days."""
    old: int
    languages: dict[str, int]
    builds: list[str]
    ignored: dict[str, str]
    """Untracked files that .gitignore hides."""


TEMPLATES = [
    Template(
        "python",
        {
            "pyproject.toml": "[project]\nname = 'x'\n",
            "src/pkg/__init__.py": "",
            "src/pkg/core.py": "def f():\n    return 1\n",
            "tests/test_core.py": "def test():\n    pass\n",
            ".gitignore": "build/\n*.log\n",
        },
        recent=3,
        old=2,
        languages={"Python": 3},
        builds=["pyproject"],
        ignored={f"build/out{i}.py": "x" for i in range(5)} | {"run.log": "log"},
    ),
    Template(
        "node",
        {
            "package.json": "{}\n",
            "index.js": "module.exports = 1\n",
            "lib/a.js": "1\n",
            "lib/b.ts": "export {}\n",
            ".gitignore": "node_modules/\ndist/\n",
        },
        recent=5,
        old=0,
        languages={"JavaScript": 2, "TypeScript": 1},
        builds=["npm"],
        ignored={f"node_modules/m{i}/index.js": "x" for i in range(20)},
    ),
    Template(
        "rust",
        {
            "Cargo.toml": "[package]\n",
            "src/main.rs": "fn main() {}\n",
            "src/lib.rs": "\n",
            ".gitignore": "target/\n",
        },
        recent=0,
        old=3,
        languages={"Rust": 2},
        builds=["cargo"],
        ignored={f"target/debug/o{i}.rs": "x" for i in range(5)},
    ),
    Template(
        "go",
        {
            "go.mod": "module x\n",
            "main.go": "package main\n",
            "pkg/x.go": "package pkg\n",
            "pkg/x_test.go": "package pkg\n",
            "Makefile": "all:\n",
        },
        recent=1,
        old=1,
        languages={"Go": 3, "Makefile": 1},
        builds=["go", "make"],
        ignored={},
    ),
    Template(
        "c",
        {
            "CMakeLists.txt": "project(x)\n",
            "src/a.c": "int a;\n",
            "src/a.h": "int a;\n",
            "src/b.cpp": "int b;\n",
            "scripts/run.sh": "true\n",
            "docs/guide.md": "# guide\n",
        },
        recent=2,
        old=1,
        languages={"C": 2, "C++": 1, "CMake": 1, "Shell": 1},
        builds=["cmake"],
        ignored={},
    ),
]
README = "# {name}\n\nA generated {name} project.\n"


def _git(*args: str, cwd: Path, stdin: bytes | None = None) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", *args], cwd=cwd, env=env, input=stdin, check=True, capture_output=True)


def _data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n" % len(raw) + raw + b"\n"


def make_template(folder: Path, template: Template, now: int) -> None:
    """A repository whose history is `template.old` old commits then `template.recent` ones
    of the last days; the first commit adds every file, the others change the README."""
    folder.mkdir(parents=True)
    _git("init", "--quiet", "--template=", "--initial-branch=main", cwd=folder)
    stream = b""
    dates = [now - 400 * DAY_S + i for i in range(template.old)]
    dates += [now - (i + 1) * DAY_S for i in range(template.recent)][::-1]
    readme = README.format(name=template.name)
    for n, when in enumerate(dates):
        stream += b"commit refs/heads/main\n"
        stream += f"committer {IDENTITY} {when} +0000\n".encode() + _data(f"change {n}")
        files = {"README.md": readme + f"change {n}\n"} | (template.files if n == 0 else {})
        for path, content in files.items():
            stream += f"M 100644 inline {path}\n".encode() + _data(content)
    _git("fast-import", "--quiet", cwd=folder, stdin=stream)
    _git("reset", "--quiet", "--hard", "main", cwd=folder)


def _write(folder: Path, files: dict[str, str]) -> None:
    for path, content in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(content)


@dataclass
class Expected:
    files: int
    languages: dict[str, int]
    builds: list[str]
    commits: int
    readme: str


def generate(root: Path, repos: int, templates: Path) -> dict[str, Expected]:
    """The tree under `root`, and what the scan must say of each project (by path)."""
    now = int(time.time())
    for template in TEMPLATES:
        make_template(templates / template.name, template, now)
    expected: dict[str, Expected] = {}
    for i in range(repos):
        group = root / f"g{i // 20:02d}"
        repo = group / f"r{i:04d}"
        if i % 100 == 99:  # an empty repository with one untracked file
            repo.mkdir(parents=True)
            _git("init", "--quiet", "--template=", cwd=repo)
            _write(repo, {"notes.txt": "n"})
            expected[str(repo)] = Expected(1, {}, [], 0, "")
            continue
        template = TEMPLATES[i % len(TEMPLATES)]
        shutil.copytree(templates / template.name, repo, symlinks=True)
        _write(repo, {"notes.txt": "n", **template.ignored})
        expected[str(repo)] = Expected(
            files=len(template.files) + 2,  # and README.md, notes.txt
            languages=template.languages,
            builds=template.builds,
            commits=template.recent,
            readme=(
                README.format(name=template.name) + f"change {template.recent + template.old - 1}"
            ).strip(),
        )
        if i % 10 == 0:  # links out of the root: neither followed nor counted
            (repo / "outside").symlink_to("/usr/share", target_is_directory=True)
            (repo / "hostname").symlink_to("/etc/hostname")
        if i % 50 == 0:  # an untracked clone inside: a project of its own
            inner = repo / "vendor" / "lib"
            shutil.copytree(templates / "rust", inner, symlinks=True)
            rust = TEMPLATES[2]
            expected[str(inner)] = Expected(
                len(rust.files) + 1,
                rust.languages,
                rust.builds,
                rust.recent,
                (README.format(name="rust") + f"change {rust.old - 1}").strip(),
            )
    for group in sorted(root.iterdir()):
        plain = group / "plain"
        _write(
            plain,
            {"package.json": "{}", "app.ts": "x", "lib/b.ts": "y", "node_modules/d/i.js": "z"},
        )
        expected[str(plain)] = Expected(3, {"TypeScript": 2}, ["npm"], -1, "")
    return expected


def check(projects: list[inventory.Project], expected: dict[str, Expected]) -> list[str]:
    wrong = []
    found = {p.path: p for p in projects}
    for path in sorted(set(found) ^ set(expected)):
        wrong.append(f"{path}: {'not expected' if path in found else 'missing'}")
    for path, want in expected.items():
        p = found.get(path)
        if p is None:
            continue
        got = Expected(
            p.files,
            {lang.name: lang.files for lang in p.languages},
            p.build_systems,
            -1 if p.commits_30d is None else p.commits_30d,
            p.readme,
        )
        if got != want:
            wrong.append(f"{path}: got {got}, expected {want}")
    return wrong


def baseline(root: Path) -> int:
    files = 0
    for _, _, names in os.walk(root):
        files += len(names)
    return files


def best(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-depth", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="swarm-inventory-") as tmp:
        root = Path(tmp) / "tree"
        root.mkdir()
        started = time.perf_counter()
        expected = generate(root, args.repos, Path(tmp) / "templates")
        generated_s = time.perf_counter() - started

        walk_s, raw_files = best(args.runs, lambda: baseline(root))
        scan_s, projects = best(args.runs, lambda: inventory.scan([root], max_depth=args.max_depth))
        one_s, _ = best(
            args.runs, lambda: inventory.scan([root], max_depth=args.max_depth, workers=1)
        )
        wrong = check(projects, expected)
    sys.stdout.write(
        json.dumps(
            {
                "repos": args.repos,
                "projects": len(projects),
                "files_counted": sum(p.files for p in projects),
                "files_on_disk": raw_files,
                "cpus": os.cpu_count(),
                "generate_s": round(generated_s, 2),
                "baseline_walk_s": round(walk_s, 3),
                "scan_s": round(scan_s, 3),
                "scan_one_worker_s": round(one_s, 3),
                "scan_per_repo_ms": round(1000 * scan_s / len(projects), 2),
                "ratio_scan_to_walk": round(scan_s / walk_s, 1),
                "ratio_one_worker_to_pool": round(one_s / scan_s, 2),
                "correct": not wrong,
                "mismatches": wrong[:20],
            }
        )
        + "\n"
    )
    if wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
