"""Handoffs on the adapter's side: what the agent is told of the tasks before it, where it
finds the same as a file, and what it leaves for the tasks after it.

- In: the task message carries its parents' handoffs and the session's blackboard as they
  stood when it was queued. `context_sections` puts them in the prompt; `write_context`
  writes them to `.swarm/context.json` in the worktree before the agent runs, and
  `remove_context` takes it away when the agent ends: the commit (which excludes its path as
  well) and the gates never see it, and it is never written through a symlink the
  repository holds nor over a file of the repository's.
- Out: the prompt asks the agent to end its final message with a fenced `swarm-handoff`
  block (`request_section`). One way for all three CLIs: Claude's `--json-schema` and
  Codex's `--output-schema` hold a task's own `output_schema` and would make every run's
  last message JSON (Claude ends the run at the schema's tool call and fails it after five
  misfits), and Gemini has no such option. `parse` reads the block tolerantly (a `json`
  block with handoff fields, or an answer that is that object, will do; trailing commas are
  forgiven) and falls back to the final message as the summary. Nothing here ever fails an
  attempt: what cannot be read is left out and named in `problems`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from swarm_common.handoffs import (
    CONTEXT_FILE,
    FENCE_TAG,
    MAX_FACT_KEY_CHARS,
    MAX_FACTS,
    MAX_NOTE_CHARS,
    MAX_NOTES,
    MAX_PROBLEMS,
    MAX_PROPOSALS,
    MAX_SUMMARY_CHARS,
    Fact,
    Handoff,
    Proposal,
    clip,
)
from swarm_common.messages import TaskMessage
from swarm_common.text import clean

if TYPE_CHECKING:  # the runners build their prompts with this module
    from swarm_adapter.runners.base import RunResult

__all__ = [
    "ContextFile",
    "context_sections",
    "parse",
    "remove_context",
    "request_section",
    "take",
    "write_context",
]

log = logging.getLogger(__name__)

_BLOCK = re.compile(
    r"^[ \t]*```[ \t]*([A-Za-z0-9_.-]*)[^\n]*\n(.*?)\n[ \t]*```[ \t]*$", re.DOTALL | re.MULTILINE
)
"""A fenced block whose fences stand on lines of their own: a fence inside a JSON string
(a proposed task's prompt may hold one) is never on a line of its own."""
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_HANDOFF_FIELDS = ("summary", "notes", "facts", "follow_ups", "followups", "proposals")
_PROMPT_VALUE_CHARS = 500


# -- in: the prompt and the context file ---------------------------------------------------


def request_section(message: TaskMessage) -> str | None:
    """What the prompt asks of the agent's final message; None for a run whose final
    message is an answer (read-only, or an `output_schema` to follow)."""
    if message.read_only or message.output_schema is not None:
        return None
    follow_ups = (
        ""
        if _delegation_off(message)
        else ',\n "follow_ups": [{"title": "…", "prompt": "…", "role": "qa", '
        '"depends_on": ["an-existing-task-key"]}]'
    )
    text = f"""\
## Your handoff
End your final message with a handoff for the tasks after you: a fenced block tagged
`{FENCE_TAG}` holding one JSON object (every field may be left out):

```{FENCE_TAG}
{{"summary": "what you did, and what the next tasks must know",
 "notes": ["a decision, a caveat, where something lives"],
 "facts": {{"api.base_path": "/v2"}}{follow_ups}}}
```

`facts` go on the session's blackboard, which every later task reads; a later value of a
key replaces an earlier one."""
    if follow_ups:
        text += (
            "\n`follow_ups` propose new tasks for work you found but should not do now "
            "(a person may have to accept them); leave it out when there is none."
        )
    return text


def _delegation_off(message: TaskMessage) -> bool:
    delegation = message.settings.get("delegation")
    if isinstance(delegation, dict):
        delegation = delegation.get("policy")
    return delegation == "off"


def context_sections(message: TaskMessage) -> list[str]:
    """The prompt's sections on the parents' handoffs and the blackboard (empty when there
    are neither)."""
    parts: list[str] = []
    if message.handoffs:
        lines = ["## What the tasks before you handed over"]
        for parent in message.handoffs:
            who = f" ({parent.persona})" if parent.persona else ""
            lines.append(f"### {parent.key}: {parent.title}{who}")
            if parent.summary:
                lines.append(parent.summary)
            lines += [f"- {note}" for note in parent.notes]
        parts.append("\n".join(lines))
    if message.blackboard:
        lines = ["## The session's blackboard (facts, the latest value of each key)"]
        for fact in message.blackboard:
            value = clip(json.dumps(fact.value, ensure_ascii=False), _PROMPT_VALUE_CHARS)
            lines.append(f"- {fact.key} = {value}" + (f" ({fact.author})" if fact.author else ""))
        if message.blackboard_omitted:
            lines.append(f"- … and {message.blackboard_omitted} older facts left out")
        parts.append("\n".join(lines))
    if parts:
        parts.append(f"The same is in `{CONTEXT_FILE}` in your working directory, as JSON.")
    return parts


def context_document(message: TaskMessage) -> dict[str, Any]:
    return {
        "session_id": str(message.session_id),
        "task": {"key": message.task_key, "title": message.title, "attempt": message.attempt},
        "parents": [p.model_dump(mode="json") for p in message.handoffs],
        "blackboard": [f.model_dump(mode="json") for f in message.blackboard],
        "blackboard_omitted": message.blackboard_omitted,
    }


@dataclass(frozen=True)
class ContextFile:
    """The context file written into a worktree, to take away again once the agent ends."""

    path: str
    """Relative to the worktree (`CONTEXT_FILE`)."""
    made_folder: bool
    """Whether `.swarm` was made for it (removed again when left empty)."""


def write_context(worktree: Path, message: TaskMessage) -> ContextFile | None:
    """Write `.swarm/context.json` into the worktree for the agent; None when the
    repository's own `.swarm` is in the way (a symlink, a file, a `context.json` of its own):
    the agent then has the prompt only."""
    folder = worktree / ".swarm"
    target = worktree / CONTEXT_FILE
    try:
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            log.warning("the repository's .swarm is no folder; no context file")
            return None
        if target.exists() or target.is_symlink():
            log.warning("the repository has a %s of its own; no context file", CONTEXT_FILE)
            return None
        made = not folder.exists()
        folder.mkdir(exist_ok=True)
        data = json.dumps(context_document(message), ensure_ascii=False, indent=2) + "\n"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(target, flags, 0o644), "w", encoding="utf-8") as handle:
            handle.write(data)
    except OSError as exc:
        log.warning("context file not written: %s", exc)
        return None
    return ContextFile(path=CONTEXT_FILE, made_folder=made)


