"""Every error the API returns is `{"code", "message", "details"}` with a 4xx or 503 status;
a 500 (`internal_error`) means a bug, and is logged with its traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from swarm_common import logs
from swarm_orchestrator.api.request_ids import HEADER, request_id
from swarm_orchestrator.errors import SwarmError
from swarm_orchestrator.runtime.failures import is_bad_data, is_transient

__all__ = ["error_response", "install_error_handlers"]

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"code": code, "message": message, "details": jsonable_encoder(details)}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for error in exc.errors()[:50]:
        details.append(
            {
                "loc": [str(p) for p in error.get("loc", ())],
                "msg": str(error.get("msg", ""))[:500],
                "type": str(error.get("type", "")),
            }
        )
    return details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SwarmError)
    async def _swarm(_: Request, exc: SwarmError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, exc.details, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        json_error = any(d["type"] == "json_invalid" for d in details)
        if json_error:
            return error_response(
                400, "invalid_json", "the request body is not valid JSON", details
            )
        return error_response(422, "validation_error", "the request is not valid", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(
            exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None)
        )

    async def _servers(request: Request, exc: Exception) -> JSONResponse:
        if is_bad_data(exc):
            return error_response(
                422, "invalid_value", "the database refused a value of the request"
            )
        if is_transient(exc):
            log.warning(
                "request failed: servers unavailable",
                extra={"path": request.url.path, "error": repr(exc)},
            )
            return error_response(
                503,
                "unavailable",
                "the database or Redis is unavailable; try again",
                headers={"Retry-After": "2"},
            )
        log.exception("request failed", extra={"path": request.url.path})
        return error_response(500, "internal_error", "internal error; see the server log")

    # Registered per class (not on `Exception`) so the error ends with this response instead
    # of being re-raised to the server as an unhandled one.
    for cls in (DBAPIError, RedisError, OSError, TimeoutError):
        app.add_exception_handler(cls, _servers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Outside every middleware (Starlette's last resort): the request id is told here.
        rid = request_id(request)
        with logs.bound(request_id=rid):
            log.exception("request failed", extra={"path": request.url.path})
        return error_response(
            500,
            "internal_error",
            "internal error; see the server log",
            headers={HEADER: rid} if rid else None,
        )
