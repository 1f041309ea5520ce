"""Applies events to a projection exactly once: rows and checkpoint in one transaction.

A batch from the broker names the checkpoint the relay read after. If the projection's own
checkpoint is older, a batch went missing (the queue did not exist yet, or a message was lost):
the runner then catches up from the event store, the source of truth, instead of guessing.

A handler that raises on an event (a poison event) does not block the batch's earlier events:
they commit, the event goes to `dead_letters` with its error, and the projection halts right
before it until `cloudnet dlq retry` (after a fix) or `cloudnet dlq skip`.

`LiveProjection` follows whichever version of a read model is live (`projection_views`), so a
replay's swap moves the running projector to the new tables in the same transaction.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import asyncpg
from prometheus_client import Counter, Gauge

from events import ORIGIN, Checkpoint, EventStore, RecordedEvent
from projectors import checkpoints
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
HALTED = Gauge(
    "cloudnet_projection_halted",
    "1 while a projection is stopped at a dead-lettered event.",
    ["projection"],
)
DEAD_LETTERS = Counter(
    "cloudnet_projection_dead_letters_total", "Poison events sent to dead letters.", ["projection"]
)

#: Errors that say the database is unreachable, not that the event is poison.
TRANSIENT = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, TimeoutError)


class Outcome(enum.Enum):
    APPLIED = "applied"
    GAP = "gap"  # the batch does not follow the checkpoint: catch up from the store
    HALTED = "halted"  # stopped at a dead letter


class _Poisoned(Exception):
    def __init__(self, event: RecordedEvent, error: Exception) -> None:
        super().__init__(str(error))
        self.event, self.error = event, error


class _BatchFailed(Exception):
    """A pipelined run failed; which event is to blame is found by applying one by one."""


async def apply_batch(
    connection: DbConnection,
    projection: Projection,
    events: list[RecordedEvent],
    previous: Checkpoint | None,
    *,
    pipelined: bool = True,
) -> tuple[Outcome, list[RecordedEvent]]:
    """Apply, in the caller's transaction, the events the checkpoint does not cover yet."""
    key = checkpoint_key(projection)
    current = await checkpoints.lock_checkpoint(connection, key)
    if current.halted:
        return Outcome.HALTED, []
    if previous is not None and previous > current.checkpoint:
        return Outcome.GAP, []
    fresh = [event for event in events if event.checkpoint > current.checkpoint]
    if pipelined:
        await _apply_pipelined(connection, projection, fresh)
    else:
        await _apply_one_by_one(connection, projection, fresh)
    if fresh:
        await checkpoints.save_checkpoint(connection, key, fresh[-1].checkpoint)
    return Outcome.APPLIED, fresh


async def _apply_pipelined(
    connection: DbConnection, projection: Projection, events: list[RecordedEvent]
) -> None:
    # Statements are grouped in layers: a row's n-th change of the batch goes to layer n, so
    # each row's changes keep their order while, within a layer, every statement of one shape
    # goes to the database as one `executemany` (pipelined by asyncpg). A catch-up of thousands
    # of events then costs a handful of round trips. This relies on each statement touching
    # only the row keyed by its first argument (see `Projection.statements`).
    layers: list[dict[str, list[tuple[Any, ...]]]] = []
    depth: dict[Any, int] = {}
    for event in events:
        try:
            statements = projection.statements(event)
        except Exception as error:
            raise _Poisoned(event, error) from error
        for sql, arguments in statements:
            layer = depth.get(arguments[0], 0)
            depth[arguments[0]] = layer + 1
            if layer == len(layers):
                layers.append({})
            layers[layer].setdefault(sql, []).append(arguments)
    try:
        for layer_statements in layers:
            for sql, rows in layer_statements.items():
                if len(rows) == 1:
                    await connection.execute(sql, *rows[0])
                else:
                    await connection.executemany(sql, rows)
    except TRANSIENT:
        raise
    except Exception as error:
        raise _BatchFailed(str(error)) from error


async def _apply_one_by_one(
    connection: DbConnection, projection: Projection, events: list[RecordedEvent]
) -> None:
    for event in events:
        try:
            for sql, arguments in projection.statements(event):
                await connection.execute(sql, *arguments)
        except TRANSIENT:
            raise
        except Exception as error:
            raise _Poisoned(event, error) from error