def remove_context(worktree: Path, written: ContextFile) -> None:
    """Take the context file away once the agent ended, so neither the commit nor the gates
    see it (the commit also excludes its path, should this fail); whatever the agent made of
    it (a symlink, a folder) goes, never what it points to."""
    target = worktree / written.path
    try:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        if written.made_folder:
            with contextlib.suppress(OSError):  # not empty: the agent put files there
                (worktree / ".swarm").rmdir()
    except OSError as exc:
        log.warning("context file not removed: %s", exc)


# -- out: the agent's handoff --------------------------------------------------------------


def take(message: TaskMessage, result: RunResult) -> Handoff:
    """The handoff of a succeeded attempt: from the agent's final message, or for the shell
    agent (which has none) from a `swarm-handoff` block at the end of its output; what a
    command prints is no summary (it stays in the attempt's output)."""
    try:
        if result.answer is not None:
            return parse(result.answer)
        found = parse(result.output_tail)
        return found if found.source == "block" else Handoff(problems=found.problems)
    except Exception:  # a handoff must never fail work that passed
        log.exception("handoff unreadable", extra={"task_key": message.task_key})
        return Handoff(source="none", problems=["the handoff could not be read"])


def parse(text: str | None) -> Handoff:
    """The handoff in an agent's final message (see the module's docstring)."""
    if not text or not text.strip():
        return Handoff()
    text = clean(text)
    problems: list[str] = []
    found = _find_block(text, problems)
    if found is None:
        return Handoff(
            summary=clip(text.strip(), MAX_SUMMARY_CHARS), source="answer", problems=problems
        )
    data, rest = found
    summary = data.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        summary = rest
    return Handoff(
        summary=clip(summary.strip(), MAX_SUMMARY_CHARS),
        notes=_notes(data.get("notes")),
        facts=_facts(data.get("facts"), problems),
        proposals=_proposals(
            data.get("follow_ups", data.get("followups", data.get("proposals"))), problems
        ),
        source="block",
        problems=[clip(p, 500) for p in problems[:MAX_PROBLEMS]],
    )


