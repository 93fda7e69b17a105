"""Prepared worktrees, kept per repository and reused: a task's worktree is ready in a few
milliseconds, where `git worktree add` writes every file of the repository (0.2-0.8 s for
5,000 files here), and nothing is removed while a slot waits.

Where they are (inside `worktrees/`, whose per-run folders the escape check does not watch
and whose non-session folders the orchestrator's pruning leaves alone):

    worktrees/.pool/<repo>/ready/<id>   clean, detached at a commit: the next to hand out
    worktrees/.pool/<repo>/used/<id>    given back by an attempt, to be cleaned
    worktrees/.pool/<repo>/new/<id>     made ahead of need (`git worktree add --detach`)
    worktrees/.trash/<id>, homes/.trash/<id>    being deleted

`<id>` is the worktree's name in the mirror (`<mirror>/worktrees/<id>`, git's own state of
it: HEAD, index, the link back), which a move keeps. Where a worktree lies is its state, and
every move is a rename under the repository's lock (`git.repo_lock`), with git's link back
(`<mirror>/worktrees/<id>/gitdir`) rewritten in the same breath, so `git worktree prune`
never sees a worktree gone.

Taking one (`take`): a ready worktree is renamed to the attempt's path (a path left by a
crashed run of the same attempt is thrown away first, never reused), moved from its commit to
the task's base commit touching only the paths that differ (`git diff-tree`, then `git
checkout --no-overlay` of those), and the task's branch is set there (`git update-ref`) and
checked out (its HEAD), any other worktree left on that branch (a crashed attempt's) thrown
away: what `git worktree add -B` did. With none ready, a given-back one nobody is cleaning is
cleaned right there, or one being cleaned is waited for (`WAIT_S` at most); else `git
worktree add --detach --no-checkout` registers a new one (under the lock: git reads every
worktree's admin folder as it adds one) and `git reset --hard` writes its files (outside
it), and one more is made in the background for the next take.

Giving one back (`give_back`), once the result is out: HEAD detached at the attempt's base
commit, renamed into `used/` (its branch and its path are free at once). A background thread
then cleans it: refused when an index entry is marked assume-unchanged or skip-worktree (git
would not look at such a file), `git reset --hard` and `git clean -ffdx` (tracked files
back, untracked and ignored ones gone, nested repositories too), and every file of git's
per-worktree state but HEAD, index and the links removed (a merge or rebase in progress, its
reflog, `config.worktree`, per-worktree refs). Then it goes to `ready/`, or is removed when
`ready/` holds `size` already. Anything unexpected (a `.git` link rewritten, a file git
could not remove) and it is removed rather than reused.

After a crash: a worktree reaches `ready/` only once cleaned. One left mid-task stays at its
attempt's path (the orchestrator's pruning or the next attempt of the task removes it); one
left mid-cleaning stays in `used/`, and the first `take` of the repository after a restart
(any adapter) cleans it again: a `flock` on the folder keeps cleaners apart. Ready worktrees
idle for `idle_s`, pools of repositories that are gone, and the trash are removed by the same
sweep (`sweep`), which an adapter may also run from time to time.

Limits: an agent may write in another attempt's worktree, pooled ones included (see
`escape`: per-run folders are not watched); a pooled worktree changed that way after its
cleaning would be handed out as it is. A worktree is as clean as `git reset --hard` and
`git clean -ffdx` make it: a file whose content was changed while its size, mtime, ctime and
inode stayed the same would not be seen (the writer cannot set ctime back).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, unquote

from swarm_common import git

__all__ = ["IDLE_S", "POOL_SIZE", "Pool"]

log = logging.getLogger(__name__)

POOL_SIZE = 4
"""Ready worktrees kept per repository (`SWARM_WORKTREE_POOL`); 0: none, never reused."""
IDLE_S = 600.0
"""A ready worktree not taken for this long is removed."""
WAIT_S = 5.0
"""With none ready, a take waits this long at most for one being cleaned."""
SWEEP_EVERY_S = 60.0
"""At most this long between two sweeps while worktrees are given back."""
MAX_MOVED_PATHS = 1000
"""More paths differing than this and the whole tree is merged (`git read-tree -m -u`)."""

_KEPT = frozenset({"HEAD", "commondir", "gitdir", "index"})
"""Git's per-worktree state a fresh detached worktree has (besides its reflog)."""
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")


