"""Applies events to a projection exactly once: rows and checkpoint in one transaction.

A batch from the broker names the checkpoint the relay read after. If the projection's own
checkpoint is older, a batch went missing (the queue did not exist yet, or a message was lost):
the runner then catches up from the event store, the source of truth, instead of guessing.

A handler that raises on an event (a poison event) does not block the batch's earlier events:
they commit, the event goes to `dead_letters` with its error, and the projection halts right
before it until `cloudnet dlq retry` (after a fix) or `cloudnet dlq skip`.

`LiveProjection` follows whichever version of a read model is live (`projection_views`), so a
replay's swap moves the running projector to the new tables in the same transaction.

The functions below take several projections at once: `projectors.group` applies one batch to
all of a process's read models in one transaction with them.
"""

from __future__ import annotations

import enum
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import asyncpg
from prometheus_client import Counter, Gauge, Histogram

from events import ORIGIN, Checkpoint, EventStore, RecordedEvent
from projectors import checkpoints
from projectors.projection import FOLDS, INSERTS, Projection, checkpoint_key

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
#: Per batch, the age of its oldest fresh event when the batch was applied: how long the slowest
#: event of each batch took from its append (`recorded_at`, the appending transaction's start) to
#: this read model. The benchmarks read its quantiles from two scrapes (`benchmarks/visibility.py`);
#: the gauge above only shows the latest batch.
APPLY_LAG_SECONDS = Histogram(
    "cloudnet_projection_apply_lag_seconds",
    "Age of the oldest event of each batch a read model applied, when it was applied.",
    ["projection"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
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


class Poisoned(Exception):
    def __init__(self, event: RecordedEvent, error: Exception) -> None:
        super().__init__(str(error))
        self.event, self.error = event, error


class BatchFailed(Exception):
    """A pipelined run failed; which event is to blame is found by applying one by one."""


#: What one projection does with a batch: the outcome, and the events its checkpoint lacked.
Plan = tuple[Outcome, list[RecordedEvent]]


async def plan_batch(
    connection: DbConnection,
    projections: list[Projection],
    events: list[RecordedEvent],
    previous: Checkpoint | None,
) -> list[Plan]:
    """Lock the projections' checkpoints (till the caller's transaction ends) and say, for each,
    what of the batch it applies: nothing if halted or behind the batch, else what is fresh."""
    rows = await checkpoints.lock_checkpoints(connection, [checkpoint_key(p) for p in projections])
    plans: list[Plan] = []
    for projection in projections:
        current = rows[checkpoint_key(projection)]
        if current.halted:
            plans.append((Outcome.HALTED, []))
        elif previous is not None and previous > current.checkpoint:
            plans.append((Outcome.GAP, []))
        else:
            fresh = [event for event in events if event.checkpoint > current.checkpoint]
            plans.append((Outcome.APPLIED, fresh))
    return plans


async def apply_planned(
    connection: DbConnection,
    work: list[tuple[Projection, list[RecordedEvent]]],
    *,
    pipelined: bool = True,
    bulk: bool = False,
) -> None:
    """Apply each projection's fresh events and move its checkpoint past them (the caller's
    transaction, after `plan_batch` locked the checkpoints). `bulk`: the tables were empty when
    this load began and only it writes them (a rebuild), so rows of an `insert` go as COPY."""
    if pipelined:
        await _apply_pipelined(connection, work, bulk=bulk)
    else:
        for projection, events in work:
            await _apply_one_by_one(connection, projection, events)
    moved = {checkpoint_key(p): events[-1].checkpoint for p, events in work if events}
    await checkpoints.save_checkpoints(connection, moved)


async def apply_batch(
    connection: DbConnection,
    projection: Projection,
    events: list[RecordedEvent],
    previous: Checkpoint | None,
    *,
    pipelined: bool = True,
    bulk: bool = False,
) -> Plan:
    """Apply, in the caller's transaction, the events the checkpoint does not cover yet."""
    [(outcome, fresh)] = await plan_batch(connection, [projection], events, previous)
    if outcome is Outcome.APPLIED:
        await apply_planned(connection, [(projection, fresh)], pipelined=pipelined, bulk=bulk)
    return outcome, fresh


async def _apply_pipelined(
    connection: DbConnection, work: list[tuple[Projection, list[RecordedEvent]]], *, bulk: bool
) -> None:
    # Statements are grouped in layers: a row's n-th change of the batch goes to layer n, so
    # each row's changes keep their order while, within a layer, every statement of one shape
    # goes to the database as one `executemany` (pipelined by asyncpg). A catch-up of thousands
    # of events then costs a handful of round trips. This relies on each statement touching
    # only the row keyed by its first argument (see `Projection.statements`); two projections'
    # rows may share a key, which only adds a layer.
    layers: list[dict[str, list[tuple[Any, ...]]]] = []
    depth: dict[Any, int] = {}
    # In a rebuild (`bulk`), the rows this batch inserts, by key, while nothing but a foldable
    # statement changed them since: (table, the INSERT's rows, this row's index among them). A
    # foldable change of such a row goes into its INSERT's values (`projection.foldable`).
    inserted: dict[Any, tuple[str, list[tuple[Any, ...]], int]] = {}
    for projection, events in work:
        for event in events:
            try:
                statements = projection.statements(event)
                for sql, arguments in statements:
                    key = arguments[0]
                    if bulk:
                        row = inserted.pop(key, None)
                        fold = FOLDS.get(sql)
                        if row is not None and fold is not None and fold[0] == row[0]:
                            _, insert_rows, index = row
                            insert_rows[index] = fold[1](insert_rows[index], arguments)
                            inserted[key] = row
                            continue
                    layer = depth.get(key, 0)
                    depth[key] = layer + 1
                    if layer == len(layers):
                        layers.append({})
                    rows = layers[layer].setdefault(sql, [])
                    rows.append(arguments)
                    if bulk and (copy := INSERTS.get(sql)) is not None:
                        inserted[key] = (copy[0], rows, len(rows) - 1)
            except Exception as error:
                raise Poisoned(event, error) from error
    try:
        for layer_statements in layers:
            for sql, rows in layer_statements.items():
                if bulk and len(rows) > 1 and (copy := INSERTS.get(sql)) is not None:
                    # A binary COPY: a rebuild's INSERT per row cost PostgreSQL about as much
                    # as its UPDATEs (docs/BENCHMARKS.md, ninth session).
                    table, columns = copy
                    await connection.copy_records_to_table(table, records=rows, columns=columns)
                elif len(rows) == 1:
                    await connection.execute(sql, *rows[0])
                else:
                    await connection.executemany(sql, rows)
    except TRANSIENT:
        raise
    except Exception as error:
        raise BatchFailed(str(error)) from error


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
            raise Poisoned(event, error) from error


async def current_versions(
    connection: DbConnection, runners: list[ProjectionRunner]
) -> list[Projection]:
    """The version of its projection each runner applies a batch to, in the caller's
    transaction. FOR SHARE: a replay's swap (FOR UPDATE) waits for this batch, and this batch
    for it; in name order, so two callers never wait on each other crosswise."""
    names = sorted({runner.view for runner in runners if runner.view is not None})
    live: dict[str, str] = {}
    if names:
        rows = await connection.fetch(
            "SELECT name, projection FROM projection_views WHERE name = ANY($1::text[]) "
            "ORDER BY name FOR SHARE",
            names,
        )
        live = {row["name"]: row["projection"] for row in rows}
    return [runner.version(live.get(runner.view) if runner.view else None) for runner in runners]


class _Metrics(NamedTuple):
    """One projection's children of the metrics above, taken once: `labels()` takes a lock and
    builds a key on every call, and `measure` made six such calls per projection per batch."""

    halted: Gauge
    duplicates: Counter
    applied: Counter
    position: Gauge
    lag: Gauge
    apply_lag: Histogram


@functools.cache
def _metrics(key: str) -> _Metrics:
    return _Metrics(
        HALTED.labels(key),
        DUPLICATES.labels(key),
        APPLIED.labels(key),
        POSITION.labels(key),
        LAG_SECONDS.labels(key),
        APPLY_LAG_SECONDS.labels(key),
    )


def measure(key: str, delivered: int, fresh: list[RecordedEvent], outcome: Outcome) -> None:
    """The metrics of one projection after a batch of `delivered` events."""
    metrics = _metrics(key)
    metrics.halted.set(1 if outcome is Outcome.HALTED else 0)
    if outcome is not Outcome.APPLIED:
        return
    metrics.duplicates.inc(delivered - len(fresh))
    if fresh:
        now = time.time()
        metrics.applied.inc(len(fresh))
        metrics.position.set(fresh[-1].position)
        metrics.lag.set(max(0.0, now - fresh[-1].recorded_at.timestamp()))
        metrics.apply_lag.observe(max(0.0, now - fresh[0].recorded_at.timestamp()))


class ProjectionRunner:
    """Runs one version of a projection over batches of events, from the broker or the store."""

    def __init__(
        self,
        store: EventStore,
        projection: Projection,
        batch_size: int = 1000,
        *,
        bulk: bool = False,
    ) -> None:
        self.store, self.projection, self.batch_size = store, projection, batch_size
        self.name = projection.name
        #: Loading tables that were empty when it began and that only it writes (a rebuild's
        #: `apply_planned`).
        self.bulk = bulk

    @property
    def key(self) -> str:
        return checkpoint_key(self.projection)

    #: The read model whose live version (`projection_views`) this runner follows; None: the
    #: runner's own fixed version.
    view: str | None = None

    def version(self, live_key: str | None) -> Projection:
        """The projection a batch is applied to, given the live version `current_versions` read
        (fixed here; the live one in `LiveProjection`)."""
        return self.projection

    async def current(self, connection: DbConnection) -> Projection:
        [projection] = await current_versions(connection, [self])
        return projection

    async def checkpoint(self) -> Checkpoint:
        async with self.store.pool.acquire() as connection:
            projection = await self.current(connection)
            row = await checkpoints.read_checkpoint(connection, checkpoint_key(projection))
        return row.checkpoint if row else ORIGIN

    async def deliver(self, events: list[RecordedEvent], previous: Checkpoint | None) -> None:
        """A batch from the broker: applied, or, if batches before it went missing, caught up
        from the store up to its end."""
        if await self.apply(events, previous) is Outcome.GAP:
            await self.catch_up(until=events[-1].checkpoint)

    async def apply(self, events: list[RecordedEvent], previous: Checkpoint | None) -> Outcome:
        """Apply one batch in one transaction; a poison event is dead-lettered (see module)."""
        try:
            try:
                outcome, fresh, projection = await self._apply_in_transaction(events, previous)
            except BatchFailed:  # rolled back: again one event at a time, to find the culprit
                outcome, fresh, projection = await self._apply_in_transaction(
                    events, previous, pipelined=False
                )
        except Poisoned as poisoned:
            return await self._dead_letter(events, previous, poisoned)
        measure(checkpoint_key(projection), len(events), fresh, outcome)
        return outcome

    async def _apply_in_transaction(
        self, events: list[RecordedEvent], previous: Checkpoint | None, pipelined: bool = True
    ) -> tuple[Outcome, list[RecordedEvent], Projection]:
        async with self.store.pool.acquire() as connection, connection.transaction():
            projection = await self.current(connection)
            outcome, fresh = await apply_batch(
                connection, projection, events, previous, pipelined=pipelined, bulk=self.bulk
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
        self, events: list[RecordedEvent], previous: Checkpoint | None, poisoned: Poisoned
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
        measure(key, len(good), applied, outcome)
        HALTED.labels(key).set(1)
        return Outcome.HALTED


class LiveProjection(ProjectionRunner):
    """Runs whichever version of a read model is live; versions come from `factory`."""

    def __init__(
        self, store: EventStore, factory: Callable[[int], Projection], batch_size: int = 1000
    ) -> None:
        super().__init__(store, factory(1), batch_size)
        self.factory = factory
        self.view = self.name
        self._versions: dict[str, Projection] = {}

    def version(self, live_key: str | None) -> Projection:
        if live_key is None:
            raise LookupError(f"read model {self.name} is not installed; run `cloudnet migrate`")
        if live_key not in self._versions:
            self._versions[live_key] = self.factory(int(live_key.rsplit("_v", 1)[1]))
        self.projection = self._versions[live_key]
        return self.projection
