"""One redaction filter for everything that leaves a process: transcripts, events, logs.

It replaces every configured secret (an API key handed to an agent, say) and anything that
looks like a well-known credential, so a CLI that echoes its key, or an agent that prints
one it found, does not spread it further.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["REDACTED", "Redactor"]

REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 6

# A key starts a word (so `task-scheduler-integration-tests` is not `sk-…`) and, where its
# prefix is short, holds a digit (so `sk-learn-the-long-way-round` is not a key either).
_KNOWN = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    + "|".join(
        [
            r"sk-ant-[A-Za-z0-9_\-]{8,}",  # Anthropic
            r"sk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z0-9_\-]*\d)[A-Za-z0-9_\-]{20,}",  # OpenAI
            r"AIza[0-9A-Za-z_\-]{30,}",  # Google
            r"gh[pousr]_[A-Za-z0-9]{30,}",  # GitHub
            r"xox[abpr]-[A-Za-z0-9\-]{10,}",  # Slack
        ]
    )
    + ")"
)


class Redactor:
    """`redactor(text)` → `text` with the secrets replaced by `[REDACTED]`."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        found = {s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}
        self._secrets = sorted(found, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _KNOWN.sub(REDACTED, text)
