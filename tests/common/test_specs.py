"""Task specs: keys that become branch names and folders are validated once, here."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from swarm_common.specs import TaskSpec


@pytest.mark.parametrize("key", ["a", "build", "api-v2", "step_3", "fix.1", "A1", "x" * 64])
def test_good_keys(key: str) -> None:
    assert TaskSpec(key=key, prompt="p").key == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../../x",
        "--upload-pack=evil",
        "-x",
        "a/b",
        "a..b",
        "a.",
        "x.lock",
        "with space",
        "é",
        "x" * 65,
        ".hidden",
        "a\nb",
        "a:b",
        "a~1",
        "a^",
        "a*",
    ],
)
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(ValidationError):
        TaskSpec(key=key, prompt="p")


def test_defaults_and_title() -> None:
    spec = TaskSpec(key="k", prompt="echo")
    assert (spec.title, spec.agent, spec.max_attempts, spec.depends_on) == ("k", "shell", 1, [])


def test_a_task_cannot_depend_on_itself() -> None:
    with pytest.raises(ValidationError, match="depends on itself"):
        TaskSpec(key="k", prompt="p", depends_on=["k"])


def test_unknown_fields_and_agents_are_refused() -> None:
    with pytest.raises(ValidationError):
        TaskSpec(key="k", prompt="p", colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        TaskSpec(key="k", prompt="p", agent="cursor")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "model", ["gpt-5.5", "claude-opus-4-8[1m]", "models/gemini-2.5-pro", "org/model:tag@v1"]
)
def test_model_names(model: str) -> None:
    assert TaskSpec(key="k", prompt="p", model=model).model == model


@pytest.mark.parametrize("model", ["--dangerously-skip-permissions", "-x", "a b", "", "a\nb"])
def test_option_looking_model_names_are_refused(model: str) -> None:
    with pytest.raises(ValidationError):
        TaskSpec(key="k", prompt="p", model=model)


def test_tool_names() -> None:
    spec = TaskSpec(
        key="k", prompt="p", allowed_tools=["Bash(git diff:*)", "Edit", "mcp__fs__read"]
    )
    assert spec.allowed_tools == ["Bash(git diff:*)", "Edit", "mcp__fs__read"]
    for bad in ["Edit Write", "--x", "Bash(a)(b)", ""]:
        with pytest.raises(ValidationError):
            TaskSpec(key="k", prompt="p", allowed_tools=[bad])
