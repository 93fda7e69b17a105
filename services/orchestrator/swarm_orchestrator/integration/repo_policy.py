"""Where a session's repository may come from: the one check every path or URL that names a
repository passes before git touches it (a session's `repo`, and the push target of its
checkpoints, checked again when it is used).

A local repository (an absolute path, or a `file://` URL when `file` is an allowed scheme)
must lie under an allowed root once symlinks and `..` are resolved, and so must the git
folder it points to (a `.git` file's `gitdir:`, a `commondir`) and every object store it
borrows from (`objects/info/alternates`); nothing under the workspace (mirrors, setup
files, artifacts) or another forbidden folder is ever a source. A tenant's token has its
tenant's roots, and the system-wide ones only when the operator says so. A remote URL must
use an allowed scheme (`https` and `ssh` by default) and, when hosts are listed, an allowed
host; git then runs with redirects off and no global or system config (`git.outbound_env`),
so neither a redirect nor an `insteadOf` rewrite leads elsewhere.

Refusals are 403 `repo_not_allowed` (a policy says no) or 422 `invalid_repo` /
`repo_not_found` (not a repository name at all); nothing is stored or cloned before.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from swarm_common import git
from swarm_orchestrator.errors import Forbidden, Invalid
from swarm_orchestrator.settings import REPO_SCHEMES, OrchestratorSettings

__all__ = ["RepoPolicy", "Source"]

_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://[^\s]+$")
_SCP_RE = re.compile(r"^(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9.-]+):(?!//)[^\s]+$")


@dataclass(frozen=True)
class Source:
    """An accepted repository: `clone` is what git is given (a local repository by the
    resolved path of its git folder), `local` says whether it is on this host, `folder` is a
    local repository's working folder (None for a bare one), where setup files come from."""

    clone: str
    local: bool
    folder: Path | None = None


def _resolved(paths: Iterable[Path]) -> tuple[Path, ...]:
    return tuple(Path(p).expanduser().resolve() for p in paths)


@dataclass(frozen=True)
class RepoPolicy:
    roots: tuple[Path, ...] = ()
    """System-wide roots: for tokens without a tenant (and tenants, if shared)."""
    tenant_roots: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)
    tenants_use_roots: bool = False
    schemes: frozenset[str] = frozenset({"https", "ssh"})
    hosts: tuple[str, ...] = ()
    forbidden: tuple[Path, ...] = ()
    """Never a source, even under a root: the workspace, the data folder."""
    git_home: Path | None = None
    """HOME of clones and pushes (`git.outbound_env`); None: an empty private folder."""

    @classmethod
    def from_settings(cls, settings: OrchestratorSettings) -> RepoPolicy:
        return cls(
            roots=_resolved(settings.local_repo_roots),
            tenant_roots={t: _resolved(r) for t, r in settings.tenant_repo_roots.items()},
            tenants_use_roots=settings.tenants_use_local_roots,
            schemes=frozenset(s.lower() for s in settings.repo_schemes),
            hosts=tuple(h.lower() for h in settings.repo_hosts),
            forbidden=_resolved(
                [
                    settings.workspace,
                    *settings.hidden_paths,
                    *([settings.git_home] if settings.git_home else []),
                ]
            ),
            git_home=settings.git_home,
        )

    def git_env(self) -> dict[str, str]:
        """The environment of git commands that reach a session's repository."""
        return git.outbound_env(self.git_home or _empty_home())

    def roots_for(self, tenant: str | None) -> tuple[Path, ...]:
        if tenant is None:
            return self.roots
        own = self.tenant_roots.get(tenant, ())
        return own + self.roots if self.tenants_use_roots else own

    def check(self, repo: str, *, tenant: str | None) -> Source:
        """Accept `repo` for a principal of `tenant`, or raise."""
        if not repo or repo.startswith("-") or any(c in repo for c in "\0\n\r"):
            raise Invalid("repo must be a path or a git URL", code="invalid_repo")
        if "::" in repo:  # git's `<transport>::<address>`: a remote helper
            raise Invalid("repo must be a path or a git URL", code="invalid_repo")
        url = _URL_RE.match(repo)
        if url:
            return self._check_url(repo, url.group(1).lower(), tenant)
        scp = _SCP_RE.match(repo)
        if scp and not repo.startswith("/"):
            self._check_remote("ssh", scp.group(1))
            return Source(clone=repo, local=False)
        if not repo.startswith("/"):
            raise Invalid(
                "repo must be an absolute path or a git URL (https://, ssh://, user@host:path)",
                code="invalid_repo",
            )
        return self._check_local(Path(repo), tenant)

    def check_folder(self, folder: str, *, tenant: str | None) -> Path:
        """Accept a local folder that holds repositories (an inventory's root) for a
        principal of `tenant`: an absolute path under one of its roots, and outside the
        forbidden folders, once symlinks and `..` are resolved. Returns the resolved path.
        Where it lies is checked before whether it exists, so a refusal tells nothing of
        folders outside the roots."""
        if not folder.startswith("/") or any(c in folder for c in "\0\n\r"):
            raise Invalid("a root must be an absolute path", code="invalid_root")
        roots = self.roots_for(tenant)
        if not roots:
            raise Forbidden(
                "local folders are not allowed here: ask the operator for a root "
                "(SWARM_LOCAL_REPO_ROOTS, SWARM_TENANT_REPO_ROOTS)",
                code="repo_not_allowed",
            )
        try:
            real = Path(folder).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a loop of links, a lone surrogate
            raise Invalid(f"{folder!r} is not a usable path: {exc}", code="invalid_root") from None
        self._inside(real, roots, shown=Path(folder))
        if not real.exists():
            raise Invalid(f"{folder} does not exist", code="root_not_found")
        if not real.is_dir():
            raise Invalid(f"{folder} is not a folder", code="invalid_root")
        return real

    def _check_url(self, repo: str, scheme: str, tenant: str | None) -> Source:
        parts = urlsplit(repo)
        if scheme == "file":
            self._allow_scheme(scheme)
            if parts.hostname not in (None, "", "localhost"):
                raise Invalid("a file:// URL names no host", code="invalid_repo")
            path = Path(unquote(parts.path))
            if not path.is_absolute():
                raise Invalid("a file:// URL needs an absolute path", code="invalid_repo")
            return self._check_local(path, tenant)
        if not parts.hostname:
            raise Invalid(f"{scheme}:// URL without a host", code="invalid_repo")
        self._check_remote(scheme, parts.hostname)
        return Source(clone=repo, local=False)

    def _allow_scheme(self, scheme: str) -> None:
        if scheme not in REPO_SCHEMES:
            raise Invalid(f"{scheme}:// is not a git transport Swarm uses", code="invalid_repo")
        if scheme not in self.schemes:
            raise Forbidden(
                f"{scheme}:// repositories are not allowed here (allowed: "
                f"{', '.join(sorted(self.schemes)) or 'none'}; SWARM_REPO_SCHEMES)",
                code="repo_not_allowed",
            )

    def _check_remote(self, scheme: str, host: str) -> None:
        self._allow_scheme(scheme)
        host = host.lower().rstrip(".")
        if self.hosts and not any(fnmatch.fnmatchcase(host, p) for p in self.hosts):
            raise Forbidden(
                f"repositories on {host} are not allowed here (SWARM_REPO_HOSTS)",
                code="repo_not_allowed",
            )

    def _check_local(self, path: Path, tenant: str | None) -> Source:
        roots = self.roots_for(tenant)
        if not roots:
            raise Forbidden(
                "local repositories are not allowed here: use a remote URL, or ask the "
                "operator for a root (SWARM_LOCAL_REPO_ROOTS, SWARM_TENANT_REPO_ROOTS)",
                code="repo_not_allowed",
            )
        try:
            real = path.resolve(strict=True)
            store = _git_store(real)
            reads = [real, *_git_links(real, store)]
        except FileNotFoundError:
            raise Invalid(f"repository {path} does not exist", code="repo_not_found") from None
        except (OSError, RuntimeError) as exc:  # unreadable, a name too long, a loop of links
            raise Invalid(f"repo is not a usable path: {exc}", code="invalid_repo") from None
        if store is None:
            raise Invalid(f"{path} is not a git repository", code="invalid_repo")
        for read in reads:
            self._inside(read, roots, shown=path)
        return Source(clone=str(store), local=True, folder=None if store == real else real)

    def _inside(self, real: Path, roots: tuple[Path, ...], *, shown: Path) -> None:
        if any(real.is_relative_to(f) for f in self.forbidden) or not any(
            real.is_relative_to(r) for r in roots
        ):
            raise Forbidden(
                f"{shown} is not under a folder this token may use as a repository",
                code="repo_not_allowed",
            )


