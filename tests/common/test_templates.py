"""Topologies (`swarm_common.templates`): what each template expands into, and what it
refuses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from swarm_common.specs import ReviewSpec, TaskSpec
from swarm_common.templates import TemplateSpec, expand, parse_worker


def _fan_out(**extra: object) -> TemplateSpec:
    return TemplateSpec.model_validate(
        {
            "name": "fan-out",
            "goal": "Build a todo app",
            "workers": [
                {"who": "backend", "agent": "codex", "prompt": "Build the API"},
                {"who": "frontend", "agent": "claude", "prompt": "Build the UI"},
                {"who": "ada-lovelace", "prompt": "Write the docs"},
            ],
            **extra,
        }
    )


def test_a_fan_out_is_root_then_workers_then_verifier_then_synthesizer() -> None:
    tasks = expand(_fan_out(verifier={"rubric": "The UI calls the API.", "agent": "codex"}))
    keys = [t.key for t in tasks]
    assert keys == [
        "root",
        "worker-1-backend",
        "worker-2-frontend",
        "worker-3-ada-lovelace",
        "verify",
        "synthesize",
    ]
    by_key = {t.key: t for t in tasks}
    assert all(by_key[k].depends_on == ["root"] for k in keys[1:4])
    assert by_key["verify"].depends_on == keys[1:4]
    assert by_key["synthesize"].depends_on == ["verify"]
    assert [by_key[k].agent for k in keys[1:4]] == ["codex", "claude", "auto"]
    assert (by_key["worker-1-backend"].role, by_key["worker-1-backend"].persona) == (
        "backend",
        None,
    )
    assert by_key["worker-3-ada-lovelace"].persona == "ada-lovelace"
    verify = by_key["verify"]
    assert verify.verify and verify.review is False and verify.agent == "codex"
    assert verify.acceptance == ["The UI calls the API."]
    assert "Build the UI" in by_key["root"].prompt
    assert {t.phase for t in tasks} == {"prepare", "work", "verify", "synthesize"}
    assert expand(_fan_out()) == expand(_fan_out())  # the same template, the same graph


def test_a_pipeline_chains_its_phases_in_order() -> None:
    spec = TemplateSpec.model_validate(
        {
            "name": "pipeline",
            "phases": [
                {"name": "Design it", "prompt": "Sketch the schema"},
                {"name": "Build", "prompt": "Write it", "agent": "codex", "role": "backend"},
                {"name": "Test", "prompt": "Test it"},
            ],
        }
    )
    tasks = expand(spec)
    assert [(t.key, t.depends_on, t.phase) for t in tasks] == [
        ("01-design-it", [], "Design it"),
        ("02-build", ["01-design-it"], "Build"),
        ("03-test", ["02-build"], "Test"),
    ]
    assert tasks[1].agent == "codex" and tasks[1].role == "backend"


def test_builder_validator_pairs_every_task_with_its_reviewer() -> None:
    own = {"agent": "gemini", "max_rounds": 1}
    spec = TemplateSpec.model_validate(
        {
            "name": "builder-validator",
            "review": {"agent": "codex", "rubric": "tests pass"},
            "tasks": [
                {"key": "a", "prompt": "do a", "agent": "claude"},
                {"key": "b", "prompt": "do b", "agent": "claude", "review": own},
                {"key": "c", "prompt": "do c", "agent": "claude", "review": False},
            ],
        }
    )
    a, b, c = expand(spec)
    assert a.review == ReviewSpec(agent="codex", rubric="tests pass")
    assert b.review == ReviewSpec.model_validate(own)
    assert c.review is False  # it opted out
    assert all(isinstance(t, TaskSpec) for t in (a, b, c))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "fan-out", "workers": [{"who": "qa", "prompt": "x"}] * 2}, "needs a `goal`"),
        ({"name": "fan-out", "goal": "g", "workers": [{"who": "qa", "prompt": "x"}]}, "two"),
        ({"name": "pipeline"}, "needs `phases`"),
        ({"name": "builder-validator"}, "needs `tasks`"),
        ({"name": "star", "goal": "g"}, "fan-out"),
        (
            {"name": "fan-out", "goal": "g", "workers": [{"who": "Boss!", "prompt": "x"}] * 2},
            "role",
        ),
    ],
)
def test_a_template_missing_what_it_needs_is_refused(body: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        TemplateSpec.model_validate(body)


def test_workers_with_the_same_key_are_refused() -> None:
    spec = _fan_out(
        workers=[
            {"who": "qa", "prompt": "x", "key": "same"},
            {"who": "qa", "prompt": "y", "key": "same"},
        ]
    )
    with pytest.raises(ValueError, match="unique"):
        expand(spec)


def test_a_worker_from_the_command_line() -> None:
    assert parse_worker("backend@codex:Build the API: all of it").model_dump() == {
        "who": "backend",
        "prompt": "Build the API: all of it",
        "agent": "codex",
        "key": None,
    }
    assert parse_worker("qa:Test it").agent == "auto"
    with pytest.raises(ValueError, match="WHO"):
        parse_worker("backend")
    with pytest.raises(ValidationError):
        parse_worker("backend@shell:rm -rf /")  # a worker's agent is an agent CLI or auto
