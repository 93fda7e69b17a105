"""The agent's sandbox: what an attempt's agent, setup command and gates can see and reach.

`Sandboxing.detect` picks the mode once, at the adapter's start (`SWARM_SANDBOX`):
`required` refuses to start without one, `auto` (the default) takes the best that works
here and says which, `off` runs commands as the adapter's own user, as before.

- `bwrap` (Debian's bubblewrap, where the host allows user namespaces): every command runs
  in namespaces of its own (user, mount, PID, network, IPC, UTS, cgroup), as an unprivileged
  user with no capability. It sees the toolchains read-only (`/usr`, a curated `/etc`, the
  adapter's Python, its agent CLI, `SWARM_SANDBOX_READ_ONLY`), its worktree, its private
  home and a fresh `/tmp` read-write, and of the repository's mirror only what git in the
  worktree needs: the objects (read-write, for `git add`), refs and packed refs read-only,
  its own worktree's admin folder, and a stand-in for the mirror's `config` (which may name
  a remote with its credentials). Other worktrees, homes, setup files, artifacts, the
  adapter's environment (`/proc` shows the sandbox's own processes only) and every other
  file of the host stay out of sight.
- `none`: nothing of the above (the escape check stays the only guard).

Its network is loopback only. `Cell.wrap` puts `sandbox_init` in front of the command when
the attempt may reach anything: it listens inside on 127.0.0.1 for each forwarded port (an
http model API on a port of its own, its host name mapped to 127.0.0.1 in the sandbox's
`/etc/hosts`) and on `PROXY_PORT` (`HTTPS_PROXY`: the proxy for https model APIs and the
session's `sandbox.allow_hosts`), and relays through Unix sockets to the attempt's `Egress`
(`swarm_adapter.egress`), outside, which lets through only those hosts and counts the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from swarm_adapter import sandbox_init
from swarm_adapter.egress import Egress, Target
from swarm_adapter.runners.base import Runner
from swarm_adapter.settings import AdapterSettings
from swarm_common.procs import SignalledArgv
from swarm_common.specs import NOOP_AGENT

__all__ = [
    "PROXY_PORT",
    "Cell",
    "Sandboxing",
    "Endpoint",
    "SandboxUnavailable",
    "endpoint",
    "sandboxing_for",
]

log = logging.getLogger(__name__)

Setting = Literal["required", "auto", "off"]
Mode = Literal["bwrap", "none"]

PROXY_PORT = 3128
"""Where the sandbox's HTTP proxy listens inside (`HTTPS_PROXY`)."""
INNER_ID = 1000
"""The uid and gid commands run as inside (mapped to the adapter's own outside)."""
NET_INSIDE = "/run/swarm/net"
"""Where the attempt's relay sockets appear inside."""
_PROBE_TIMEOUT_S = 10.0
_ETC = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "crypto-policies",
    "gitconfig",
    "host.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "pki",
    "protocols",
    "services",
    "ssl",
    "timezone",
)
"""What of `/etc` the sandbox sees (read-only); its own `passwd`, `group` and `hosts`
stand in for the host's."""
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_PROXY_ENV = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy")
_NO_PROXY = "localhost,127.0.0.1,::1"
_STOP_SIGNALS = "TERM,INT,HUP"


class SandboxUnavailable(RuntimeError):
    """`SWARM_SANDBOX=required` and no sandbox works here; the message says why."""


@dataclass(frozen=True)
class Endpoint:
    """A model API the agent talks to."""

    host: str
    port: int
    tls: bool


def endpoint(url: str) -> Endpoint:
    """The host and port of a model API's base URL."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Endpoint(parts.hostname or "", port, tls=parts.scheme == "https")


def _entry(model: Endpoint) -> str:
    """An allow-list entry (`egress.allowed`) for exactly this model API's host and port."""
    host = f"[{model.host}]" if ":" in model.host else model.host
    return f"{host}:{model.port}"


