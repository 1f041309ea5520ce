"""A batch that changes nothing in a group's projections commits nothing, and the next batch
that continues it moves the checkpoint past both; a gap is still a gap (real PostgreSQL, the
provisioner's projection, which keeps no network or subnet event)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from events import ORIGIN, Checkpoint, EventStore, RecordedEvent
from projectors import group as group_module
from projectors.group import ProjectionGroup
from projectors.provisioner.boots import PendingBoots
from projectors.runtime import ProjectionRunner
from tests.integration.test_projection_group import Estate, own_store

__all__ = ["own_store"]  # the fixture, imported for the tests below


class Provisioner:
    """The provisioner's group, and the catch-ups from the store it ran."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.runner = ProjectionRunner(store, PendingBoots())
        self.group = ProjectionGroup("provisioner", [self.runner])
        self.catch_ups: list[Checkpoint | None] = []
        catch_up = self.runner.catch_up

        async def counted(until: Checkpoint | None = None) -> int:
            self.catch_ups.append(until)
            return await catch_up(until)

        self.runner.catch_up = counted  # type: ignore[method-assign]

    async def stored(self) -> tuple[Checkpoint, str]:
        """The stored checkpoint and the transaction that wrote it."""
        row = await self.store.pool.fetchrow(
            "SELECT transaction_id, position, xmin::text AS written_by "
            "FROM projection_checkpoints WHERE projection = 'provisioner_v1'"
        )
        return Checkpoint(row["transaction_id"], row["position"]), row["written_by"]

    async def boots(self, estate: Estate) -> Any:
        return await self.store.pool.fetchval(
            "SELECT count(*) FROM provisioner_boots_v1 WHERE instance_id = $1", estate.instance
        )


async def batches(store: EventStore) -> list[list[RecordedEvent]]:
    """The estate's events as the relay would batch them, one per transaction: the network's,
    the subnet's (neither starts a boot) and the instance's launch."""
    events = await store.read_all(after=ORIGIN)
    by_transaction: dict[int, list[RecordedEvent]] = {}
    for event in events:
        by_transaction.setdefault(event.checkpoint.transaction_id, []).append(event)
    assert [len(batch) for batch in by_transaction.values()] == [2, 2, 1]
    return list(by_transaction.values())


@pytest.fixture(autouse=True)
def no_flush_in_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skipped batches stay uncommitted for as long as a test looks at them (unless it says)."""
    monkeypatch.setattr(group_module, "IDLE_FLUSH_SECONDS", 3600.0)


@pytest.fixture
async def estate(own_store: EventStore) -> Estate:
    built = Estate()
    await built.build(own_store)
    return built


async def test_batches_that_change_nothing_commit_nothing_and_the_next_moves_past_them(
    own_store: EventStore, estate: Estate
) -> None:
    network, subnet, launch = await batches(own_store)
    provisioner = Provisioner(own_store)
    before = await provisioner.stored()

    await provisioner.group.deliver(network, ORIGIN)
    await provisioner.group.deliver(subnet, network[-1].checkpoint)
    assert await provisioner.stored() == before  # not even rewritten

    await provisioner.group.deliver(launch, subnet[-1].checkpoint)
    assert (await provisioner.stored())[0] == launch[-1].checkpoint
    assert await provisioner.boots(estate) == 1
    assert provisioner.catch_ups == []  # the skipped batches were not taken for a gap


async def test_a_batch_that_does_not_continue_the_skipped_ones_is_a_gap(
    own_store: EventStore, estate: Estate
) -> None:
    network, subnet, launch = await batches(own_store)
    provisioner = Provisioner(own_store)

    await provisioner.group.deliver(network, ORIGIN)
    await provisioner.group.deliver(launch, subnet[-1].checkpoint)  # the subnet's went missing

    assert provisioner.catch_ups == [launch[-1].checkpoint]
    assert (await provisioner.stored())[0] == launch[-1].checkpoint
    assert await provisioner.boots(estate) == 1


async def test_a_run_of_batches_that_change_nothing_is_committed_when_nothing_follows(
    own_store: EventStore, estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_module, "IDLE_FLUSH_SECONDS", 0.2)
    network, subnet, _ = await batches(own_store)
    provisioner = Provisioner(own_store)
    await provisioner.group.deliver(network, ORIGIN)
    await provisioner.group.deliver(subnet, network[-1].checkpoint)
    assert (await provisioner.stored())[0] == ORIGIN

    await asyncio.sleep(0.6)  # no batch comes: the run is committed on its own
    assert (await provisioner.stored())[0] == subnet[-1].checkpoint
    assert provisioner.catch_ups == []
