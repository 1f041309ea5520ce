"""One relay leads; a standby takes over when the leader's session ends, and while it waits it
holds no snapshot (a waiting statement would pin the cluster's vacuum horizon)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import asyncpg

from events import EventStore
from events.model import Checkpoint, RecordedEvent
from events.relay import Relay


class Published:
    """Stands in for RabbitMQ: this test is about leadership, not the broker."""

    async def publish(self, events: list[RecordedEvent], previous: Checkpoint) -> None:
        return None


async def _until(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_a_standby_holds_no_snapshot_and_takes_over(
    store: EventStore, database_url: str
) -> None:
    name = f"leadership-{uuid.uuid4().hex[:8]}"
    leader = Relay(store, Published(), leader_dsn=database_url, name=name, standby_poll=0.1)
    standby = Relay(store, Published(), leader_dsn=database_url, name=name, standby_poll=0.1)
    leading = asyncio.create_task(leader.run())
    assert await _until(lambda: leader.is_leader, 5)
    waiting = asyncio.create_task(standby.run())
    try:
        observer = await asyncpg.connect(database_url)
        try:
            pinned = []
            for _ in range(20):  # 1 s of the standby waiting
                pinned += await observer.fetch(
                    "SELECT pid, query FROM pg_stat_activity WHERE backend_xmin IS NOT NULL "
                    "AND query LIKE '%advisory_lock%' AND now() - query_start > interval '50 ms'"
                )
                await asyncio.sleep(0.05)
        finally:
            await observer.close()
        assert pinned == []
        assert not standby.is_leader
        leading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leading
        assert await _until(lambda: standby.is_leader, 2)
    finally:
        for task in (leading, waiting):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
