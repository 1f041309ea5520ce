"""Creates the read models' tables, views and checkpoint rows (part of `cloudnet migrate`)."""

from __future__ import annotations

import asyncpg

from projectors.catalog import READ_MODELS, process_manager_state
from projectors.instances import InstancesProjection
from projectors.projection import checkpoint_key

_CHECKPOINTS = """
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    projection     text        PRIMARY KEY,
    transaction_id bigint      NOT NULL DEFAULT 0,
    position       bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    halted_at      timestamptz
)
"""

# A poison event, with what went wrong; the projection halts at the oldest unresolved one.
_DEAD_LETTERS = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection     text        NOT NULL,
    position       bigint      NOT NULL,
    transaction_id bigint      NOT NULL,
    event_id       uuid        NOT NULL,
    stream_id      text        NOT NULL,
    event_type     text        NOT NULL,
    error          text        NOT NULL,
    traceback      text        NOT NULL,
    attempts       integer     NOT NULL DEFAULT 1,
    failed_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz,
    resolution     text
)
"""
_DEAD_LETTERS_OPEN = """
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_open
ON dead_letters (projection, event_id) WHERE resolved_at IS NULL
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
        await connection.execute(_DEAD_LETTERS)
        await connection.execute(_DEAD_LETTERS_OPEN)
        first_versions = [factory(1) for factory in READ_MODELS.values()]
        for projection in first_versions + process_manager_state():
            for statement in projection.create_tables() + projection.create_indexes():
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
        await _upgrade_instances(connection)


async def _upgrade_instances(connection: asyncpg.Connection) -> None:
    """Every version of the instances read model an older cloudnet built gets the documents
    this one stores; the view over the live version is made again to show their columns."""
    tables = await connection.fetch(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_name ~ '^rm_instances_v[0-9]+$'"
    )
    live = await connection.fetchval(
        "SELECT projection FROM projection_views WHERE name = 'instances'"
    )
    for (table,) in tables:
        projection = InstancesProjection(int(table.rsplit("_v", 1)[1]))
        if await projection.upgrade(connection) and checkpoint_key(projection) == live:
            for statement in projection.create_view():
                await connection.execute(statement)
