"""Errors the orchestrator's services raise, each with a stable `code` and an HTTP status.

The API turns them into `{"code": ..., "message": ..., "details": ...}`; the codes are part
of the REST contract, so rename none of them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Conflict", "Forbidden", "Gone", "Invalid", "NotFound", "SwarmError", "Unavailable"]


class SwarmError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details


class NotFound(SwarmError):
    status = 404
    code = "not_found"


class Forbidden(SwarmError):
    status = 403
    code = "forbidden"


class Conflict(SwarmError):
    status = 409
    code = "conflict"


class Gone(SwarmError):
    status = 410
    code = "gone"


class Invalid(SwarmError):
    status = 422
    code = "invalid"


class Unavailable(SwarmError):
    status = 503
    code = "unavailable"