@dataclass(frozen=True)
class Sandboxing:
    """The adapter's sandbox mode and what every cell of it shares."""

    mode: Mode
    reason: str = ""
    """Why there is none (`mode` none)."""
    read_only: tuple[Path, ...] = ()
    state: Path | None = None
    """The adapter's generated files (`passwd`, `group`), in a private temporary folder."""

    @classmethod
    def detect(
        cls,
        setting: Setting,
        *,
        read_only: Iterable[Path] = (),
        hidden: Iterable[Path] = (),
        environ: Mapping[str, str],
    ) -> Sandboxing:
        """The mode for this adapter, logged once; raises `SandboxUnavailable` when
        `required` finds none. No read-only folder holds or lies in a `hidden` one (the
        workspace)."""
        if setting == "off":
            log.warning("sandbox off: agents run as the adapter's own user (SWARM_SANDBOX=off)")
            return cls(mode="none", reason="SWARM_SANDBOX=off")
        paths = _toolchains([*read_only, *_path_dirs(environ)], hidden=hidden)
        state = Path(tempfile.mkdtemp(prefix="swarm-sandbox-"))
        _write_ids(state)
        sandboxing = cls(mode="bwrap", read_only=tuple(paths), state=state)
        why = _bwrap_fails(sandboxing)
        if why is not None:
            shutil.rmtree(state, ignore_errors=True)
            if setting == "required":
                raise SandboxUnavailable(f"SWARM_SANDBOX=required, but {why}")
            log.warning(
                "sandbox unavailable: agents run as the adapter's own user (%s); install "
                "bubblewrap and allow user namespaces, or see deploy/README.md",
                why,
                extra={"mode": "none", "reason": why},
            )
            return cls(mode="none", reason=why)
        log.info("sandbox ready", extra={"mode": "bwrap", "read_only": [str(p) for p in paths]})
        return sandboxing

    @property
    def on(self) -> bool:
        return self.mode != "none"

    async def cell(
        self,
        *,
        worktree: Path,
        home: Path,
        repo: Path,
        models: Sequence[Endpoint],
        allow_hosts: Sequence[str],
        context: Mapping[str, Any],
    ) -> Cell:
        """An attempt's sandbox, its relay listening when it may reach anything. Close it
        (`Cell.close`) when the attempt ends."""
        if not self.on:
            return Cell(self, worktree=worktree)
        forwards = {m.port: Target(m.host, m.port) for m in models if not m.tls and m.port >= 1024}
        proxied = [_entry(m) for m in models if m.port not in forwards]
        net: Path | None = None
        egress: Egress | None = None
        if forwards or proxied or allow_hosts:
            net = Path(tempfile.mkdtemp(prefix="swarm-net-"))
            egress = Egress(
                net, forwards=forwards, allow=allow_hosts, trusted=proxied, context=context
            )
            try:
                await egress.start()
            except BaseException:
                await egress.close()
                shutil.rmtree(net, ignore_errors=True)
                raise
        cell = Cell(
            self,
            worktree=worktree,
            home=home,
            repo=repo,
            net=net,
            egress=egress,
            forwards=tuple(sorted(forwards)),
            proxy=bool(proxied or allow_hosts),
            names=tuple(sorted({t.host for t in forwards.values()} - {"127.0.0.1", "::1"})),
        )
        try:
            await asyncio.to_thread(cell.prepare)
        except BaseException:
            await cell.close()
            raise
        return cell


_DETECTED: dict[tuple[str, tuple[Path, ...]], Sandboxing] = {}
"""Each adapter setting's sandbox, detected once per process (tests make many adapters)."""


