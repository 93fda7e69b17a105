"""One redaction filter for everything that leaves a process: transcripts, events, logs and
API responses.

It replaces every configured secret (an API key handed to an agent, a password in a server
URL, the bootstrap API token: see `configured_secrets`) and anything that looks like a
well-known credential, Swarm's own API tokens included, so a CLI that echoes its key, or an
agent that prints one it found, does not spread it further.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit

__all__ = [
    "KNOWN_BYTES",
    "REDACTED",
    "Redactor",
    "configured_secrets",
    "looks_secret",
    "secret_variables",
]

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
            r"swarm_(?=[A-Za-z0-9_\-]*\d)[A-Za-z0-9_\-]{43}(?![A-Za-z0-9_\-])",  # Swarm's API
            r"AKIA[0-9A-Z]{16}",  # AWS access key id
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----",  # a PEM private key's first line
        ]
    )
    + ")"
)

KNOWN_BYTES = re.compile(_KNOWN.pattern.encode())
"""The well-known key formats, for bytes (files an agent wrote)."""


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

    def redact_bytes(self, data: bytes) -> bytes:
        """The same for bytes (a file, a log line) that need not be UTF-8."""
        return self(data.decode("utf-8", errors="surrogateescape")).encode(
            "utf-8", errors="surrogateescape"
        )

    def holds_secret(self, text: str) -> bool:
        return any(s in text for s in self._secrets) or _KNOWN.search(text) is not None


_SECRET_NAME = re.compile(r"(?i)(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY)")
_URL_NAME = re.compile(r"(?i)_URL$")


def secret_variables(environ: Mapping[str, str]) -> list[str]:
    """The names of the variables of `environ` that hold a secret (see `configured_secrets`)."""
    return [name for name in environ if configured_secrets({name: environ[name]})]


def configured_secrets(environ: Mapping[str, str]) -> list[str]:
    """The secrets a process was configured with: the value of every variable whose name
    says it holds one (`*_API_KEY`, `*_TOKEN`, `*SECRET*`, `*PASSWORD*`, ...) and the
    password of every `*_URL` (a database or Redis URL, say)."""
    found: list[str] = []
    for name, value in environ.items():
        if not value:
            continue
        if _SECRET_NAME.search(name):
            found.append(value)
        elif _URL_NAME.search(name) and "@" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                continue
            if password:
                found.extend({password, unquote(password)})
    return found


def looks_secret(text: str) -> str | None:
    """The first well-known credential in `text`, if any (to refuse input that holds one)."""
    match = _KNOWN.search(text)
    return match.group(0) if match else None
