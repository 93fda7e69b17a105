"""What an adapter keeps from its agents, on real Redis and real git: no database URL, no
credential in an agent's (setup's, gate's) environment, no shell agent unless enabled, no
write outside the worktree that goes unnoticed (`swarm_adapter.escape`), and no task value
read as an option by git or a CLI."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_adapter import escape
from swarm_adapter.main import serve
from swarm_adapter.preparation import SetupError, merge_in
from swarm_adapter.runners import RunnerUnavailable, get_runner, unavailable
from swarm_adapter.runners.claude import ClaudeRunner
from swarm_adapter.runners.shell import ShellRunner
from swarm_adapter.settings import AdapterSettings, drop_database_credentials
from swarm_adapter.worker import Adapter
from swarm_common import git
from swarm_common.messages import TaskFailed, TaskMessage
from swarm_common.streams import Keys, encode
from swarm_orchestrator.graph.reports import Outcome
from tests.adapter.helpers import Mirror, events, message, pending, send
from tests.conftest import branch_commit, init_repo
from tests.orchestrator.helpers import (
    apply,
    new_session,
    outcome_event,
    task,
    task_ids,
    task_states,
)
from tests.waiting import wait_until

LEAKS = {
    "SWARM_REDIS_URL": "redis://:redis-pw-do-not-leak@127.0.0.1:1/0",
    "SWARM_DATABASE_URL": "postgresql://swarm:db-pw-do-not-leak@127.0.0.1:1/swarm",
    "SWARM_API_TOKEN": "swarm-api-token-do-not-leak",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-do-not-leak",
    "OPENAI_API_KEY": "sk-openai-do-not-leak-0123456789",
    "GEMINI_API_KEY": "gemini-key-do-not-leak",
}


async def run_one(adapter: Adapter, redis: Redis, keys: Keys, msg: TaskMessage) -> Any:
    """Send `msg`, let the adapter handle it, return the attempt's result event."""
    await send(redis, keys, adapter, msg)
    assert await adapter.process_available() == 1
    outcome = (await events(redis, keys))[-1]
    assert outcome.TYPE in ("task.succeeded", "task.failed", "task.cancelled")
    assert await pending(redis, keys) == 0
    return outcome


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def refs(mirror: Path) -> str:
    return git.git("for-each-ref", "--format=%(refname) %(objectname)", git_dir=mirror).stdout


# -- no database credentials ---------------------------------------------------------------


def test_adapter_settings_never_hold_a_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_DATABASE_URL", "not even a URL")  # would fail to parse if read
    assert AdapterSettings().database_url is None
    explicit = AdapterSettings(database_url=LEAKS["SWARM_DATABASE_URL"])
    assert explicit.database_url is None


def test_a_database_url_is_dropped_from_the_environment_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {"PATH": "/bin", "SWARM_DATABASE_URL": LEAKS["SWARM_DATABASE_URL"]}
    with caplog.at_level(logging.WARNING, logger="swarm_adapter.settings"):
        assert drop_database_credentials(environ) is True
    assert environ == {"PATH": "/bin"}
    [record] = caplog.records
    assert "SWARM_DATABASE_URL" in record.getMessage() and "ignored" in record.getMessage()
    assert "db-pw-do-not-leak" not in caplog.text
    assert drop_database_credentials(environ) is False


def test_the_adapter_process_removes_the_database_url_before_anything_runs(
    tmp_path: Path,
) -> None:
    """`swarm_adapter.main.main` in a process of its own: what it then spawns (here from a
    stand-in for `serve`) has no database URL, and the log says it was ignored."""
    script = (
        "import subprocess, sys\n"
        "import swarm_adapter.main as adapter_main\n"
        "from swarm_adapter.settings import AdapterSettings\n"
        "async def spawn_something(settings):\n"
        "    sys.stdout.write(subprocess.run(['env'], capture_output=True, text=True).stdout)\n"
        "    return 0\n"
        "adapter_main.serve = spawn_something\n"
        "sys.exit(adapter_main.main(AdapterSettings(workspace=sys.argv[1])))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env["SWARM_DATABASE_URL"] = LEAKS["SWARM_DATABASE_URL"]
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "ws")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "PATH=" in done.stdout and "SWARM_DATABASE_URL" not in done.stdout
    assert "db-pw-do-not-leak" not in done.stdout + done.stderr
    assert "SWARM_DATABASE_URL is set" in done.stderr and "ignored" in done.stderr


