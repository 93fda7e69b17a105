"""Personas: who a logical agent is — a role, skills, the agent kinds it prefers, a working
style that goes into its prompts, and the identity its commits carry.

A thousand logical agents are a thousand rows, not a thousand processes: a persona is data
that a task is given later (an adapter runs whichever persona its task names).

`ROLES` holds the ten roles (pm, backend, frontend, rust, devops, qa, security, design,
data, docs), each with the skills and preferred agent kinds a persona of it has when none
are given, and the sentences a generated persona's working style is drawn from.

`generate(count, seed=S)` makes a population that depends on `count` and `S` alone: the
same on every machine, in every process and every Python version, because it draws only
`random.Random(S).random()` (the one output Python promises to keep the same for a seed)
from fixed lists, never a string's `hash()` nor a set's order. A population is a prefix of
every larger one of the same seed. Changing the lists below changes every population.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from swarm_common.specs import MAX_PERSONA_NAME_CHARS, AgentKind, check_text
from swarm_common.specs import check_persona_name as check_name

__all__ = [
    "EMAIL_DOMAIN",
    "MAX_COUNT",
    "MAX_NAME_CHARS",
    "MAX_STYLE_CHARS",
    "ROLES",
    "ROLE_NAMES",
    "Persona",
    "Role",
    "RoleName",
    "check_name",
    "check_skill",
    "generate",
]

MAX_COUNT = 100_000
"""Most personas one `generate` makes."""
MAX_NAME_CHARS = MAX_PERSONA_NAME_CHARS
MAX_SKILLS = 32
MAX_STYLE_CHARS = 2000
"""A style goes into every prompt of the persona's tasks: a paragraph, not a document."""
EMAIL_DOMAIN = "personas.swarm.invalid"
"""Generated commit addresses end here (`.invalid` is reserved: no mail is ever sent)."""

RoleName = Literal[
    "pm", "backend", "frontend", "rust", "devops", "qa", "security", "design", "data", "docs"
]
ROLE_NAMES: tuple[str, ...] = get_args(RoleName)

_SKILL_RE = re.compile(r"[a-z0-9][a-z0-9+#.-]{0,39}")
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Role:
    name: RoleName
    title: str
    skills: tuple[str, ...]
    """Every persona of the role has these (and they are its default)."""
    extra_skills: tuple[str, ...]
    """A generated persona also has one to three of these."""
    agents: tuple[AgentKind, ...]
    """Preferred agent kinds, the most preferred first (the default)."""
    styles: tuple[str, ...]
    """Working-style sentences; a generated persona has two of them."""


