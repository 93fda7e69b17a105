"""`swarm blackboard` and `swarm proposals` against a running orchestrator: write, list,
history and clear facts (a value is JSON when it parses as JSON), list proposals, and a
refusal is one line with the server's code."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import init_repo
from tests.e2e.stack import Stack
from tests.e2e.test_cli import ok, swarm


def test_facts_are_written_listed_and_cleared(stack: Stack, tmp_path: Path) -> None:
    stack.start_orchestrator()
    url = stack.api_url
    repo = init_repo(tmp_path / "project")
    with stack.client() as client:
        body = {"title": "b", "repo": str(repo), "base_ref": "main"}
        sid = client.post("/v1/sessions", json=body).json()["id"]

    ok(swarm("blackboard", sid[:8], "set", "db.engine", "postgres", url=url))
    ok(swarm("blackboard", sid, "set", "limits", '{"rps": 20}', url=url))
    ok(swarm("blackboard", sid, "set", "db.engine", "sqlite", url=url))
    facts = json.loads(ok(swarm("blackboard", sid, "--json", url=url)))
    assert {f["key"]: f["value"] for f in facts} == {"db.engine": "sqlite", "limits": {"rps": 20}}
    assert "sqlite" in ok(swarm("blackboard", sid, url=url))
    history = json.loads(ok(swarm("blackboard", sid, "history", "db.engine", "--json", url=url)))
    assert [f["value"] for f in history] == ["sqlite", "postgres"]
    ok(swarm("blackboard", sid, "clear", "limits", url=url))
    facts = json.loads(ok(swarm("blackboard", sid, "--json", url=url)))
    assert [f["key"] for f in facts] == ["db.engine"]

    bad = swarm("blackboard", sid, "set", "not a key", "1", url=url)
    assert bad.returncode == 1 and "[validation_error, HTTP 422]" in " ".join(bad.stderr.split())
    assert json.loads(ok(swarm("proposals", sid, "--json", url=url))) == []
    missing = swarm("proposals", sid, "accept", "99", url=url)
    assert missing.returncode == 1 and "[proposal_not_found, HTTP 404]" in missing.stderr
