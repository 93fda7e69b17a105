"""A small REST client for the CLI: errors become `CliError` with the server's code.

Where the URL and the token come from (flags, environment, config file, `.swarm/admin.token`)
is `swarm_cli.config`'s business; this client sends what it is given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

__all__ = ["ApiClient", "CliError"]

STREAM_READ_TIMEOUT_S = 60.0
"""A stream that says nothing for this long is dead (the server pings every 15 s)."""


class CliError(Exception):
    """Something the user should read; the CLI prints it and exits non-zero."""

    def __init__(
        self, message: str, *, code: str = "error", details: Any = None, status: int = 0
    ) -> None:
        super().__init__(message)
        self.code = code
        self.details = details
        self.status = status
        """The HTTP status of the refusal; 0 when the server did not answer."""


class ApiClient:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout_s: float = 60.0,
        token_hint: str = "",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._token_hint = token_hint
        self._transport = transport
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def clone(self) -> ApiClient:
        """A client of its own (for another thread), same server and token."""
        return ApiClient(
            self.url, self.token, token_hint=self._token_hint, transport=self._transport
        )

    def unreachable(self, exc: Exception) -> CliError:
        return CliError(
            f"cannot reach Swarm at {self.url} ({type(exc).__name__}); "
            "is `swarm up` running? Set SWARM_API_URL (or --api-url) to point elsewhere.",
            code="unreachable",
        )

    def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from None
        if response.is_success:
            return response.json()
        raise self.refusal(response)

    def refusal(self, response: httpx.Response) -> CliError:
        """The error a non-2xx answer stands for (its body must have been read)."""
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        code = str(body.get("code") or f"http_{response.status_code}")
        message = str(body.get("message") or response.text[:300] or response.reason_phrase)
        if response.status_code == 401 and not self.token and self._token_hint:
            message = f"{message} ({self._token_hint})"
        message += _first_problem(body.get("details"))
        return CliError(
            f"{message} [{code}, HTTP {response.status_code}]",
            code=code,
            details=body.get("details"),
            status=response.status_code,
        )

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    @contextlib.contextmanager
    def stream(
        self, path: str, *, headers: dict[str, str], params: dict[str, Any] | None = None
    ) -> Iterator[httpx.Response]:
        """An open streaming response (2xx; others raise `CliError`). Transport errors
        propagate as `httpx.TransportError`, for the caller to reconnect."""
        timeout = httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT_S)
        with self._http.stream(
            "GET", path, headers=headers, params=params, timeout=timeout
        ) as response:
            if not response.is_success:
                response.read()
                raise self.refusal(response)
            yield response


def _first_problem(details: Any) -> str:
    """`: query.status: Input should be ...` of a validation error's details."""
    if not isinstance(details, list) or not details or not isinstance(details[0], dict):
        return ""
    first = details[0]
    if "msg" not in first:
        return ""
    where = ".".join(str(p) for p in first.get("loc") or [])
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f": {where + ': ' if where else ''}{first['msg']}{more}"