class Pool:
    """The prepared worktrees of every repository of one workspace. Its methods block
    (callers use `asyncio.to_thread`); the cleaning runs on threads of its own."""

    def __init__(self, workspace: Path, *, size: int = POOL_SIZE, idle_s: float = IDLE_S) -> None:
        self.workspace = workspace
        self.root = workspace / "worktrees" / ".pool"
        self.size = size
        self.idle_s = idle_s
        self.cleaner = Background("worktree-cleaner")
        """Cleans given-back worktrees, one at a time, and sweeps."""
        self.maker = Background("worktree-maker")
        """Makes new worktrees ahead of need (slow: every file is written)."""
        self.deleter = Background("worktree-deleter", nice=10)
        """Deletes what was thrown away (`rm -rf`), behind everything else."""
        self._swept: set[Path] = set()
        self._swept_at = time.monotonic()
        self._making: set[Path] = set()
        self._add_s: dict[Path, float] = {}
        """How long the last new worktree of each repository took (s)."""
        self._lock = threading.Lock()
        self._settled = threading.Condition()
        """Notified when a worktree was cleaned or made (or thrown away instead)."""

    # -- taking ----------------------------------------------------------------------------

    def take(self, repo: Path, path: Path, *, branch: str, commit: str) -> bool:
        """Put a worktree of `repo` at `path`, on `branch` reset to `commit`, clean; True when
        a prepared one was reused. Raises `git.GitError` or `TimeoutError`."""
        if not _plain_branch(branch):
            git.check_branch(branch)  # git's own verdict on anything unusual
        if not git.SHA.fullmatch(commit):
            commit = git.resolve_commit(repo, commit)  # a full hash: never read as an option
        self._sweep_once(repo)
        if os.path.lexists(path):  # a crashed run of this attempt: never reused
            with git.repo_lock(repo):  # (nobody else makes this attempt's path meanwhile)
                if os.path.lexists(path):
                    self._drop(repo, path)
        admin = self._reuse(repo, path, commit) if self.size else None
        reused = admin is not None
        try:
            if admin is None:
                admin = self._add(repo, path, commit)
            self._check_out(repo, admin, branch, commit)
        except BaseException:
            with git.repo_lock(repo):
                self._drop(repo, path)
            raise
        if not _listdir(self._state(repo, "ready")):
            self._replenish(repo, commit)
        return reused

    def _reuse(self, repo: Path, path: Path, commit: str) -> Path | None:
        """A pooled worktree at `path`, moved to `commit`; its admin folder. One ready, else
        one given back and cleaned here, else one being cleaned elsewhere, waited for (no
        longer than a new worktree of this repository took last, at most `WAIT_S`: on a
        large repository cleaning is much the cheaper); None when there is none."""
        deadline = time.monotonic() + min(WAIT_S, self._add_s.get(repo, WAIT_S))
        while True:
            admin = self._take_ready(repo, path, commit) or self._take_used(repo, path)
            if admin is not None:
                try:
                    self._move(path, admin, commit)
                except (git.GitError, OSError) as exc:
                    log.warning("a pooled worktree could not be moved; made anew", exc_info=exc)
                    with git.repo_lock(repo):
                        self._drop(repo, path)
                    return None
                return admin
            if time.monotonic() > deadline or not self._busy(repo, "used"):
                return None
            with self._settled:  # in this process; another one's work is seen on the next look
                self._settled.wait(0.05)

    def _take_ready(self, repo: Path, path: Path, commit: str) -> Path | None:
        """Rename a ready worktree (one at `commit` if there is) to `path`; its admin folder,
        or None when none is ready."""
        ready = self._state(repo, "ready")
        with git.repo_lock(repo):
            entries = _listdir(ready)
            entries.sort(key=lambda name: _head(repo / "worktrees" / name) != commit)
            for name in entries:
                entry = ready / name
                admin = self._linked(repo, entry)
                if admin is None or _head(admin) is None or not _only_kept(admin):
                    log.warning("a pooled worktree is not as left; removed", extra={"path": name})
                    self._drop(repo, entry, admin)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                self._rename(entry, path, admin)
                return admin
        return None

    def _take_used(self, repo: Path, path: Path) -> Path | None:
        """Clean a given-back worktree nobody is cleaning, here, and rename it to `path`."""
        used = self._state(repo, "used")
        for name in _listdir(used):
            entry = used / name
            with _flocked(entry) as held:
                if not held:
                    continue
                admin = self._linked(repo, entry)
                clean = admin is not None and _scrubbed(entry, admin)
                with git.repo_lock(repo):
                    if admin is None or not clean:
                        self._drop(repo, entry, admin)
                        continue
                    path.parent.mkdir(parents=True, exist_ok=True)
                    self._rename(entry, path, admin)
                    return admin
        return None

    def _busy(self, repo: Path, state: str) -> bool:
        """Whether a worktree of `repo` in `state` is being worked on (cleaned in `used/`,
        made in `new/`: its folder locked), by this process or another."""
        folder = self._state(repo, state)
        for name in _listdir(folder):
            with _flocked(folder / name) as free:
                if not free and os.path.isdir(folder / name):
                    return True
        return False

    def _move(self, path: Path, admin: Path, commit: str) -> None:
        """Move the worktree at `path` from the commit it is detached at to `commit`,
        rewriting only the paths that differ (the index follows; HEAD is set later)."""
        head = _head(admin)
        if head is None:
            raise git.GitError(["rev-parse", "HEAD"], 1, "the pooled worktree is not detached")
        if head == commit:
            return
        out = git.git(
            "diff-tree", "-r", "-z", "--name-only", "--no-renames", head, commit, cwd=path
        ).stdout
        names = [name for name in out.split("\0") if name]
        if not names:
            return
        unreadable = any("\ufffd" in name for name in names)  # not UTF-8: no pathspec
        if unreadable or len(names) > MAX_MOVED_PATHS or sum(map(len, names)) > 200_000:
            git.git("read-tree", "-m", "-u", head, commit, cwd=path)
            return
        specs = [f":(literal){name}" for name in names]
        git.git("checkout", "--quiet", "--no-overlay", commit, "--", *specs, cwd=path)

    def _add(self, repo: Path, path: Path, commit: str) -> Path:
        """A new worktree at `path`, detached at `commit`; its admin folder. Registered
        under the lock (git reads every worktree's admin folder as it adds one), its files
        written outside it (`git reset --hard`: all of them, the slow part)."""
        started = time.monotonic()
        path.parent.mkdir(parents=True, exist_ok=True)
        with git.repo_lock(repo):
            git.git(
                *("worktree", "add", "--force", "--detach", "--no-checkout", "--quiet"),
                *(str(path), commit),
                git_dir=repo,
            )
        admin = self._linked(repo, path)
        if admin is None:
            raise git.GitError(["worktree", "add"], 1, f"{path} is not linked to {repo}")
        git.git("reset", "--hard", "--quiet", cwd=path)
        self._add_s[repo] = time.monotonic() - started
        return admin

    def _check_out(self, repo: Path, admin: Path, branch: str, commit: str) -> None:
        """Set `branch` to `commit` and check it out (HEAD) in the worktree of `admin`; any
        other worktree on `branch` (a crashed attempt's) is thrown away first."""
        with git.repo_lock(repo):
            for other in _on_branch(repo, branch, besides=admin):
                log.info("a worktree left on the branch is removed", extra={"branch": branch})
                self._drop_admin(repo, other)
            git.update_ref(repo, f"refs/heads/{branch}", commit, old=None, reason="swarm: task")
            _write(admin / "HEAD", f"ref: refs/heads/{branch}\n")

    def _replenish(self, repo: Path, commit: str) -> None:
        """None was ready: make one more in the background, for the next take."""
        if not self.size:
            return
        with self._lock:
            if repo in self._making:
                return
            self._making.add(repo)
        self.maker.submit(self._make, repo, commit)

    def _make(self, repo: Path, commit: str) -> None:
        try:
            if len(_listdir(self._state(repo, "ready"))) >= self.size or self._busy(repo, "new"):
                return  # enough, or one is being made (by any adapter): one at a time
            folder = self._state(repo, "new") / f"p{uuid.uuid4().hex[:12]}"
            folder.mkdir(parents=True)
            with _flocked(folder) as held:  # a sweep leaves it alone while it is made
                if held:
                    self._fill(repo, folder, commit)
        finally:
            with self._lock:
                self._making.discard(repo)
            self._notify()

    def _fill(self, repo: Path, folder: Path, commit: str) -> None:
        try:
            _strip(self._add(repo, folder, commit))
        except BaseException:
            with git.repo_lock(repo):
                self._drop(repo, folder)
            raise
        self._settle(repo, folder)

    # -- giving back -----------------------------------------------------------------------

    def give_back(self, repo: Path, path: Path, *, base: str) -> None:
        """The attempt is over: detach the worktree at `path`, move it out of the way and
        clean it in the background (or throw it away). Fast: a few renames."""
        if not os.path.lexists(path):
            return
        admin = self._linked(repo, path)
        with git.repo_lock(repo):
            if admin is None or not self.size or not git.SHA.fullmatch(base):
                self._drop(repo, path, admin)
                return
            used = self._state(repo, "used") / admin.name
            used.parent.mkdir(parents=True, exist_ok=True)
            _write(admin / "HEAD", base + "\n")  # its branch is free from now on
            try:
                self._rename(path, used, admin)
            except OSError:
                self._drop(repo, path, admin)
                return
        self.cleaner.submit(self._clean, repo, used)
        if time.monotonic() - self._swept_at > SWEEP_EVERY_S:
            self.sweep()

    def _clean(self, repo: Path, entry: Path) -> None:
        """Clean a given-back worktree and make it ready (or remove it). Safe to run twice
        at once: the second finds the folder locked or gone."""
        try:
            with _flocked(entry, wait_s=0.05) as held:  # past a look by `_busy`
                if not held:
                    return
                admin = self._linked(repo, entry)
                if admin is None or not _scrubbed(entry, admin):
                    with git.repo_lock(repo):
                        self._drop(repo, entry, admin)
                    return
                self._settle(repo, entry)
        finally:
            self._notify()

    def _notify(self) -> None:
        with self._settled:
            self._settled.notify_all()

    def _settle(self, repo: Path, entry: Path) -> None:
        """Move a clean worktree to `ready/`, or remove it when enough are ready."""
        with git.repo_lock(repo):
            admin = self._linked(repo, entry)
            ready = self._state(repo, "ready")
            if admin is None or len(_listdir(ready)) >= self.size:
                self._drop(repo, entry, admin)
                return
            ready.mkdir(parents=True, exist_ok=True)
            target = ready / admin.name
            self._rename(entry, target, admin)
            os.utime(target)  # its idle time starts now

    # -- sweeping --------------------------------------------------------------------------

    def sweep(self) -> None:
        """Schedule the upkeep of every pool: worktrees left in `used/` by a crash cleaned,
        idle ones and pools of repositories that are gone removed, the trash emptied. Runs
        at the first take after a start and every `SWEEP_EVERY_S` a worktree is given
        back; an adapter may call it from a loop as well (to expire idle worktrees when no
        task comes)."""
        self._swept_at = time.monotonic()
        self.cleaner.submit(self._sweep_all)

    def _sweep_once(self, repo: Path) -> None:
        with self._lock:
            first = not self._swept
            if repo in self._swept:
                return
            self._swept.add(repo)
        if first:
            self.sweep()
        else:
            self.cleaner.submit(self._sweep_repo, repo)

    def _sweep_all(self) -> None:
        for name in _listdir(self.root):
            repo = (self.workspace / "repos" / unquote(name)).resolve()
            if repo.is_dir() and repo.is_relative_to(self.workspace / "repos"):
                self._sweep_repo(repo)
            else:  # its session is gone
                self._to_trash(self.root / name)
        for top in ("worktrees", "homes"):
            trash = self.workspace / top / ".trash"
            for name in _listdir(trash):
                self.deleter.submit(_delete, trash / name)

    def _sweep_repo(self, repo: Path) -> None:
        for name in _listdir(self._state(repo, "used")):
            self._clean(repo, self._state(repo, "used") / name)
        for name in _listdir(self._state(repo, "new")):
            entry = self._state(repo, "new") / name
            with _flocked(entry) as held:
                if held:  # its maker died
                    with git.repo_lock(repo):
                        self._drop(repo, entry)
        cutoff = time.time() - self.idle_s
        ready = self._state(repo, "ready")
        with git.repo_lock(repo):
            ages = {name: _mtime(ready / name) for name in _listdir(ready)}
            for index, name in enumerate(sorted(ages, key=ages.__getitem__, reverse=True)):
                if index >= self.size or ages[name] < cutoff:
                    self._drop(repo, ready / name)
            git.git("worktree", "prune", git_dir=repo, check=False)

    # -- moving and throwing away ----------------------------------------------------------

    def _state(self, repo: Path, state: str) -> Path:
        name = quote(str(repo.relative_to(self.workspace / "repos")), safe="")
        return self.root / name / state

    def _admin(self, repo: Path, worktree: Path) -> Path | None:
        """The admin folder the `.git` file of `worktree` names, when it is one of `repo`."""
        pointed = git.pointed_git_dir(worktree)
        if pointed is None or (worktree / ".git").is_symlink():
            return None
        if pointed.parent != (repo / "worktrees").resolve() or not pointed.is_dir():
            return None
        return pointed

    def _linked(self, repo: Path, worktree: Path) -> Path | None:
        """The admin folder of `worktree` when the links both ways hold."""
        admin = self._admin(repo, worktree)
        if admin is None:
            return None
        try:
            back = (admin / "gitdir").read_text(errors="replace").strip()
        except OSError:
            return None
        return admin if back == f"{worktree}/.git" else None

    def _rename(self, source: Path, target: Path, admin: Path) -> None:
        """Move a worktree; callers hold the repository's lock."""
        os.rename(source, target)
        _write(admin / "gitdir", f"{target}/.git\n")

    def _drop(self, repo: Path, worktree: Path, admin: Path | None = None) -> None:
        """Throw a worktree away: out of the way at once, deleted in the background, its
        admin folder removed (the one whose link back names it: a `.git` file an agent
        rewrote must not lead to another worktree's). Callers hold the repository's lock."""
        admin = admin or self._linked(repo, worktree) or _admin_naming(repo, worktree)
        self._to_trash(worktree)
        if admin is not None:
            shutil.rmtree(admin, ignore_errors=True)

    def _drop_admin(self, repo: Path, admin: Path) -> None:
        try:
            pointed = Path((admin / "gitdir").read_text(errors="replace").strip()).parent
        except OSError:
            pointed = None
        if pointed is not None and self._admin(repo, pointed) == admin:
            self._to_trash(pointed)
        shutil.rmtree(admin, ignore_errors=True)

    def _to_trash(self, path: Path) -> None:
        trash(self.workspace, path, self.deleter)


