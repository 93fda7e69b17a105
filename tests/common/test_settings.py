"""Settings: environment names, URL normalisation, secrets kept out of reprs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from swarm_common.settings import (
    CommonSettings,
    normalize_database_url,
    normalize_redis_url,
    redact_url,
    strip_credentials,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql://u@h/db?sslmode=require", "postgresql+asyncpg://u@h/db?ssl=require"),
    ],
)
def test_database_urls_are_normalised_to_asyncpg(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_a_non_postgres_database_url_is_refused() -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        normalize_database_url("mysql://u@h/db")


def test_valkey_urls_are_accepted_as_redis() -> None:
    assert normalize_redis_url("valkey://127.0.0.1:7000") == "redis://127.0.0.1:7000"
    with pytest.raises(ValueError):
        normalize_redis_url("http://h")


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("redis://:s3cret@h:1/0") == "redis://:***@h:1/0"
    assert redact_url("postgresql+asyncpg://u:pw@h/db") == "postgresql+asyncpg://u:***@h/db"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


def test_settings_come_from_swarm_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_DATABASE_URL", "postgres://u:topsecret@h/db")
    monkeypatch.setenv("SWARM_REDIS_PREFIX", "team-a")
    settings = CommonSettings()
    assert settings.require_database_url() == "postgresql+asyncpg://u:topsecret@h/db"
    assert settings.redis_prefix == "team-a"
    assert "topsecret" not in repr(settings)


def test_a_prefix_with_glob_characters_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_REDIS_PREFIX", "a*b")
    with pytest.raises(ValidationError):
        CommonSettings()


def test_redact_url_hides_passwords_holding_url_delimiters() -> None:
    assert (
        redact_url("postgresql+asyncpg://u:ab/cd?e#f@h:5/db") == "postgresql+asyncpg://u:***@h:5/db"
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://user:tok@github.com/x/y.git", "https://github.com/x/y.git"),
        ("https://ghp_token@github.com/x/y.git", "https://github.com/x/y.git"),
        ("ssh://git:pw@host/r.git", "ssh://git@host/r.git"),
        ("ssh://git@host:22/r.git", "ssh://git@host:22/r.git"),
        ("git@github.com:x/y.git", "git@github.com:x/y.git"),
        ("https://host:8080/a@b", "https://host:8080/a@b"),
        ("/abs/path", "/abs/path"),
    ],
)
def test_strip_credentials(given: str, expected: str) -> None:
    assert strip_credentials(given) == expected
