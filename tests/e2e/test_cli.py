"""The `swarm` command against a running stack: submit, status, tasks, watch, task, logs,
workers, control (retry, cancel, approve, pause, resume, drain, stop), the config file, and
clear errors. Every test runs the real command in a subprocess and reads what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import init_repo
from tests.e2e.stack import TEST_TOKEN, Stack
from tests.waiting import eventually

NO_CONFIG = "/nonexistent/swarm-config-home"


def swarm_env(
    url: str | None, token: str | None, token_file: str, config_home: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env.update(COLUMNS="200", SWARM_TOKEN_FILE=token_file, XDG_CONFIG_HOME=config_home)
    env.pop("SWARM_CONFIG", None)
    if url is not None:
        env["SWARM_API_URL"] = url
    if token is not None:
        env["SWARM_API_TOKEN"] = token
    return env


def swarm(
    *args: str,
    url: str | None,
    timeout_s: float = 60,
    token: str | None = TEST_TOKEN,
    token_file: str = "/nonexistent/token",
    config_home: str = NO_CONFIG,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `swarm ARGS` (stdin not a terminal, no config file unless `config_home` has one)."""
    return subprocess.run(
        [sys.executable, "-m", "swarm_cli", *args],
        env=swarm_env(url, token, token_file, config_home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=cwd,
    )


def spawn_swarm(*args: str, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "swarm_cli", *args],
        env=swarm_env(url, TEST_TOKEN, "/nonexistent/token", NO_CONFIG),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def task_by_key(client: httpx.Client, session_id: str, key: str) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = client.get(f"/v1/sessions/{session_id}/tasks").json()
    return next(t for t in tasks if t["key"] == key)


def create_session(
    client: httpx.Client, repo: Path, tasks: list[dict[str, Any]], title: str
) -> str:
    created = client.post(
        "/v1/sessions", json={"title": title, "repo": str(repo), "base_ref": "main", "tasks": tasks}
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_submit_status_and_tasks(stack: Stack, tmp_path: Path) -> None:
    project = init_repo(tmp_path / "project")
    graph = tmp_path / "graph.yaml"
    graph.write_text(
        "title: CLI run\n"
        "repo: project\n"  # relative to the file
        "base_ref: main\n"
        "tasks:\n"
        "  - key: first\n"
        "    prompt: echo 1 > first.txt\n"
        "  - key: second\n"
        "    prompt: echo 2 > second.txt\n"
        "    depends_on: [first]\n"
    )
    stack.start_orchestrator()
    stack.start_adapter("shell-cli")

    submitted = swarm("submit", str(graph), "--wait", url=stack.api_url)
    assert submitted.returncode == 0, submitted.stderr
    session_id = submitted.stdout.strip()
    assert len(session_id) == 36
    assert "first" in submitted.stderr and "succeeded" in submitted.stderr

    status = swarm("status", session_id, "--json", url=stack.api_url)
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["counts"] == {"succeeded": 2} and body["repo"] == str(project)

    table = swarm("tasks", session_id, url=stack.api_url)
    assert table.returncode == 0
    lines = [line for line in table.stdout.splitlines() if "succeeded" in line]
    assert len(lines) == 2 and any("second" in line and "first" in line for line in lines)

    listing = swarm("status", url=stack.api_url)
    assert listing.returncode == 0 and "CLI run" in listing.stdout

    as_json = json.loads(swarm("tasks", session_id, "--json", url=stack.api_url).stdout)
    assert sorted(t["key"] for t in as_json) == ["first", "second"]


def test_errors_are_clear_and_exit_non_zero(stack: Stack, tmp_path: Path) -> None:
    stack.start_orchestrator()
    unreachable = swarm("status", url="http://127.0.0.1:1")
    assert unreachable.returncode == 1
    assert "cannot reach Swarm" in unreachable.stderr and "Traceback" not in unreachable.stderr

    missing = swarm("submit", str(tmp_path / "nope.yaml"), url=stack.api_url)
    assert missing.returncode == 1 and "cannot read" in missing.stderr

    cyclic = tmp_path / "cycle.yaml"
    init_repo(tmp_path / "repo")
    cyclic.write_text(
        "repo: repo\ntasks:\n"
        "  - {key: a, prompt: 'true', depends_on: [b]}\n"
        "  - {key: b, prompt: 'true', depends_on: [a]}\n"
    )
    refused = swarm("submit", str(cyclic), url=stack.api_url)
    assert refused.returncode == 1
    assert "dependency_cycle" in refused.stderr and "HTTP 422" in refused.stderr

    unknown = swarm("status", "00000000-0000-0000-0000-000000000000", url=stack.api_url)
    assert unknown.returncode == 1 and "session_not_found" in unknown.stderr

    # TASK is a task id or SESSION/KEY; SESSION may be the start of an id.
    for args, message in [
        (("task", "00000000-0000-0000-0000-000000000000"), "task_not_found"),
        (("logs", "build"), "give a task id or SESSION/KEY"),
        (("watch", "fffffff"), "no session id starts with 'fffffff'"),
        (("retry", "zz/build"), "not a session id"),
        (("cancel",), "give a TASK, or --session SESSION"),
    ]:
        result = swarm(*args, url=stack.api_url)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_adapter_refuses_an_unknown_agent_kind(stack: Stack) -> None:
    started = time.monotonic()
    result = swarm("adapter", "--agent", "cursor", url=stack.api_url, timeout_s=30)
    assert result.returncode != 0 and time.monotonic() - started < 30
    assert "Traceback" not in result.stderr


def test_tokens_from_the_command_line(stack: Stack, tmp_path: Path) -> None:
    stack.start_orchestrator()
    url = stack.api_url
    made = swarm("token", "create", "--name", "watcher", "--role", "viewer", url=url)
    assert made.returncode == 0, made.stderr
    viewer = made.stdout.strip()
    assert viewer.startswith("swarm_") and "not shown again" in made.stderr
    assert viewer not in made.stderr

    listed = swarm("token", "list", "--json", url=url)
    names = {t["name"]: t for t in json.loads(listed.stdout)}
    assert names["watcher"]["role"] == "viewer" and "token" not in names["watcher"]
    table = swarm("token", "list", url=url)
    assert "watcher" in table.stdout and viewer not in table.stdout

    # The viewer reads, and is refused what its role does not allow.
    assert swarm("status", url=url, token=viewer).returncode == 0
    refused = swarm("token", "create", "--name", "x", "--role", "admin", url=url, token=viewer)
    assert (
        refused.returncode == 1 and "forbidden" in refused.stderr and "HTTP 403" in refused.stderr
    )

    revoked = swarm("token", "revoke", "watcher", url=url)
    assert revoked.returncode == 0, revoked.stderr
    gone = swarm("status", url=url, token=viewer)
    assert gone.returncode == 1 and "HTTP 401" in gone.stderr

    # A token file stands in when no token is given (what `swarm up` writes).
    token_file = tmp_path / "admin.token"
    token_file.write_text(TEST_TOKEN + "\n")
    from_file = swarm("token", "list", "--json", url=url, token=None, token_file=str(token_file))
    assert from_file.returncode == 0, from_file.stderr
    none = swarm("status", url=url, token=None)
    assert none.returncode == 1 and "bearer token is required" in none.stderr


def test_watch_status_task_logs_and_retry(stack: Stack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    flag = tmp_path / "flag"
    stack.start_orchestrator()
    stack.start_adapter("shell-cli", concurrency=2)
    url = stack.api_url
    with stack.client() as client:
        sid = create_session(
            client,
            repo,
            [
                {"key": "hello", "prompt": "echo hello from the task; echo hi > hello.txt"},
                {
                    "key": "after",
                    "prompt": "sleep 1; echo later > after.txt",
                    "depends_on": ["hello"],
                },
                {
                    "key": "broken",
                    "prompt": f"echo about to fail; test -f {flag} || exit 3",
                    "max_attempts": 1,
                },
            ],
            title="Watch run",
        )

        # `watch` (no terminal: a line per event) ends by itself once the session is over.
        watched = ok(swarm("watch", sid, url=url, timeout_s=90))
        assert "hello" in watched and "session finished" in watched
        summary = watched[watched.rindex("Watch run") :]
        assert "3/3 100%" in summary and "succeeded 2" in summary and "failed 1" in summary

        # On a session that is over, `watch --json` replays its events, one JSON per line.
        events = json_lines(ok(swarm("watch", sid[:8], "--json", url=url)))
        assert events[0]["type"] == "session.created"
        # Over with a failed task: it waits for a person's review.
        assert [e["type"] for e in events[-2:]] == ["session.finished", "session.awaiting_review"]
        assert len({e["id"] for e in events}) == len(events)

        listing = ok(swarm("status", url=url))
        row = next(line for line in listing.splitlines() if sid in line)
        assert "Watch run" in row and "awaiting_review" in row and "3/3" in row
        assert sid in [s["id"] for s in json.loads(ok(swarm("status", "--json", url=url)))]

        detail = ok(swarm("status", sid[:8], url=url))
        assert "100%" in detail and "broken" in detail and "succeeded 2" in detail
        body = json.loads(ok(swarm("status", sid, "--json", url=url)))
        assert body["id"] == sid and body["progress"]["total"] == 3

        shown = ok(swarm("task", f"{sid[:8]}/hello", url=url))
        assert "Attempts" in shown and "shell-cli" in shown and "hello.txt" in shown
        as_json = json.loads(ok(swarm("task", f"{sid}/hello", "--json", url=url)))
        assert as_json["attempts"][0]["worker"] == "shell-cli"
        assert [f["path"] for f in as_json["diff"]["files"]] == ["hello.txt"]
        assert "patch" not in as_json["diff"]
        assert "+++ b/hello.txt" in ok(swarm("task", as_json["id"], "--diff", url=url))

        logs = ok(swarm("logs", f"{sid}/broken", url=url))
        assert "about to fail" in logs and "exited with code 3" in logs
        types = [
            e["type"] for e in json_lines(ok(swarm("logs", f"{sid}/broken", "--json", url=url)))
        ]
        assert types[:3] == ["task.created", "task.queued", "task.started"]
        assert types[-1] == "task.failed"

        # A retry makes a new attempt; `logs -f` follows it and ends when the task does.
        flag.write_text("go")
        retried = ok(swarm("retry", f"{sid}/broken", url=url))
        assert "Task broken:" in retried and "(was failed)" in retried
        followed = ok(swarm("logs", f"{sid}/broken", "-f", url=url, timeout_s=60))
        assert "retried" in followed and "#2  succeeded" in followed
        attempts = json.loads(ok(swarm("task", f"{sid}/broken", "--json", url=url)))["attempts"]
        assert [a["status"] for a in attempts] == ["failed", "succeeded"]


def test_follow_workers_and_cancel(stack: Stack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    stack.start_adapter("shell-cli", concurrency=2)
    url = stack.api_url
    with stack.client() as client:
        sid = create_session(
            client,
            repo,
            [
                {"key": "ticks", "prompt": "for i in 1 2 3; do echo tick $i; sleep 1; done"},
                {"key": "long", "prompt": "sleep 120"},
            ],
            title="Follow run",
        )
        watch = spawn_swarm("watch", sid, url=url)
        logs = spawn_swarm("logs", f"{sid}/ticks", "--follow", url=url)
        eventually(
            lambda: all(
                task_by_key(client, sid, k)["status"] == "running" for k in ("ticks", "long")
            ),
            timeout_s=60,
            message="both tasks running",
        )

        table = ok(swarm("workers", url=url))
        row = next(line for line in table.splitlines() if "shell-cli" in line)
        assert "shell" in row and "alive" in row and "2/2" in row
        workers = json.loads(ok(swarm("workers", "--json", url=url)))
        (mine,) = [w for w in workers if w["name"] == "shell-cli"]
        assert mine["agent"] == "shell" and mine["alive"]

        # `logs -f` ends by itself when the task ends, with what the task printed.
        out, errors = logs.communicate(timeout=60)
        assert logs.returncode == 0, errors
        assert "tick 3" in out and "succeeded" in out

        # Cancelling asks first; without a terminal, only --yes goes on.
        refused = swarm("cancel", f"{sid}/long", url=url)
        assert refused.returncode == 1 and "--yes" in refused.stderr
        assert task_by_key(client, sid, "long")["status"] == "running"
        cancelled = ok(swarm("cancel", f"{sid}/long", "--yes", url=url))
        assert "Task long: cancelled (was running)" in cancelled
        again = swarm("cancel", f"{sid}/long", "--yes", url=url)
        assert again.returncode == 1 and "already ended" in again.stderr

        # The watcher saw it all and ended with the session.
        out, errors = watch.communicate(timeout=60)
        assert watch.returncode == 0, errors
        assert "tick 3" not in out  # the session's events, not what its tasks print
        summary = out[out.rindex("Follow run") :]
        assert "2/2 100%" in summary and "succeeded 1" in summary and "cancelled 1" in summary


def test_session_and_system_control(stack: Stack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    stack.start_adapter("shell-cli")
    url = stack.api_url
    with stack.client() as client:
        sid = create_session(
            client,
            repo,
            [
                {"key": "reviewed", "prompt": "echo ok > ok.txt", "requires_approval": True},
                {"key": "next", "prompt": "true", "depends_on": ["reviewed"]},
            ],
            title="Control run",
        )
        eventually(
            lambda: task_by_key(client, sid, "reviewed")["status"] == "awaiting_approval",
            timeout_s=60,
            message="the task to await approval",
        )
        paused = json.loads(ok(swarm("pause", sid, "--json", url=url)))
        assert paused["status"] == "suspended"
        assert "active" in ok(swarm("resume", sid[:8], url=url))
        approved = ok(swarm("approve", f"{sid}/reviewed", url=url))
        assert "Task reviewed: succeeded (was awaiting_approval)" in approved
        eventually(
            lambda: client.get(f"/v1/sessions/{sid}").json()["done"],
            timeout_s=60,
            message="the session to end",
        )

        assert json.loads(ok(swarm("system", "--json", url=url)))["mode"] == "running"
        refused = swarm("drain", url=url)
        assert refused.returncode == 1 and "--yes" in refused.stderr
        drained = json.loads(ok(swarm("drain", "--yes", "--json", url=url)))
        assert drained["mode"] == "draining"
        assert "draining" in ok(swarm("system", url=url))
        stopped = swarm("stop", "-y", url=url)
        assert "stopped" in ok(stopped) and "swarm system resume" in stopped.stderr
        assert json.loads(ok(swarm("system", "resume", "--json", url=url)))["mode"] == "running"
        assert client.get("/v1/system").json()["mode"] == "running"

        other = create_session(client, repo, [{"key": "idle", "prompt": "sleep 60"}], "Other")
        gone = json.loads(ok(swarm("cancel", "--session", other, "--yes", "--json", url=url)))
        assert gone["status"] == "cancelled"


def test_the_config_file_names_the_server_and_the_token(stack: Stack, tmp_path: Path) -> None:
    stack.start_orchestrator()
    home = tmp_path / "xdg"
    (home / "swarm").mkdir(parents=True)
    secret = tmp_path / "token"
    secret.write_text(TEST_TOKEN + "\n")
    secret.chmod(0o600)
    config = home / "swarm" / "config.toml"
    config.write_text(f'api_url = "{stack.api_url}"\ntoken_file = "{secret}"\n')
    plain = {"url": None, "token": None, "config_home": str(home)}

    assert isinstance(json.loads(ok(swarm("status", "--json", **plain))), list)  # type: ignore[arg-type]
    shown = ok(swarm("config", "show", **plain))  # type: ignore[arg-type]
    assert f"api_url in {config}" in shown and "token_file" in shown
    assert "you are bootstrap (admin)" in shown and TEST_TOKEN not in shown
    # The environment wins over the file.
    other = swarm("status", url="http://127.0.0.1:1", token=None, config_home=str(home))
    assert other.returncode == 1 and "cannot reach Swarm at http://127.0.0.1:1" in other.stderr

    # A token in a file others can read is refused, and not printed.
    config.write_text(f'api_url = "{stack.api_url}"\ntoken = "{TEST_TOKEN}"\n')
    config.chmod(0o644)
    refused = swarm("status", **plain)  # type: ignore[arg-type]
    assert refused.returncode == 1 and "chmod 600" in refused.stderr
    assert TEST_TOKEN not in refused.stderr + refused.stdout
    config.chmod(0o600)
    ok(swarm("status", **plain))  # type: ignore[arg-type]


def test_add_retry_failed_checkpoint_and_rollback(stack: Stack, tmp_path: Path) -> None:
    """The commands the API had and the CLI lacked: `add` (tasks into a running session),
    `retry --failed` (every failed task at once), `checkpoint --wait` and `rollback`."""
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    stack.start_adapter("shell-cli")
    url = stack.api_url
    with stack.client() as client:
        created = client.post(
            "/v1/sessions",
            json={
                "title": "More",
                "repo": str(repo),
                "base_ref": "main",
                "settings": {"gates": {"detect": False}},
                "tasks": [
                    {"key": "a", "prompt": "echo a > a.txt"},
                    {"key": "bad", "prompt": "exit 3"},
                ],
            },
        )
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        eventually(
            lambda: (
                task_by_key(client, sid, "bad")["status"] == "failed"
                and task_by_key(client, sid, "a")["merge_status"] == "merged"
            ),
            timeout_s=60,
            message="a merged and bad failed",
        )
        more = tmp_path / "more.yaml"
        more.write_text("- key: b\n  prompt: echo b > b.txt\n  depends_on: [a]\n")
        assert "Added 1 task(s)" in ok(swarm("add", sid[:8], str(more), url=url))
        refused = swarm("retry", url=url)
        assert refused.returncode == 1 and "--failed" in refused.stderr
        assert "Retried 1 task(s)" in ok(swarm("retry", "--failed", sid, url=url))
        assert task_by_key(client, sid, "bad")["attempt"] == 2
        eventually(
            lambda: task_by_key(client, sid, "b")["merge_status"] == "merged",
            timeout_s=60,
            message="b merged",
        )
        passed = json.loads(ok(swarm("checkpoint", sid, "--wait", "--json", url=url)))
        assert passed["status"] == "passed" and passed["number"] == 1
        head = client.get(f"/v1/sessions/{sid}").json()["integration_head"]
        assert passed["commit"] == head
        rolled = json.loads(ok(swarm("rollback", sid, "1", "--json", url=url)))
        assert (rolled["checkpoint"], rolled["integration_head"]) == (1, head)
        missing = swarm("rollback", sid, "7", url=url)
        assert missing.returncode == 1 and "checkpoint" in missing.stderr


def test_finish_reopen_and_archive(stack: Stack, tmp_path: Path) -> None:
    """`finish` (a session whose tasks all ended, failures accepted, after its final
    checkpoint), `add --reopen` (a finalized session runs again), `archive` and `status
    --archived`."""
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    stack.start_adapter("shell-cli")
    url = stack.api_url
    with stack.client() as client:
        sid = create_session(
            client,
            repo,
            [{"key": "good", "prompt": "echo good > good.txt"}, {"key": "bad", "prompt": "exit 3"}],
            title="Finish run",
        )
        eventually(
            lambda: client.get(f"/v1/sessions/{sid}").json()["status"] == "awaiting_review",
            timeout_s=60,
            message="the session to wait for review",
        )
        detail = ok(swarm("status", sid, url=url))
        assert "review" in detail and "1 failed (bad)" in detail

        finished = json.loads(ok(swarm("finish", sid[:8], "--wait", "--json", url=url)))
        assert finished["status"] == "finalized", finished
        final = finished["final_checkpoint"]
        assert (final["final"], final["status"], final["number"]) == (True, "passed", 1)
        assert "finalized" in ok(swarm("finish", sid, url=url))  # changes nothing

        more = tmp_path / "more.yaml"
        more.write_text("- key: more\n  prompt: echo more > more.txt\n")
        refused = swarm("add", sid, str(more), url=url)
        assert refused.returncode == 1 and "session_finalized" in refused.stderr
        assert "Added 1 task(s)" in ok(swarm("add", sid, str(more), "--reopen", url=url))
        eventually(
            lambda: client.get(f"/v1/sessions/{sid}").json()["status"] == "awaiting_review",
            timeout_s=60,
            message="the reopened session to settle again (bad still failed)",
        )
        assert task_by_key(client, sid, "more")["merge_status"] == "merged"

        assert "archived" in ok(swarm("archive", sid[:8], url=url))
        assert sid not in ok(swarm("status", url=url))
        archived = json.loads(ok(swarm("status", "--archived", "--json", url=url)))
        assert [s["id"] for s in archived] == [sid]
        assert "Finish run" in ok(swarm("status", sid[:8], url=url))  # still read by its id
        assert "listed again" in ok(swarm("archive", sid[:8], "--undo", url=url))
        assert sid in ok(swarm("status", url=url))
