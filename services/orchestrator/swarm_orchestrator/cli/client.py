"""A small REST client for the CLI: errors become `CliError` with the server's code."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["ApiClient", "CliError"]


class CliError(Exception):
    """Something the user should read; the CLI prints it and exits non-zero."""

    def __init__(self, message: str, *, code: str = "error", details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class ApiClient:
    def __init__(self, url: str, token: str | None = None, *, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
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
