"""`cloudnet events tail | show | republish`: reading the event store, and publishing its history
again to RabbitMQ for new downstream consumers (projectors skip the repeats by checkpoint)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import orjson
import typer
from faststream.rabbit import RabbitBroker
from rich.table import Table

from events import ORIGIN, EventStore, RecordedEvent
from events.relay import RabbitBatchPublisher
from infra.operations import console, settings_of, with_store

events = typer.Typer(help="Read the event store; republish its history.", no_args_is_help=True)


def _line(event: RecordedEvent) -> str:
    tenant = event.tenant_id or "-"
    data = orjson.dumps(event.data).decode()
    return (
        f"{event.position:>10} {event.recorded_at:%H:%M:%S.%f} {tenant:<16} "
        f"{event.stream_id}@{event.stream_version} {event.type} {data}"
    )


@events.command()
def show(ctx: typer.Context, stream_id: str) -> None:
    """A stream's events, oldest first."""

    async def read(store: EventStore) -> list[RecordedEvent]:
        return [event async for event in store.read_stream(stream_id)]

    history = with_store(ctx, read)
    if not history:
        console.print(f"No stream {stream_id}.")
        raise typer.Exit(1)
    table = Table("version", "position", "type", "recorded", "actor", "data", title=stream_id)
    for event in history:
        table.add_row(
            str(event.stream_version),
            str(event.position),
            event.type,
            event.recorded_at.isoformat(),
            str(event.metadata.get("actor", "")),
            orjson.dumps(event.data).decode(),
        )
    console.print(table)


@events.command()
def tail(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events")
    ] = False,
    last: Annotated[int, typer.Option(help="How many recent events to show first")] = 20,
) -> None:
    """The most recent events (in commit order), and new ones as they commit with --follow."""

    async def run(store: EventStore) -> None:
        head = ORIGIN
        recent: list[RecordedEvent] = []
        while batch := await store.read_all(after=head, limit=5000):
            recent = (recent + batch)[-last:] if last else []
            head = batch[-1].checkpoint
        for event in recent:
            console.print(_line(event), highlight=False, soft_wrap=True)
        while follow:
            batch = await store.read_all(after=head, limit=1000)
            for event in batch:
                console.print(_line(event), highlight=False, soft_wrap=True)
            head = batch[-1].checkpoint if batch else head
            if not batch:
                await asyncio.sleep(0.2)

    try:
        with_store(ctx, run)
    except KeyboardInterrupt:
        return


@events.command()
def republish(
    ctx: typer.Context,
    from_position: Annotated[int, typer.Option(min=0, help="First global position to publish")],
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 500,
) -> None:
    """Publish committed events from a position on to the events exchange again."""
    settings = settings_of(ctx)

    async def run(store: EventStore) -> int:
        broker = RabbitBroker(settings.amqp_url, logger=logging.getLogger("faststream"))
        await broker.start()
        try:
            publisher = RabbitBatchPublisher(broker, settings.exchange)
            await publisher.declare()
            published, after = 0, ORIGIN
            while batch := await store.read_all(after=after, limit=batch_size):
                chosen = [event for event in batch if event.position >= from_position]
                if chosen:
                    await publisher.publish(chosen, previous=after)
                    published += len(chosen)
                after = batch[-1].checkpoint
            return published
        finally:
            await broker.stop()

    published = with_store(ctx, run)
    console.print(f"[green]✓[/green] republished {published:,} events to {settings.exchange}")
