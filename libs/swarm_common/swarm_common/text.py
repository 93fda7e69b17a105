"""Text that must survive storage: PostgreSQL refuses NUL in `text` and `jsonb`, and agents
print whatever they like (`find -print0`, binary files). Everything an agent produced is
passed through `clean` before it is sent or stored."""

from __future__ import annotations

from typing import Any

__all__ = ["clean", "clean_text", "decoded", "has_nul"]

REPLACEMENT = "\ufffd"


def clean_text(value: str) -> str:
    return value.replace("\x00", REPLACEMENT) if "\x00" in value else value


def clean(value: Any) -> Any:
    """`value` with NUL replaced in every string, keys included, however deeply nested."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


def decoded(value: bytes | str) -> str:
    """A Redis reply as text (bytes that are not UTF-8 replaced, never raised)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
