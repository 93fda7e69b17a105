"""`swarm personas`: `generate --local` prints the same population for the same seed with no
server; against a server, generating twice with one seed leaves the same thousand personas,
and list (the default), add from a file, show and rm work, refusals are one line with the
server's code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from swarm_cli import personas
from swarm_cli.client import CliError
from swarm_cli.main import app
from swarm_common.personas import MAX_COUNT, generate
from tests.e2e.stack import Stack
from tests.e2e.test_cli import ok, swarm


def test_a_local_population_is_printed_the_same_for_one_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = CliRunner()
    args = ["personas", "generate", "--count", "1000", "--seed", "7", "--local", "--json"]
    first, second = runner.invoke(app, args), runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    assert json.loads(first.stdout) == [p.model_dump() for p in generate(1000, seed=7)]
    other = runner.invoke(app, [*args[:5], "8", "--local", "--json"])
    assert json.loads(other.stdout) != json.loads(first.stdout)

    monkeypatch.setattr(personas, "console", Console(width=250))
    table = runner.invoke(app, ["personas", "generate", "--count", "10", "--seed", "7", "--local"])
    assert table.exit_code == 0, table.output
    cells = [line.split("│")[1].strip() for line in table.stdout.splitlines() if "│" in line]
    assert [c for c in cells if c] == [p.name for p in generate(10, seed=7)]  # skills wrap

    refused = runner.invoke(app, ["personas", "generate", "--count", "0", "--seed", "1", "--local"])
    assert refused.exit_code == 2  # a usage error: nothing printed on stdout
    assert refused.stdout == ""
    assert personas.MAX_COUNT == MAX_COUNT


def test_a_file_that_is_no_list_of_personas_is_refused(tmp_path: Path) -> None:
    runner = CliRunner()
    for text in ("name: ada\nrole: qa\n", "[]", "- ada\n", "{{{"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        refused = runner.invoke(app, ["personas", "add", str(bad), "--api-url", "http://x"])
        assert isinstance(refused.exception, CliError), text
    missing = runner.invoke(app, ["personas", "add", str(tmp_path / "nope.yaml")])
    assert isinstance(missing.exception, CliError)


def test_the_server_stores_lists_shows_and_removes(stack: Stack, tmp_path: Path) -> None:
    stack.start_orchestrator()
    url = stack.api_url

    made = swarm("personas", "generate", "--count", "1000", "--seed", "7", url=url)
    assert "1000 new, 0 replaced" in ok(made) + made.stderr
    first = json.loads(ok(swarm("personas", "--json", "--limit", "1000", url=url)))
    again = swarm("personas", "generate", "--count", "1000", "--seed", "7", "--json", url=url)
    assert json.loads(ok(again)) == {"count": 1000, "seed": 7, "created": 0}
    second = json.loads(ok(swarm("personas", "list", "--json", "--limit", "1000", url=url)))
    fields = ("name", "role", "skills", "agents", "style", "author_name", "author_email")
    assert [{k: p[k] for k in fields} for p in second] == [{k: p[k] for k in fields} for p in first]
    assert len(second) == 1000
    local = sorted((p.model_dump() for p in generate(1000, seed=7)), key=lambda p: p["name"])
    assert [{k: p[k] for k in fields} for p in second] == local

    rust = ok(swarm("personas", "--role", "rust", "--limit", "1000", url=url))
    assert " rust " in rust and " qa " not in rust

    people = tmp_path / "people.yaml"
    people.write_text(
        "- name: ada-lovelace\n  role: backend\n  style: Writes the test first.\n"
        "- name: grace-hopper\n  role: qa\n  agents: [codex]\n"
    )
    ok(swarm("personas", "add", str(people), url=url))
    shown = json.loads(ok(swarm("personas", "show", "grace-hopper", "--json", url=url)))
    assert (shown["role"], shown["agents"], shown["source"]) == ("qa", ["codex"], "manual")
    assert "Writes the test first." in ok(swarm("personas", "show", "ada-lovelace", url=url))

    removed = swarm("personas", "rm", "ada-lovelace", url=url)
    assert "Removed persona ada-lovelace" in ok(removed) + removed.stderr
    gone = swarm("personas", "rm", "ada-lovelace", url=url)
    assert gone.returncode == 1 and "[persona_not_found, HTTP 404]" in gone.stderr

    people.write_text("- name: Not A Name\n  role: qa\n")
    refused = swarm("personas", "add", str(people), url=url)
    assert refused.returncode == 1 and "a persona name is" in refused.stderr
    assert "[validation_error, HTTP 422]" in " ".join(refused.stderr.split())
    too_many = swarm("personas", "generate", "--count", "10001", "--seed", "1", url=url)
    assert too_many.returncode == 1 and "HTTP 422" in too_many.stderr
