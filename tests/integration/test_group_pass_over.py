"""A group passes over batches none of its projections applies (the provisioner and a network's
events): no transaction for them, the checkpoints saved with the next batch applied or soon
after, and nothing lost or applied twice around them (real PostgreSQL, a database of the test's
own)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from events import ORIGIN, Checkpoint, EventStore, ExpectedVersion, RecordedEvent
from events.contracts import (
    DomainEvent,
    InstanceLaunched,
    InstanceStarted,
    NetworkCreated,
    NetworkRenamed,
    to_new_event,
)
from projectors import checkpoints, group
from projectors.group import ProjectionGroup
from projectors.provisioner.boots import PendingBoots
from projectors.runtime import ProjectionRunner

KEY = "provisioner_v1"


class Feed:
    """Appends events and hands them out in batches as the relay would: each with the checkpoint
    of the batch before it."""

    def __init__(self, store: EventStore) -> None:
        self.store, self.last = store, ORIGIN

    async def batch(self, *events: DomainEvent) -> tuple[list[RecordedEvent], Checkpoint]:
        await self.store.append(
            f"s-{uuid.uuid4()}",
            [to_new_event(event, {"tenant_id": "t"}) for event in events],
            ExpectedVersion.NO_STREAM,
        )
        recorded = await self.store.read_all(after=self.last, limit=100)
        previous, self.last = self.last, recorded[-1].checkpoint
        return recorded, previous


async def stored(store: EventStore) -> Checkpoint:
    async with store.pool.acquire() as connection:
        row = await checkpoints.read_checkpoint(connection, KEY)
    assert row is not None
    return row.checkpoint


async def boots(store: EventStore) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM provisioner_boots_v1"))


def network() -> NetworkCreated:
    return NetworkCreated(network_id=uuid.uuid4(), name="n", cidr="10.0.0.0/16")


def launched(instance: uuid.UUID) -> InstanceLaunched:
    return InstanceLaunched(
        instance_id=instance,
        name="vm",
        subnet_id=uuid.uuid4(),
        network_id=uuid.uuid4(),
        size="small",
        ip="10.0.0.4",
    )


@pytest.fixture
def transactions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The group's transactions, counted where it opens them."""
    opened: list[str] = []
    apply_together = ProjectionGroup._apply_together

    async def counted(self: ProjectionGroup, *args: Any) -> Any:
        opened.append("apply")
        return await apply_together(self, *args)

    monkeypatch.setattr(ProjectionGroup, "_apply_together", counted)
    return opened


async def test_batches_of_other_events_are_passed_over_and_saved_later(
    own_store: EventStore, transactions: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group, "SAVE_PASSED_AFTER", 0.2)
    runner = ProjectionRunner(own_store, PendingBoots(boot_delay_seconds=0.0))

    async def no_catch_up(*_: Any, **__: Any) -> int:
        raise AssertionError("the group caught up from the store")

    monkeypatch.setattr(runner, "catch_up", no_catch_up)
    provisioner = ProjectionGroup("provisioner", [runner])
    feed = Feed(own_store)
    instance = uuid.uuid4()

    await provisioner.deliver(*await feed.batch(launched(instance)))
    assert transactions == ["apply"]
    assert await boots(own_store) == 1
    after_launch = await stored(own_store)

    for _ in range(3):  # a network's events: passed over, nothing stored yet
        await provisioner.deliver(
            *await feed.batch(network(), NetworkRenamed(network_id=uuid.uuid4(), name="m"))
        )
    assert transactions == ["apply"]
    assert await stored(own_store) == after_launch

    # the next batch it applies follows the ones passed over: no gap, no catch-up
    started, previous = await feed.batch(InstanceStarted(instance_id=instance))
    await provisioner.deliver(started, previous)
    assert transactions == ["apply", "apply"]
    assert await boots(own_store) == 0
    assert await stored(own_store) == started[-1].checkpoint

    # passed over with nothing after it: saved a little later, without a batch applied
    last, previous = await feed.batch(network())
    await provisioner.deliver(last, previous)
    assert await stored(own_store) == started[-1].checkpoint
    await asyncio.sleep(0.5)
    assert await stored(own_store) == last[-1].checkpoint
    assert transactions == ["apply", "apply"]


async def test_a_checkpoint_moved_back_meanwhile_is_not_overwritten(
    own_store: EventStore, transactions: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replay or an operator reset the checkpoint while batches were passed over: the group
    does not save over it, and its next batch sees the gap and catches up from the store."""
    monkeypatch.setattr(group, "SAVE_PASSED_AFTER", 0.2)
    runner = ProjectionRunner(own_store, PendingBoots(boot_delay_seconds=0.0))
    provisioner = ProjectionGroup("provisioner", [runner])
    feed = Feed(own_store)
    await provisioner.deliver(*await feed.batch(network()))
    await provisioner.deliver(*await feed.batch(network()))  # passed over
    async with own_store.pool.acquire() as connection:
        await checkpoints.reset_checkpoint(connection, KEY)
    await asyncio.sleep(0.5)
    assert await stored(own_store) == ORIGIN  # not saved over the reset

    batch, previous = await feed.batch(launched(uuid.uuid4()))
    await provisioner.deliver(batch, previous)
    assert await stored(own_store) == batch[-1].checkpoint  # caught up from the store
    assert await boots(own_store) == 1
