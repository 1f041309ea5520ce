"""Rebuilding read models from the event store without downtime (`cloudnet replay`).

A replay builds the next version of a read model's tables from the store in batches (one short
transaction each: a long one would hold back every commit-order reader of the store), catches
up with live traffic, then swaps the plain-named view and the live version in one transaction
that also applies the last events: queries never see an empty or half-built model, and the
live projector moves to the new tables with it. The old version is dropped after a grace period.

`verify` builds a copy aside up to exactly the live model's checkpoint and diffs the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from events import ORIGIN, Checkpoint, EventStore, RecordedEvent
from projectors import checkpoints
from projectors.catalog import READ_MODELS
from projectors.projection import Projection, checkpoint_key
from projectors.runtime import Outcome, ProjectionRunner, apply_batch

if TYPE_CHECKING:
    from projectors.projection import DbConnection, Statement


@dataclass(slots=True)
class Progress:
    """How far a build is; `total` is the store's event count when the build started."""

    read_model: str
    applied: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        return self.applied / max(time.monotonic() - self.started, 1e-9)


ProgressHook = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class ReplayReport:
    read_model: str
    old_key: str
    new_key: str
    events: int
    seconds: float
    swapped: bool


@dataclass(frozen=True, slots=True)
class RowDifference:
    table: str
    row_id: str
    live: dict[str, Any] | None
    rebuilt: dict[str, Any] | None


class AheadOfTime:
    """`projection`, with the statements of the batch after the one being applied worked out
    while that one runs: a rebuild spent 29 % of its apply building statements in Python and
    65 % waiting for PostgreSQL to run them, one after the other (docs/BENCHMARKS.md, ninth
    session). `prepare` builds a batch's statements a slice at a time, yielding between slices
    so the applying batch's round trips go on; `statements` hands them out, or builds one that
    is not ready (or failed: it then fails again where the runtime expects it, as a poison
    event)."""

    #: Events per slice (a quarter of a millisecond of Python here); 10 to 100 rebuilt alike.
    SLICE = 25

    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.name, self.version = projection.name, projection.version
        self._ready: dict[int, list[Statement]] = {}

    def tables(self) -> list[str]:
        return self.projection.tables()

    def create_tables(self) -> list[str]:
        return self.projection.create_tables()

    def create_indexes(self) -> list[str]:
        return self.projection.create_indexes()

    def create_view(self) -> list[str]:
        return self.projection.create_view()

    def statements(self, event: RecordedEvent) -> list[Statement]:
        ready = self._ready.pop(event.position, None)
        return ready if ready is not None else self.projection.statements(event)

    async def prepare(self, events: list[RecordedEvent]) -> None:
        for start in range(0, len(events), self.SLICE):
            for event in events[start : start + self.SLICE]:
                with contextlib.suppress(Exception):  # raised again when it is applied
                    self._ready[event.position] = self.projection.statements(event)
            await asyncio.sleep(0)

    def forget(self) -> None:
        """Drop what was prepared and not used (a batch cut short, a build that failed)."""
        self._ready.clear()


#: Events read and applied per transaction. Each batch's transaction holds back every
#: commit-order reader of the store (the relay) while it runs, about 0.15 s at this size; larger
#: batches did not rebuild faster here (A/B at 06:10 UTC: 5,000 gave 33.8-41.7k events/s,
#: 20,000 gave 30.8-36.7k, in the same minutes).
BATCH_SIZE = 5_000


class ReplayError(Exception):
    """The replay cannot run as asked (unknown read model, halted projection...)."""


def factory_of(name: str) -> Callable[[int], Projection]:
    if name not in READ_MODELS:
        raise ReplayError(f"unknown read model {name!r}; known: {', '.join(READ_MODELS)}")
    return READ_MODELS[name]


async def live_key(store: EventStore, name: str) -> str:
    key = await store.pool.fetchval("SELECT projection FROM projection_views WHERE name = $1", name)
    if key is None:
        raise ReplayError(f"read model {name} is not installed; run `cloudnet migrate`")
    return str(key)


