"""Creates cloudnet's database when missing and brings every schema to the current version."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from events import migrations
from projectors.schema import create_read_models


async def create_database(database_url: str) -> None:
    """Create the database named in `database_url` if it does not exist yet."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/") or "postgres"
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    connection = await asyncpg.connect(maintenance)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Another process may create it at the same moment.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def migrate(database_url: str) -> None:
    """Database, event store schema (alembic), then the read models."""
    await create_database(database_url)
    await asyncio.to_thread(migrations.upgrade, database_url)
    connection = await asyncpg.connect(database_url)
    try:
        await create_read_models(connection)
    finally:
        await connection.close()