def trash(workspace: Path, path: Path, deleter: Background) -> None:
    """Move `path` into its top folder's trash (`worktrees/.trash/<id>/`, `homes/...`) and
    delete it there in the background; deleted in place when it cannot be moved. Only
    folders sit at the trash's top, which the escape check reads as per-run folders."""
    if not os.path.lexists(path):
        return
    top = path.relative_to(workspace).parts[0]
    bin_ = workspace / top / ".trash" / uuid.uuid4().hex
    try:
        bin_.mkdir(parents=True)
        os.rename(path, bin_ / path.name)
    except OSError:
        _delete(path)
        _delete(bin_)
        return
    deleter.submit(_delete, bin_)


def _delete(path: Path) -> None:
    """`rm -rf`: no Python loop holding the interpreter's lock for every file."""
    subprocess.run(
        ["rm", "-rf", "--", str(path)], check=False, capture_output=True, stdin=subprocess.DEVNULL
    )


def _scrubbed(worktree: Path, admin: Path) -> bool:
    """Make a given-back worktree as a fresh one at its HEAD; False when it cannot be."""
    try:
        return _scrub(worktree, admin)
    except (git.GitError, TimeoutError, OSError) as exc:
        log.warning("a given-back worktree cannot be cleaned; removed", exc_info=exc)
        return False


