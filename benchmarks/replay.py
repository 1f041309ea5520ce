"""Replay throughput: rebuilding the instances read model from the store, next to the raw
read ceiling (reading the same events in commit order and doing nothing) in the same run.

    make bench-replay                      # 200,000 events
    .venv/bin/python -m benchmarks.replay --events 500000

Creates its own database on the PostgreSQL at 127.0.0.1:5432 and drops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path

import asyncpg
from rich.console import Console
from rich.table import Table

from events import EventStore, ExpectedVersion, NewEvent
from events.contracts import (
    InstanceLaunched,
    InstanceStarted,
    InstanceStopped,
    IpAllocated,
    SubnetCreated,
    to_new_event,
)
from infra.database import migrate
from projectors import replay

SERVER = "postgresql://postgres@127.0.0.1:5432"
console = Console()


async def seed(store: EventStore, events: int) -> int:
    """Instances launched (with their address), started and stopped: four events each."""
    metadata = {"tenant_id": "bench", "actor": "bench"}
    subnet_id, network_id = uuid.uuid4(), uuid.uuid4()
    subnet_stream = f"subnet-{subnet_id}"
    created = SubnetCreated(
        subnet_id=subnet_id, network_id=network_id, name="s", cidr="10.0.0.0/16"
    )
    await store.append(subnet_stream, [to_new_event(created, metadata)], ExpectedVersion.NO_STREAM)
    written, version = 1, 1
    while written < events:
        appends: list[tuple[str, list[NewEvent], ExpectedVersion | int]] = []
        allocations: list[NewEvent] = []
        for _ in range(250):
            instance_id = uuid.uuid4()
            ip = f"10.0.{(version // 250) % 256}.{version % 250 + 4}"
            allocations.append(
                to_new_event(
                    IpAllocated(subnet_id=subnet_id, instance_id=instance_id, ip=ip), metadata
                )
            )
            lifecycle = [
                InstanceLaunched(
                    instance_id=instance_id,
                    name="vm",
                    subnet_id=subnet_id,
                    network_id=network_id,
                    size="small",
                    ip=ip,
                ),
                InstanceStarted(instance_id=instance_id),
                InstanceStopped(instance_id=instance_id),
            ]
            appends.append(
                (
                    f"instance-{instance_id}",
                    [to_new_event(e, metadata) for e in lifecycle],
                    ExpectedVersion.NO_STREAM,
                )
            )
            version += 1
        appends.append((subnet_stream, allocations, ExpectedVersion.ANY))
        await store.append_many(appends)
        written += sum(len(batch) for _, batch, _ in appends)
    return written


async def read_ceiling(store: EventStore, batch_size: int) -> tuple[int, float]:
    started, count, after = time.perf_counter(), 0, None
    while batch := await store.read_all(after=after, limit=batch_size):
        count += len(batch)
        after = batch[-1].checkpoint
    return count, time.perf_counter() - started


async def main(events: int, batch_size: int) -> dict[str, object]:
    name = f"cloudnet_bench_replay_{uuid.uuid4().hex[:8]}"
    url = f"{SERVER}/{name}"
    await migrate(url)
    store = await EventStore.connect(url, min_size=2, max_size=4)
    try:
        with console.status(f"seeding {events:,} events"):
            seeded = await seed(store, events)
        await read_ceiling(store, batch_size)  # warm the cache for both measurements
        rows = []
        for attempt in range(2):  # interleaved: machine noise hits both
            count, seconds = await read_ceiling(store, batch_size)
            report = await replay.replay(store, "instances", batch_size=batch_size, grace_seconds=0)
            rows.append((attempt + 1, count / seconds, report.events / report.seconds))
        table = Table(
            "run",
            "raw read ceiling (events/s)",
            "replay instances (events/s)",
            "ratio",
            title=f"Replay, {seeded:,} events, batches of {batch_size:,}",
        )
        for run, raw, rebuilt in rows:
            table.add_row(str(run), f"{raw:,.0f}", f"{rebuilt:,.0f}", f"{rebuilt / raw:.0%}")
        console.print(table)
        figures = [
            {"run": run, "raw_read_per_second": raw, "replay_per_second": rebuilt}
            for run, raw, rebuilt in rows
        ]
        return {"events": seeded, "batch_size": batch_size, "runs": figures}
    finally:
        await store.close()
        connection = await asyncpg.connect(f"{SERVER}/postgres")
        await connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await connection.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=replay.BATCH_SIZE)
    parser.add_argument("--json-out", help="also write the figures as JSON")
    arguments = parser.parse_args()
    summary = asyncio.run(main(arguments.events, arguments.batch_size))
    if arguments.json_out:
        Path(arguments.json_out).write_text(json.dumps(summary, indent=2))
