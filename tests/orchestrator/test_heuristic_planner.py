"""The planner without a model (`planning/heuristic.py`): a goal document of phases and
bullets becomes the expected graph, offline; whatever the text, the answer is a valid
graph."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from swarm_orchestrator.graph.validation import validate_graph
from swarm_orchestrator.planning.heuristic import MAX_TASKS, plan_from_text

GOAL = """# Add user accounts

We need sign-up and login.

## Phase 1: Data model
1. Add a users table
   - email is unique
2. Write the migration

## Phase 2: API
- POST /signup
- POST /login
  - returns a token

## Docs
Write the README section on accounts.
"""


def _graph(text: str) -> dict[str, list[str]]:
    return {spec.key: spec.depends_on for spec in plan_from_text(text)}


def test_phases_and_lists_make_the_expected_graph() -> None:
    assert _graph(GOAL) == {
        "add-a-users-table": [],
        "write-the-migration": ["add-a-users-table"],  # numbered: one after the other
        "post-signup": ["write-the-migration"],  # phase 2 waits for phase 1's end
        "post-login": ["write-the-migration"],  # bullets: side by side
        "docs": [],  # a section that is no phase waits for nothing
    }
    first, *_, login, docs = plan_from_text(GOAL)
    assert first.acceptance == ["email is unique"] and login.acceptance == ["returns a token"]
    assert "Part of: Phase 1: Data model" in first.prompt
    assert "We need sign-up and login." in first.prompt  # the goal's own words
    assert docs.prompt.startswith("Docs\n\nWrite the README section on accounts.")


def test_named_phase_lines_without_headings_order_their_tasks() -> None:
    text = "Phase 1: Setup\n- a\n- b\nPhase 2: Build\n1. c\n2. d\nStage 3 - Ship\n- e\n"
    assert _graph(text) == {"a": [], "b": [], "c": ["a", "b"], "d": ["c"], "e": ["d"]}


def test_headings_without_lists_are_parallel_tasks_and_plain_text_is_one() -> None:
    assert _graph("## Backend\nBuild the API.\n## Frontend\nBuild the page.\n") == {
        "backend": [],
        "frontend": [],
    }
    [only] = plan_from_text("Fix the flaky login test.")
    assert (only.key, only.prompt, only.depends_on) == (
        "fix-the-flaky-login-test",
        "Fix the flaky login test.",
        [],
    )


def test_repeated_titles_get_keys_of_their_own() -> None:
    assert list(_graph("- Test\n- Test\n- test!\n")) == ["test", "test-2", "test-3"]


_CHARS = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
"""A goal is valid text already: no NUL (PostgreSQL cannot store it), no lone surrogate
(not Unicode)."""
_LINES = st.sampled_from(
    ["# T", "## Phase 1: x", "Phase 2", "### 3. y", "- a", "* b", "1. c", "2) d", "   - e", "", "f"]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_LINES, st.text(_CHARS, max_size=30)), max_size=60))
def test_any_text_plans_a_valid_graph(lines: list[str]) -> None:
    planned = plan_from_text("\n".join(lines))
    assert 1 <= len(planned) <= MAX_TASKS
    assert len(validate_graph(planned, max_tasks=MAX_TASKS)) == len(planned)
