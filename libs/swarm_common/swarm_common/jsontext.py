"""Cheap facts about JSON text before it is parsed: how deeply it nests (`Nesting`, fed in
pieces as a body streams in), how many entries the arrays under one key hold
(`count_entries`), and a copy of a parsed value cut at a depth (`clipped`).

Parsing 16 MB of JSON holds the interpreter for a quarter of a second, and validating what
it holds for seconds more, so a server refuses what is too deep or too dense from the bytes.
Strings are stripped with a few C-speed passes of `bytes.replace`, `translate` and `split`
(never a Python loop over characters), and nothing here recurses.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate
from typing import Any

__all__ = ["CLIPPED", "Nesting", "clipped", "count_entries"]

CLIPPED = "…nested too deep to show…"
"""What stands for an array or object that `clipped` cut off."""

_ALL = bytes(range(256))
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
"""Opening brackets to +1, closing ones to -1 (0xff as a signed byte)."""
_MARK = b"\x00"
"""Stands for a `"key":` of interest; NUL never occurs in valid JSON text outside a string."""
_STRING = b"s"


def _unescaped(text: bytes) -> bytes:
    """`text` without its escape pairs (`\\\\`, `\\"`): then every `"` left opens or closes
    a string. (A backslash outside a string is invalid JSON, so removing it changes no
    verdict.)"""
    if b"\\" not in text:
        return text
    return text.replace(b"\\\\", b"").replace(b'\\"', b"")


def _outside_strings(marks: bytes, *, in_string: bool, placeholder: bytes) -> tuple[bytes, bool]:
    """The part of `marks` (text reduced to quotes and structure) outside strings, each string
    replaced by `placeholder`, and whether the text ends inside a string.

    Two adjacent quotes are dropped first: whether they close one string and open the next or
    open and close an empty one, every other byte stays on its side, so the common case (no
    structure inside strings) needs no split at all."""
    marks = marks.replace(b'""', placeholder)
    if b'"' not in marks:
        return (b"" if in_string else marks), in_string
    parts = marks.split(b'"')
    outside = parts[1::2] if in_string else parts[0::2]
    ends_inside = in_string != (len(parts) % 2 == 0)
    return placeholder.join(outside), ends_inside


class Nesting:
    """The nesting depth of JSON text fed in pieces (a request body as it streams in):
    `peak` is the deepest level of arrays and objects seen so far (`[]` is 1)."""

    _KEEP = _ALL.translate(None, b'"[]{}')
    """What `translate` deletes: everything but quotes and brackets."""

    def __init__(self) -> None:
        self.depth = 0
        self.peak = 0
        self._in_string = False
        self._escaping = False
        """The last piece ended inside a string on a backslash that escapes the next byte."""

    def feed(self, piece: bytes) -> int:
        """Take the next piece of the text; return the peak depth so far."""
        if self._escaping and piece:
            piece, self._escaping = piece[1:], False
        piece = _unescaped(piece)
        if piece.endswith(b"\\"):
            piece, self._escaping = piece[:-1], True
        marks = piece.translate(None, self._KEEP)
        brackets, self._in_string = _outside_strings(
            marks, in_string=self._in_string, placeholder=b""
        )
        if brackets:
            steps = array("b", brackets.translate(_STEPS))
            self.peak = max(self.peak, max(accumulate(steps, initial=self.depth)))
            self.depth += sum(steps)
        return self.peak


def count_entries(text: bytes, key: str) -> int:
    """How many entries the arrays of strings under `"key":` hold in JSON `text`, summed.

    Exact for arrays of strings; a lower bound for arrays of anything else (`[1]` counts 0,
    `[[1]]` nothing). Text inside a string that merely reads like the key (behind escaped
    quotes, in a prompt) is never counted."""
    # The key's quotes cannot be escaped ones (those are gone), and the `:` and blanks after
    # it go with everything but quotes and structure: its arrays read `<mark>[...]`.
    marked = _unescaped(text).replace(b'"' + key.encode() + b'"', _MARK)
    if _MARK not in marked:
        return 0
    marks = marked.translate(None, _ALL.translate(None, b'"[]{},' + _MARK))
    structure, _ = _outside_strings(marks, in_string=False, placeholder=_STRING)
    return sum(
        run.count(b",") + (1 if run else 0)
        for run in re.findall(re.escape(_MARK) + rb"\[([s,]*)\]", structure)
    )


def clipped(value: Any, max_depth: int) -> Any:
    """`value` (parsed JSON) with every array or object deeper than `max_depth` replaced by
    `CLIPPED`, so that something stored before a depth limit existed can still be served.
    Returns `value` itself when nothing is cut; iterative, so any depth is safe."""
    if not _deeper_than(value, max_depth):
        return value
    root: Any = _empty(value)
    stack: list[tuple[Any, Any, int]] = [(value, root, 1)]
    while stack:
        source, target, depth = stack.pop()
        pairs = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in pairs:
            copy: Any = item
            if isinstance(item, dict | list):
                if depth >= max_depth:
                    copy = CLIPPED
                else:
                    copy = _empty(item)
                    stack.append((item, copy, depth + 1))
            if isinstance(target, dict):
                target[key] = copy
            else:
                target.append(copy)
    return root


def _empty(value: dict[Any, Any] | list[Any]) -> dict[Any, Any] | list[Any]:
    return {} if isinstance(value, dict) else []


def _deeper_than(value: Any, max_depth: int) -> bool:
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(max_depth):
        level = [
            item
            for container in level
            for item in (container.values() if isinstance(container, dict) else container)
            if isinstance(item, dict | list)
        ]
        if not level:
            return False
    return True