async def next_version(store: EventStore, name: str) -> int:
    keys = await store.pool.fetch(
        "SELECT projection FROM projection_checkpoints WHERE projection LIKE $1", f"{name}_v%"
    )
    versions = [int(row["projection"].rsplit("_v", 1)[1]) for row in keys]
    return max(versions, default=0) + 1


async def build(
    store: EventStore,
    projection: Projection,
    progress: ProgressHook | None = None,
    *,
    until: Checkpoint | None = None,
    batch_size: int = BATCH_SIZE,
    to_position: int | None = None,
) -> int:
    """Fresh tables for `projection`, filled from the store up to the head (or `until`; or
    only the events at or below `to_position`, for a dry run of the past)."""
    key = checkpoint_key(projection)
    async with store.pool.acquire() as connection, connection.transaction():
        for table in projection.tables():
            await connection.execute(f"DROP TABLE IF EXISTS {table}")  # an aborted earlier run
        for statement in projection.create_tables():
            await connection.execute(statement)
        await checkpoints.reset_checkpoint(connection, key)
    report = Progress(projection.name, total=await _event_count(store))
    # Secondary indexes come after the bulk load: building them once is far cheaper than
    # maintaining them row by row.
    await _load(
        store,
        projection,
        report,
        progress,
        until=until,
        batch_size=batch_size,
        to_position=to_position,
    )
    async with store.pool.acquire() as connection:
        for statement in projection.create_indexes():
            await connection.execute(statement)
    return report.applied


async def _load(
    store: EventStore,
    projection: Projection,
    report: Progress,
    progress: ProgressHook | None,
    *,
    until: Checkpoint | None,
    batch_size: int,
    to_position: int | None = None,
) -> None:
    ahead = AheadOfTime(projection)
    runner = ProjectionRunner(store, ahead, batch_size, bulk=True)  # `build` made the tables
    after = ORIGIN

    def applied(event: RecordedEvent) -> bool:
        """Whether the loop below applies `event` (the others are read, then left out)."""
        return (until is None or event.checkpoint <= until) and (
            to_position is None or event.position <= to_position
        )

    async def read_and_prepare(start: Checkpoint) -> list[RecordedEvent]:
        batch = await store.read_all(after=start, limit=batch_size)
        await ahead.prepare([event for event in batch if applied(event)])
        return batch

    def read(start: Checkpoint) -> asyncio.Task[list[RecordedEvent]] | None:
        if until is not None and start >= until:
            return None
        return asyncio.create_task(read_and_prepare(start))

    # The next batch is read (on another pooled connection) and its statements built while
    # this one is applied: the rebuild waited on each read before, about a third of its time,
    # and then on building its statements (docs/BENCHMARKS.md).
    reading = read(after)
    try:
        while reading is not None:
            batch = await reading
            if until is not None:
                batch = [event for event in batch if event.checkpoint <= until]
            if not batch:
                break
            read_to = batch[-1].checkpoint
            reading = read(read_to)
            previous: Checkpoint | None = after
            if to_position is not None:  # the past: events committed later stay out
                batch, previous = [e for e in batch if e.position <= to_position], None
            if batch and await runner.apply(batch, previous=previous) is Outcome.HALTED:
                raise ReplayError("a poison event stopped the rebuild; see `cloudnet dlq list`")
            after = read_to
            report.applied += len(batch)
            if progress:
                progress(report)
    finally:
        if reading is not None and not reading.done():
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
        ahead.forget()


async def replay(
    store: EventStore,
    name: str,
    progress: ProgressHook | None = None,
    *,
    dry_run: bool = False,
    keep_old: bool = False,
    grace_seconds: float = 5.0,
    batch_size: int = BATCH_SIZE,
    to_position: int | None = None,
) -> ReplayReport:
    """Build the next version of read model `name` and make it live (see module docstring)."""
    factory = factory_of(name)
    started = time.monotonic()
    old_key = await live_key(store, name)
    projection = factory(await next_version(store, name))
    applied = await build(
        store, projection, progress, batch_size=batch_size, to_position=to_position
    )
    if dry_run:
        await drop(store, projection)
        return ReplayReport(
            name,
            old_key,
            checkpoint_key(projection),
            applied,
            time.monotonic() - started,
            swapped=False,
        )
    applied += await _swap(store, name, projection)
    if not keep_old:
        await asyncio.sleep(grace_seconds)  # queries planned on the old tables finish first
        await drop(store, factory(int(old_key.rsplit("_v", 1)[1])))
    return ReplayReport(
        name, old_key, checkpoint_key(projection), applied, time.monotonic() - started, swapped=True
    )


