"""Logging set-up shared by every process: one line per record, structured fields as key=value.

Pass context with `extra={"task_id": ..., "attempt": ..., "worker": ...}`; the formatter
appends every such field. Never put a secret in a message or a field; should one slip in (an
exception that quotes a URL, say), the formatter passes every line, tracebacks included,
through the process's redaction filter (`swarm_common.redaction`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable

from swarm_common.redaction import Redactor, configured_secrets

__all__ = ["KeyValueFormatter", "setup_logging"]

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
        fields = [
            f"{key}={_quote(value)}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        ]
        return self.redact(f"{line} {' '.join(fields)}" if fields else line)


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
