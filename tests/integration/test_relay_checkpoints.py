"""The relay saves its checkpoint at most every `save_every` seconds while it publishes, and the
last one once it is idle and a save is due. One not saved yet only means batches published again
after a crash or a takeover, which every consumer skips."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from events import EventStore, NewEvent
from events.model import Checkpoint, RecordedEvent
from events.relay import Relay


class Published:
    """Stands in for RabbitMQ: this test is about the relay's own checkpoint."""

    async def publish(self, events: list[RecordedEvent], previous: Checkpoint) -> None:
        return None


async def _until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return False


async def _saved_position(store: EventStore, name: str) -> int | None:
    return await store.pool.fetchval(
        "SELECT position FROM relay_checkpoints WHERE relay = $1", name
    )


async def test_the_checkpoint_is_saved_at_most_every_save_every_and_then_once_idle(
    own_store: EventStore, own_database: str
) -> None:
    relay = Relay(own_store, Published(), leader_dsn=own_database, name="saves", save_every=2.0)
    task = asyncio.create_task(relay.run())
    try:
        first = await own_store.append("network-a", [NewEvent("NetworkRenamed", {})])
        assert await _until(lambda: relay.checkpoint.position == first.position, 5)
        assert await _saved_position(own_store, "saves") == first.position  # the first at once

        second = await own_store.append("network-a", [NewEvent("NetworkRenamed", {})])
        assert await _until(lambda: relay.checkpoint.position == second.position, 5)
        published = time.monotonic()
        assert await _saved_position(own_store, "saves") == first.position  # not due yet

        assert await _until(lambda: relay.saved.position == second.position, 5)
        assert time.monotonic() - published > 1.0  # waited for the save to be due, idle
        assert await _saved_position(own_store, "saves") == second.position
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
