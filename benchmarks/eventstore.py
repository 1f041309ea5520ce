"""Event store throughput next to the raw asyncpg ceiling, both measured in the same run.

What it measures, in events/s: `EventStore.append` with 1 event per transaction (1 and 16
concurrent writers) and 10 events per transaction (4 writers), each writer owning a disjoint set
of the streams and appending with exact expected versions as the command service does; and
reading everything in commit order with `read_all` in pages of 1,000. Next to each figure is the
raw ceiling on the same PostgreSQL: prepared asyncpg INSERTs of the same rows into `raw_events`
(a copy of `events` with its columns, defaults, identity and indexes, but no streams table and no
version check) with the same writers and events per transaction, and a keyset
`SELECT ... WHERE position > $1 ORDER BY position` of as many rows. Both sides use pools of the
same size with the store's connection setup (orjson codec, no reset query on release). Rounds
alternate (ABBA) so machine noise hits both; the ratio cloudnet/raw is the figure to compare
across machines.

Run: `make bench-store`, or `.venv/bin/python -m benchmarks.eventstore --help` for the counts.
It creates a database `cloudnet_bench_<random>` on `--postgres` and drops it at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NamedTuple, Protocol

import asyncpg
import typer
import uvloop
from rich import box
from rich.console import Console
from rich.table import Table

from events import Checkpoint, EventStore, NewEvent
from events.store import PooledConnection, init_connection
from infra.database import create_database, migrate

PAGE = 1000
READ_TARGET = 0.70
EVENT_TYPE = "BenchmarkEventRecorded"
METADATA = {
    "tenant_id": "t-benchmark",
    "correlation_id": str(uuid.UUID(int=1)),
    "causation_id": str(uuid.UUID(int=2)),
    "actor": "benchmark",
}

_RAW_TABLE = "CREATE TABLE raw_events (LIKE events INCLUDING ALL)"
_RAW_INSERT = """
INSERT INTO raw_events (stream_id, stream_version, event_id, type, schema_version, data, metadata,
                        tenant_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
_RAW_READ = """
SELECT position, transaction_id, stream_id, stream_version, event_id, type, schema_version,
       data, metadata, recorded_at
FROM raw_events WHERE position > $1 ORDER BY position LIMIT $2
"""


def event_data(stream_id: str, version: int) -> dict[str, Any]:
    """About 200 bytes of JSON, shaped like a network event."""
    return {
        "network_id": stream_id,
        "name": f"net-{version:05d}",
        "cidr": "10.20.0.0/16",
        "subnets": ["10.20.1.0/24", "10.20.2.0/24"],
        "description": "benchmark network",
    }


class Side(Protocol):
    """One contender: appends `count` events to a stream in one transaction; reads in order."""

    name: str

    async def append(self, stream_id: str, count: int) -> None: ...

    async def read(self, total: int) -> int: ...


class CloudnetSide:
    """The event store through its public API."""

    name = "cloudnet"

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.versions: defaultdict[str, int] = defaultdict(int)

    async def append(self, stream_id: str, count: int) -> None:
        version = self.versions[stream_id]
        events = [
            NewEvent(type=EVENT_TYPE, data=event_data(stream_id, version + n), metadata=METADATA)
            for n in range(1, count + 1)
        ]
        result = await self.store.append(stream_id, events, expected_version=version)
        self.versions[stream_id] = result.stream_version

    async def read(self, total: int) -> int:
        read = 0
        after: Checkpoint | None = None
        while read < total:
            batch = await self.store.read_all(after=after, limit=min(PAGE, total - read))
            if not batch:
                break
            read += len(batch)
            after = batch[-1].checkpoint
        return read


class RawSide:
    """The ceiling: plain prepared INSERTs and a keyset SELECT, nothing checked."""

    name = "raw"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.versions: defaultdict[str, int] = defaultdict(int)

    async def append(self, stream_id: str, count: int) -> None:
        version = self.versions[stream_id]
        tenant = METADATA["tenant_id"]
        rows = [
            (stream_id, v, uuid.uuid4(), EVENT_TYPE, 1, event_data(stream_id, v), METADATA, tenant)
            for v in range(version + 1, version + count + 1)
        ]
        # asyncpg prepares and caches the statement per connection; executemany pipelines its
        # rows in one round trip and one implicit transaction, like the store's single statement.
        async with self.pool.acquire() as connection:
            if count == 1:
                await connection.execute(_RAW_INSERT, *rows[0])
            else:
                await connection.executemany(_RAW_INSERT, rows)
        self.versions[stream_id] = version + count

    async def read(self, total: int) -> int:
        read, after = 0, 0
        while read < total:
            rows = await self.pool.fetch(_RAW_READ, after, min(PAGE, total - read))
            if not rows:
                break
            read += len(rows)
            after = rows[-1]["position"]
        return read


@dataclass(frozen=True, slots=True)
class WriteScenario:
    label: str
    writers: int
    per_transaction: int
    events: int
    target: float | None


@dataclass(slots=True)
class Tally:
    """Events and seconds summed over a side's rounds, plus each round's rate."""

    events: int = 0
    seconds: float = 0.0
    rates: list[float] = field(default_factory=list)

    def add(self, events: int, seconds: float) -> None:
        self.events += events
        self.seconds += seconds
        self.rates.append(events / seconds)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@dataclass(frozen=True, slots=True)
class Figure:
    label: str
    cloudnet: Tally
    raw: Tally
    target: float | None

    @property
    def ratio(self) -> float:
        return self.cloudnet.rate / self.raw.rate

    @property
    def round_ratios(self) -> list[float]:
        return [c / r for c, r in zip(self.cloudnet.rates, self.raw.rates, strict=True)]


#: Runs one side for a number of events and answers how many it did.
Trial = Callable[[Side, int], Awaitable[int]]


class Work(NamedTuple):
    """Events per side: once untimed, then in each of `rounds` timed rounds."""

    warmup: int
    per_round: int
    rounds: int


async def interleaved(
    label: str, sides: tuple[Side, Side], trial: Trial, work: Work, target: float | None
) -> Figure:
    """Warm both sides up, then time `work.rounds` rounds of each in ABBA order."""
    for side in sides:
        await trial(side, work.warmup)
    tallies = {side.name: Tally() for side in sides}
    for round_number in range(work.rounds):
        for side in sides if round_number % 2 == 0 else sides[::-1]:
            started = time.perf_counter()
            done = await trial(side, work.per_round)
            tallies[side.name].add(done, time.perf_counter() - started)
    return Figure(label, tallies["cloudnet"], tallies["raw"], target)


def writing(scenario: WriteScenario, streams: list[str]) -> Trial:
    """A trial in which each writer appends round-robin to its own share of `streams`."""
    shares = [streams[writer :: scenario.writers] for writer in range(scenario.writers)]

    async def trial(side: Side, events: int) -> int:
        transactions = events // scenario.per_transaction
        counts = [
            transactions // scenario.writers + (writer < transactions % scenario.writers)
            for writer in range(scenario.writers)
        ]
        writers = zip(shares, counts, strict=True)
        await asyncio.gather(
            *(write_share(side, share, scenario.per_transaction, count) for share, count in writers)
        )
        return transactions * scenario.per_transaction

    return trial


async def write_share(side: Side, streams: list[str], per_transaction: int, count: int) -> None:
    for index in range(count):
        await side.append(streams[index % len(streams)], per_transaction)


async def read_in_order(side: Side, total: int) -> int:
    return await side.read(total)


async def prepare_reads(url: str) -> int:
    """Same treatment for both tables (autovacuum may be off); answers the rows to read."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("VACUUM (ANALYZE) events, raw_events")
        counts = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM events) AS store, "
            "(SELECT count(*) FROM raw_events) AS raw"
        )
        return int(min(counts["store"], counts["raw"]))
    finally:
        await connection.close()


@dataclass(frozen=True, slots=True)
class Options:
    postgres: str
    streams: int
    events: int
    single_writer_events: int
    warmup: int
    rounds: int
    pool_size: int

    def write_scenarios(self) -> list[WriteScenario]:
        return [
            WriteScenario("append 1 event/txn, 1 writer", 1, 1, self.single_writer_events, None),
            WriteScenario("append 1 event/txn, 16 writers", 16, 1, self.events, 0.65),
            WriteScenario("append 10 events/txn, 4 writers", 4, 10, self.events, 0.70),
        ]

    def describe(self) -> str:
        return (
            f"{self.streams:,} streams; events per side: {self.single_writer_events:,} (1 writer), "
            f"{self.events:,} (concurrent), after {self.warmup:,} untimed; {self.rounds} rounds "
            f"per side in ABBA order; pools of {self.pool_size} connections per side"
        )


async def run_scenarios(url: str, sides: tuple[Side, Side], options: Options) -> list[Figure]:
    streams = [f"network-{uuid.uuid4()}" for _ in range(options.streams)]
    figures = []
    for scenario in options.write_scenarios():
        work = Work(options.warmup, scenario.events // options.rounds, options.rounds)
        trial = writing(scenario, streams)
        figures.append(await interleaved(scenario.label, sides, trial, work, scenario.target))
    total = await prepare_reads(url)
    label = f"read all ({total:,} events) in commit order, pages of {PAGE:,}"
    work = Work(total, total, options.rounds)
    figures.append(await interleaved(label, sides, read_in_order, work, READ_TARGET))
    return figures


@asynccontextmanager
async def scratch_database(
    postgres: str, prefix: str = "cloudnet_bench", *, migrated: bool = True
) -> AsyncIterator[str]:
    """A new database `<prefix>_<random>` (migrated, or left empty), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = f"{postgres}/{name}"
    try:
        await (migrate(url) if migrated else create_database(url))
        yield url
    finally:
        connection = await asyncpg.connect(f"{postgres}/postgres")
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


@asynccontextmanager
async def bench_database(postgres: str) -> AsyncIterator[str]:
    """A fresh, migrated database with `raw_events` next to `events`; dropped afterwards."""
    async with scratch_database(postgres) as url:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(_RAW_TABLE)
        finally:
            await connection.close()
        yield url


_SHOWN_SETTINGS = ("server_version", "fsync", "synchronous_commit", "shared_buffers")


async def machine_facts(url: str) -> str:
    connection = await asyncpg.connect(url)
    try:
        settings = [await connection.fetchval(f"SHOW {name}") for name in _SHOWN_SETTINGS]
    finally:
        await connection.close()
    shown = ", ".join(f"{n}={v}" for n, v in zip(_SHOWN_SETTINGS, settings, strict=True))
    return f"nproc={os.cpu_count()}, PostgreSQL {shown}"


async def bench(options: Options) -> tuple[str, list[Figure]]:
    async with bench_database(options.postgres) as url:
        facts = await machine_facts(url)
        size = {"min_size": options.pool_size, "max_size": options.pool_size}
        store = await EventStore.connect(url, **size)
        raw_pool = await asyncpg.create_pool(
            url, init=init_connection, connection_class=PooledConnection, **size
        )
        try:
            figures = await run_scenarios(url, (CloudnetSide(store), RawSide(raw_pool)), options)
        finally:
            await store.close()
            await raw_pool.close()
    return facts, figures


def render(figures: list[Figure]) -> Table:
    table = Table(box=box.MARKDOWN)
    table.add_column("scenario")
    for column in ("cloudnet ev/s", "raw ev/s", "cloudnet/raw", "per round: median, range"):
        table.add_column(column, justify="right")
    table.add_column("target")
    for figure in figures:
        table.add_row(
            figure.label,
            f"{figure.cloudnet.rate:,.0f}",
            f"{figure.raw.rate:,.0f}",
            f"{figure.ratio:.1%}",
            spread_text(figure.round_ratios),
            target_text(figure),
        )
    return table


def spread_text(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.0%}, {min(ratios):.0%}-{max(ratios):.0%}"


def target_text(figure: Figure) -> str:
    if figure.target is None:
        return "-"
    verdict = "met" if figure.ratio >= figure.target else "MISSED"
    return f">= {figure.target:.0%} {verdict}"


def main(
    postgres: Annotated[str, typer.Option(help="Server URL, without a database")] = (
        "postgresql://postgres@127.0.0.1:5432"
    ),
    streams: Annotated[int, typer.Option(help="Streams shared out among the writers")] = 1000,
    events: Annotated[int, typer.Option(help="Events per side, concurrent scenarios")] = 40_000,
    single_writer_events: Annotated[int, typer.Option(help="Events per side, 1 writer")] = 10_000,
    warmup: Annotated[int, typer.Option(help="Untimed events per side first")] = 1_000,
    rounds: Annotated[int, typer.Option(help="Timed rounds per side, ABBA")] = 8,
    pool_size: Annotated[int, typer.Option(help="Connections per side")] = 16,
    json_out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON")] = None,
) -> None:
    """Print event store throughput next to raw asyncpg, measured in the same run."""
    options = Options(postgres, streams, events, single_writer_events, warmup, rounds, pool_size)
    facts, figures = uvloop.run(bench(options))
    console = Console(width=160)
    console.print(facts, options.describe(), sep="\n", soft_wrap=True)
    console.print(render(figures))
    if json_out is not None:
        rows = [
            {
                "scenario": figure.label,
                "cloudnet_per_second": figure.cloudnet.rate,
                "baseline_per_second": figure.raw.rate,
                "ratio": figure.ratio,
                "target": figure.target,
            }
            for figure in figures
        ]
        json_out.write_text(json.dumps({"facts": facts, "figures": rows}, indent=2))


if __name__ == "__main__":
    typer.run(main)
