"""Running a command that must not see what the process starting it can: the files it is
not meant to read, and the other processes of the same user.

`Confinement.wrap(argv)` gives the argv that runs `argv` in a user, mount and PID namespace
of its own (util-linux `unshare`, no privilege needed where the kernel allows user
namespaces): every folder in `hide` is replaced by an empty one (a file by an empty file),
then the paths in `expose` that lie inside them are put back, read-write; `/proc` shows
only the command's own processes, so no other process's environment or memory can be read;
when the command's first process ends, every process in it ends. `available()` says whether
this host allows it. Inside, this module's `main` does the mounts and then executes the
command; it runs with the interpreter that started it, isolated from the environment.

What stays visible: the rest of the file system (tools, the checkout's own files) and the
network; the sandbox of agents (a later layer) limits those.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Confinement", "available"]

_MS_BIND = 4096
_MS_REC = 16384
_MNT_DETACH = 2
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

    def wrap(self, argv: Sequence[str]) -> list[str]:
        spec = {"hide": [str(p) for p in self.hide], "expose": [str(p) for p in self.expose]}
        return [
            *_UNSHARE,
            sys.executable,
            "-I",
            "-m",
            "swarm_common.confine",
            json.dumps(spec),
            *argv,
        ]


@functools.cache
def available() -> bool:
    """Whether `Confinement.wrap` works here (checked once per process)."""
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


def _enter(hide: Sequence[Path], expose: Sequence[Path]) -> None:
    """Inside the namespaces: hide, then put back what is exposed."""
    hidden = _outermost(hide)
    kept = [
        p.resolve()
        for p in expose
        if p.exists() and any(p.resolve().is_relative_to(h) for h in hidden)
    ]
    staging = Path(tempfile.mkdtemp(prefix="swarm-confine-"))
    held: list[tuple[Path, Path]] = []
    for i, path in enumerate(kept):
        hold = staging / str(i)
        hold.mkdir() if path.is_dir() else hold.touch()
        _mount(str(path), str(hold), None, _MS_BIND | _MS_REC)
        held.append((hold, path))
    empty = staging / "empty"
    empty.touch()
    for path in hidden:
        if path.is_dir():
            _mount("tmpfs", str(path), "tmpfs", 0)
        else:
            _mount(str(empty), str(path), None, _MS_BIND)
    for hold, path in held:
        if hold.is_dir():
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        _mount(str(hold), str(path), None, _MS_BIND | _MS_REC)
        _umount(str(hold))
    for hold, _ in held:  # unmounted: removing them touches nothing exposed
        hold.rmdir() if hold.is_dir() else hold.unlink()
    empty.unlink()
    staging.rmdir()
    os.chdir(os.getcwd())  # the working folder as the new mounts show it


def main(args: Sequence[str]) -> None:
    spec = json.loads(args[0])
    argv = list(args[1:])
    try:
        _enter([Path(p) for p in spec["hide"]], [Path(p) for p in spec["expose"]])
    except OSError as exc:
        sys.stderr.write(f"swarm: cannot confine the command: {exc}\n")
        sys.exit(126)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
