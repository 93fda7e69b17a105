"""Logging set-up shared by every process: one line per record, structured fields as key=value.

Pass context with `extra={"task_id": ..., "attempt": ..., "worker": ...}`; the formatter
appends every such field. Fields that hold for a whole stretch of work (the API request's
`request_id`, the session, task and attempt an event is about) are bound once with
`bound(...)` (a context variable, so it follows the asyncio task and what it starts) and
appended to every line written inside, unless the line gives the field itself. Never put a
secret in a message or a field; should one slip in (an exception that quotes a URL, say),
the formatter passes every line, tracebacks included, through the process's redaction
filter (`swarm_common.redaction`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token

from swarm_common.redaction import Redactor, configured_secrets

__all__ = ["KeyValueFormatter", "bind", "bound", "bound_fields", "setup_logging", "unbind"]

_BOUND: ContextVar[Mapping[str, object] | None] = ContextVar("swarm_log_fields", default=None)

_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class KeyValueFormatter(logging.Formatter):
    """`2026-11-21 12:00:00,000 INFO swarm_adapter.attempt attempt started task_id=… attempt=1`."""

    def __init__(self, redact: Callable[[str], str] | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self.redact = redact or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        own = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        }
        context = {k: v for k, v in bound_fields().items() if k not in own}
        fields = [f"{key}={_quote(value)}" for key, value in (own | context).items()]
        return self.redact(f"{line} {' '.join(fields)}" if fields else line)


def bound_fields() -> Mapping[str, object]:
    """The fields bound in this context (`bound`)."""
    return _BOUND.get() or {}


def bind(**fields: object) -> Token[Mapping[str, object] | None]:
    """Add `fields` (None values left out) to every log line of this context from now on;
    `unbind(token)` ends it. Prefer `bound`, which cannot forget to."""
    given = {k: v for k, v in fields.items() if v is not None}
    return _BOUND.set({**bound_fields(), **given})


def unbind(token: Token[Mapping[str, object] | None]) -> None:
    _BOUND.reset(token)


@contextmanager
def bound(**fields: object) -> Iterator[None]:
    """Every log line written inside the block carries `fields` (`session_id=…`)."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def _quote(value: object) -> str:
    text = str(value)
    return repr(text) if (" " in text or not text) else text


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Route every logger to stderr through `KeyValueFormatter`, redacting `secrets` and
    the secrets of the process's environment; idempotent."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in root.handlers:
        if getattr(handler, "_swarm", False):
            return
    handler = logging.StreamHandler(sys.stderr)
    redactor = Redactor([*configured_secrets(os.environ), *secrets])
    handler.setFormatter(KeyValueFormatter(redactor))
    handler._swarm = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
