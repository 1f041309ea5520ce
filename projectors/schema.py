"""Creates the read models' tables, views and checkpoint rows (part of `cloudnet migrate`)."""

from __future__ import annotations

import asyncpg

from projectors.catalog import live_projections, process_manager_state
from projectors.projection import checkpoint_key

_CHECKPOINTS = """
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    projection     text        PRIMARY KEY,
    transaction_id bigint      NOT NULL DEFAULT 0,
    position       bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
)
"""

# Which checkpoint a plain-named read model (view) currently reflects; replay swaps it together
# with the view, so query services know what `X-Min-Position` must wait for.
_VIEWS = """
CREATE TABLE IF NOT EXISTS projection_views (
    name       text PRIMARY KEY,
    projection text NOT NULL REFERENCES projection_checkpoints (projection)
)
"""


async def create_read_models(connection: asyncpg.Connection) -> None:
    async with connection.transaction():
        # Two processes migrating at once would race on CREATE ... IF NOT EXISTS.
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext('cloudnet-read-models'))")
        await connection.execute(_CHECKPOINTS)
        await connection.execute(_VIEWS)
        for projection in live_projections() + process_manager_state():
            for statement in projection.create_tables():
                await connection.execute(statement)
            await connection.execute(
                "INSERT INTO projection_checkpoints (projection) VALUES ($1) "
                "ON CONFLICT DO NOTHING",
                checkpoint_key(projection),
            )
            live = await connection.fetchval(
                "SELECT projection FROM projection_views WHERE name = $1", projection.name
            )
            if live is None and projection.create_view():  # later versions: only via replay
                for statement in projection.create_view():
                    await connection.execute(statement)
                await connection.execute(
                    "INSERT INTO projection_views (name, projection) VALUES ($1, $2)",
                    projection.name,
                    checkpoint_key(projection),
                )
