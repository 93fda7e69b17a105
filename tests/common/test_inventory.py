"""The inventory scanner (`swarm_common.inventory`) on generated trees: what a project is,
languages by share of files, build systems, counts and sizes, commits of the last 30 days,
README excerpts; `.gitignore` applied, symlinks never followed, the depth limit, excluded
folders; and `describe_commit` on a bare repository."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from swarm_common import git
from swarm_common._gitignore import IgnoreRules
from swarm_common.inventory import InventoryError, Project, describe_commit, scan

DAY_S = 86400
OLD = 1577836800  # 2020-01-01


def write(folder: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content)


def commit(repo: Path, files: dict[str, str], *, when: int, message: str = "c") -> None:
    write(repo, files)
    stamp = f"{when} +0000"
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_DATE": stamp,
    }
    git.git("add", "--all", cwd=repo)
    git.git("commit", "--quiet", "--allow-empty", "-m", message, cwd=repo, env=env)


def new_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git.git("init", "--quiet", "--initial-branch=main", cwd=path)
    return path


def by_name(projects: list[Project]) -> dict[str, Project]:
    return {p.name: p for p in projects}


def shares(project: Project) -> dict[str, float]:
    return {lang.name: lang.share for lang in project.languages}


LONG_README = "# Alpha\n\n" + "word " * 400


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/
    alpha/             git: 3 Python, 1 JS, pyproject + web/package.json; ignored build/,
                       *.log; links out of the root; an untracked clone vendor/inner
    group/beta/        git without a commit: go.mod, main.go (untracked)
    group/deep/er/gamma/  git, depth 4
    plain/             no git: Cargo.toml, Rust; its .gitignore hides target/; a clone tool/
    docs/              no git, no build file: not a project
    link -> outside    a link to a folder with a repository: not followed
    """
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    write(outside, {"secret.py": "x = 1\n" * 20_000, "big.js": "1\n" * 1000})
    new_repo(outside / "elsewhere")
    commit(outside / "elsewhere", {"x.py": "1"}, when=int(time.time()) - DAY_S)

    alpha = new_repo(root / "alpha")
    now = int(time.time())
    commit(alpha, {"README.md": LONG_README, "pyproject.toml": "[project]\n"}, when=OLD)
    commit(
        alpha,
        {
            "src/a.py": "print(1)\n",
            "src/b.py": "print(2)\n",
            "tests/test_a.py": "def test(): pass\n",
            "web/app.js": "1\n",
            "web/package.json": "{}\n",
            ".gitignore": "build/\n*.log\n",
        },
        when=now - 3 * DAY_S,
    )
    (alpha / "leak.py").symlink_to(outside / "secret.py")  # a tracked link out of the root
    (alpha / "alias.py").symlink_to(alpha / "src" / "a.py")
    commit(alpha, {}, when=now - DAY_S)
    (alpha / "out").symlink_to(outside, target_is_directory=True)
    write(alpha, {"notes.txt": "n\n", "build/gen.py": "x\n" * 50, "debug.log": "log\n"})
    new_repo(alpha / "build" / "clone")  # ignored: not looked at
    inner = new_repo(alpha / "vendor" / "inner")
    commit(inner, {"lib.rs": "fn f() {}\n"}, when=now - 2 * DAY_S)

    beta = new_repo(root / "group" / "beta")
    write(beta, {"go.mod": "module b\n", "main.go": "package main\n"})

    gamma = new_repo(root / "group" / "deep" / "er" / "gamma")
    commit(gamma, {"Makefile": "all:\n", "x.c": "int x;\n"}, when=now - 5 * DAY_S)

    plain = root / "plain"
    write(
        plain,
        {
            "Cargo.toml": "[package]\n",
            "src/main.rs": "fn main() {}\n",
            "src/util.rs": "\n",
            "ui/package.json": "{}\n",
            "ui/app.ts": "export {}\n",
            ".gitignore": "target/\n!keep.log\n*.log\n",
            "target/debug/x.rs": "x\n",
            "node_modules/dep/index.js": "x\n",
            "run.log": "x\n",
            "README": "Plain project.\n",
        },
    )
    (plain / "passwd").symlink_to("/etc/hostname")
    tool = new_repo(plain / "tool")
    commit(tool, {"t.py": "1\n"}, when=OLD)

    write(root / "docs", {"guide.md": "# guide\n"})
    (root / "link").symlink_to(outside, target_is_directory=True)
    return root