ROLES: dict[str, Role] = {
    role.name: role
    for role in (
        Role(
            "pm",
            "Product manager",
            ("roadmaps", "user-stories", "acceptance-criteria"),
            ("prioritisation", "stakeholder-updates", "metrics", "release-notes", "scoping"),
            ("claude", "gemini", "codex"),
            (
                "Turns a vague goal into small tasks, each with acceptance criteria.",
                "Asks what the user will notice before asking how it is built.",
                "Cuts scope early and says what was left out and why.",
                "Writes plans as numbered steps that someone else can pick up.",
                "Keeps a running list of open questions and answers them in the plan.",
            ),
        ),
        Role(
            "backend",
            "Backend engineer",
            ("python", "sql", "http-apis"),
            ("fastapi", "postgresql", "redis", "asyncio", "go", "grpc", "sqlalchemy", "caching"),
            ("codex", "claude", "gemini"),
            (
                "Writes the failing test first, then the smallest change that passes it.",
                "Keeps transactions short and every write idempotent.",
                "Adds an index only with the query that needs it.",
                "Validates input at the edge and trusts it inside.",
                "Returns errors with stable codes a client can act on.",
            ),
        ),
        Role(
            "frontend",
            "Frontend engineer",
            ("typescript", "html", "css"),
            ("react", "vue", "svelte", "accessibility", "vite", "playwright", "state-management"),
            ("claude", "gemini", "codex"),
            (
                "Builds components that work with a keyboard before they work with a mouse.",
                "Keeps state in one place and derives the rest.",
                "Checks every screen at a narrow width and in a slow network.",
                "Prefers platform features to a new dependency.",
                "Names components after what the user sees, not how they are built.",
            ),
        ),
        Role(
            "rust",
            "Rust engineer",
            ("rust", "cargo", "testing"),
            ("tokio", "serde", "unsafe-review", "clippy", "wasm", "ffi", "profiling"),
            ("codex", "claude", "gemini"),
            (
                "Lets the type system carry invariants instead of comments.",
                "Avoids unsafe code, and documents every block that needs it.",
                "Keeps clippy quiet without silencing it.",
                "Measures before optimising and keeps the benchmark.",
                "Prefers owned data at API boundaries and borrowing inside.",
            ),
        ),
        Role(
            "devops",
            "DevOps engineer",
            ("ci", "docker", "linux"),
            ("kubernetes", "terraform", "helm", "github-actions", "observability", "bash", "nginx"),
            ("shell", "codex", "claude"),
            (
                "Makes every change to infrastructure a reviewed file, never a manual step.",
                "Pins versions and says how to upgrade them.",
                "Adds a health check and an alert with every new service.",
                "Keeps pipelines fast by caching what does not change.",
                "Writes runbooks as commands that can be pasted.",
            ),
        ),
        Role(
            "qa",
            "QA engineer",
            ("testing", "test-plans", "bug-reports"),
            ("pytest", "playwright", "property-testing", "fuzzing", "load-testing", "mutation"),
            ("claude", "codex", "shell"),
            (
                "Reproduces a bug in a test before anyone fixes it.",
                "Tests the edges: empty, one, many, too many, and malformed.",
                "Writes bug reports with steps, expected and actual results.",
                "Removes flaky waits and waits for conditions instead.",
                "Keeps the fast test lane fast and moves slow tests behind a marker.",
            ),
        ),
        Role(
            "security",
            "Security engineer",
            ("threat-modeling", "code-review", "secure-defaults"),
            ("owasp", "cryptography", "authn", "authz", "supply-chain", "secrets", "sandboxing"),
            ("claude", "codex", "gemini"),
            (
                "Asks who controls each input before reading what the code does with it.",
                "Refuses by default and allows by name.",
                "Keeps secrets out of logs, URLs and error messages.",
                "Adds a regression test for every vulnerability fixed.",
                "Prefers a well-known library to cryptography written by hand.",
            ),
        ),
        Role(
            "design",
            "Product designer",
            ("ux", "ui-design", "design-systems"),
            ("figma", "ux-writing", "accessibility", "prototyping", "usability-testing", "icons"),
            ("gemini", "claude", "codex"),
            (
                "Starts from the task the user came to do.",
                "Uses the design system's parts before drawing new ones.",
                "Writes labels and messages in plain words.",
                "Checks contrast, focus order and touch targets on every screen.",
                "Shows two options with their trade-offs rather than one finished answer.",
            ),
        ),
        Role(
            "data",
            "Data engineer",
            ("sql", "python", "data-modeling"),
            ("pandas", "dbt", "spark", "airflow", "duckdb", "statistics", "data-quality"),
            ("codex", "gemini", "claude"),
            (
                "Writes down the grain of every table before filling it.",
                "Makes pipelines rerunnable: the same input gives the same output.",
                "Checks row counts and nulls at each step.",
                "Keeps raw data untouched and derives everything else from it.",
                "Documents where each column comes from.",
            ),
        ),
        Role(
            "docs",
            "Technical writer",
            ("technical-writing", "markdown", "api-docs"),
            ("tutorials", "diagrams", "style-guides", "changelogs", "openapi", "examples"),
            ("claude", "gemini", "codex"),
            (
                "Writes examples that work when pasted, and runs them.",
                "Puts the task first and the background after.",
                "Uses short sentences and one term for one thing.",
                "Updates the docs in the same change as the code.",
                "Links to the reference instead of repeating it.",
            ),
        ),
    )
}
"""The roles, in the order a generated population cycles through them."""

_GENERAL_SKILLS = (
    "git",
    "code-review",
    "mentoring",
    "pair-programming",
    "profiling",
    "observability",
    "refactoring",
    "debugging",
)
_GENERAL_STYLES = (
    "Makes small commits with messages that say why.",
    "Leaves the code a little clearer than it found it.",
    "Says what is unfinished instead of hiding it.",
    "Reads the surrounding code before changing it.",
    "Asks before adding a dependency.",
    "Keeps functions short enough to see whole.",
    "Explains a decision in the commit, not only in chat.",
    "Stops and reports when the task is unclear.",
)

