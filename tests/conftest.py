"""Fixtures on real servers (see `tests/servers.py`): a migrated database and a Redis key
prefix per test, the orchestrator app in-process, adapters, and git repositories."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from swarm_adapter.runners.shell import ShellRunner
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.worker import Adapter
from swarm_common import git
from swarm_common.streams import Keys
from swarm_orchestrator.api.app import create_app
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.engine import make_engine, make_sessionmaker
from swarm_orchestrator.db.migrate import upgrade
from swarm_orchestrator.settings import OrchestratorSettings
from tests.e2e.stack import TEST_TOKEN, Stack, stopped_after
from tests.servers import (
    Servers,
    create_database,
    database_name,
    drop_database,
    drop_stale_databases,
    forget_keys,
    run_sync,
    with_database,
)
from tests.waiting import transactions_settled

TIMELINE_READS = ("/events", "/progress")
"""Reads answered from settled timeline entries only."""

# Tests never read a developer's own Swarm configuration.
for _name in [n for n in os.environ if n.startswith("SWARM_") and not n.startswith("SWARM_TEST")]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    found = Servers()
    yield found
    found.close()


@pytest.fixture(scope="session")
def template_database(servers: Servers) -> Iterator[str]:
    """A database at the newest schema that every test's database is cloned from."""
    run_sync(lambda: drop_stale_databases(servers.pg_admin_url))
    name = database_name("tmpl")
    run_sync(lambda: create_database(servers.pg_admin_url, name))
    run_sync_blocking(upgrade, with_database(servers.pg_admin_url, name))
    yield name
    run_sync(lambda: drop_database(servers.pg_admin_url, name))


def run_sync_blocking(fn: object, *args: object) -> None:
    """Run a blocking function that itself calls `asyncio.run` (Alembic's env.py) in a
    thread of its own."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(fn, *args).result()  # type: ignore[arg-type]


@pytest.fixture
def database_url(servers: Servers, template_database: str) -> Iterator[str]:
    name = database_name("")
    run_sync(lambda: create_database(servers.pg_admin_url, name, template=template_database))
    yield with_database(servers.pg_admin_url, name)
    run_sync(lambda: drop_database(servers.pg_admin_url, name))


@pytest.fixture
def redis_url(servers: Servers) -> str:
    return servers.redis_url


@pytest.fixture
def redis_prefix(servers: Servers) -> Iterator[str]:
    prefix = f"swarmtest-{uuid.uuid4().hex[:12]}"
    yield prefix
    with SyncRedis.from_url(servers.redis_url) as store:
        forget_keys(store, Keys(prefix).all_match)


@pytest.fixture
def keys(redis_prefix: str) -> Keys:
    return Keys(redis_prefix)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=False)
    yield client
    await client.aclose()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def settings(
    database_url: str, redis_url: str, redis_prefix: str, workspace: Path, tmp_path: Path
) -> OrchestratorSettings:
    """Orchestrator settings with the loops off: tests drive relay and consumer in burst
    mode through `state.background`. Local repositories may be anywhere in the test's own
    folder (but its workspace), for tenants' tokens too (tests/orchestrator/test_repo_policy.py
    tries the server's defaults)."""
    return OrchestratorSettings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        workspace=workspace,
        local_repo_roots=[tmp_path],
        tenants_use_local_roots=True,
        run_loops=False,
        consumer_name="orch-test",
        api_token=SecretStr(TEST_TOKEN),
        rate_limit_per_s=0,
    )


@pytest.fixture
async def app_state(
    settings: OrchestratorSettings,
) -> AsyncIterator[tuple[httpx.AsyncClient, AppState]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: AppState = app.state.swarm

        async def settle(request: httpx.Request) -> None:
            # A timeline page holds what has settled (see `transactions_settled`).
            if request.method == "GET" and request.url.path.endswith(TIMELINE_READS):
                await transactions_settled(state.sessionmaker)

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://swarm.test",
            headers={"Authorization": f"Bearer {TEST_TOKEN}"},
            event_hooks={"request": [settle]},
        ) as client:
            yield client, state