def sandboxing_for(settings: AdapterSettings, runner: Runner) -> Sandboxing:
    """The sandbox of an adapter with these settings and this runner: detected once per
    process for each setting and set of paths (`noop` runs nothing: none)."""
    if settings.agent == NOOP_AGENT:
        return Sandboxing(mode="none", reason="noop tasks run no command")
    paths = (*settings.sandbox_read_only, *runner.sandbox_paths())
    key = (settings.sandbox, (settings.workspace, *paths))
    if key not in _DETECTED:
        _DETECTED[key] = Sandboxing.detect(
            settings.sandbox, read_only=paths, hidden=[settings.workspace], environ=os.environ
        )
    return _DETECTED[key]


@dataclass
class Cell:
    """One attempt's sandbox: `wrap` an argv to run it inside."""

    sandboxing: Sandboxing
    worktree: Path
    home: Path | None = None
    repo: Path | None = None
    net: Path | None = None
    egress: Egress | None = None
    forwards: tuple[int, ...] = ()
    proxy: bool = False
    names: tuple[str, ...] = ()
    """Host names of forwarded model APIs, mapped to 127.0.0.1 inside."""
    files: Path | None = None
    """This cell's generated files (`hosts`, the mirror's stand-in config)."""
    _admin: Path | None = field(default=None, repr=False)

    @property
    def proxy_port(self) -> int:
        """`PROXY_PORT`, or the next port up that no forward takes."""
        port = PROXY_PORT
        while port in self.forwards:
            port += 1
        return port

    def prepare(self) -> None:
        """Write the cell's own files; find the worktree's admin folder in the mirror."""
        self.files = Path(tempfile.mkdtemp(prefix="swarm-cell-"))
        hosts = "127.0.0.1\tlocalhost swarm " + " ".join(self.names) + "\n::1\tlocalhost\n"
        (self.files / "hosts").write_text(hosts)
        if self.repo is not None:
            (self.files / "config").write_text(_stand_in_config(self.repo))
            self._admin = _admin_folder(self.worktree, self.repo)

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside this cell (unchanged when the sandbox is off).

        bubblewrap outside ignores SIGTERM, SIGINT and HUP (`env --ignore-signal`): sent to
        the run's process group, they reach the command inside, which may end gracefully
        (`kill_grace_s`) and bwrap with it; had bwrap died of them, its namespace would have
        been killed outright. Inside, the command gets them back at their defaults
        (`env --default-signal`, or `sandbox_init`, which resets them before it becomes the
        command)."""
        if not self.sandboxing.on:
            return list(argv)
        command = ["env", f"--default-signal={_STOP_SIGNALS}", *argv]
        if self.forwards or self.proxy:
            assert self.net is not None
            spec = {str(port): f"{NET_INSIDE}/{port}.sock" for port in self.forwards}
            if self.proxy:
                spec[str(self.proxy_port)] = f"{NET_INSIDE}/proxy.sock"
            init = Path(sandbox_init.__file__).resolve()
            command = [
                os.path.realpath(sys.executable),
                "-I",
                "-S",
                str(init),
                json.dumps({"forwards": spec}),
                "--",
                *argv,
            ]
        return SignalledArgv(
            ["env", f"--ignore-signal={_STOP_SIGNALS}", *self._bwrap(), "--", *command]
        )

    def _bwrap(self) -> list[str]:
        args = [
            "bwrap",
            "--unshare-all",
            "--unshare-user",
            "--die-with-parent",
            "--uid",
            str(INNER_ID),
            "--gid",
            str(INNER_ID),
            "--hostname",
            "swarm",
            *_system_mounts(self.sandboxing),
        ]
        assert self.files is not None
        args += ["--ro-bind", str(self.files / "hosts"), "/etc/hosts"]
        for path in self.sandboxing.read_only:
            args += ["--ro-bind", str(path), str(path)]
        init = Path(sandbox_init.__file__).resolve()
        args += ["--ro-bind", str(init), str(init)]
        args += ["--bind", str(self.worktree), str(self.worktree)]
        if self.home is not None:
            args += ["--bind", str(self.home), str(self.home)]
        if self.repo is not None:
            args += _mirror_mounts(self.repo, self._admin, self.files / "config")
        if self.net is not None:
            args += ["--bind", str(self.net), NET_INSIDE]
        for name in _PROXY_ENV:
            args += ["--unsetenv", name]
        if self.proxy:
            url = f"http://127.0.0.1:{self.proxy_port}"
            for name in _PROXY_ENV[:4]:
                args += ["--setenv", name, url]
            args += ["--setenv", "NO_PROXY", _NO_PROXY, "--setenv", "no_proxy", _NO_PROXY]
        # The root (folders bwrap made for the mounts) read-only: nothing but the worktree,
        # the home, /tmp and /dev/shm takes a write.
        args += ["--remount-ro", "/", "--chdir", str(self.worktree)]
        return args

    def summary(self) -> dict[str, Any] | None:
        """What the attempt's result says of its sandbox: mode, connections let through
        and refused, the first hosts refused."""
        if not self.sandboxing.on:
            return None
        egress = self.egress
        return {
            "mode": self.sandboxing.mode,
            "allowed": egress.allowed if egress else 0,
            "refused": egress.refused if egress else 0,
            "refused_hosts": list(egress.refused_hosts) if egress else [],
        }

    async def close(self) -> None:
        """Stop the relay; remove the cell's files. Idempotent."""
        if self.egress is not None:
            await self.egress.close()
        for folder in (self.net, self.files):
            if folder is not None:
                await asyncio.to_thread(shutil.rmtree, folder, True)


