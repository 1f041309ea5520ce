"""Applies events to one projection exactly once: rows and checkpoint in one transaction.

A batch from the broker names the checkpoint the relay read after. If the projection's own
checkpoint is older, a batch went missing (the queue did not exist yet, or a message was lost):
the runner then catches up from the event store, the source of truth, instead of guessing.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from events import ORIGIN, Checkpoint, EventStore, RecordedEvent
from projectors.projection import Projection, checkpoint_key

if TYPE_CHECKING:
    from projectors.projection import DbConnection

log = logging.getLogger(__name__)

APPLIED = Counter(
    "cloudnet_projection_events_applied_total", "Events applied to a read model.", ["projection"]
)
DUPLICATES = Counter(
    "cloudnet_projection_events_skipped_total",
    "Events delivered again and skipped because the checkpoint already covers them.",
    ["projection"],
)
POSITION = Gauge(
    "cloudnet_projection_checkpoint_position",
    "Global position of the last event a read model applied.",
    ["projection"],
)
LAG_SECONDS = Gauge(
    "cloudnet_projection_lag_seconds",
    "Age of the last applied event when it was applied.",
    ["projection"],
)


class ProjectionRunner:
    """Runs one projection over batches of events, from the broker or from the store."""

    def __init__(self, store: EventStore, projection: Projection, batch_size: int = 1000) -> None:
        self.store, self.projection, self.batch_size = store, projection, batch_size
        self.key = checkpoint_key(projection)

    async def checkpoint(self) -> Checkpoint:
        row = await self.store.pool.fetchrow(
            "SELECT transaction_id, position FROM projection_checkpoints WHERE projection = $1",
            self.key,
        )
        return Checkpoint(row["transaction_id"], row["position"]) if row else ORIGIN

    async def apply(self, events: list[RecordedEvent], previous: Checkpoint | None) -> bool:
        """Apply the events the checkpoint does not cover yet. False when `previous` shows a
        gap before this batch (nothing applied then; call `catch_up`)."""
        async with self.store.pool.acquire() as connection, connection.transaction():
            current = await self._lock_checkpoint(connection)
            if previous is not None and previous > current:
                return False
            fresh = [event for event in events if event.checkpoint > current]
            for event in fresh:
                await self.projection.apply(connection, event)
            if fresh:
                await self._save_checkpoint(connection, fresh[-1].checkpoint)
        DUPLICATES.labels(self.key).inc(len(events) - len(fresh))
        if fresh:
            APPLIED.labels(self.key).inc(len(fresh))
            POSITION.labels(self.key).set(fresh[-1].position)
            LAG_SECONDS.labels(self.key).set(
                max(0.0, time.time() - fresh[-1].recorded_at.timestamp())
            )
        return True

    async def catch_up(self, until: Checkpoint | None = None) -> int:
        """Read from the store and apply until the head (or past `until`); events applied."""
        applied = 0
        while True:
            after = await self.checkpoint()
            if until is not None and after >= until:
                return applied
            batch = await self.store.read_all(after=after, limit=self.batch_size)
            if not batch:
                return applied
            await self.apply(batch, previous=after)
            applied += len(batch)

    async def _lock_checkpoint(self, connection: DbConnection) -> Checkpoint:
        # FOR UPDATE: a standby catching up and the active consumer never apply the same event.
        row = await connection.fetchrow(
            "SELECT transaction_id, position FROM projection_checkpoints "
            "WHERE projection = $1 FOR UPDATE",
            self.key,
        )
        if row is None:
            raise LookupError(f"no checkpoint row for {self.key}; run `cloudnet migrate`")
        return Checkpoint(row["transaction_id"], row["position"])

    async def _save_checkpoint(self, connection: DbConnection, checkpoint: Checkpoint) -> None:
        await connection.execute(
            "UPDATE projection_checkpoints SET transaction_id = $2, position = $3, "
            "updated_at = now() WHERE projection = $1",
            self.key,
            checkpoint.transaction_id,
            checkpoint.position,
        )