def _git_store(path: Path) -> Path | None:
    """The repository git would read for `path`, and the one Swarm clones: its `.git`
    folder (or where a `.git` file points, or the `commondir` of a linked worktree), or
    `path` itself when it is a bare repository. None when it is neither: git's own guesses
    (`<path>.git`, a file of `gitdir:`) are never taken."""
    dot_git = path / ".git"
    if dot_git.is_dir():
        store = dot_git.resolve()
    elif dot_git.is_file():
        pointed = git.pointed_git_dir(path)
        if pointed is None:
            return None
        store = pointed
    elif path.is_dir() and (path / "HEAD").is_file() and (path / "objects").is_dir():
        store = path
    else:
        return None
    common = _read(store / "commondir").strip()
    return (store / common).resolve() if common else store


MAX_ALTERNATES = 16
"""Most object stores one repository may borrow from, through chains of alternates."""


def _git_links(path: Path, store: Path | None) -> list[Path]:
    """Every folder git would read for the repository at `path` besides it: its store (see
    `_git_store`), the stores its `alternates` name, through chains of them, and where the
    links in them lead."""
    if store is None:
        return []
    found: list[Path] = [store]
    todo = [store / "objects"]
    seen: set[Path] = set()
    while todo and len(seen) < MAX_ALTERNATES:
        objects = todo.pop()
        if objects in seen:
            continue
        seen.add(objects)
        found.extend([objects.resolve(), *_linked(objects.parent, objects, objects / "pack")])
        for line in _read(objects / "info" / "alternates").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                todo.append((objects / line).resolve())
    if todo:
        raise OSError(f"more than {MAX_ALTERNATES} alternate object stores")
    return found


def _linked(*folders: Path) -> list[Path]:
    """Where the symbolic links among `folders` and their entries lead (an object store
    made of links into another repository reads that repository)."""
    found: list[Path] = []
    for folder in folders:
        if folder.is_symlink():
            found.append(folder.resolve())
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        found.extend(e.resolve() for e in entries if e.is_symlink())
    return found


@functools.cache
def _empty_home() -> Path:
    """A folder of this process's own (mode 0700), so git finds no user config in HOME."""
    return Path(tempfile.mkdtemp(prefix="swarm-git-home-"))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[:65536]
    except OSError:
        return ""
