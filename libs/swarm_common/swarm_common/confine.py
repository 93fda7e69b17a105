"""Running a command that must not see what the process starting it can: the files it is
not meant to read, and the other processes of the same user.

`Confinement.wrap(argv)` gives the argv that runs `argv` in a user, mount and PID namespace
of its own (util-linux `unshare`, no privilege needed where the kernel allows user
namespaces): every folder in `hide` is replaced by an empty one (a file by an empty file),
then the paths in `expose` that lie inside them are put back, read-write (`read_only`:
read-only); `/proc` shows only the command's own processes, so no other process's
environment or memory can be read; when the command's first process ends, every process in
it ends. The command itself runs in a further user namespace where it is not root and has
no capability, so it can neither undo those mounts (they are locked there) nor make new
ones. `available()` says whether
this host allows it. Inside, this module's `main` does the mounts and then executes the
command; it runs with the interpreter that started it, isolated from the environment.

What stays visible: the rest of the file system (tools, the checkout's own files) and the
network; the sandbox of agents (a later layer) limits those.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Confinement", "available"]

_MS_RDONLY = 1
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_RELATIME = 1 << 21
_MNT_DETACH = 2
_ST_NOSUID, _ST_NODEV, _ST_NOEXEC, _ST_RELATIME = 2, 4, 8, 4096
_ST_ATIME = 1024 | 2048  # noatime, nodiratime: the same bits as the MS_ flags
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
INNER_ID = 1000
"""The uid and gid a confined command runs as (Swarm's own user, seen from inside)."""
_UNSHARE = (
    "unshare",
    "--user",
    "--map-root-user",
    "--mount",
    "--pid",
    "--fork",
    "--kill-child",
    "--mount-proc",
)


@dataclass(frozen=True)
class Confinement:
    hide: tuple[Path, ...]
    expose: tuple[Path, ...] = ()
    read_only: tuple[Path, ...] = ()
    """Like `expose`, but put back read-only."""

    def wrap(self, argv: Sequence[str]) -> list[str]:
        spec = {
            "hide": [str(p) for p in self.hide],
            "expose": [str(p) for p in self.expose],
            "read_only": [str(p) for p in self.read_only],
        }
        return [
            *_UNSHARE,
            sys.executable,
            "-I",
            "-m",
            "swarm_common.confine",
            json.dumps(spec),
            *argv,
        ]


_AVAILABLE: list[bool] = []


def available() -> bool:
    """Whether `Confinement.wrap` works here (once it did, it is not checked again)."""
    if not _AVAILABLE and _probe():
        _AVAILABLE.append(True)
    return bool(_AVAILABLE)


def _probe() -> bool:
    with tempfile.TemporaryDirectory(prefix="swarm-confine-probe-") as tmp:
        hidden = Path(tmp) / "hidden"
        hidden.mkdir()
        (hidden / "secret").write_text("x")
        argv = Confinement(hide=(hidden,)).wrap(["test", "!", "-e", str(hidden / "secret")])
        try:
            done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, fstype: str | None, flags: int) -> None:
    libc = _libc()
    args = (source.encode(), target.encode(), fstype.encode() if fstype else None, flags, None)
    if libc.mount(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target}: {os.strerror(errno)}")


def _umount(target: str) -> None:
    _libc().umount2(target.encode(), _MNT_DETACH)


def _outermost(paths: Sequence[Path]) -> list[Path]:
    """The existing paths of `paths` that lie inside no other one."""
    real = sorted({p.resolve() for p in paths if p.exists()}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in real:
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return kept


def _enter(hide: Sequence[Path], expose: Sequence[Path], read_only: Sequence[Path]) -> None:
    """Inside the namespaces: hide, then put back what is exposed (shallower paths first,
    so a writable folder can sit inside a read-only one)."""
    hidden = _outermost(hide)
    wanted = [(p, False) for p in expose] + [(p, True) for p in read_only]
    kept = sorted(
        (
            (p.resolve(), ro)
            for p, ro in wanted
            if p.exists() and any(p.resolve().is_relative_to(h) for h in hidden)
        ),
        key=lambda item: len(item[0].parts),
    )
    staging = Path(tempfile.mkdtemp(prefix="swarm-confine-"))
    held: list[tuple[Path, Path, bool]] = []
    for i, (path, ro) in enumerate(kept):
        hold = staging / str(i)
        hold.mkdir() if path.is_dir() else hold.touch()
        _mount(str(path), str(hold), None, _MS_BIND | _MS_REC)
        held.append((hold, path, ro))
    empty = staging / "empty"
    empty.touch()
    for path in hidden:
        if path.is_dir():
            _mount("tmpfs", str(path), "tmpfs", 0)
        else:
            _mount(str(empty), str(path), None, _MS_BIND)
    for hold, path, ro in held:
        if hold.is_dir():
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        _mount(str(hold), str(path), None, _MS_BIND | _MS_REC)
        if ro:
            _mount("none", str(path), None, _read_only_flags(path))
        _umount(str(hold))
    for hold, _, _ in held:  # unmounted: removing them touches nothing exposed
        hold.rmdir() if hold.is_dir() else hold.unlink()
    empty.unlink()
    staging.rmdir()
    os.chdir(os.getcwd())  # the working folder as the new mounts show it


def _read_only_flags(path: Path) -> int:
    """A read-only remount of the bind mount at `path`, keeping the flags it was locked with
    (a user namespace may not drop nosuid, nodev, noexec or the atime ones)."""
    flags = os.statvfs(path).f_flag
    kept = flags & (_ST_NOSUID | _ST_NODEV | _ST_NOEXEC | _ST_ATIME)
    relatime = _MS_RELATIME if flags & _ST_RELATIME else 0
    return _MS_REMOUNT | _MS_BIND | _MS_RDONLY | kept | relatime


def _become_nobody() -> None:
    """Leave the namespace where this process is root for one nested in it where it is not:
    the mounts made above are locked there (they cannot be undone), and the command runs
    without capabilities as uid and gid `INNER_ID` (Swarm's user outside)."""
    libc = _libc()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare: {os.strerror(errno)}")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{INNER_ID} 0 1")
    Path("/proc/self/gid_map").write_text(f"{INNER_ID} 0 1")


def main(args: Sequence[str]) -> None:
    spec = json.loads(args[0])
    argv = list(args[1:])
    try:
        _enter(
            [Path(p) for p in spec["hide"]],
            [Path(p) for p in spec["expose"]],
            [Path(p) for p in spec["read_only"]],
        )
        _become_nobody()
    except OSError as exc:
        sys.stderr.write(f"swarm: cannot confine the command: {exc}\n")
        sys.exit(126)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
