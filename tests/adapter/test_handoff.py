"""Handoffs on the adapter's side (`swarm_adapter.handoff`): the agent finds its parents'
handoffs and the blackboard in its prompt and in `.swarm/context.json`, which is never
committed nor a changed file; what the agent ends with is read tolerantly into a handoff,
and nothing about it ever fails an attempt."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from swarm_adapter import handoff
from swarm_adapter.attempt import AttemptPipeline
from swarm_adapter.prompts import build_prompt
from swarm_common import git
from swarm_common.handoffs import CONTEXT_FILE, MAX_FACT_VALUE_BYTES, BoardFact, ParentHandoff
from tests.adapter.helpers import Mirror, message
from tests.adapter.test_attempt import (  # noqa: F401  (fixtures)
    no_gates,
    pipeline,
    reporter,
    run,
    running_for,
)
from tests.conftest import commits_touching

PARENTS = [ParentHandoff(key="api", title="Build the API", persona="ada", summary="Added /v2.")]
BOARD = [BoardFact(key="db", value="sqlite", author="task:api", at="2026-01-01T00:00:00+00:00")]


def _block(data: dict[str, Any], tag: str = "swarm-handoff") -> str:
    return f"```{tag}\n{json.dumps(data)}\n```"


async def test_the_agent_reads_context_json_which_is_never_committed_nor_gated(
    pipeline: AttemptPipeline,  # noqa: F811
    mirror: Mirror,
) -> None:
    msg = message(
        mirror,
        "cp .swarm/context.json seen.json && echo hi > out.txt",
        handoffs=PARENTS,
        blackboard=BOARD,
        settings=no_gates(test='test ! -e .swarm && test -z "$(git status --porcelain)"'),
    )
    result = await run(pipeline, running_for(pipeline, msg))
    assert result.TYPE == "task.succeeded", result
    assert [g["status"] for g in result.gates] == ["passed"]  # gone before the gates
    assert result.changed_files == ["out.txt", "seen.json"]
    seen = json.loads(git.git("show", f"{result.commit}:seen.json", git_dir=mirror.path).stdout)
    assert seen["parents"][0]["summary"] == "Added /v2."
    assert seen["blackboard"] == [b.model_dump(mode="json") for b in BOARD]
    assert seen["task"]["key"] == msg.task_key
    assert commits_touching(mirror.path, ".swarm") == []


async def test_a_repository_whose_swarm_folder_is_a_symlink_gets_no_context_file(
    pipeline: AttemptPipeline,  # noqa: F811
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    base = _commit_symlink(mirror, tmp_path / "scratch", target=str(outside))
    msg = message(
        mirror,
        "test ! -e .swarm/context.json && echo ok > ok.txt",
        base_commit=base,
        handoffs=PARENTS,
        settings=no_gates(),
    )
    result = await run(pipeline, running_for(pipeline, msg))
    assert result.TYPE == "task.succeeded", result
    assert list(outside.iterdir()) == []


def _commit_symlink(mirror: Mirror, tree: Path, *, target: str) -> str:
    git.git("worktree", "add", "--detach", "--quiet", str(tree), mirror.base, git_dir=mirror.path)
    try:
        os.symlink(target, tree / ".swarm")
        git.commit_all(tree, mirror.path, message="link", author=git.Author("t", "t@example.com"))
        return git.git("rev-parse", "HEAD", cwd=tree).stdout.strip()
    finally:
        git.git("worktree", "remove", "--force", str(tree), git_dir=mirror.path)


async def test_a_shell_task_hands_off_what_it_prints(
    pipeline: AttemptPipeline,  # noqa: F811
    mirror: Mirror,
) -> None:
    block = _block({"summary": "made it", "facts": {"port": 8080}, "follow_ups": [{"x": 1}]})
    msg = message(mirror, f"cat <<'EOF'\nworking\n{block}\nEOF", settings=no_gates())
    result = await run(pipeline, running_for(pipeline, msg))
    assert result.TYPE == "task.succeeded", result
    handed = result.handoff
    assert (handed.summary, handed.source) == ("made it", "block")
    assert [(f.key, f.value) for f in handed.facts] == [("port", 8080)]
    assert handed.proposals == [] and "follow-up 1 left out" in handed.problems[0]


def test_the_prompt_holds_the_parents_the_board_and_asks_for_a_handoff(mirror: Mirror) -> None:
    prompt = build_prompt(message(mirror, "Write the client.", handoffs=PARENTS, blackboard=BOARD))
    assert "## What the tasks before you handed over" in prompt
    assert "### api: Build the API (ada)\nAdded /v2." in prompt
    assert '- db = "sqlite" (task:api)' in prompt
    assert CONTEXT_FILE in prompt
    assert "```swarm-handoff" in prompt and '"follow_ups"' in prompt

    plain = build_prompt(message(mirror, "Write the client."))
    assert "handed over" not in plain and CONTEXT_FILE not in plain
    off = build_prompt(message(mirror, "x", settings={"delegation": "off"}))
    assert "```swarm-handoff" in off and "follow_ups" not in off
    for answering in ({"read_only": True}, {"output_schema": {"type": "object"}}):
        assert "swarm-handoff" not in build_prompt(message(mirror, "x", **answering))


@pytest.mark.parametrize(
    "text",
    [
        "Did it.\n\n" + _block({"summary": "S", "notes": ["n"], "facts": {"a": 1}}),
        "Did it.\n```json\n"
        + json.dumps({"summary": "S", "notes": "n", "facts": [{"key": "a", "value": 1}]})
        + "\n```",
        json.dumps({"summary": "S", "notes": ["n"], "facts": {"a": 1}}),
        '```swarm-handoff\n{"summary": "S", "notes": ["n"], "facts": {"a": 1,},}\n```',
    ],
    ids=["tagged", "json-block", "whole-answer", "trailing-commas"],
)
def test_the_handoff_is_read_tolerantly(text: str) -> None:
    parsed = handoff.parse(text)
    assert (parsed.summary, parsed.notes, parsed.source) == ("S", ["n"], "block")
    assert [(f.key, f.value) for f in parsed.facts] == [("a", 1)]


def test_without_a_block_the_final_message_is_the_summary() -> None:
    parsed = handoff.parse("I changed the parser.\n```python\nprint(1)\n```")
    assert parsed.source == "answer" and parsed.summary.startswith("I changed the parser.")
    assert handoff.parse(None).source == "none" and handoff.parse("  ").summary == ""
    garbled = handoff.parse("Done.\n```swarm-handoff\n{not json\n```")
    assert garbled.source == "answer" and "not a JSON object" in garbled.problems[0]
    assert len(handoff.parse("x" * 100_000).summary) == 4000


def test_what_cannot_be_kept_is_left_out_and_named() -> None:
    parsed = handoff.parse(
        _block(
            {
                "notes": ["", {"a": 1}],
                "facts": {"API base url": "/v2", "big": "v" * MAX_FACT_VALUE_BYTES, "!!": 1},
                "follow_ups": [
                    {"title": "Tests", "prompt": "write them", "depends_on": ["api"]},
                    {"title": "", "prompt": "x"},
                    "nonsense",
                ],
            }
        )
        + "\nAnd the rest of the text is the summary."
    )
    assert parsed.summary == "And the rest of the text is the summary."
    assert parsed.notes == ['{"a": 1}']
    assert [f.key for f in parsed.facts] == ["API_base_url"]
    assert [p.title for p in parsed.proposals] == ["Tests"]
    assert len(parsed.problems) == 4, parsed.problems


def test_a_fence_inside_the_handoff_does_not_end_it() -> None:
    inner = "cat <<'X'\n```swarm-handoff\n{}\n```\nX"
    text = "Done.\n" + _block({"summary": "S", "follow_ups": [{"title": "T", "prompt": inner}]})
    parsed = handoff.parse(text)
    assert parsed.summary == "S" and parsed.proposals[0].prompt == inner