_FIRST_NAMES = (
    "ada", "alan", "amara", "ana", "anders", "aiko", "amir", "anya", "arjun", "astrid",
    "ben", "bianca", "bo", "carla", "chen", "chloe", "dario", "dawit", "diego", "elena",
    "emeka", "emil", "esra", "farah", "felix", "freya", "gabriel", "grace", "hana", "hassan",
    "ingrid", "ines", "ivan", "jamal", "jana", "javier", "jin", "joao", "julia", "kai",
    "kamala", "karim", "kenji", "kofi", "lars", "layla", "lea", "leon", "lina", "luca",
    "maya", "mateo", "mei", "mira", "nadia", "naveen", "nia", "niko", "noor", "olga",
    "omar", "oskar", "priya", "quinn", "rafael", "rania", "ravi", "rosa", "ruth", "sami",
    "sara", "sena", "sofia", "sven", "tariq", "tess", "theo", "tomas", "uma", "valeria",
    "vera", "victor", "wanjiru", "wei", "xenia", "yara", "yusuf", "yuki", "zain", "zofia",
    "abel", "bruna", "cyrus", "daria", "eitan", "fiona", "goran", "hedda", "idris", "juno",
)  # fmt: skip
_LAST_NAMES = (
    "abe", "adeyemi", "alvarez", "andersen", "bauer", "becker", "bianchi", "brandt",
    "castro", "chandra", "costa", "cruz", "dahl", "das", "diaz", "dubois", "eriksen",
    "fernandes", "fischer", "fontaine", "garcia", "gomez", "haddad", "hansen", "hart",
    "hoang", "huber", "ibrahim", "ito", "jensen", "kahn", "kang", "kaur", "keller",
    "khan", "kim", "koch", "kowalski", "kumar", "lang", "larsen", "lee", "lima", "lopez",
    "lund", "maier", "mendes", "meyer", "moreau", "morales", "mwangi", "nakamura", "nguyen",
    "nilsson", "novak", "okafor", "olsen", "ortiz", "park", "patel", "perez", "petrov",
    "quinn", "ramos", "reyes", "richter", "rossi", "sato", "schmidt", "silva", "singh",
    "sousa", "suzuki", "tanaka", "torres", "tran", "vargas", "varga", "vogel", "wagner",
    "walsh", "wang", "weber", "wolf", "wong", "yamada", "yilmaz", "young", "zhang", "ziegler",
    "achebe", "bakker", "cohen", "dimitrov", "eze", "falk", "gupta", "holm", "iqbal", "juarez",
)  # fmt: skip


def check_skill(value: str) -> str:
    if not _SKILL_RE.fullmatch(value):
        raise ValueError(
            "a skill is 1 to 40 lower-case letters, digits and + # . - (python, c++, next.js)"
        )
    return value


def _check_author_name(value: str) -> str:
    value = check_text(value).strip()
    if not value or _CONTROL_RE.search(value) or "<" in value or ">" in value:
        raise ValueError("an author name is one line of text without < or >")
    return value


def _check_email(value: str) -> str:
    if not _EMAIL_RE.fullmatch(value):
        raise ValueError("an author email looks like name@example.com")
    return check_text(value)


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


PersonaName = Annotated[str, AfterValidator(check_name)]
Skill = Annotated[str, AfterValidator(check_skill)]