def test_projects_languages_builds_counts_and_readme(tree: Path) -> None:
    found = by_name(scan([tree], max_depth=4))
    assert set(found) == {"alpha", "inner", "beta", "gamma", "plain", "tool"}

    alpha = found["alpha"]
    assert alpha.kind == "git" and alpha.path == str(tree / "alpha") and alpha.root == str(tree)
    # README.md, pyproject.toml, .gitignore, src/a.py, src/b.py, tests/test_a.py, web/app.js,
    # web/package.json, notes.txt: not the links, not build/ or *.log, not the clone.
    assert alpha.files == 9
    expected_size = sum(
        (tree / "alpha" / name).stat().st_size
        for name in (
            "README.md",
            "pyproject.toml",
            ".gitignore",
            "src/a.py",
            "src/b.py",
            "tests/test_a.py",
            "web/app.js",
            "web/package.json",
            "notes.txt",
        )
    )
    assert alpha.size_bytes == expected_size
    assert shares(alpha) == {"Python": 0.75, "JavaScript": 0.25}
    assert [lang.files for lang in alpha.languages] == [3, 1]
    assert alpha.build_systems == ["pyproject", "npm"]  # the top folder's first
    assert alpha.commits_30d == 2  # the first commit is from 2020
    assert alpha.readme == LONG_README.strip()[:1000].rstrip()
    assert len(alpha.readme) <= 1000 and alpha.readme.startswith("# Alpha")

    inner = found["inner"]
    assert (inner.files, inner.commits_30d, shares(inner)) == (1, 1, {"Rust": 1.0})

    beta = found["beta"]
    assert (beta.kind, beta.commits_30d, beta.files) == ("git", 0, 2)  # no commit yet
    assert beta.build_systems == ["go"] and shares(beta) == {"Go": 1.0}

    plain = found["plain"]
    assert plain.kind == "build" and plain.commits_30d is None
    # Cargo.toml, src/main.rs, src/util.rs, ui/package.json, ui/app.ts, .gitignore, README:
    # not target/ (.gitignore), run.log (*.log), node_modules/, the link, the clone tool/.
    assert plain.files == 7
    assert shares(plain) == {"Rust": round(2 / 3, 4), "TypeScript": round(1 / 3, 4)}
    assert plain.build_systems == ["cargo", "npm"]
    assert plain.readme == "Plain project."
    assert found["tool"].commits_30d == 0 and found["tool"].kind == "git"


def test_links_out_of_the_root_are_neither_followed_nor_counted(tree: Path) -> None:
    found = scan([tree], max_depth=6)
    paths = {p.path for p in found}
    assert not any("outside" in p or "/link" in p for p in paths)
    assert all(p.root == str(tree) for p in found)
    alpha = by_name(found)["alpha"]
    assert alpha.size_bytes < 10_000  # not secret.py's 120 kB
    # A root that is itself a link is scanned where it leads (the caller named it).
    via_link = scan([tree / "link"], max_depth=2)
    assert [p.name for p in via_link] == ["elsewhere"]


def test_the_depth_limit(tree: Path) -> None:
    assert "gamma" not in by_name(scan([tree], max_depth=3))
    assert "gamma" in by_name(scan([tree], max_depth=4))
    # Depth 1: alpha and plain (depth 1) but not what lies in them at depth 2.
    assert set(by_name(scan([tree], max_depth=1))) == {"alpha", "plain"}
    assert [p.name for p in scan([tree / "alpha"], max_depth=0)] == ["alpha"]
    with pytest.raises(InventoryError) as raised:
        scan([tree], max_depth=-1)
    assert raised.value.code == "invalid_depth"


def test_excluded_folders_and_overlapping_roots(tree: Path) -> None:
    found = by_name(scan([tree, tree / "alpha"], max_depth=4, exclude=[tree / "group"]))
    assert "beta" not in found and "gamma" not in found
    assert found["alpha"].root == str(tree)  # the outer root, found once


def test_limits_and_bad_roots(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as raised:
        scan([tree], max_depth=4, max_projects=3)
    assert raised.value.code == "too_many_projects"
    with pytest.raises(InventoryError) as raised:
        scan([tmp_path / "nope"], max_depth=1)
    assert raised.value.code == "root_not_found"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InventoryError) as raised:
        scan([tmp_path / "file"], max_depth=1)
    assert raised.value.code == "not_a_folder"


def test_a_git_folder_outside_the_root_is_not_asked(tree: Path, tmp_path: Path) -> None:
    """A `.git` file (or link) that leads out of the root, or one git cannot read: a
    repository, walked as a folder; git never reads a git folder outside the root, so no
    commit count."""
    pointer = tree / "pointer"
    write(pointer, {"a.py": "1\n", "b.py": "2\n"})
    (pointer / ".git").write_text(f"gitdir: {tmp_path / 'outside' / 'elsewhere' / '.git'}\n")
    linked = tree / "linked"
    write(linked, {"c.go": "package c\n"})
    (linked / ".git").symlink_to(tmp_path / "outside" / "elsewhere" / ".git")
    # A `.git` git cannot read, below a repository outside the root: git does not go up to
    # that one.
    new_repo(tmp_path)
    write(tree / "broken", {"x.py": "1\n", "y.py": "2\n", "z.py": "3\n"})
    (tree / "broken" / ".git").mkdir()
    found = by_name(scan([tree], max_depth=1))
    assert (found["broken"].files, found["broken"].commits_30d) == (3, None)
    assert (found["pointer"].kind, found["pointer"].files, found["pointer"].commits_30d) == (
        "git",
        2,
        None,
    )
    assert (found["linked"].files, found["linked"].commits_30d) == (1, None)