# -- mounts ---------------------------------------------------------------------------------


def _system_mounts(sandboxing: Sandboxing) -> list[str]:
    """The root: /usr and what points into it, a curated /etc, a new /proc and /dev, a
    fresh /tmp."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _TOP_LEVEL:
        top = Path("/") / name
        if top.is_symlink():
            args += ["--symlink", os.readlink(top), str(top)]
        elif top.is_dir():
            args += ["--ro-bind", str(top), str(top)]
    for name in _ETC:
        path = Path("/etc") / name
        if path.is_symlink() and not path.exists():
            continue
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    assert sandboxing.state is not None
    for name in ("passwd", "group"):
        args += ["--ro-bind", str(sandboxing.state / name), f"/etc/{name}"]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
    return args


_ADMIN_READ_ONLY = ("HEAD", "commondir", "gitdir")
"""Of the worktree's admin folder, what the adapter's own git reads after the agent (which
branch it commits on, which repository): read-only, so an agent cannot point the adapter's
commit at another task's branch."""


def _mirror_mounts(repo: Path, admin: Path | None, config: Path) -> list[str]:
    """Of the mirror: everything read-only but its own `config` (a stand-in) and the other
    worktrees' admin folders (hidden); its objects and this worktree's admin folder
    read-write (its `index`), but for `_ADMIN_READ_ONLY`."""
    args = ["--ro-bind", str(repo), str(repo), "--ro-bind", str(config), str(repo / "config")]
    args += ["--bind", str(repo / "objects"), str(repo / "objects")]
    if (repo / "worktrees").is_dir():
        args += ["--tmpfs", str(repo / "worktrees")]
    if admin is not None:
        args += ["--bind", str(admin), str(admin)]
        for name in _ADMIN_READ_ONLY:
            if (admin / name).is_file():
                args += ["--ro-bind", str(admin / name), str(admin / name)]
    return args


def _admin_folder(worktree: Path, repo: Path) -> Path | None:
    """The admin folder (`<mirror>/worktrees/<id>`) the worktree's `.git` file names, when
    it lies inside the mirror's `worktrees/`."""
    link = worktree / ".git"
    if link.is_symlink() or not link.is_file():
        return None
    text = link.read_text(errors="replace").strip()
    if not text.startswith("gitdir:"):
        return None
    admin = (worktree / text.removeprefix("gitdir:").strip()).resolve()
    return admin if admin.parent == (repo / "worktrees").resolve() and admin.is_dir() else None