async def _swap(store: EventStore, name: str, projection: Projection) -> int:
    async with store.pool.acquire() as connection, connection.transaction():
        # Blocks the live projector between batches (it reads this row FOR SHARE).
        await connection.execute(
            "SELECT projection FROM projection_views WHERE name = $1 FOR UPDATE", name
        )
        # The last events, inside the swap: nothing is missed in between.
        applied = await _advance(connection, store, projection, None)
        for statement in projection.create_view():
            await connection.execute(statement)
        await connection.execute(
            "UPDATE projection_views SET projection = $2 WHERE name = $1",
            name,
            checkpoint_key(projection),
        )
    return applied


async def drop(store: EventStore, projection: Projection) -> None:
    async with store.pool.acquire() as connection, connection.transaction():
        for table in projection.tables():
            await connection.execute(f"DROP TABLE IF EXISTS {table}")
        await connection.execute(
            "DELETE FROM projection_checkpoints WHERE projection = $1", checkpoint_key(projection)
        )


async def verify(
    store: EventStore, name: str, progress: ProgressHook | None = None, wait_seconds: float = 30.0
) -> list[RowDifference]:
    """Every row where the live model differs from a fresh fold of the store."""
    factory = factory_of(name)
    live = factory(int((await live_key(store, name)).rsplit("_v", 1)[1]))
    aside = factory(await next_version(store, name))
    deadline = time.monotonic() + wait_seconds
    try:
        # The bulk of the build runs without holding anything (a long transaction would hold
        # back every reader of the store); only the last few events and the diff run while the
        # live model is held still.
        await build(store, aside, progress)
        while True:
            async with store.pool.acquire() as connection, connection.transaction():
                await connection.execute(
                    "SELECT projection FROM projection_views WHERE name = $1 FOR UPDATE", name
                )
                target = await checkpoints.read_checkpoint(connection, checkpoint_key(live))
                copy = await checkpoints.read_checkpoint(connection, checkpoint_key(aside))
                assert target is not None
                assert copy is not None
                if copy.checkpoint <= target.checkpoint:
                    await _advance(connection, store, aside, target.checkpoint)
                    return await _diff(connection, live, aside)
            if time.monotonic() > deadline:  # the live model is behind the store: wait for it
                raise ReplayError(f"the live {name} model did not reach the store's head")
            await asyncio.sleep(0.1)
    finally:
        await drop(store, aside)


async def _advance(
    connection: DbConnection, store: EventStore, projection: Projection, until: Checkpoint | None
) -> int:
    """Apply, on `connection`, the events up to and including `until` (or the head)."""
    applied = 0
    while True:
        after = (
            await checkpoints.lock_checkpoint(connection, checkpoint_key(projection))
        ).checkpoint
        batch = [
            event
            for event in await store.read_all(after=after, limit=5000)
            if until is None or event.checkpoint <= until
        ]
        if not batch:
            return applied
        await apply_batch(connection, projection, batch, after)
        applied += len(batch)


async def _diff(
    connection: DbConnection, live: Projection, rebuilt: Projection
) -> list[RowDifference]:
    differences = []
    for live_table, new_table in zip(live.tables(), rebuilt.tables(), strict=True):
        rows = await connection.fetch(
            f"""SELECT coalesce(l.id, r.id)::text AS row_id, to_jsonb(l) AS live,
                       to_jsonb(r) AS rebuilt
                FROM {live_table} l FULL JOIN {new_table} r ON l.id = r.id
                WHERE l IS DISTINCT FROM r
                ORDER BY 1"""
        )
        differences += [
            RowDifference(live_table, row["row_id"], row["live"], row["rebuilt"]) for row in rows
        ]
    return differences


async def _event_count(store: EventStore) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM events"))