@pytest.fixture
def api(app_state: tuple[httpx.AsyncClient, AppState]) -> httpx.AsyncClient:
    return app_state[0]


@pytest.fixture
def state(app_state: tuple[httpx.AsyncClient, AppState]) -> AppState:
    return app_state[1]


def init_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """A git repository with one commit on `main`."""
    path.mkdir(parents=True, exist_ok=True)
    for name, content in (files or {"README.md": "# test repo\n"}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    identity = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    git.git("init", "--quiet", "--initial-branch=main", cwd=path)
    git.git("add", "--all", cwd=path)
    git.git("commit", "--quiet", "-m", "initial", cwd=path, env=identity)
    return path


def commits_touching(git_dir: Path, path: str) -> list[str]:
    """The commits reachable from any ref of `git_dir` that change `path`. Refs only, not
    `--all`: that also reads the HEADs of the repository's worktrees, and a worktree that
    another process is adding has a null HEAD for a moment (git: "bad object")."""
    log = git.git("log", "--glob=refs/*", "--format=%H", "--", path, git_dir=git_dir)
    return log.stdout.split()


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "repo")


@pytest.fixture
def adapter_settings(redis_url: str, redis_prefix: str, workspace: Path) -> AdapterSettings:
    """A shell adapter without the sandbox: these tests' shell tasks leave marks in the test's
    own folders (`tmp_path`), which the sandbox hides; `tests/adapter/test_sandbox.py` runs
    the attempt's life (cancel, timeout, stop, kill) inside it."""
    return AdapterSettings(
        sandbox="off",
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        workspace=workspace,
        agent="shell",
        worker_name="shell-test",
        heartbeat_interval_s=0.2,
        cancel_poll_interval_s=0.05,
        kill_grace_s=1.0,
        shutdown_grace_s=2.0,
        allow_shell_agent=True,
    )


@pytest.fixture
def adapter(adapter_settings: AdapterSettings, redis: Redis) -> Adapter:
    return Adapter(settings=adapter_settings, redis=redis, runner=ShellRunner())


def branch_commit(repo: Path, branch: str) -> str | None:
    proc = subprocess.run(
        ["git", f"--git-dir={repo}", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or None


@pytest.fixture
def stack(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    workspace: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    running = Stack(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        workspace=workspace,
        logs=tmp_path / "logs",
    )
    with stopped_after(running, request):
        yield running


# --- lanes -------------------------------------------------------------------------------
# The slow families carry a marker, given here by where a test lives, so that no file can
# forget it: `make test-fast` leaves them out, `make test` (and CI) runs everything. The
# most specific path wins; a new file in one of these folders joins the folder's lane.
TESTS = Path(__file__).parent
LANES: dict[str, tuple[str, ...]] = {
    "agents": ("agents",),  # the real agent CLIs from npm
    "agents/test_agent_adapters.py": ("agents", "e2e"),  # and real Swarm processes
    "agents/test_handoffs.py": ("agents", "e2e"),  # and real Swarm processes
    "agents/test_parsing.py": (),  # recorded transcripts fed to the runners: no CLI, fast
    "chaos": ("chaos", "e2e"),
    "e2e": ("e2e",),
    "e2e/test_dashboard.py": ("e2e", "browser"),
    "e2e/test_dashboard_plans.py": ("e2e", "browser"),
    "e2e/test_dashboard_blackboard.py": ("e2e", "browser"),
    "e2e/test_dashboard_reviews.py": ("e2e", "browser"),
}
# Real orchestrator and adapter processes, wherever the test lives.
E2E_FIXTURES = {"stack", "chaos"}


def lane_markers(item: pytest.Item) -> set[str]:
    """The markers `item` gets from the lanes: by its path, and `e2e` for a test that
    starts Swarm's processes through a fixture."""
    try:
        where = item.path.relative_to(TESTS).as_posix()
    except ValueError:
        return set()
    matching = [p for p in LANES if where == p or where.startswith(p + "/")]
    markers = set(LANES[max(matching, key=len)]) if matching else set()
    if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
        markers.add("e2e")
    return markers


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in sorted(lane_markers(item)):
            if item.get_closest_marker(name) is None:
                item.add_marker(name)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