class Persona(BaseModel):
    """One persona. Left out, `skills` and `agents` are the role's, `author_name` is made
    from the name (`ada-lovelace` → `Ada Lovelace`) and `author_email` is
    `<name>@personas.swarm.invalid`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: PersonaName = Field(
        max_length=MAX_NAME_CHARS, description="Unique per tenant: `ada-lovelace`."
    )
    role: RoleName
    skills: list[Skill] = Field(
        default_factory=list, max_length=MAX_SKILLS, description="The role's when left out."
    )
    agents: list[AgentKind] = Field(
        default_factory=list,
        min_length=1,
        max_length=4,
        description="Preferred agent kinds, the most preferred first; the role's when left out.",
    )
    style: Annotated[str, AfterValidator(check_text)] = Field(
        "",
        max_length=MAX_STYLE_CHARS,
        description="How the persona works, in words; it goes into its tasks' prompts.",
    )
    author_name: Annotated[str, AfterValidator(_check_author_name)] = Field(
        "", max_length=100, description="Its commits' author; made from the name when left out."
    )
    author_email: Annotated[str, AfterValidator(_check_email)] = Field(
        "",
        max_length=254,
        description=f"Its commits' address; `<name>@{EMAIL_DOMAIN}` when left out.",
    )

    @model_validator(mode="before")
    @classmethod
    def _role_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        role = ROLES.get(data["role"]) if isinstance(data.get("role"), str) else None
        name = data.get("name")
        filled = dict(data)
        if role is not None:
            filled.setdefault("skills", list(role.skills))
            filled.setdefault("agents", list(role.agents))
        if isinstance(name, str):
            filled.setdefault("author_name", name.replace("-", " ").title())
            filled.setdefault("author_email", f"{name}@{EMAIL_DOMAIN}")
        return filled

    @model_validator(mode="after")
    def _no_repeats(self) -> Persona:
        if len(set(self.skills)) != len(self.skills):
            raise ValueError("skills must not repeat")
        if len(set(self.agents)) != len(self.agents):
            raise ValueError("agents must not repeat")
        return self


# --- generation: only `Random.random()`, on fixed lists ----------------------------------


def _pick(rng: random.Random, n: int) -> int:
    """An index below `n`, from `random()` alone (`randrange` and `choice` have changed
    between Python versions; `random()` is promised not to)."""
    return int(rng.random() * n)


def _shuffled(rng: random.Random, items: Sequence[str]) -> list[str]:
    out = list(items)
    for i in range(len(out) - 1, 0, -1):  # Fisher–Yates
        j = _pick(rng, i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def _sample(rng: random.Random, items: Sequence[str], k: int) -> list[str]:
    """`k` distinct items, in the order drawn."""
    pool = list(items)
    drawn = []
    for _ in range(min(k, len(pool))):
        drawn.append(pool.pop(_pick(rng, len(pool))))
    return drawn


def _one(rng: random.Random, taken: dict[str, int], role: Role) -> Persona:
    first = _FIRST_NAMES[_pick(rng, len(_FIRST_NAMES))]
    last = _LAST_NAMES[_pick(rng, len(_LAST_NAMES))]
    base = f"{first}-{last}"
    seen = taken.get(base, 0) + 1
    taken[base] = seen
    # A base name never ends in a digit, so `base-N` is never another persona's base name.
    name = base if seen == 1 else f"{base}-{seen}"
    skills = [*role.skills, *_sample(rng, role.extra_skills, 1 + _pick(rng, 3))]
    if rng.random() < 0.2:
        skills.append(_GENERAL_SKILLS[_pick(rng, len(_GENERAL_SKILLS))])
    agents = list(role.agents)
    if rng.random() < 0.25:
        agents[0], agents[1] = agents[1], agents[0]
    style = " ".join(
        [*_sample(rng, role.styles, 2), _GENERAL_STYLES[_pick(rng, len(_GENERAL_STYLES))]]
    )
    return Persona(
        name=name,
        role=role.name,
        skills=_unique(skills),
        agents=agents,
        style=style,
        author_name=f"{first.title()} {last.title()}",
        author_email=f"{name}@{EMAIL_DOMAIN}",
    )


def generate(count: int, *, seed: int) -> list[Persona]:
    """`count` personas (at most `MAX_COUNT`) with unique names, spread evenly over the
    roles (their numbers differ by one at most), the same for the same `count` and `seed`
    (an integer, 0 or more) wherever and whenever it runs."""
    if not 0 <= count <= MAX_COUNT:
        raise ValueError(f"count must be between 0 and {MAX_COUNT}")
    if seed < 0:
        raise ValueError("seed must be 0 or more")
    rng = random.Random(seed)
    taken: dict[str, int] = {}
    people: list[Persona] = []
    order: list[str] = []
    for i in range(count):
        at = i % len(ROLE_NAMES)
        if at == 0:  # each round of ten has every role once, in its own order
            order = _shuffled(rng, ROLE_NAMES)
        people.append(_one(rng, taken, ROLES[order[at]]))
    return people
