"""Alembic migrations of the event store schema; `upgrade(database_url)` runs them to head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

_HERE = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url))
    return config


def sqlalchemy_url(database_url: str) -> str:
    """asyncpg DSNs (`postgresql://...`) in the SQLAlchemy asyncpg dialect's spelling."""
    scheme, _, rest = database_url.partition("://")
    return f"postgresql+asyncpg://{rest}" if scheme in {"postgres", "postgresql"} else database_url


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: call from a thread when an event loop is running (alembic runs its own)."""
    command.upgrade(alembic_config(database_url), revision)
