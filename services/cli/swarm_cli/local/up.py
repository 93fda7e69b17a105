"""`swarm up`: everything on one machine, supervised.

Starts the servers it needs (embedded PostgreSQL and Valkey unless URLs are configured; the
embedded Valkey gives the orchestrator and the adapters a Redis user each, see
`swarm_common.acl`), runs the migrations, then the orchestrator and the adapters as child
processes, prints the API URL once it answers, restarts a child that dies (but an adapter
that left rotation: its attempts kept failing at start, and would again; see
`swarm_adapter.watchdog`), and on Ctrl-C (or SIGTERM) stops the adapters first (they hand
back unfinished attempts), then the orchestrator, then the servers.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

from swarm_adapter.watchdog import OUT_OF_ROTATION_EXIT
from swarm_cli.client import CliError
from swarm_cli.local.demo import DEMO_REPO
from swarm_cli.local.embedded import (
    EmbeddedPostgres,
    EmbeddedValkey,
    ServerStartError,
    spawn,
)
from swarm_cli.local.plan import NOOP_CONCURRENCY, environment_for, plan_adapters
from swarm_common import acl
from swarm_common.private import keep_private
from swarm_common.settings import normalize_database_url, redact_url
from swarm_common.specs import NOOP_AGENT
from swarm_orchestrator.db import migrate
from swarm_orchestrator.settings import OrchestratorSettings, split_setting

__all__ = [
    "RedisUrls",
    "UpOptions",
    "run_up",
    "start_valkey",
]

log = logging.getLogger(__name__)
console = Console(stderr=True, highlight=False)

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
"""What `signal.signal` takes and gives back."""

READY_TIMEOUT_S = 60.0
RESTART_LIMIT = 5


@dataclass
class UpOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".swarm")
    adapters: dict[str, int] | None = None
    """None: two shell adapters, and one per agent CLI that is installed and has its key."""
    demo: bool = False


@dataclass(frozen=True)
class RedisUrls:
    """Where the orchestrator and the adapters connect (each URL holds a password)."""

    orchestrator: str
    adapter: str


def start_valkey(root: Path, prefix: str) -> tuple[EmbeddedValkey, RedisUrls]:
    """The embedded Valkey with Swarm's two users (`swarm_common.acl`) for `prefix` and
    the `default` user off. Their passwords are made once and kept in 0600 files under
    `root`, so a restart (of `swarm up` or of Valkey) gives the same URLs."""
    try:
        valkey = EmbeddedValkey(root, acl_prefix=prefix)
    except ValueError as exc:  # a prefix ACL rules cannot hold
        raise CliError(str(exc)) from None
    valkey.start()
    return valkey, RedisUrls(
        orchestrator=valkey.url_for(acl.ORCHESTRATOR), adapter=valkey.url_for(acl.ADAPTER)
    )


@dataclass
class _Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    retired: bool = False
    """An adapter that left rotation: not restarted."""

    def start(self) -> None:
        self.proc = spawn(self.argv, self.log_path, signal.SIGTERM, env=self.env)

    def stop(self, timeout: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class _Stack:
    def __init__(self, options: UpOptions) -> None:
        self.options = options
        self.root = options.data_dir.resolve()
        self.logs = self.root / "logs"
        self.postgres: EmbeddedPostgres | None = None
        self.valkey: EmbeddedValkey | None = None
        self.children: list[_Child] = []
        self.stop_requested = threading.Event()

    def start_servers(self, settings: OrchestratorSettings) -> tuple[str, RedisUrls]:
        if settings.database_url is not None:
            db_url = settings.database_url.get_secret_value()
            console.print(f"PostgreSQL   {escape(redact_url(db_url))} (configured)")
        else:
            self.postgres = EmbeddedPostgres(self.root)
            db_url = self.postgres.start()
            console.print(
                f"PostgreSQL   embedded, 127.0.0.1:{self.postgres.port}, "
                f"data in {self.postgres.pgdata}"
            )
        if settings.redis_url is not None:
            redis_url = settings.redis_url.get_secret_value()
            console.print(f"Redis        {escape(redact_url(redis_url))} (configured)")
            return db_url, RedisUrls(orchestrator=redis_url, adapter=redis_url)
        self.valkey, urls = start_valkey(self.root, settings.redis_prefix)
        console.print(
            f"Valkey       embedded, 127.0.0.1:{self.valkey.port}, data in {self.valkey.dir}; "
            f"users {acl.ORCHESTRATOR} and {acl.ADAPTER}"
        )
        return db_url, urls

    def add(self, name: str, args: list[str], env: dict[str, str]) -> _Child:
        child = _Child(
            name=name,
            argv=[sys.executable, "-m", "swarm_cli", *args],
            env=env,
            log_path=self.logs / f"{name}.log",
        )
        child.start()
        self.children.append(child)
        return child

    def start_orchestrator(self, env: dict[str, str]) -> _Child:
        host, port = self.options.host, self.options.port
        return self.add(
            "orchestrator",
            ["server", "--host", host, "--port", str(port)],
            environment_for(None, env),
        )

    def start_adapters(self, env: dict[str, str]) -> dict[str, int]:
        """The adapters `--adapters` asks for (or the default ones) whose agent can run
        here; says which were skipped and why. Returns how many of each kind started."""
        adapters, skipped = plan_adapters(self.options.adapters, dict(os.environ))
        for kind, reason in skipped.items():
            console.print(f"Skipped      {kind} adapter: {escape(reason)}")
        for kind, count in adapters.items():
            args = ["adapter", "--agent", kind]
            if kind == NOOP_AGENT:  # its slots cost nothing: one adapter takes many
                args += ["--concurrency", str(NOOP_CONCURRENCY)]
            for i in range(count):
                self.add(f"adapter-{kind}-{i + 1}", args, environment_for(kind, env))
        return adapters

    def supervise(self) -> None:
        """Restart children that die, until a stop is requested."""
        while not self.stop_requested.wait(0.5):
            for child in self.children:
                if child.retired or child.proc is None or child.proc.poll() is None:
                    continue
                code = child.proc.returncode
                if code == OUT_OF_ROTATION_EXIT:  # it would only fail again; the rest runs on
                    child.retired = True
                    console.print(
                        f"[red]{child.name} left rotation: its attempts kept failing at start; "
                        f"not restarted (see {child.log_path})[/]"
                    )
                    continue
                if child.restarts >= RESTART_LIMIT:
                    console.print(
                        f"[red]{child.name} exited ({code}) too often; see {child.log_path}[/]"
                    )
                    self.stop_requested.set()
                    break
                child.restarts += 1
                console.print(
                    f"[yellow]{child.name} exited ({code}); restarting "
                    f"({child.restarts}/{RESTART_LIMIT})[/]"
                )
                child.start()

    def stop(self) -> None:
        adapters = [c for c in self.children if c.name.startswith("adapter")]
        others = [c for c in self.children if not c.name.startswith("adapter")]
        for child in adapters:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in adapters:
            child.stop(timeout=45)
        for child in others:
            child.stop(timeout=20)
        if self.valkey is not None:
            self.valkey.stop()
        if self.postgres is not None:
            self.postgres.stop()


def _wait_ready(url: str, child: _Child, timeout_s: float, stop: threading.Event) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stop.is_set():
        if child.proc is not None and child.proc.poll() is not None:
            raise CliError(f"the orchestrator exited while starting; see {child.log_path}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    if not stop.is_set():
        raise CliError(
            f"the orchestrator did not become ready in {timeout_s:.0f}s; see {child.log_path}"
        )


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise CliError(
                f"cannot listen on {host}:{port} ({exc.strerror}); is Swarm already running? "
                "Pass --port to use another port."
            ) from None


def run_up(options: UpOptions) -> int:
    """Start everything, serve until Ctrl-C (or SIGTERM, or a child that dies too often),
    then stop it all; the exit code of `swarm up`."""
    keep_private()
    _check_port(options.host, options.port)
    settings = OrchestratorSettings(host=options.host, port=options.port)
    stack = _Stack(options)
    stack.logs.mkdir(parents=True, exist_ok=True)
    workspace = settings.workspace if "SWARM_WORKSPACE" in os.environ else stack.root / "workspace"
    workspace = workspace.resolve()
    previous = _trap_signals(stack)
    try:
        db_url, redis = _prepare_data(stack, settings)
        admin_token = local_admin_token(db_url, stack.root / ADMIN_TOKEN_FILE)
        env = {
            **os.environ,
            "SWARM_DATABASE_URL": db_url,
            "SWARM_REDIS_URL": redis.orchestrator,
            "SWARM_WORKSPACE": str(workspace),
            "PYTHONUNBUFFERED": "1",
        }
        api_url = f"http://{_client_host(options.host)}:{options.port}"
        orchestrator = stack.start_orchestrator({**env, **_local_policy(stack.root, workspace)})
        adapters = stack.start_adapters({**env, "SWARM_REDIS_URL": redis.adapter})
        _wait_ready(api_url, orchestrator, READY_TIMEOUT_S, stack.stop_requested)
        if stack.stop_requested.is_set():
            return 0
        _banner(api_url, stack, adapters)
        if options.demo and not stack.stop_requested.is_set():
            _run_demo(api_url, admin_token, stack, workspace)
        stack.supervise()
        return 0
    finally:
        console.print("Stopping     adapters, orchestrator, servers ...")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stack.stop()
        console.print("Stopped.")


def _local_policy(data_dir: Path, workspace: Path) -> dict[str, str]:
    """What the orchestrator of one machine allows: repositories under the folder `swarm
    up` runs in (unless `SWARM_LOCAL_REPO_ROOTS` says otherwise) and the demo's, and
    checkpoint gates that see nothing of the data folder (passwords, the admin token, the
    servers' data) but the demo's repository, and webhooks to this machine's own receivers
    (unless `SWARM_WEBHOOK_ALLOW_PRIVATE` says otherwise)."""
    demo = data_dir / DEMO_REPO
    kept = {demo.name, workspace.name}
    secret = [str(p) for p in data_dir.iterdir() if p.name not in kept]
    hidden = _paths("SWARM_HIDDEN_PATHS") + secret
    roots = _paths("SWARM_LOCAL_REPO_ROOTS") or [str(Path.cwd().resolve())]
    return {
        "SWARM_HIDDEN_PATHS": json.dumps(hidden),
        "SWARM_LOCAL_REPO_ROOTS": json.dumps([*roots, str(demo)]),
        "SWARM_WEBHOOK_ALLOW_PRIVATE": os.environ.get("SWARM_WEBHOOK_ALLOW_PRIVATE", "true"),
    }


def _paths(variable: str) -> list[str]:
    """A list of folders from the environment, read as the orchestrator reads it."""
    value = split_setting(os.environ.get(variable, ""), os.pathsep)
    return [str(p) for p in value] if isinstance(value, list) else []


def _trap_signals(stack: _Stack) -> dict[signal.Signals, _Handler]:
    """Ctrl-C and SIGTERM stop the stack; SIGUSR1 stops every agent at once (the
    orchestrator's `POST /v1/system/stop`). Returns the handlers to put back."""

    def request_stop(signum: int, _frame: object) -> None:
        stack.stop_requested.set()

    def emergency_stop(signum: int, _frame: object) -> None:
        for child in stack.children:
            if child.name == "orchestrator" and child.proc is not None:
                child.proc.send_signal(signal.SIGUSR1)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, emergency_stop)
    return previous


def _prepare_data(stack: _Stack, settings: OrchestratorSettings) -> tuple[str, RedisUrls]:
    """The servers up and the database at the newest schema."""
    try:
        db_url, redis = stack.start_servers(settings)
        console.print("Migrations   running")
        migrate.upgrade(db_url)
    except ServerStartError as exc:
        raise CliError(str(exc)) from None
    return db_url, redis


def _run_demo(api_url: str, admin_token: str, stack: _Stack, workspace: Path) -> None:
    from swarm_cli.local.demo import run_demo

    run_demo(
        api_url=api_url,
        token=admin_token,
        data_dir=stack.root,
        workspace=workspace,
        console=console,
        stop=stack.stop_requested,
    )
    console.print(f"\nSwarm keeps serving at [bold]{api_url}[/]; Ctrl-C stops it.")


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


ADMIN_TOKEN_FILE = "admin.token"


def local_admin_token(db_url: str, path: Path) -> str:
    """The admin token of the local user, kept in `path` (mode 0600): the one already there
    while it is valid, else a new one (`local-admin`). Every `swarm` command run here reads
    it (see `swarm_cli.client`)."""
    import asyncio

    from swarm_orchestrator.access import tokens
    from swarm_orchestrator.db.engine import make_engine, make_sessionmaker

    try:
        kept = path.read_text().strip()
    except OSError:
        kept = ""

    async def ensure() -> str | None:
        engine = make_engine(normalize_database_url(db_url), pool_size=1)
        try:
            async with make_sessionmaker(engine)() as db:
                return await tokens.ensure_local_admin(db, kept, created_by="swarm up")
        finally:
            await engine.dispose()

    made = asyncio.run(ensure())
    if made is not None:
        tokens.write_secret_file(path, made)
        console.print(f"Admin token  new, kept in {path} (mode 0600)")
        return made
    console.print(f"Admin token  kept in {path}")
    return kept


def _banner(api_url: str, stack: _Stack, adapters: dict[str, int]) -> None:
    listed = ", ".join(f"{kind}×{n}" for kind, n in adapters.items() if n) or "none"
    console.print(f"Adapters     {listed}")
    console.print(f"Logs         {stack.logs}")
    console.print(f"\n[bold green]Swarm is up:[/] [bold]{api_url}[/]  (API docs: {api_url}/docs)")
    token_file = stack.root / ADMIN_TOKEN_FILE
    console.print(f"  dashboard:       {api_url}/  (sign in with the token in {token_file})")
    console.print("  submit a graph:  swarm submit FILE.yaml --wait")
    console.print("  see progress:    swarm status   ·   swarm watch SESSION")
    console.print(
        f'  other tools:     export SWARM_API_TOKEN="$(cat {token_file})"  '
        "(swarm commands run here read it themselves)"
    )
    console.print("  Ctrl-C stops everything.\n")