# -- the shell agent only when enabled -----------------------------------------------------


def test_the_shell_agent_is_unavailable_unless_enabled() -> None:
    for off in ({}, {"SWARM_ALLOW_SHELL_AGENT": "false"}, {"SWARM_ALLOW_SHELL_AGENT": "maybe"}):
        reason = unavailable("shell", {"PATH": "/bin", **off})
        assert reason is not None and "SWARM_ALLOW_SHELL_AGENT=true" in reason
    for on in ("true", "1", "yes", "True"):
        assert unavailable("shell", {"PATH": "/bin", "SWARM_ALLOW_SHELL_AGENT": on}) is None
    with pytest.raises(RunnerUnavailable, match="SWARM_ALLOW_SHELL_AGENT=true"):
        get_runner("shell", AdapterSettings(agent="shell"))
    allowed = AdapterSettings(agent="shell", allow_shell_agent=True)
    assert isinstance(get_runner("shell", allowed), ShellRunner)


async def test_a_shell_adapter_without_the_switch_refuses_to_start(
    redis_url: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = AdapterSettings(agent="shell", redis_url=redis_url, workspace=workspace)
    assert await serve(settings) == 2
    assert "SWARM_ALLOW_SHELL_AGENT=true" in capsys.readouterr().err


def test_swarm_adapter_agent_shell_exits_2_without_the_switch(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env.update(
        SWARM_REDIS_URL="redis://127.0.0.1:1/0",
        SWARM_WORKSPACE=str(tmp_path / "ws"),
        SWARM_DATABASE_URL=LEAKS["SWARM_DATABASE_URL"],
    )
    done = subprocess.run(
        [sys.executable, "-m", "swarm_cli", "adapter", "--agent", "shell"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "SWARM_ALLOW_SHELL_AGENT=true" in done.stderr and "Traceback" not in done.stderr
    assert "db-pw-do-not-leak" not in done.stderr


# -- what agents, setup and gates see ------------------------------------------------------


async def test_agent_setup_and_gates_see_no_credential(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {**LEAKS, "ANTHROPIC_API_KEY": "sk-ant-do-not-leak-0123"}.items():
        monkeypatch.setenv(name, value)
    settings = {
        "setup": {"command": f"env > {tmp_path}/setup.env"},
        "gates": {"test": f"env > {tmp_path}/gate.env", "lint": "", "build": ""},
    }
    msg = message(mirror, f"env > {tmp_path}/agent.env", settings=settings)
    done = await run_one(adapter, redis, keys, msg)
    assert done.TYPE == "task.succeeded", getattr(done, "error", "")
    for step in ("setup", "agent", "gate"):
        dump = tmp_path / f"{step}.env"
        env = read_env(dump)
        assert env["SWARM_TASK_KEY"] == "t1" and env["HOME"].endswith("t1-1"), step
        for name, value in {**LEAKS, "ANTHROPIC_API_KEY": "sk-ant-do-not-leak-0123"}.items():
            assert name not in env, (step, name)
            assert value not in dump.read_text(), (step, name)


def fake_claude(folder: Path, dump: Path) -> Path:
    """A `claude` that records its environment and argv and reports success."""
    path = folder / "claude"
    path.write_text(
        "#!/bin/sh\n"
        f"env > {dump}/env\n"
        f"printf '%s\\n' \"$@\" > {dump}/argv\n"
        'echo \'{"type":"result","subtype":"success","is_error":false,"result":"ok"}\'\n'
    )
    path.chmod(0o755)
    return path


@pytest.fixture
def claude_adapter(
    redis: Redis, redis_url: str, redis_prefix: str, workspace: Path, tmp_path: Path
) -> Adapter:
    settings = AdapterSettings(
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        workspace=workspace,
        agent="claude",
        worker_name="claude-test",
        claude_path=fake_claude(tmp_path, tmp_path),
        kill_grace_s=1.0,
        sandbox="off",  # its CLI writes what it saw into tmp_path, hidden by the sandbox
    )
    environ = {
        "PATH": os.environ["PATH"],
        "ANTHROPIC_API_KEY": "sk-ant-the-claude-key-0123",
        **LEAKS,
    }
    return Adapter(settings=settings, redis=redis, runner=ClaudeRunner(settings, environ))


async def run_claude(adapter: Adapter, redis: Redis, keys: Keys, msg: TaskMessage) -> Any:
    await adapter.setup()
    await redis.xadd(keys.tasks("claude"), encode(msg))  # type: ignore[arg-type]
    assert await adapter.process_available() == 1
    return (await events(redis, keys))[-1]


async def test_an_agent_cli_gets_its_own_key_and_no_other_credential(
    claude_adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    done = await run_claude(claude_adapter, redis, keys, message(mirror, "hi", agent="claude"))
    assert done.TYPE == "task.succeeded", getattr(done, "error", "")
    env = read_env(tmp_path / "env")
    assert env["ANTHROPIC_API_KEY"] == "sk-ant-the-claude-key-0123"
    for name, value in LEAKS.items():
        assert name not in env and value not in (tmp_path / "env").read_text(), name


# -- option-looking values never reach git or a CLI as options -----------------------------


async def test_option_looking_tool_or_model_names_are_refused_before_the_cli_runs(
    claude_adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    bad_tools = message(
        mirror, "hi", agent="claude", allowed_tools=["Write", "--dangerously-skip-permissions"]
    )
    failed = await run_claude(claude_adapter, redis, keys, bad_tools)
    assert (failed.TYPE, failed.reason) == ("task.failed", "invalid_task")
    assert "--dangerously-skip-permissions" in failed.error
    bad_model = message(mirror, "hi", key="t2", agent="claude", model="--help")
    failed = await run_claude(claude_adapter, redis, keys, bad_model)
    assert (failed.TYPE, failed.reason) == ("task.failed", "invalid_task")
    assert not (tmp_path / "argv").exists()  # the CLI never ran
    good = message(mirror, "hi", key="t3", agent="claude", allowed_tools=["Write", "Bash(ls:*)"])
    assert (await run_claude(claude_adapter, redis, keys, good)).TYPE == "task.succeeded"
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[argv.index("--allowedTools") + 1 :][:2] == ["Write", "Bash(ls:*)"]


async def test_a_shell_command_that_begins_with_a_dash_is_run_not_read_as_options(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror
) -> None:
    done = await run_one(
        adapter, redis, keys, message(mirror, "-x 2>/dev/null; echo ran > ran.txt")
    )
    assert done.TYPE == "task.succeeded", getattr(done, "error", "")
    assert done.changed_files == ["ran.txt"]


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("branch", "--edit-description", "not a valid branch name"),
        ("branch", "-x", "not a valid branch name"),
        ("base_commit", "--detach", "unknown ref"),
    ],
)
async def test_an_option_looking_branch_or_commit_fails_before_git_uses_it(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
    field: str,
    value: str,
    says: str,
) -> None:
    before = refs(mirror.path)
    overrides: dict[str, Any] = {field: value}
    msg = message(mirror, f"touch {tmp_path}/ran", **overrides)
    failed = await run_one(adapter, redis, keys, msg)
    assert (failed.TYPE, failed.reason) == ("task.failed", "worktree_error")
    assert says in failed.error
    assert refs(mirror.path) == before
    assert not (tmp_path / "ran").exists()


def test_git_helpers_never_read_a_revision_as_an_option(
    mirror: Mirror, tmp_path: Path, git_repo: Path
) -> None:
    leak = tmp_path / "leak"
    for call in (
        lambda: git.changed_files(git_repo, f"--output={leak}"),
        lambda: git.diff(mirror.path, f"--output={leak}", mirror.base, max_bytes=1000),
        lambda: git.numstat(mirror.path, f"--output={leak}", mirror.base),
    ):
        with pytest.raises(git.GitError):
            call()
        assert not leak.exists()  # `git diff --output=FILE` would have written it
    with pytest.raises(git.GitError):
        git.update_ref(mirror.path, "refs/heads/main", "-d", old=None, reason="test")
    assert git.branch_head(mirror.path, "main") == mirror.base  # `-d` would delete it
    with pytest.raises(git.GitError):
        git.merge_into(
            mirror.path, "main", "--stdin", message="m", author=git.Author(name="a", email="a@a")
        )
    assert git.branch_head(mirror.path, "main") == mirror.base
    with pytest.raises(git.GitError):
        git.is_ancestor(mirror.path, "--all", mirror.base)


async def test_a_merge_of_an_option_looking_commit_is_refused(git_repo: Path) -> None:
    with pytest.raises(SetupError, match="cannot merge"):
        await merge_in(git_repo, "--abort")
    assert git.git("status", "--porcelain", cwd=git_repo).stdout == ""


# -- writes outside the worktree -----------------------------------------------------------


async def assert_escape(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, msg: TaskMessage, *names: str
) -> Any:
    """The attempt fails with `workspace_escape`, its error names `names`, and its branch
    holds nothing of it."""
    failed = await run_one(adapter, redis, keys, msg)
    assert (failed.TYPE, failed.reason) == ("task.failed", "workspace_escape"), failed
    for name in names:
        assert name in failed.error, failed.error
    assert str(adapter.worktrees.workspace) not in failed.error  # relative paths only
    assert failed.commit is None and failed.changed_files == []
    assert branch_commit(mirror.path, msg.branch) == mirror.base
    return failed


async def test_a_symlink_to_an_absolute_path_fails_the_attempt_and_nothing_is_committed(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror
) -> None:
    msg = message(mirror, "echo work > work.txt && ln -s /etc escape && true")
    await assert_escape(adapter, redis, keys, mirror, msg, "escape -> /etc")


async def test_a_symlink_up_and_out_of_the_worktree_fails_the_attempt(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror
) -> None:
    msg = message(mirror, "mkdir -p deep/er && ln -s ../.. up && ln -s ../../../.. deep/er/out")
    failed = await assert_escape(adapter, redis, keys, mirror, msg, "up -> ../..")
    assert "deep/er/out -> ../../../.." in failed.error


async def test_a_chain_of_links_that_ends_outside_is_followed(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror
) -> None:
    # `outer` names an in-tree path; only following `hop` (ignored, never committed
    # itself) shows that it leads to /etc.
    prompt = "echo hop > .gitignore && ln -s /etc hop && ln -s hop outer"
    failed = await assert_escape(adapter, redis, keys, mirror, message(mirror, prompt), "outer")
    assert "hop -> /etc" not in failed.error


async def test_an_escaping_symlink_the_agent_committed_itself_is_caught_and_undone(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror
) -> None:
    prompt = (
        "ln -s /etc escape && git add escape && "
        "git -c user.name=a -c user.email=a@a commit -q -m sneaky"
    )
    await assert_escape(adapter, redis, keys, mirror, message(mirror, prompt), "escape -> /etc")


async def test_a_worktree_repointed_at_another_repository_is_refused_before_git_runs(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    """A `.git` file naming another repository would make the adapter's own `git add` and
    `git commit` write there."""
    other = init_repo(tmp_path / "other")
    head = git.resolve_commit(other / ".git", "HEAD")
    prompt = f"echo work > work.txt && printf 'gitdir: %s\\n' {other}/.git > .git"
    failed = await assert_escape(adapter, redis, keys, mirror, message(mirror, prompt), ".git ->")
    assert f"gitdir: {other}/.git" in failed.error
    assert git.resolve_commit(other / ".git", "HEAD") == head
    assert git.git("status", "--porcelain", cwd=other).stdout == ""


async def test_a_file_written_outside_the_worktree_fails_the_attempt(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, workspace: Path
) -> None:
    msg = message(mirror, "echo work > work.txt && echo x > ../../outside.txt")
    await assert_escape(adapter, redis, keys, mirror, msg, "worktrees/outside.txt (created)")
    assert (workspace / "worktrees" / "outside.txt").exists()  # left as evidence
    beside = message(mirror, "echo x > ../beside.txt", key="t2")
    await assert_escape(
        adapter, redis, keys, mirror, beside, f"worktrees/{mirror.session_id}/beside.txt"
    )


async def test_changing_a_sessions_setup_files_fails_the_attempt(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, workspace: Path
) -> None:
    setup = workspace / "setup" / str(mirror.session_id)
    setup.mkdir(parents=True)
    (setup / ".env").write_text("A=1\n")
    msg = message(mirror, f"echo B=2 >> ../../../setup/{mirror.session_id}/.env")
    await assert_escape(adapter, redis, keys, mirror, msg, f"setup/{mirror.session_id}/.env")


async def test_a_write_into_the_mirrors_config_fails_the_attempt_and_is_undone(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    config = (mirror.path / "config").read_bytes()
    prompt = (
        f"git config core.fsmonitor 'touch {tmp_path}/ran' && "
        'echo evil > "$(git rev-parse --git-common-dir)/hooks/post-checkout"'
    )
    msg = message(mirror, prompt)
    failed = await assert_escape(
        adapter, redis, keys, mirror, msg, f"repos/{mirror.session_id}.git/config (changed)"
    )
    assert "hooks/post-checkout (created)" in failed.error
    assert (mirror.path / "config").read_bytes() == config
    assert not (mirror.path / "hooks" / "post-checkout").exists()
    assert not (tmp_path / "ran").exists()
    # The next attempt runs on a clean mirror.
    again = await run_one(adapter, redis, keys, message(mirror, "echo ok > ok.txt", key="t2"))
    assert again.TYPE == "task.succeeded" and not (tmp_path / "ran").exists()


async def test_a_setup_command_or_gate_that_writes_outside_fails_the_attempt(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror
) -> None:
    setup = {"setup": {"command": "touch ../../from-setup"}}
    msg = message(mirror, "echo work > work.txt", settings=setup)
    await assert_escape(adapter, redis, keys, mirror, msg, "worktrees/from-setup (created)")
    gate = {"gates": {"test": "touch ../../from-gate", "lint": "", "build": ""}}
    msg = message(mirror, "echo work > work.txt", key="t2", settings=gate)
    failed = await assert_escape(adapter, redis, keys, mirror, msg, "worktrees/from-gate (created)")
    assert [g["name"] for g in failed.gates] == ["test"]  # the gate ran; the commit is undone


async def test_harmless_links_and_writes_to_home_and_artifacts_succeed(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror
) -> None:
    prompt = (
        "ln -s README.md readme-link && mkdir -p docs && ln -s ../README.md docs/readme && "
        'echo notes > "$HOME/notes" && mkdir -p "$HOME/.cache" && '
        # An ignored link to outside (a virtualenv's python, say) is never committed.
        "echo .venv/ > .gitignore && mkdir .venv && ln -s /usr/bin/env .venv/python"
    )
    gate = {"gates": {"test": "echo gate-ok", "lint": "", "build": ""}}
    msg = message(mirror, prompt, settings=gate)
    done = await run_one(adapter, redis, keys, msg)
    assert done.TYPE == "task.succeeded", getattr(done, "error", "")
    assert sorted(done.changed_files) == [".gitignore", "docs/readme", "readme-link"]
    assert branch_commit(mirror.path, msg.branch) == done.commit != mirror.base


async def test_concurrent_attempts_and_their_git_writes_do_not_count_as_escapes(
    adapter: Adapter,
    adapter_settings: AdapterSettings,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    """Two attempts on one mirror, each in its own adapter: while the first waits, the second
    makes its worktree, home and artifacts, commits (by the agent's own git and by the
    adapter), runs a gate and is cleaned up; neither is blamed for the other."""
    other = Adapter(
        settings=adapter_settings.model_copy(update={"worker_name": "shell-other"}),
        redis=redis,
        runner=ShellRunner(),
    )
    started, go = tmp_path / "started", tmp_path / "go"
    waiting = (
        f"touch {started}; for i in $(seq 300); do [ -e {go} ] && break; sleep 0.05; done; "
        f"[ -e {go} ] && echo a > a.txt"
    )
    slow = message(mirror, waiting, key="a")
    fast = message(
        mirror,
        "echo b > b.txt && git add b.txt && git -c user.name=b -c user.email=b@b commit -qm b",
        key="b",
        settings={"gates": {"test": "echo gate-ok", "lint": "", "build": ""}},
    )
    await send(redis, keys, adapter, slow)
    first = asyncio.create_task(adapter.process_available())
    await wait_until(started.exists, timeout_s=15)
    await send(redis, keys, other, fast)
    assert await other.process_available() == 1
    go.touch()
    assert await asyncio.wait_for(first, timeout=30) == 1
    results = {
        e.task_id: e
        for e in await events(redis, keys)
        if e.TYPE in ("task.succeeded", "task.failed")
    }
    for msg, changed in ((slow, ["a.txt"]), (fast, ["b.txt"])):
        result = results[msg.task_id]
        assert result.TYPE == "task.succeeded", getattr(result, "error", "")
        assert result.changed_files == changed


def test_the_snapshot_ignores_git_internals_and_per_run_folders(workspace: Path) -> None:
    mirror = workspace / "repos" / "s.git"
    for folder in ("objects/ab", "refs/heads", "logs", "worktrees/t-1", "hooks"):
        (mirror / folder).mkdir(parents=True)
    (mirror / "config").write_text("[core]\n")
    for top in ("worktrees", "homes", "artifacts", "checkpoints"):
        (workspace / top / "s" / "run").mkdir(parents=True)
    before = escape.snapshot(workspace)
    for name in ("objects/ab/cd", "refs/heads/x", "logs/HEAD", "worktrees/t-1/index"):
        (mirror / name).write_text("git's own")
    for name in ("packed-refs", "FETCH_HEAD", "swarm.lock", "config.lock"):
        (mirror / name).write_text("git's own")
    for top in ("worktrees", "homes", "artifacts", "checkpoints"):
        (workspace / top / "s" / "run" / "work").write_text("a run's own")
    (workspace / "repos" / "new.git").mkdir()  # a session made meanwhile
    (workspace / "repos" / "new.git" / "config").write_text("[core]\n")
    assert escape.writes_outside(workspace, before) == []
    (mirror / "objects" / "info").mkdir()
    (mirror / "objects" / "info" / "alternates").write_text("/elsewhere/objects\n")
    (workspace / "homes" / "s" / "stray").write_text("x")
    (workspace / "stray").write_text("x")
    assert escape.writes_outside(workspace, before) == [
        "homes/s/stray (created)",
        "repos/s.git/objects/info/alternates (created)",
        "stray (created)",
    ]


def test_an_edit_that_restores_content_and_mtime_still_shows(workspace: Path) -> None:
    target = workspace / "setup" / "s" / ".env"
    target.parent.mkdir(parents=True)
    target.write_text("A=1\n")
    stat = target.stat()
    before = escape.snapshot(workspace)
    target.write_text("A=1\n")
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert escape.writes_outside(workspace, before) == ["setup/s/.env (changed)"]


# -- escapes are not retried ----------------------------------------------------------------


async def test_a_workspace_escape_is_not_retried(
    api: httpx.AsyncClient,
    git_repo: Path,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    session = await new_session(
        api, git_repo, [task("bad", max_attempts=3), task("flaky", max_attempts=3)]
    )
    ids = await task_ids(api, session["id"])
    for key, reason in (("bad", "workspace_escape"), ("flaky", "exit_code")):
        failed = outcome_event(TaskFailed, session["id"], ids[key], reason=reason)
        assert await apply(sessionmaker, keys, failed) == Outcome.APPLIED
    states = await task_states(api, session["id"])
    assert states["bad"] == ("failed", 1)
    assert states["flaky"] == ("pending", 1)  # an ordinary failure is retried
