"""The planner without a model: a goal document's own structure made into a task graph.

Used when `settings.planner.agent` is `heuristic`, and when no planning agent is available,
so planning also works offline. What it reads:

- **sections**: a Markdown heading (`## Backend`), or a named phase line (`Phase 2: API`,
  `Stage 1 - Setup`, `Step 3: ...`, `Milestone: ...`), starts a section;
- **tasks**: each item of a bulleted (`-`, `*`, `+`) or numbered (`1.`, `1)`) list is a
  task; items indented below one are its details (and acceptance criteria), so is a
  paragraph under it; a section with text but no list is one task;
- **order**: numbered items run one after the other, bulleted ones side by side; named
  phases and numbered headings (`## 1. Setup`) run in order, each waiting for the tasks of
  the one before that nothing else in it waits for; other sections run side by side.
- A document with no structure at all is one task: the goal itself, keyed by its first
  line.

The answer is a list of `TaskSpec`s, valid like any submitted graph (keys are slugs of the
titles, unique; at most `MAX_TASKS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from swarm_common.specs import MAX_KEY_CHARS, TaskSpec

__all__ = ["MAX_TASKS", "plan_from_text"]

MAX_TASKS = 500
_TITLE_CHARS = 100

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_PHASE = re.compile(
    r"^\s*(?:\*\*)?(phase|stage|step|milestone)\b\s*([\w.]*)\s*(?:[:\-\u2013\u2014.)]\s*(.*?))?"
    r"(?:\*\*)?\s*$",
    re.IGNORECASE,
)
_ITEM = re.compile(r"^(\s*)(?:([-*+\u2022])|(\d+)[.)])\s+(.+?)\s*$")
_NUMBERED_TITLE = re.compile(r"^\d+[.)]\s+")


@dataclass
class _Item:
    text: str
    numbered: bool
    details: list[str] = field(default_factory=list)


@dataclass
class _Section:
    title: str
    ordered: bool
    """A named phase or a numbered heading: it waits for the section before it."""
    level: int = 0
    """A Markdown heading's level; 0 for a named phase line or the text before any."""
    text: list[str] = field(default_factory=list)
    items: list[_Item] = field(default_factory=list)
    item_indent: int | None = None


def plan_from_text(goal: str) -> list[TaskSpec]:
    """The task graph a goal document's structure describes (see the module docstring)."""
    sections = _sections(goal)
    _title_to_context(sections)
    goal_context = [f"Goal: {_first_line(goal)}", *sections[0].text]
    planned: list[TaskSpec] = []
    keys: set[str] = set()
    before: list[str] = []
    for section in sections:
        made = _section_tasks(section, goal=goal_context, keys=keys)
        if not made:
            continue
        if section.ordered and before:
            for spec in _sources(made):
                spec.depends_on = [*before, *spec.depends_on]
        planned.extend(made)
        if section.ordered or not before:
            before = _sinks(made)
        if len(planned) >= MAX_TASKS:
            break
    if not planned:
        title = _first_line(goal)
        planned = [_spec(_unique(title or "goal", keys), title, goal.strip() or "goal", [])]
    return planned[:MAX_TASKS]


def _sections(goal: str) -> list[_Section]:
    sections = [_Section(title="", ordered=False)]
    for line in goal.splitlines():
        header = _section_header(line)
        if header is not None:
            sections.append(header)
            continue
        _add_line(sections[-1], line)
    return sections


def _title_to_context(sections: list[_Section]) -> None:
    """A document's title (a first `#` heading with only text under it, before other
    sections) is the goal, not a task: its text goes to the untitled section before it."""
    titled = [s for s in sections if s.title]
    if len(titled) > 1 and titled[0].level == 1 and not titled[0].items:
        sections[0].text.extend(titled[0].text)
        titled[0].text = []


def _section_header(line: str) -> _Section | None:
    heading = _HEADING.match(line)
    if heading:
        title = heading.group(2).strip()
        named = _PHASE.match(title)
        ordered = bool(_NUMBERED_TITLE.match(title) or (named and named.group(2)))
        return _Section(title=title, ordered=ordered, level=len(heading.group(1)))
    if _ITEM.match(line):
        return None
    phase = _PHASE.match(line)
    if phase and (phase.group(2) or phase.group(3)):
        name = f"{phase.group(1).capitalize()} {phase.group(2)}".strip()
        detail = (phase.group(3) or "").strip()
        return _Section(title=f"{name}: {detail}" if detail else name, ordered=True)
    return None


def _add_line(section: _Section, line: str) -> None:
    item = _ITEM.match(line)
    if item:
        indent = len(item.group(1).expandtabs(4))
        if section.item_indent is None or indent <= section.item_indent:
            section.item_indent = indent
            section.items.append(_Item(text=item.group(4), numbered=item.group(3) is not None))
            return
        section.items[-1].details.append(item.group(4))
        return
    text = line.strip()
    if not text:
        return
    if section.items:
        section.items[-1].details.append(text)
    else:
        section.text.append(text)


def _section_tasks(section: _Section, *, goal: list[str], keys: set[str]) -> list[TaskSpec]:
    context = [*([f"Part of: {section.title}"] if section.title else []), *goal]
    if not section.title and not section.items:
        return []  # the text before any section: the goal's own words
    if not section.items:
        if not section.text or not section.title:
            return []
        body = "\n".join([section.title, "", *section.text, "", *context])
        return [_spec(_unique(section.title, keys), section.title, body, [])]
    made: list[TaskSpec] = []
    previous: str | None = None
    for item in section.items:
        depends = [previous] if item.numbered and previous else []
        lines = [item.text]
        if item.details:
            lines += ["", *(f"- {d}" for d in item.details)]
        body = "\n".join([*lines, "", *section.text, *context]).strip()
        spec = _spec(_unique(item.text, keys), item.text, body, depends)
        spec.acceptance = [d[:2000] for d in item.details[:50]]
        made.append(spec)
        previous = spec.key
    return made


def _spec(key: str, title: str, prompt: str, depends_on: list[str]) -> TaskSpec:
    return TaskSpec(key=key, title=_clip(title), prompt=prompt, depends_on=depends_on)


def _sources(specs: list[TaskSpec]) -> list[TaskSpec]:
    """The tasks of `specs` that wait for none of the others."""
    inside = {s.key for s in specs}
    return [s for s in specs if not inside.intersection(s.depends_on)]


def _sinks(specs: list[TaskSpec]) -> list[str]:
    """The keys of `specs` that none of the others waits for."""
    waited = {d for s in specs for d in s.depends_on}
    return [s.key for s in specs if s.key not in waited]


def _first_line(text: str) -> str:
    for line in text.splitlines():
        cleaned = line.strip().lstrip("#").strip()
        if cleaned:
            return _clip(cleaned)
    return "goal"


def _clip(text: str) -> str:
    return text if len(text) <= _TITLE_CHARS else text[: _TITLE_CHARS - 1].rstrip() + "…"


def _unique(title: str, keys: set[str]) -> str:
    """A task key from `title`: lower-case words joined by `-`, unique among `keys`."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-") or "task"
    key, n = slug, 1
    while key in keys:
        n += 1
        key = f"{slug}-{n}"[:MAX_KEY_CHARS]
    keys.add(key)
    return key
