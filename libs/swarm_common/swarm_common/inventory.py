"""Repository inventory: which projects lie under some folders, and what each one is made of.

A *project* is a git repository (a folder with `.git`) or, outside any repository and any
other project, a folder with a build file (`pyproject.toml`, `package.json`, `Cargo.toml`,
`go.mod`, `pom.xml`, `Makefile`, ...). For each one `scan` records its languages by share
of files, its build systems, its file count and size, its commits of the last 30 days and
an excerpt of its README; `describe_commit` makes the same record of one commit of a bare
repository (a session's mirror: no worktree), for the planner.

What a scan reads, and what it never does:

- In a git repository the files are what `git ls-files -co --exclude-standard` lists
  (tracked, and untracked but not ignored), so `.gitignore`, `.git/info/exclude` and nested
  `.gitignore`s apply exactly as git applies them; git runs with no system or global config,
  no hooks, no fsmonitor, a timeout, and a thread pool runs these calls side by side.
  Outside git a subset of `.gitignore` applies (`swarm_common._gitignore`) and dependency
  and cache folders (`node_modules`, `.venv`, `__pycache__`, ...) are skipped.
- A symbolic link is never followed: not a linked folder, not a linked file (neither is
  counted), not a `.git` that is a link. A repository whose git folder, common folder or
  alternate object stores lie outside the scanned root is recorded without asking git
  (its files walked like a plain folder's, no commit count).
- Projects are looked for down to `max_depth` folders below each root (the root is depth
  0); a project's own files are counted whatever their depth. `exclude` names folders never
  entered (the orchestrator's workspace, say).

Everything here blocks; async callers run it with `asyncio.to_thread`.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from swarm_common import git
from swarm_common._gitignore import IgnoreRules
from swarm_common.text import clean_text

__all__ = [
    "BUILD_FILES",
    "LANGUAGES",
    "InventoryError",
    "LanguageShare",
    "Project",
    "describe_commit",
    "scan",
]

log = logging.getLogger(__name__)

README_CHARS = 1000
"""Longest README excerpt kept."""
TOP_LANGUAGES = 6
"""Languages kept per project, the most used first."""
BUILD_FILE_DEPTH = 2
"""Build files count for a project's build systems down to this many folders below its top
(`frontend/package.json`, `services/api/go.mod`), not deeper (test fixtures, vendored code)."""
GIT_TIMEOUT_S = 60.0
README_MAX_BLOB_BYTES = 1 << 20

LANGUAGES: dict[str, str] = {
    ".py": "Python",
    ".pyi": "Python",
    ".pyx": "Cython",
    ".ipynb": "Jupyter Notebook",
    ".js": "JavaScript",
    ".mjs": "JavaScript",
    ".cjs": "JavaScript",
    ".jsx": "JavaScript",
    ".ts": "TypeScript",
    ".tsx": "TypeScript",
    ".mts": "TypeScript",
    ".cts": "TypeScript",
    ".vue": "Vue",
    ".svelte": "Svelte",
    ".go": "Go",
    ".rs": "Rust",
    ".java": "Java",
    ".kt": "Kotlin",
    ".kts": "Kotlin",
    ".scala": "Scala",
    ".sc": "Scala",
    ".groovy": "Groovy",
    ".gradle": "Groovy",
    ".clj": "Clojure",
    ".cljs": "Clojure",
    ".c": "C",
    ".h": "C",
    ".cc": "C++",
    ".cpp": "C++",
    ".cxx": "C++",
    ".hh": "C++",
    ".hpp": "C++",
    ".hxx": "C++",
    ".m": "Objective-C",
    ".mm": "Objective-C++",
    ".cs": "C#",
    ".fs": "F#",
    ".vb": "Visual Basic",
    ".swift": "Swift",
    ".dart": "Dart",
    ".rb": "Ruby",
    ".erb": "Ruby",
    ".php": "PHP",
    ".pl": "Perl",
    ".pm": "Perl",
    ".lua": "Lua",
    ".r": "R",
    ".jl": "Julia",
    ".ex": "Elixir",
    ".exs": "Elixir",
    ".erl": "Erlang",
    ".hs": "Haskell",
    ".ml": "OCaml",
    ".mli": "OCaml",
    ".zig": "Zig",
    ".nim": "Nim",
    ".sol": "Solidity",
    ".sh": "Shell",
    ".bash": "Shell",
    ".zsh": "Shell",
    ".ps1": "PowerShell",
    ".sql": "SQL",
    ".html": "HTML",
    ".htm": "HTML",
    ".css": "CSS",
    ".scss": "SCSS",
    ".sass": "SCSS",
    ".less": "Less",
    ".tf": "HCL",
    ".hcl": "HCL",
    ".nix": "Nix",
    ".proto": "Protocol Buffers",
    ".cmake": "CMake",
    ".mk": "Makefile",
}
"""File extension (lower case) → language: programming and markup languages; data and prose
(`.json`, `.yaml`, `.md`, `.txt`) are files but no language."""
_NAMED_LANGUAGES = {
    "Makefile": "Makefile",
    "GNUmakefile": "Makefile",
    "makefile": "Makefile",
    "Dockerfile": "Dockerfile",
    "CMakeLists.txt": "CMake",
}

BUILD_FILES: dict[str, str] = {
    "pyproject.toml": "pyproject",
    "setup.py": "setuptools",
    "setup.cfg": "setuptools",
    "Pipfile": "pipenv",
    "requirements.txt": "pip",
    "package.json": "npm",
    "deno.json": "deno",
    "Cargo.toml": "cargo",
    "go.mod": "go",
    "pom.xml": "maven",
    "build.gradle": "gradle",
    "build.gradle.kts": "gradle",
    "settings.gradle": "gradle",
    "settings.gradle.kts": "gradle",
    "build.sbt": "sbt",
    "Makefile": "make",
    "GNUmakefile": "make",
    "makefile": "make",
    "CMakeLists.txt": "cmake",
    "meson.build": "meson",
    "configure.ac": "autotools",
    "WORKSPACE": "bazel",
    "MODULE.bazel": "bazel",
    "BUILD.bazel": "bazel",
    "Gemfile": "bundler",
    "composer.json": "composer",
    "mix.exs": "mix",
    "rebar.config": "rebar",
    "stack.yaml": "stack",
    "Package.swift": "swiftpm",
    "pubspec.yaml": "pub",
    "build.zig": "zig",
    "flake.nix": "nix",
    "Dockerfile": "docker",
}
"""Build file name → build system."""
_BUILD_SUFFIXES = {
    ".csproj": "dotnet",
    ".fsproj": "dotnet",
    ".vbproj": "dotnet",
    ".sln": "dotnet",
    ".cabal": "cabal",
    ".gemspec": "bundler",
}

SKIPPED_FOLDERS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        ".venv",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
    }
)
"""Never entered outside git (inside a repository `.gitignore` decides)."""
_README_ORDER = ("readme.md", "readme.rst", "readme.txt", "readme")
_MAX_ALTERNATES = 16


class InventoryError(ValueError):
    """A scan that cannot be done as asked; `code` says why (stable, for the API)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class LanguageShare(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    files: int
    share: float = Field(description="Its files / the project's files in any known language.")


class Project(BaseModel):
    """One project as the inventory records it."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(description="Absolute path (a bare repository's git folder).")
    name: str
    root: str = Field(description="The scanned root it was found under.")
    kind: Literal["git", "build"] = Field(
        description="`git`: a repository; `build`: a folder with a build file outside git."
    )
    languages: list[LanguageShare] = Field(default_factory=list)
    build_systems: list[str] = Field(default_factory=list)
    files: int = 0
    size_bytes: int = 0
    commits_30d: int | None = Field(
        None, description="Commits of the last 30 days reachable from HEAD; null without git."
    )
    readme: str = Field("", description="The README's first characters (text only).")
    commit: str | None = Field(None, description="The commit described (`describe_commit`).")


# --- what a project is made of: shared by `scan` and `describe_commit` -------------------


def language_of(name: str) -> str | None:
    named = _NAMED_LANGUAGES.get(name)
    if named is not None:
        return named
    dot = name.rfind(".")
    return LANGUAGES.get(name[dot:].lower()) if dot > 0 else None


def build_system_of(name: str) -> str | None:
    found = BUILD_FILES.get(name)
    if found is not None:
        return found
    dot = name.rfind(".")
    return _BUILD_SUFFIXES.get(name[dot:].lower()) if dot > 0 else None


@dataclass
class Tally:
    """Files seen in one project (relative paths), summed into its record."""

    files: int = 0
    size: int = 0
    languages: Counter[str] = field(default_factory=Counter)
    builds: dict[str, int] = field(default_factory=dict)
    """Build system → the shallowest depth of one of its files."""
    readmes: dict[str, str] = field(default_factory=dict)
    """Lower-cased top-level README name → its path, relative."""

    def add(self, rel: str, size: int) -> None:
        self.files += 1
        self.size += size
        slash = rel.rfind("/")
        name = rel[slash + 1 :]
        language = language_of(name)
        if language is not None:
            self.languages[language] += 1
        depth = rel.count("/")
        if depth <= BUILD_FILE_DEPTH:
            build = build_system_of(name)
            if build is not None and depth < self.builds.get(build, BUILD_FILE_DEPTH + 1):
                self.builds[build] = depth
        if slash < 0 and name.lower().startswith("readme"):
            self.readmes.setdefault(name.lower(), rel)

    def readme_path(self) -> str | None:
        """The top-level README to excerpt: Markdown first, then reST, text, plain."""
        if not self.readmes:
            return None
        for preferred in _README_ORDER:
            if preferred in self.readmes:
                return self.readmes[preferred]
        return self.readmes[min(self.readmes)]

    def project(
        self,
        *,
        path: str,
        name: str,
        root: str,
        kind: Literal["git", "build"],
        commits_30d: int | None,
        readme: str,
        commit: str | None = None,
    ) -> Project:
        known = sum(self.languages.values())
        top = sorted(self.languages.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_LANGUAGES]
        return Project(
            path=path,
            name=name,
            root=root,
            kind=kind,
            languages=[
                LanguageShare(name=lang, files=n, share=round(n / known, 4)) for lang, n in top
            ],
            build_systems=sorted(self.builds, key=lambda b: (self.builds[b], b)),
            files=self.files,
            size_bytes=self.size,
            commits_30d=commits_30d,
            readme=readme,
            commit=commit,
        )


def readme_excerpt(data: bytes) -> str:
    """The first `README_CHARS` characters of a README's bytes; empty for a binary file."""
    if b"\0" in data:
        return ""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").strip()
    return clean_text(text[:README_CHARS].rstrip())


def _read_head(path: Path, limit: int) -> bytes:
    """The first `limit` bytes of a regular file, never through a link (nor a FIFO's wait)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, limit)
    except OSError:
        return b""
    finally:
        os.close(fd)


# --- git ---------------------------------------------------------------------------------

_GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
"""No user or system config: a scan's answer depends on the repositories alone."""


def _git(*args: str, cwd: Path | None = None, git_dir: Path | None = None) -> str | None:
    """Git's output, or None when it failed (an empty repository has no HEAD to count from)."""
    try:
        proc = git.git(
            *args,
            cwd=cwd,
            git_dir=git_dir,
            env=_GIT_ENV,
            timeout=GIT_TIMEOUT_S,
            check=False,
            retries=0,
        )
    except git.GitError as exc:  # timed out
        log.warning("inventory: git failed", extra={"git_args": args[0], "error": str(exc)})
        return None
    return proc.stdout if proc.returncode == 0 else None


def commits_since(git_dir: Path, rev: str, *, days: int = 30) -> int:
    """Commits reachable from `rev` in the repository at `git_dir` made in the last `days`
    days; 0 without any commit (an empty repository has no HEAD to count from)."""
    out = _git(
        "rev-list", "--count", f"--since={days}.days", "--end-of-options", rev, git_dir=git_dir
    )
    return int(out.strip() or 0) if out is not None else 0


def _git_store(folder: Path) -> Path | None:
    """The git folder of the repository at `folder`, when `.git` is a folder or a `gitdir:`
    file (never through a link); None otherwise."""
    try:
        mode = os.lstat(folder / ".git").st_mode
    except OSError:
        return None
    if stat.S_ISDIR(mode):
        return folder / ".git"
    if stat.S_ISREG(mode):
        return git.pointed_git_dir(folder)
    return None


def _own_store(folder: Path, root: Path, exclude: Sequence[Path]) -> Path | None:
    """The git folder of the repository at `folder`, when every folder git would read for
    it (that one, its common folder, object stores and their alternates) lies under `root`
    and outside `exclude`; None otherwise."""
    store = _git_store(folder)
    if store is None:
        return None
    try:
        store = store.resolve()
        common_file = store / "commondir"
        common = (
            (store / common_file.read_text().strip()).resolve() if common_file.is_file() else store
        )
        reads = [store, common]
        todo, seen = [common / "objects"], set[Path]()
        while todo:
            objects = todo.pop().resolve()
            if objects in seen:
                continue
            if len(seen) >= _MAX_ALTERNATES:
                return None
            seen.add(objects)
            reads.append(objects)
            alternates = objects / "info" / "alternates"
            if alternates.is_file():
                for line in alternates.read_text(errors="replace").splitlines()[:_MAX_ALTERNATES]:
                    if line.strip() and not line.startswith("#"):
                        todo.append(objects / line.strip())
    except (OSError, RuntimeError):
        return None
    inside = all(_under(p, root) and not any(_under(p, e) for e in exclude) for p in reads)
    return store if inside else None


def _utf8(name: str) -> bool:
    """Whether a file name is valid UTF-8 (one that is not cannot be stored or shown as text:
    such a folder is not entered, such a file is counted)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _under(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


# --- scanning folders --------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    """A git repository to describe (in the pool), and where it lies."""

    folder: Path
    root: Path
    depth: int


@dataclass
class _Scan:
    max_depth: int
    exclude: tuple[Path, ...]
    max_projects: int
    deadline: float | None
    pool: ThreadPoolExecutor | None = None
    """Where found repositories are described; None: they are only collected in `repos`."""
    projects: dict[str, Project] = field(default_factory=dict)
    repos: list[_Found] = field(default_factory=list)
    running: set[Future[tuple[Project, list[_Found]]]] = field(default_factory=set)
    count: int = 0

    def claim(self) -> None:
        """Count one more project; too many ends the scan."""
        self.count += 1
        if self.count > self.max_projects:
            raise InventoryError(
                f"more than {self.max_projects} projects: name narrower roots or a smaller "
                "max depth",
                code="too_many_projects",
            )
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise InventoryError(
                "the scan took too long: name narrower roots or a smaller max depth",
                code="scan_timeout",
            )

    def found_repo(self, found: _Found) -> None:
        """A repository to describe: handed to the pool at once, while the walk goes on."""
        self.claim()
        if self.pool is None:
            self.repos.append(found)
        else:
            self.running.add(self.pool.submit(_describe_repo, self, found))

    def excluded(self, folder: Path) -> bool:
        return any(_under(folder, e) for e in self.exclude)

    def add(self, project: Project) -> None:
        self.projects[project.path] = project


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError:  # vanished, unreadable
        return []


def _has_build_file(entries: Iterable[os.DirEntry[str]]) -> bool:
    for entry in entries:
        if build_system_of(entry.name) is not None:
            try:
                if entry.is_file(follow_symlinks=False):
                    return True
            except OSError:
                continue
    return False


def _visit(scan: _Scan, folder: Path, root: Path, depth: int) -> None:
    """Look for projects in `folder` (outside any project) and below it."""
    if scan.excluded(folder):
        return
    entries = _entries(folder)
    names = {e.name for e in entries}
    if ".git" in names:
        scan.found_repo(_Found(folder, root, depth))
        return
    if _has_build_file(entries):
        scan.claim()
        tally = Tally()
        _walk_plain(scan, tally, folder, root, "", depth, IgnoreRules(), entries)
        scan.add(_plain_project(tally, folder, root, kind="build"))
        return
    if depth >= scan.max_depth:
        return
    for entry in entries:
        if entry.name in SKIPPED_FOLDERS or not _utf8(entry.name):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                _visit(scan, folder / entry.name, root, depth + 1)
        except OSError:
            continue


def _walk_plain(
    scan: _Scan,
    tally: Tally,
    folder: Path,
    root: Path,
    rel: str,
    depth: int,
    rules: IgnoreRules,
    entries: list[os.DirEntry[str]] | None = None,
) -> None:
    """Count the files of a project outside git at `folder` (`rel` below its top); a git
    repository inside it is a project of its own (down to `max_depth`), not its files."""
    if entries is None:
        entries = _entries(folder)
        if any(e.name == ".git" for e in entries):
            if depth <= scan.max_depth:
                scan.found_repo(_Found(folder, root, depth))
            return
    if any(e.name == ".gitignore" for e in entries):
        text = _read_head(folder / ".gitignore", 256 * 1024).decode("utf-8", errors="replace")
        rules = rules.below(rel, text)
    for entry in entries:
        if entry.name == ".git":
            continue
        path = f"{rel}/{entry.name}" if rel else entry.name
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode):
            child = folder / entry.name
            if (
                entry.name in SKIPPED_FOLDERS
                or not _utf8(entry.name)
                or rules.ignored(path, folder=True)
                or scan.excluded(child)
            ):
                continue
            _walk_plain(scan, tally, child, root, path, depth + 1, rules)
        elif stat.S_ISREG(info.st_mode) and not rules.ignored(path, folder=False):
            tally.add(path, info.st_size)


def _plain_project(
    tally: Tally, folder: Path, root: Path, *, kind: Literal["git", "build"]
) -> Project:
    readme = tally.readme_path()
    return tally.project(
        path=str(folder),
        name=folder.name,
        root=str(root),
        kind=kind,
        commits_30d=None,
        readme=readme_excerpt(_read_head(folder / readme, 4 * README_CHARS)) if readme else "",
    )


def _describe_repo(scan: _Scan, found: _Found) -> tuple[Project, list[_Found]]:
    """One repository's record (run in the pool), and the repositories nested in it that
    git does not ignore (untracked clones, submodules), to look at next."""
    folder = found.folder
    store = _own_store(folder, found.root, scan.exclude)
    listing = _list_files(folder, store) if store is not None else None
    if store is None or listing is None:  # git may not read it, or failed
        return _walked_repo(scan, found)
    tally = Tally()
    inner: list[_Found] = []
    for rel in dict.fromkeys(listing.split("\0")):
        if not rel:
            continue
        try:
            info = os.lstat(folder / rel)
        except OSError:  # deleted but still in the index, a name git quoted oddly
            continue
        if stat.S_ISREG(info.st_mode):
            tally.add(rel, info.st_size)
        elif stat.S_ISDIR(info.st_mode):  # a nested repository or a submodule
            depth = found.depth + rel.rstrip("/").count("/") + 1
            if depth <= scan.max_depth:
                inner.append(_Found(folder / rel.rstrip("/"), found.root, depth))
    readme = tally.readme_path()
    project = tally.project(
        path=str(folder),
        name=folder.name,
        root=str(found.root),
        kind="git",
        commits_30d=commits_since(store, "HEAD"),
        readme=readme_excerpt(_read_head(folder / readme, 4 * README_CHARS)) if readme else "",
    )
    return project, inner


def _list_files(folder: Path, store: Path) -> str | None:
    """`git ls-files -co --exclude-standard -z` of the work tree `folder` whose git folder is
    `store`: both named, so git never looks for a repository in the folders above."""
    return _git(
        f"--work-tree={folder}",
        "ls-files",
        "-co",
        "--exclude-standard",
        "-z",
        cwd=folder,
        git_dir=store,
    )


def _walked_repo(scan: _Scan, found: _Found) -> tuple[Project, list[_Found]]:
    """A repository git is not asked about, walked as a plain folder: no commit count."""
    tally = Tally()
    nested = _Scan(scan.max_depth, scan.exclude, max_projects=1 << 30, deadline=None)
    entries = _entries(found.folder)
    _walk_plain(nested, tally, found.folder, found.root, "", found.depth, IgnoreRules(), entries)
    return _plain_project(tally, found.folder, found.root, kind="git"), nested.repos


def _pool_size() -> int:
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def scan(
    roots: Sequence[Path | str],
    *,
    max_depth: int,
    exclude: Sequence[Path | str] = (),
    max_projects: int = 10_000,
    timeout_s: float | None = None,
    workers: int | None = None,
) -> list[Project]:
    """Every project under `roots` (folders; symlinks in them never followed), down to
    `max_depth` folders below each, sorted by path. `exclude`: folders never entered.
    Raises `InventoryError` (`root_not_found`, `not_a_folder`, `too_many_projects`,
    `scan_timeout`)."""
    if max_depth < 0:
        raise InventoryError("max_depth must be 0 or more", code="invalid_depth")
    resolved: list[Path] = []
    for root in sorted({_root(r) for r in roots}):
        if not any(_under(root, outer) for outer in resolved):  # already inside another
            resolved.append(root)
    state = _Scan(
        max_depth=max_depth,
        exclude=tuple(Path(e).resolve() for e in exclude),
        max_projects=max_projects,
        deadline=time.monotonic() + timeout_s if timeout_s is not None else None,
    )
    with ThreadPoolExecutor(workers or _pool_size(), thread_name_prefix="inventory") as pool:
        state.pool = pool
        try:
            for root in resolved:
                _visit(state, root, root, 0)
            while state.running:
                done, state.running = wait(state.running, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    project, inner = future.result()
                    state.add(project)
                    for found in inner:
                        if not state.excluded(found.folder) and _git_store(found.folder):
                            state.found_repo(found)
                if state.deadline is not None and time.monotonic() > state.deadline:
                    state.claim()  # raises
        finally:
            for future in state.running:
                future.cancel()
    return sorted(state.projects.values(), key=lambda p: p.path)


def _root(root: Path | str) -> Path:
    path = Path(root).expanduser()
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise InventoryError(f"{path} does not exist", code="root_not_found") from None
    except (OSError, RuntimeError) as exc:
        raise InventoryError(f"{path} is not a usable path: {exc}", code="not_a_folder") from None
    if not real.is_dir():
        raise InventoryError(f"{path} is not a folder", code="not_a_folder")
    if not _utf8(str(real)):
        raise InventoryError(f"{path!r} is not a UTF-8 path", code="not_a_folder")
    return real


# --- one commit of a bare repository -----------------------------------------------------


def _tree(git_dir: Path, commit: str) -> Iterator[tuple[str, str, int]]:
    """(path, blob id, size) of every regular file in `commit` (no links, no submodules)."""
    out = _git("ls-tree", "-r", "-l", "-z", "--full-tree", commit, git_dir=git_dir)
    if out is None:
        raise InventoryError(f"cannot list the files of {commit[:12]}", code="git_failed")
    for record in out.split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, kind, oid, size = meta.split(maxsplit=3)
        if kind == "blob" and mode in ("100644", "100755") and size.strip().isdigit():
            yield path, oid, int(size)


def describe_commit(
    git_dir: Path | str, commit: str = "HEAD", *, name: str | None = None
) -> Project:
    """The inventory record of `commit` (any revision) of the repository whose git folder is
    `git_dir` (a bare mirror, say): its files as `git ls-tree` lists them, with the same
    languages, build systems, counts and README excerpt as `scan`, and the commits of the
    last 30 days reachable from it. Raises `InventoryError` (`unknown_commit`,
    `git_failed`) and never changes the repository."""
    folder = Path(git_dir)
    try:
        full = git.resolve_commit(folder, commit)
    except git.GitError as exc:
        raise InventoryError(
            f"no commit {commit!r} in {folder}: {exc.stderr[:200]}", code="unknown_commit"
        ) from None
    tally = Tally()
    blobs: dict[str, tuple[str, int]] = {}
    for path, oid, size in _tree(folder, full):
        tally.add(path, size)
        if "/" not in path:
            blobs[path] = (oid, size)
    readme = ""
    readme_path = tally.readme_path()
    if readme_path is not None and blobs[readme_path][1] <= README_MAX_BLOB_BYTES:
        text = _git("cat-file", "blob", blobs[readme_path][0], git_dir=folder)
        readme = readme_excerpt(text.encode()) if text is not None else ""
    label = name or (
        folder.name.removesuffix(".git") if folder.name != ".git" else folder.parent.name
    )
    return tally.project(
        path=str(folder),
        name=label,
        root=str(folder.parent),
        kind="git",
        commits_30d=commits_since(folder, full),
        readme=readme,
        commit=full,
    )