def _find_block(text: str, problems: list[str]) -> tuple[dict[str, Any], str] | None:
    """The handoff object and the text around it: the whole answer when it is that object,
    else the last `swarm-handoff` block, else the last `json` (or untagged) block that holds
    a handoff field."""
    whole = _object(text)
    if whole is not None and _is_handoff(whole):
        return whole, ""
    tagged: tuple[dict[str, Any], re.Match[str]] | None = None
    loose: tuple[dict[str, Any], re.Match[str]] | None = None
    for match in _BLOCK.finditer(text):
        tag = match.group(1).lower()
        data = _object(match.group(2))
        if tag == FENCE_TAG:
            if data is None:
                problems.append(f"the {FENCE_TAG} block is not a JSON object")
            else:
                tagged = (data, match)
        elif tag in ("json", "jsonc", "") and data is not None and _is_handoff(data):
            loose = (data, match)
    chosen = tagged or loose
    if chosen is None:
        return None
    data, match = chosen
    rest = (text[: match.start()] + text[match.end() :]).strip()
    return data, rest


def _object(text: str) -> dict[str, Any] | None:
    for candidate in (text, _TRAILING_COMMA.sub(r"\1", text)):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None


def _is_handoff(data: dict[str, Any]) -> bool:
    return any(name in data for name in _HANDOFF_FIELDS)


def _notes(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    notes = []
    for item in items[:MAX_NOTES]:
        note = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
        if note.strip():
            notes.append(clip(note.strip(), MAX_NOTE_CHARS))
    return notes


def _facts(value: Any, problems: list[str]) -> list[Fact]:
    """`{"key": value}` or `[{"key": …, "value": …}]`; a key is tidied into the allowed
    characters, a value too large is left out (and named in `problems`). A key given twice
    keeps its last value."""
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = [(i.get("key"), i.get("value")) for i in value if isinstance(i, dict)]
    else:
        return []
    facts: dict[str, Fact] = {}
    for raw_key, raw_value in pairs:
        key = _fact_key(raw_key)
        if key is None:
            problems.append(f"fact key {str(raw_key)[:60]!r} left out: no usable characters")
            continue
        try:
            facts.pop(key, None)
            facts[key] = Fact(key=key, value=raw_value)
        except ValidationError:
            problems.append(f"fact {key!r} left out: its value is too large")
    if len(facts) > MAX_FACTS:
        problems.append(f"{len(facts) - MAX_FACTS} facts past the first {MAX_FACTS} left out")
    return list(facts.values())[:MAX_FACTS]


def _fact_key(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    key = re.sub(r"[^A-Za-z0-9_.:-]+", "_", raw.strip()).strip("_.:-")
    return key[:MAX_FACT_KEY_CHARS] or None


def _proposals(value: Any, problems: list[str]) -> list[Proposal]:
    if not isinstance(value, list):
        return []
    proposals: list[Proposal] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            problems.append(f"follow-up {index + 1} left out: not an object")
            continue
        if len(proposals) == MAX_PROPOSALS:
            problems.append(f"follow-ups past the first {MAX_PROPOSALS} left out")
            break
        try:
            proposals.append(Proposal.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            problems.append(f"follow-up {index + 1} left out: {where}: {first.get('msg')}")
    return proposals