def _scrub(worktree: Path, admin: Path) -> bool:
    listing = git.git("ls-files", "-v", "-z", cwd=worktree).stdout
    if any(entry[:2] not in ("H ", "M ") for entry in listing.split("\0") if entry):
        return False  # assume-unchanged or skip-worktree: git would not look at the file
    git.git("reset", "--hard", "--quiet", cwd=worktree)
    cleaned = git.git("clean", "-ffdx", "--quiet", cwd=worktree, check=False)
    if cleaned.returncode != 0 or cleaned.stderr.strip():
        return False
    _strip(admin)
    return _head(admin) is not None


def _strip(admin: Path) -> None:
    """Remove git's per-worktree state but what a fresh detached worktree needs."""
    for name in _listdir(admin):
        if name not in _KEPT:
            stale = admin / name
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()
    _write(admin / "commondir", "../..\n")


def _plain_branch(branch: str) -> bool:
    """A branch name git surely accepts (Swarm's own: `swarm/<session>/task/<key>`), checked
    without running git; anything else is left to `git check-ref-format`."""
    parts = branch.split("/")
    return (
        _PLAIN.fullmatch(branch) is not None
        and ".." not in branch
        and not any(part.endswith((".", ".lock")) for part in parts)
    )


def _admin_naming(repo: Path, worktree: Path) -> Path | None:
    """The admin folder of `repo` whose link back names `worktree`."""
    wanted = f"{worktree}/.git"
    for name in _listdir(repo / "worktrees"):
        admin = repo / "worktrees" / name
        try:
            if (admin / "gitdir").read_text(errors="replace").strip() == wanted:
                return admin
        except OSError:
            continue
    return None