def _stand_in_config(repo: Path) -> str:
    """The mirror's `core` and `extensions` settings, without remotes or anything else
    (a remote's URL may carry a credential)."""
    found = subprocess.run(
        ["git", "config", "--file", str(repo / "config"), "--get-regexp", r"^(core|extensions)\."],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    lines = ["[core]", "\trepositoryformatversion = 0"]
    extensions: list[str] = []
    for line in found.splitlines():
        key, _, value = line.partition(" ")
        section, _, name = key.partition(".")
        if section == "core" and name in ("repositoryformatversion", "bare"):
            if name == "repositoryformatversion":
                lines[1] = f"\trepositoryformatversion = {value}"
            continue
        if "\n" in value or not name.replace(".", "").replace("-", "").isalnum():
            continue
        (lines if section == "core" else extensions).append(f"\t{name} = {value}")
    if extensions:
        lines += ["[extensions]", *extensions]
    return "\n".join(lines) + "\n"


def _write_ids(state: Path) -> None:
    home = "/tmp"
    (state / "passwd").write_text(
        f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"swarm:x:{INNER_ID}:{INNER_ID}:swarm agent:{home}:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    (state / "group").write_text(f"root:x:0:\nswarm:x:{INNER_ID}:\nnogroup:x:65534:\n")


# -- what the sandbox sees read-only --------------------------------------------------------


def _path_dirs(environ: Mapping[str, str]) -> list[Path]:
    """The folders of `PATH`; for a version manager's `shims` folder (pyenv, rbenv, asdf:
    scripts that run the manager from its root), that root too."""
    found = []
    for entry in environ.get("PATH", "").split(os.pathsep):
        if entry.startswith("/"):
            found.append(Path(entry))
            if Path(entry).name == "shims":
                found.append(Path(entry).parent)
    return found


def _toolchains(paths: Iterable[Path], *, hidden: Iterable[Path] = ()) -> list[Path]:
    """The folders the sandbox sees read-only besides /usr and /etc: the Python that runs
    `sandbox_init`, the given paths (PATH, the agent CLI's package, settings) and the real
    folders their symlinks lead to; nothing under /usr twice, nothing nested twice, never
    `/` or a top folder (`/root`, `/home`, `/work`), never one that holds a `hidden` folder
    or lies in one (a CLI kept beside the workspace is not found inside: keep it apart)."""
    secret = [Path(h).resolve() for h in hidden]
    wanted: list[Path] = [Path(sys.base_prefix)]
    for path in paths:
        path = Path(path)
        if not path.exists():
            continue
        wanted.append(path.absolute())
        wanted.append(path.resolve())
    kept: list[Path] = []
    for path in sorted(set(wanted), key=lambda p: len(p.parts)):
        if len(path.parts) < 3 and path.parts[1:2] not in (("opt",),):
            continue  # `/`, `/root`, `/home`, `/work`: never whole
        if path.parts[1:2] in (("usr",), ("proc",), ("sys",), ("dev",), ("etc",)):
            continue
        if any(h.is_relative_to(path) or path.is_relative_to(h) for h in secret):
            log.warning("not shown in the sandbox: it holds the workspace", extra={"path": path})
            continue
        if any(path.is_relative_to(k) for k in kept):
            continue
        kept.append(path)
    return kept


def _bwrap_fails(sandboxing: Sandboxing) -> str | None:
    """Why bubblewrap cannot run a command here, in a cell of `sandboxing` (the mounts a
    cell uses); None when it can."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (`bwrap`) is not installed"
    assert sandboxing.state is not None
    cell = Cell(sandboxing, worktree=sandboxing.state)  # any folder of its own will do
    try:
        cell.prepare()
        argv = cell.wrap(["test", "-r", "/proc/self/status"])
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap could not start: {exc}"
    finally:
        if cell.files is not None:
            shutil.rmtree(cell.files, ignore_errors=True)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        return f"bubblewrap cannot make a sandbox here ({said[-1] if said else done.returncode})"
    return None
