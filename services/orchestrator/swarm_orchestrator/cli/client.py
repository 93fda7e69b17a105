"""A small REST client for the CLI: errors become `CliError` with the server's code.

The token comes from `--token` or `SWARM_API_TOKEN`; without either, from the file
`SWARM_TOKEN_FILE` names, else `.swarm/admin.token` (where `swarm up` keeps the admin token
it made), so commands run beside `swarm up` need no setup.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

__all__ = ["DEFAULT_TOKEN_FILE", "ApiClient", "CliError", "resolve_token"]

DEFAULT_TOKEN_FILE = Path(".swarm") / "admin.token"


class CliError(Exception):
    """Something the user should read; the CLI prints it and exits non-zero."""

    def __init__(self, message: str, *, code: str = "error", details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


def resolve_token(token: str | None) -> str | None:
    if token:
        return token
    path = Path(os.environ.get("SWARM_TOKEN_FILE") or DEFAULT_TOKEN_FILE)
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class ApiClient:
    def __init__(self, url: str, token: str | None = None, *, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        token = resolve_token(token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise CliError(
                f"cannot reach Swarm at {self.url} ({type(exc).__name__}); "
                "is `swarm up` running? Set SWARM_API_URL to point elsewhere.",
                code="unreachable",
            ) from None
        if response.is_success:
            return response.json()
        try:
            body = response.json()
        except ValueError:
            body = {}
        code = body.get("code", f"http_{response.status_code}") if isinstance(body, dict) else ""
        message = body.get("message", response.text[:300]) if isinstance(body, dict) else ""
        details = body.get("details") if isinstance(body, dict) else None
        raise CliError(
            f"{message} [{code}, HTTP {response.status_code}]", code=code, details=details
        )

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)
