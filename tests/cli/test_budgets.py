"""`swarm budget`: a SESSION or a --tenant (one of them), and a change keeps what it does
not name (0 removes a limit), so `--usd 20` raises the dollars and keeps the rest; against
a server, it shows a session's budget and changes it, and a tenant's."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from swarm_cli.budgets import _merged
from swarm_cli.client import CliError
from swarm_cli.main import app
from tests.conftest import init_repo
from tests.e2e.stack import Stack
from tests.e2e.test_cli import ok, swarm


def test_a_session_or_a_tenant_is_named() -> None:
    runner = CliRunner()
    for args in (["budget"], ["budget", "abc", "--tenant", "acme"]):
        refused = runner.invoke(app, args)
        assert isinstance(refused.exception, CliError), refused.output
    tenant_only = runner.invoke(app, ["budget", "--tenant", "acme", "--on-exhausted", "stop"])
    assert isinstance(tenant_only.exception, CliError)


def test_a_change_keeps_what_it_does_not_name() -> None:
    current = {"budget": {"usd": 5, "tokens": 1000, "per_task_usd": 1, "on_exhausted": "stop"}}
    assert _merged(current, {"usd": 20}, tenant=False) == {
        "usd": 20,
        "tokens": 1000,
        "per_task_usd": 1,
        "on_exhausted": "stop",
    }
    assert _merged(current, {"tokens": 0}, tenant=False) == {
        "usd": 5,
        "per_task_usd": 1,
        "on_exhausted": "stop",
    }
    assert _merged({"budget": None}, {"usd": 1}, tenant=False) == {"usd": 1}
    tenant = {"tenant": "acme", "usd": 3.0, "tokens": None, "spent": {}}
    assert _merged(tenant, {"tokens": 50}, tenant=True) == {"usd": 3.0, "tokens": 50}


def test_the_server_shows_and_changes_budgets(stack: Stack, tmp_path: Path) -> None:
    project = init_repo(tmp_path / "project")
    graph = tmp_path / "budgeted.yaml"
    graph.write_text(
        "title: Greeting on a budget\n"
        "repo: project\n"
        "settings:\n"
        "  budget: {usd: 5, per_task_usd: 1, on_exhausted: stop}\n"
        "tasks:\n"
        "  - key: hello\n"
        "    prompt: Write hello.txt with a friendly greeting.\n"
        "    agent: claude\n"
    )
    assert project.exists()
    stack.start_orchestrator()
    url = stack.api_url
    sid = ok(swarm("submit", str(graph), url=url)).strip()

    shown = ok(swarm("budget", sid[:8], url=url))
    assert "$5.0000" in shown and "when spent: stop" in shown, shown
    body = json.loads(ok(swarm("budget", sid[:8], "--usd", "20", "--json", url=url)))
    assert body["budget"] == {
        "usd": 20.0,
        "tokens": None,
        "per_task_usd": 1.0,
        "on_exhausted": "stop",
    }
    body = json.loads(ok(swarm("budget", sid, "--per-task-usd", "0", "--json", url=url)))
    assert body["budget"]["per_task_usd"] is None and body["budget"]["usd"] == 20.0

    tenant = swarm("budget", "--tenant", "acme", "--usd", "500", "--tokens", "50000000", url=url)
    assert "Tenant acme" in ok(tenant) and "$500.0000" in tenant.stdout
    refused = swarm("budget", sid, "--usd", "-1", url=url)
    assert refused.returncode == 2  # a usage error