class ProjectionRunner:
    """Runs one version of a projection over batches of events, from the broker or the store."""

    def __init__(self, store: EventStore, projection: Projection, batch_size: int = 1000) -> None:
        self.store, self.projection, self.batch_size = store, projection, batch_size
        self.name = projection.name

    @property
    def key(self) -> str:
        return checkpoint_key(self.projection)

    async def current(self, connection: DbConnection) -> Projection:
        """The projection version a batch is applied to (fixed here; live in `LiveProjection`)."""
        return self.projection

    async def checkpoint(self) -> Checkpoint:
        async with self.store.pool.acquire() as connection:
            projection = await self.current(connection)
            row = await checkpoints.read_checkpoint(connection, checkpoint_key(projection))
        return row.checkpoint if row else ORIGIN

    async def apply(self, events: list[RecordedEvent], previous: Checkpoint | None) -> Outcome:
        """Apply one batch in one transaction; a poison event is dead-lettered (see module)."""
        try:
            try:
                outcome, fresh, projection = await self._apply_in_transaction(events, previous)
            except _BatchFailed:  # rolled back: again one event at a time, to find the culprit
                outcome, fresh, projection = await self._apply_in_transaction(
                    events, previous, pipelined=False
                )
        except _Poisoned as poisoned:
            return await self._dead_letter(events, previous, poisoned)
        self._measure(checkpoint_key(projection), len(events), fresh, outcome)
        return outcome

    async def _apply_in_transaction(
        self, events: list[RecordedEvent], previous: Checkpoint | None, pipelined: bool = True
    ) -> tuple[Outcome, list[RecordedEvent], Projection]:
        async with self.store.pool.acquire() as connection, connection.transaction():
            projection = await self.current(connection)
            outcome, fresh = await apply_batch(
                connection, projection, events, previous, pipelined=pipelined
            )
        return outcome, fresh, projection

    async def catch_up(self, until: Checkpoint | None = None) -> int:
        """Read from the store and apply until the head (or past `until`); events applied."""
        applied = 0
        while True:
            after = await self.checkpoint()
            if until is not None and after >= until:
                return applied
            batch = await self.store.read_all(after=after, limit=self.batch_size)
            if not batch or await self.apply(batch, previous=after) is Outcome.HALTED:
                return applied
            applied += len(batch)

    async def _dead_letter(
        self, events: list[RecordedEvent], previous: Checkpoint | None, poisoned: _Poisoned
    ) -> Outcome:
        # The batch rolled back; commit what came before the poison event, then halt at it.
        async with self.store.pool.acquire() as connection, connection.transaction():
            projection = await self.current(connection)
            key = checkpoint_key(projection)
            poison = poisoned.event
            good = [e for e in events if e.checkpoint < poison.checkpoint]
            outcome, applied = await apply_batch(
                connection, projection, good, previous, pipelined=False
            )
            await checkpoints.dead_letter(connection, key, poison, poisoned.error)
        log.error(
            "projection %s halted at poison event %s (position %s): %s",
            key,
            poison.event_id,
            poison.position,
            poisoned.error,
        )
        DEAD_LETTERS.labels(key).inc()
        self._measure(key, len(good), applied, outcome)
        HALTED.labels(key).set(1)
        return Outcome.HALTED

    def _measure(
        self, key: str, delivered: int, fresh: list[RecordedEvent], outcome: Outcome
    ) -> None:
        HALTED.labels(key).set(1 if outcome is Outcome.HALTED else 0)
        if outcome is not Outcome.APPLIED:
            return
        DUPLICATES.labels(key).inc(delivered - len(fresh))
        if fresh:
            APPLIED.labels(key).inc(len(fresh))
            POSITION.labels(key).set(fresh[-1].position)
            LAG_SECONDS.labels(key).set(max(0.0, time.time() - fresh[-1].recorded_at.timestamp()))


class LiveProjection(ProjectionRunner):
    """Runs whichever version of a read model is live; versions come from `factory`."""

    def __init__(
        self, store: EventStore, factory: Callable[[int], Projection], batch_size: int = 1000
    ) -> None:
        super().__init__(store, factory(1), batch_size)
        self.factory = factory
        self._versions: dict[str, Projection] = {}

    async def current(self, connection: DbConnection) -> Projection:
        # FOR SHARE: a replay's swap (FOR UPDATE) waits for this batch, and this batch for it.
        key = await connection.fetchval(
            "SELECT projection FROM projection_views WHERE name = $1 FOR SHARE", self.name
        )
        if key is None:
            raise LookupError(f"read model {self.name} is not installed; run `cloudnet migrate`")
        if key not in self._versions:
            self._versions[key] = self.factory(int(key.rsplit("_v", 1)[1]))
        self.projection = self._versions[key]
        return self.projection
