"""Personas (`swarm_common.personas`): a population depends on its count and seed alone —
in this process, in another with another string hashing seed, and (pinned by a digest)
in other Python versions; roles spread evenly, names unique; what a persona may hold."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from pydantic import ValidationError

from swarm_common.personas import (
    EMAIL_DOMAIN,
    MAX_COUNT,
    ROLE_NAMES,
    ROLES,
    Persona,
    generate,
)
from swarm_common.specs import AGENT_KINDS


def dumped(people: list[Persona]) -> str:
    return json.dumps([p.model_dump() for p in people], sort_keys=True)


def test_the_same_seed_gives_the_same_personas() -> None:
    assert generate(1000, seed=42) == generate(1000, seed=42)
    assert dumped(generate(1000, seed=42)) == dumped(generate(1000, seed=42))


@pytest.mark.parametrize("hash_seed", ["0", "12345"])
def test_another_process_with_another_hash_seed_makes_the_same(hash_seed: str) -> None:
    code = (
        "import json, sys; from swarm_common.personas import generate; "
        "sys.stdout.write(json.dumps([p.model_dump() for p in generate(1000, seed=42)], "
        "sort_keys=True))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == dumped(generate(1000, seed=42))


def test_a_population_is_pinned() -> None:
    """Changing the lists or the drawing changes every population: say so in the change."""
    people = generate(50, seed=2026)
    assert (people[0].name, people[0].role) == ("nadia-tanaka", "qa")
    digest = hashlib.sha256(dumped(people).encode()).hexdigest()
    assert digest == "47ef7e3ccb28f30eda3f11f2d8e40f3593c62d87dca076737d46bd18f7a2b3a8"


def test_seeds_differ_and_a_population_is_a_prefix_of_a_larger_one() -> None:
    one, two = generate(100, seed=1), generate(100, seed=2)
    assert [p.name for p in one] != [p.name for p in two]
    assert sum(a == b for a, b in zip(one, two, strict=True)) < 10
    assert generate(1000, seed=1)[:100] == one
    assert generate(0, seed=1) == []


@pytest.mark.parametrize("count", [*range(1, 25), 999, 1000, 1003])
def test_roles_are_spread_evenly(count: int) -> None:
    counts = Counter(p.role for p in generate(count, seed=count))
    numbers = [counts.get(role, 0) for role in ROLE_NAMES]
    assert max(numbers) - min(numbers) <= 1 and sum(numbers) == count


@pytest.mark.parametrize("count", [1000, 10_000])
def test_names_are_unique(count: int) -> None:
    people = generate(count, seed=7)
    assert len({p.name for p in people}) == count
    assert len({p.author_email for p in people}) == count


def test_generated_personas_are_what_their_role_says() -> None:
    for p in generate(500, seed=3):
        role = ROLES[p.role]
        assert p.skills[: len(role.skills)] == list(role.skills)
        assert 1 <= len(p.skills) - len(role.skills) <= 4
        assert sorted(p.agents) == sorted(role.agents) and set(p.agents) <= set(AGENT_KINDS)
        assert p.style.count(". ") == 2 and len(p.style) < 400
        assert p.author_email == f"{p.name}@{EMAIL_DOMAIN}"
        base = p.author_name.lower().replace(" ", "-")  # Ada Lovelace: ada-lovelace(-N)
        assert p.name == base or p.name.removeprefix(base + "-").isdigit()


def test_counts_and_seeds_out_of_bounds() -> None:
    with pytest.raises(ValueError, match="count"):
        generate(MAX_COUNT + 1, seed=1)
    with pytest.raises(ValueError, match="count"):
        generate(-1, seed=1)
    with pytest.raises(ValueError, match="seed"):
        generate(1, seed=-1)


def test_left_out_fields_come_from_the_role_and_the_name() -> None:
    p = Persona(name="ada-lovelace-2", role="data")
    assert p.skills == list(ROLES["data"].skills) and p.agents == list(ROLES["data"].agents)
    assert (p.author_name, p.author_email) == (
        "Ada Lovelace 2",
        f"ada-lovelace-2@{EMAIL_DOMAIN}",
    )
    assert p.style == ""
    given = Persona(name="x", role="qa", skills=[], agents=["shell"], author_email="x@y.org")
    assert (given.skills, given.agents, given.author_email) == ([], ["shell"], "x@y.org")


@pytest.mark.parametrize(
    "name", ["", "Ada", "ada_lovelace", "-ada", "ada-", "ada--b", "a b", "é", "a/b", "x" * 65]
)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        Persona(name=name, role="qa")


def test_a_style_holding_a_secret_is_refused_without_echoing_it() -> None:
    key = "ghp_" + "a1B2c3D4e5" * 4
    with pytest.raises(ValidationError) as caught:
        Persona(name="ada", role="qa", style=f"Push with {key}.")
    assert key not in str(caught.value)
    with pytest.raises(ValidationError):
        Persona(name="ada", role="qa", author_email=f"{key}@example.com")


@pytest.mark.parametrize(
    "extra",
    [
        {"style": "x" * 2001},
        {"style": "a\x00b"},
        {"role": "wizard"},
        {"agents": []},
        {"agents": ["robot"]},
        {"agents": ["codex", "codex"]},
        {"skills": ["python", "python"]},
        {"skills": ["Python"]},
        {"skills": ["x"] * 33},
        {"author_email": "nobody"},
        {"author_email": "a@b"},
        {"author_name": "A <a@b.c>"},
        {"author_name": "two\nlines"},
        {"author_name": "  "},
        {"colour": "blue"},
    ],
)
def test_bad_fields_are_refused(extra: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Persona.model_validate({"name": "ada", "role": "qa", **extra})