def _on_branch(repo: Path, branch: str, *, besides: Path) -> list[Path]:
    """Admin folders of the worktrees of `repo` (but `besides`) with `branch` checked out."""
    wanted = f"ref: refs/heads/{branch}"
    found = []
    for name in _listdir(repo / "worktrees"):
        admin = repo / "worktrees" / name
        if admin.resolve() == besides:
            continue
        try:
            head = (admin / "HEAD").read_text(errors="replace").strip()
        except OSError:
            continue
        if head == wanted:
            found.append(admin)
    return found


def _head(admin: Path) -> str | None:
    """The commit a detached worktree is at; None when its HEAD is not a commit hash."""
    try:
        head = (admin / "HEAD").read_text(errors="replace").strip()
    except OSError:
        return None
    return head if git.SHA.fullmatch(head) else None


def _only_kept(admin: Path) -> bool:
    return set(_listdir(admin)) <= _KEPT


def _write(path: Path, text: str) -> None:
    """Replace a small file at once: a reader sees the old content or the new."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    partial.write_text(text)
    os.replace(partial, path)


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


@contextlib.contextmanager
def _flocked(folder: Path, wait_s: float = 0.0) -> Iterator[bool]:
    """Hold an exclusive `flock` on a folder, waiting `wait_s` at most: yields False when
    another holds it or the folder is gone. The kernel drops it when its holder dies."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield False
        return
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.01)
        try:  # renamed away (taken, cleaned) between the open and the lock
            same = os.path.samestat(os.fstat(fd), os.stat(folder))
        except OSError:
            same = False
        yield same
    finally:
        os.close(fd)


class Background:
    """Jobs run one after another on a thread started when there is work and ending when
    there is none (no idle thread per adapter, nothing to shut down). A job's failure is
    logged and the next one runs."""

    def __init__(self, name: str, *, nice: int = 0) -> None:
        self.name = name
        self.nice = nice
        self._jobs: deque[tuple[Callable[..., object], tuple[object, ...]]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[..., object], *args: object) -> None:
        with self._cond:
            self._jobs.append((job, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name)
                self._thread.start()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until every job submitted so far is done; False on the timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._thread is None, timeout_s)

    def _run(self) -> None:
        if self.nice:
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        while True:
            with self._cond:
                if not self._jobs:
                    self._thread = None
                    self._cond.notify_all()
                    return
                job, args = self._jobs.popleft()
            try:
                job(*args)
            except Exception:
                log.exception("worktree upkeep failed", extra={"job": getattr(job, "__name__", "")})
