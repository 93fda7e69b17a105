"""Topologies: templates that expand into an ordinary task graph of `TaskSpec`s, which is
shown, stored, edited and run like any other graph (nothing of the template is kept but
the tasks it made, their `phase` and their `epic`).

- `fan-out`: a root task prepares the ground for the goal; N workers (different personas or
  agent kinds, each with its own part) build on it side by side; a verifier reads their
  merged work and answers a verdict, whose `FAIL` fails it and so blocks what follows; a
  synthesizer then writes the combined result.
- `builder-validator`: the tasks given, each paired with its reviewer (their `review`).
- `pipeline`: named phases in order, each one task that depends on the phase before.

`expand` is pure and deterministic (the same template gives the same graph), so the CLI
can show a graph before anything is sent, and the server expands what it is sent the same
way.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from swarm_common.personas import ROLE_NAMES
from swarm_common.specs import PersonaName, ReviewSpec, TaskKey, TaskSpec, Text, check_persona_name

__all__ = [
    "TEMPLATES",
    "PhaseSpec",
    "StageSpec",
    "TemplateSpec",
    "WorkerSpec",
    "expand",
    "parse_worker",
]

TemplateName = Literal["fan-out", "builder-validator", "pipeline"]
TEMPLATES: dict[str, str] = {
    "fan-out": "a root → N workers (different personas or agent kinds) → a verifier whose "
    "verdict decides → a synthesizer that writes the combined result",
    "builder-validator": "every task paired with its reviewer",
    "pipeline": "named phases in order",
}
RouteAgent = Literal["auto", "claude", "codex", "gemini"]
MAX_WORKERS = 50
MAX_PHASES = 50
MAX_TASKS = 100_000
"""A bound against absurd files only: the server decides how many tasks a session takes
(`SWARM_MAX_GRAPH_TASKS`, 10,000 by default; a 422 `graph_too_large` past it)."""


def _who(value: str) -> str:
    """A persona role (`backend`) or a persona's name (`ada-lovelace`)."""
    if value in ROLE_NAMES:
        return value
    try:
        return check_persona_name(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a persona role ({', '.join(ROLE_NAMES)}) nor a persona name"
        ) from None


Who = Annotated[str, AfterValidator(_who)]


class WorkerSpec(BaseModel):
    """One worker of a fan-out: who does it (a persona role, which gets a persona of that
    role, or a persona's name), on which agent kind, and its part of the goal."""

    model_config = ConfigDict(extra="forbid")

    who: Who
    prompt: Text = Field(min_length=1, max_length=64 * 1024)
    agent: RouteAgent = "auto"
    key: TaskKey | None = Field(None, description="Its task's key; `worker-<n>-<who>` if left out.")


class StageSpec(BaseModel):
    """The root, verifier or synthesizer of a fan-out, where its defaults will not do."""

    model_config = ConfigDict(extra="forbid")

    prompt: Text | None = Field(None, max_length=64 * 1024)
    agent: RouteAgent = "auto"
    persona: PersonaName | None = None
    rubric: Text | None = Field(
        None, max_length=8000, description="The verifier's: what it checks besides the goal."
    )


class PhaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=100)
    prompt: Text = Field(min_length=1, max_length=64 * 1024)
    agent: RouteAgent = "auto"
    role: Text | None = Field(None, max_length=100)


class TemplateSpec(BaseModel):
    """A topology to expand: its name and what it needs (`workers` for a fan-out, `phases`
    for a pipeline, `tasks` for builder-validator)."""

    model_config = ConfigDict(extra="forbid")

    name: TemplateName
    goal: Text = Field("", max_length=64 * 1024)
    workers: list[WorkerSpec] = Field(default_factory=list, max_length=MAX_WORKERS)
    root: StageSpec = Field(default_factory=StageSpec)
    verifier: StageSpec = Field(default_factory=StageSpec)
    synthesizer: StageSpec = Field(default_factory=StageSpec)
    phases: list[PhaseSpec] = Field(default_factory=list, max_length=MAX_PHASES)
    tasks: list[TaskSpec] = Field(default_factory=list, max_length=MAX_TASKS)
    review: ReviewSpec = Field(
        default_factory=ReviewSpec,
        description="builder-validator: the reviewer of every task that names none.",
    )

    @model_validator(mode="after")
    def _needs(self) -> TemplateSpec:
        if self.name == "fan-out":
            if not self.goal.strip():
                raise ValueError("a fan-out needs a `goal`")
            if len(self.workers) < 2:
                raise ValueError("a fan-out needs at least two `workers`")
        elif self.name == "pipeline" and not self.phases:
            raise ValueError("a pipeline needs `phases`")
        elif self.name == "builder-validator" and not self.tasks:
            raise ValueError("builder-validator needs `tasks`")
        return self