def test_describe_commit_of_a_bare_repository(tree: Path, tmp_path: Path) -> None:
    bare = tmp_path / "mirror.git"
    git.git("clone", "--bare", "--quiet", str(tree / "alpha"), str(bare))
    head = git.resolve_commit(bare, "HEAD")
    described = describe_commit(bare, "HEAD")
    assert described.commit == head and described.name == "mirror" and described.kind == "git"
    # What is committed: no untracked notes.txt, no links (leak.py, alias.py).
    assert described.files == 8
    assert shares(described) == {"Python": 0.75, "JavaScript": 0.25}
    assert described.build_systems == ["pyproject", "npm"]
    assert described.commits_30d == 2
    assert described.readme == by_name(scan([tree], max_depth=1))["alpha"].readme
    first = git.git("rev-list", "--max-parents=0", "HEAD", git_dir=bare).stdout.strip()
    old = describe_commit(bare, first, name="alpha")
    assert (old.name, old.files, old.commits_30d, old.languages) == ("alpha", 2, 0, [])
    with pytest.raises(InventoryError) as raised:
        describe_commit(bare, "no-such-branch")
    assert raised.value.code == "unknown_commit"


def test_many_repositories_are_each_right(tmp_path: Path) -> None:
    """Sixty copies of three templates, scanned with the thread pool and with one worker."""
    now = int(time.time())
    templates = tmp_path / "templates"
    kinds = {
        "py": ({"pyproject.toml": "", "m.py": "1", "n.py": "2"}, 2),
        "js": ({"package.json": "{}", "i.js": "1", "t.ts": "2", "README.md": "# js"}, 1),
        "go": ({"go.mod": "", "main.go": "1"}, 0),
    }
    for kind, (files, recent) in kinds.items():
        repo = new_repo(templates / kind)
        commit(repo, files, when=OLD)
        for n in range(recent):
            commit(repo, {}, when=now - (n + 1) * DAY_S)
    root = tmp_path / "many"
    for i in range(60):
        kind = list(kinds)[i % 3]
        shutil.copytree(templates / kind, root / f"g{i // 10}" / f"{kind}{i:02d}", symlinks=True)
    pooled = scan([root], max_depth=2)
    assert pooled == scan([root], max_depth=2, workers=1)
    assert len(pooled) == 60
    for project in pooled:
        files, recent = kinds[project.name[:2]]
        assert project.files == len(files), project
        assert project.commits_30d == recent, project
    js = next(p for p in pooled if p.name.startswith("js"))
    assert shares(js) == {"JavaScript": 0.5, "TypeScript": 0.5} and js.readme == "# js"


def test_the_gitignore_subset() -> None:
    rules = IgnoreRules().below("", "# comment\n*.log\n!keep.log\n/top.txt\nout/\ndocs/**/*.tmp\n")
    assert rules.ignored("a.log", folder=False) and rules.ignored("x/b.log", folder=False)
    assert not rules.ignored("keep.log", folder=False)
    assert rules.ignored("top.txt", folder=False) and not rules.ignored("x/top.txt", folder=False)
    assert rules.ignored("out", folder=True) and not rules.ignored("out", folder=False)
    assert rules.ignored("docs/a/b/c.tmp", folder=False)
    assert rules.ignored("docs/c.tmp", folder=False)
    nested = rules.below("sub", "*.md\n")
    assert nested.ignored("sub/x.md", folder=False) and not nested.ignored("x.md", folder=False)


def test_names_that_are_not_utf8(tmp_path: Path) -> None:
    """A folder whose name is no UTF-8 is not entered (its path could not be stored or shown);
    a file's is counted."""
    root = tmp_path / "root"
    write(root / "plain", {"Makefile": "all:\n"})
    (root / "plain" / "caf\udce9.c").write_bytes(b"int x;\n")  # b"caf\xe9.c"
    new_repo(root / "bad\udcff")
    found = scan([root], max_depth=2)
    assert [(p.name, p.files, shares(p)) for p in found] == [
        ("plain", 2, {"C": 0.5, "Makefile": 0.5})
    ]
    for project in found:
        project.model_dump_json()
