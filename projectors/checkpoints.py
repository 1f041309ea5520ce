"""Projection checkpoints and dead letters: the rows a projection keeps beside its tables."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

from events import Checkpoint

if TYPE_CHECKING:
    from events import RecordedEvent
    from projectors.projection import DbConnection


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    checkpoint: Checkpoint
    halted: bool


async def lock_checkpoint(connection: DbConnection, key: str) -> CheckpointRow:
    return (await lock_checkpoints(connection, [key]))[key]


async def lock_checkpoints(connection: DbConnection, keys: list[str]) -> dict[str, CheckpointRow]:
    # FOR UPDATE: a standby catching up and the active consumer never apply the same event. In
    # key order: two transactions locking several checkpoints never wait on each other crosswise.
    rows = await connection.fetch(
        "SELECT projection, transaction_id, position, halted_at IS NOT NULL AS halted "
        "FROM projection_checkpoints WHERE projection = ANY($1::text[]) "
        "ORDER BY projection FOR UPDATE",
        keys,
    )
    found = {
        row["projection"]: CheckpointRow(
            Checkpoint(row["transaction_id"], row["position"]), row["halted"]
        )
        for row in rows
    }
    if missing := sorted(set(keys) - found.keys()):
        raise LookupError(f"no checkpoint row for {', '.join(missing)}; run `cloudnet migrate`")
    return found


async def read_checkpoint(connection: DbConnection, key: str) -> CheckpointRow | None:
    row = await connection.fetchrow(
        "SELECT transaction_id, position, halted_at IS NOT NULL AS halted "
        "FROM projection_checkpoints WHERE projection = $1",
        key,
    )
    if row is None:
        return None
    return CheckpointRow(Checkpoint(row["transaction_id"], row["position"]), row["halted"])


async def save_checkpoint(connection: DbConnection, key: str, checkpoint: Checkpoint) -> None:
    await save_checkpoints(connection, {key: checkpoint})


async def save_checkpoints(connection: DbConnection, moved: dict[str, Checkpoint]) -> None:
    """Move each checkpoint in `moved` (one statement, however many)."""
    if not moved:
        return
    await connection.execute(
        "UPDATE projection_checkpoints c SET transaction_id = m.transaction_id, "
        "position = m.position, updated_at = now() "
        "FROM unnest($1::text[], $2::bigint[], $3::bigint[]) "
        "AS m (projection, transaction_id, position) WHERE c.projection = m.projection",
        list(moved),
        [checkpoint.transaction_id for checkpoint in moved.values()],
        [checkpoint.position for checkpoint in moved.values()],
    )


async def reset_checkpoint(connection: DbConnection, key: str) -> None:
    await connection.execute(
        """INSERT INTO projection_checkpoints (projection) VALUES ($1)
           ON CONFLICT (projection) DO UPDATE SET transaction_id = 0, position = 0,
               halted_at = NULL, updated_at = now()""",
        key,
    )


async def dead_letter(
    connection: DbConnection, key: str, event: RecordedEvent, error: BaseException
) -> None:
    """Record the poison event and halt the projection at it (order matters)."""
    await connection.execute(
        """INSERT INTO dead_letters (projection, position, transaction_id, event_id, stream_id,
               event_type, error, traceback)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (projection, event_id) WHERE resolved_at IS NULL DO UPDATE
               SET error = EXCLUDED.error, traceback = EXCLUDED.traceback,
                   attempts = dead_letters.attempts + 1, failed_at = now()""",
        key,
        event.position,
        event.checkpoint.transaction_id,
        event.event_id,
        event.stream_id,
        event.type,
        f"{type(error).__name__}: {error}",
        "".join(traceback.format_exception(error)),
    )
    await connection.execute(
        "UPDATE projection_checkpoints SET halted_at = now() WHERE projection = $1", key
    )