def parse_worker(text: str) -> WorkerSpec:
    """`WHO[@AGENT]:PROMPT` (the CLI's `--worker backend@codex:"Build the API"`)."""
    head, sep, prompt = text.partition(":")
    if not sep or not prompt.strip():
        raise ValueError(f"a worker is WHO[@AGENT]:PROMPT, not {text!r}")
    who, _, agent = head.strip().partition("@")
    fields: dict[str, str] = {"who": who.strip(), "prompt": prompt.strip()}
    if agent:
        fields["agent"] = agent.strip()
    return WorkerSpec.model_validate(fields)


def expand(template: TemplateSpec) -> list[TaskSpec]:
    """The graph `template` stands for, parents first."""
    if template.name == "fan-out":
        return _fan_out(template)
    if template.name == "pipeline":
        return _pipeline(template)
    return _builder_validator(template)


def _slug(text: str, limit: int = 24) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "x"


def _person(who: str) -> dict[str, str]:
    return {"role": who} if who in ROLE_NAMES else {"persona": who}


def _fan_out(t: TemplateSpec) -> list[TaskSpec]:
    epic = "fan-out"
    root = TaskSpec(
        key="root",
        title="Prepare the ground",
        prompt=t.root.prompt
        or (
            "Prepare the ground for the workers who come after you, each on their own part "
            "of the goal: lay out the structure, shared interfaces and conventions they build "
            "on, and keep it small.\n\nThe parts: "
            + "; ".join(f"{w.who}: {w.prompt}" for w in t.workers)
        ),
        agent=t.root.agent,
        **({"persona": t.root.persona} if t.root.persona else {"role": "pm"}),
        phase="prepare",
        epic=epic,
    )
    workers = []
    for n, worker in enumerate(t.workers, start=1):
        workers.append(
            TaskSpec(
                key=worker.key or f"worker-{n}-{_slug(worker.who)}",
                title=f"{worker.who}: {worker.prompt}"[:200],
                prompt=worker.prompt,
                agent=worker.agent,
                depends_on=[root.key],
                phase="work",
                epic=epic,
                **_person(worker.who),
            )
        )
    keys = [w.key for w in workers]
    if len(set(keys)) != len(keys) or {"root", "verify", "synthesize"} & set(keys):
        raise ValueError("worker keys must be unique and not root, verify or synthesize")
    verify = TaskSpec(
        key="verify",
        title="Verify the combined work",
        prompt=t.verifier.prompt
        or (
            "Verify that the workers' combined work, now merged, meets the goal and that the "
            "parts fit together: " + ", ".join(keys) + "."
        ),
        agent=t.verifier.agent,
        depends_on=keys,
        verify=True,
        review=False,
        acceptance=[t.verifier.rubric] if t.verifier.rubric else [],
        phase="verify",
        epic=epic,
        **({"persona": t.verifier.persona} if t.verifier.persona else {"role": "qa"}),
    )
    synthesize = TaskSpec(
        key="synthesize",
        title="Write the combined result",
        prompt=t.synthesizer.prompt
        or (
            "Bring the workers' verified work together into one result: resolve loose ends "
            "between the parts and write what was built and how to use it (SYNTHESIS.md)."
        ),
        agent=t.synthesizer.agent,
        depends_on=[verify.key],
        phase="synthesize",
        epic=epic,
        **({"persona": t.synthesizer.persona} if t.synthesizer.persona else {"role": "docs"}),
    )
    return [root, *workers, verify, synthesize]


def _pipeline(t: TemplateSpec) -> list[TaskSpec]:
    tasks: list[TaskSpec] = []
    seen: set[str] = set()
    for n, phase in enumerate(t.phases, start=1):
        key = f"{n:02d}-{_slug(phase.name)}"
        if key in seen:
            raise ValueError(f"two phases make the key {key!r}")
        seen.add(key)
        tasks.append(
            TaskSpec(
                key=key,
                title=phase.name,
                prompt=phase.prompt,
                agent=phase.agent,
                role=phase.role,
                depends_on=[tasks[-1].key] if tasks else [],
                phase=phase.name,
                epic="pipeline",
            )
        )
    return tasks


def _builder_validator(t: TemplateSpec) -> list[TaskSpec]:
    return [
        task
        if task.review is False or isinstance(task.review, ReviewSpec)
        else task.model_copy(update={"review": t.review})
        for task in t.tasks
    ]
