"""Operating dead letters (`cloudnet dlq list | retry | skip`).

Retry clears the halt so the projector re-applies the poison event (after a fix, it passes; if
not, it is dead-lettered again). Skip moves the projection's checkpoint past the event and is
recorded as an event of its own in the store, so the decision is in the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events import EventStore, ExpectedVersion, NewEvent
from events.model import Checkpoint
from projectors import checkpoints

SKIPPED_EVENT = "DeadLetterSkipped"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    projection: str
    position: int
    event_id: str
    stream_id: str
    event_type: str
    error: str
    attempts: int
    failed_at: datetime


async def open_dead_letters(store: EventStore) -> list[DeadLetter]:
    rows = await store.pool.fetch(
        "SELECT id, projection, position, event_id::text, stream_id, event_type, error, "
        "attempts, failed_at FROM dead_letters WHERE resolved_at IS NULL ORDER BY id"
    )
    return [DeadLetter(**dict(row)) for row in rows]


async def retry(store: EventStore, dead_letter_id: int) -> DeadLetter:
    """Un-halt the projection; its projector re-applies the event on its next pass."""
    async with store.pool.acquire() as connection, connection.transaction():
        letter = await _resolve(connection, dead_letter_id, "retried")
        await connection.execute(
            "UPDATE projection_checkpoints SET halted_at = NULL WHERE projection = $1",
            letter.projection,
        )
    return letter


async def skip(store: EventStore, dead_letter_id: int, actor: str) -> DeadLetter:
    """Move the projection past the event for good, and record that decision as an event."""
    async with store.pool.acquire() as connection, connection.transaction():
        letter = await _resolve(connection, dead_letter_id, "skipped")
        row = await connection.fetchrow(
            "SELECT transaction_id, position FROM dead_letters WHERE id = $1", dead_letter_id
        )
        current = await checkpoints.lock_checkpoint(connection, letter.projection)
        poison = Checkpoint(row["transaction_id"], row["position"])
        if current.checkpoint < poison:
            await checkpoints.save_checkpoint(connection, letter.projection, poison)
        await connection.execute(
            "UPDATE projection_checkpoints SET halted_at = NULL WHERE projection = $1",
            letter.projection,
        )
        data: dict[str, Any] = {
            "dead_letter_id": letter.id,
            "projection": letter.projection,
            "event_id": letter.event_id,
            "position": letter.position,
            "error": letter.error,
        }
        await store.append_many_on(
            connection,
            [
                (
                    f"deadletters-{letter.projection}",
                    [NewEvent(SKIPPED_EVENT, data, {"actor": actor})],
                    ExpectedVersion.ANY,
                )
            ],
        )
    store.signal_appended()
    return letter


async def _resolve(connection: Any, dead_letter_id: int, resolution: str) -> DeadLetter:
    row = await connection.fetchrow(
        "UPDATE dead_letters SET resolved_at = now(), resolution = $2 "
        "WHERE id = $1 AND resolved_at IS NULL "
        "RETURNING id, projection, position, event_id::text, stream_id, event_type, error, "
        "attempts, failed_at",
        dead_letter_id,
        resolution,
    )
    if row is None:
        raise LookupError(f"no open dead letter {dead_letter_id}")
    return DeadLetter(**dict(row))
