"""`swarm migrate`: bring a database to the newest schema with Alembic.

Migrations live in the repository's `migrations/` folder; a built wheel carries them as
`swarm_orchestrator/_migrations`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

__all__ = ["alembic_config", "migrations_dir", "upgrade"]


def migrations_dir() -> Path:
    packaged = Path(__file__).resolve().parents[1] / "_migrations"
    if (packaged / "env.py").exists():
        return packaged
    source = Path(__file__).resolve().parents[4] / "migrations"
    if (source / "env.py").exists():
        return source
    raise FileNotFoundError("Swarm's migrations folder was not found")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Run `alembic upgrade` to `revision`. Blocks; call from a thread inside an event loop."""
    command.upgrade(alembic_config(database_url), revision)
