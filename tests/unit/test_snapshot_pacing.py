"""A subnet's snapshots come further apart as it grows: each costs as much as the subnet is
large, so taken every 50 events they cost a large subnet more than its launches."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

from immutables import Map

from command_api import snapshots
from command_api.domain import ipam, subnet
from command_api.handlers import Loaded, keep_snapshots
from events import Snapshot
from events.contracts import IpAllocated, SubnetCreated


class _Snapshots:
    """The one method of the event store `keep_snapshots` calls, recording what it saved."""

    def __init__(self) -> None:
        self.saved: list[Snapshot] = []

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        self.saved.append(snapshot)


async def _grow(allocations: int) -> list[tuple[int, int]]:
    """(version, entries) of each snapshot taken while a /16 subnet gets `allocations` ips."""
    subnet_id, store = uuid.uuid4(), _Snapshots()
    created = SubnetCreated(
        subnet_id=subnet_id, network_id=uuid.uuid4(), name="s", cidr="10.0.0.0/16"
    )
    loaded = Loaded(subnet.stream_id(subnet_id), subnet.evolve(None, created), 1, 1, subnet.evolve)
    for n in range(allocations):
        state: Any = loaded.state
        ip = state.pool.lowest_free()
        event = IpAllocated(subnet_id=subnet_id, instance_id=uuid.uuid4(), ip=ip)
        version = loaded.version + 1
        loaded = Loaded(
            loaded.stream_id,
            subnet.evolve(state, event),
            version,
            version + n,
            subnet.evolve,
            loaded.snapshot_version,
        )
        loaded = await keep_snapshots(store, loaded, "acme")  # type: ignore[arg-type]
    return [(s.stream_version, len(s.state["state"]["allocations"])) for s in store.saved]


def test_a_small_subnet_is_snapshotted_every_50_events() -> None:
    taken = asyncio.run(_grow(99))
    assert taken == [(50, 49), (100, 99)]


def test_a_growing_subnet_is_snapshotted_when_it_has_grown_by_half() -> None:
    taken = asyncio.run(_grow(2_000))
    assert [version for version, _ in taken] == [50, 100, 198, 394, 786, 1570]  # it doubled
    # Entries written for 2,000 launches: 3,092, where one snapshot every 50 events wrote 40,000.
    assert sum(entries for _, entries in taken) == 3_092
    for (before, _), (after, entries) in itertools.pairwise(taken):
        assert after - before == max(snapshots.SNAPSHOT_EVERY, entries // 2)


def test_a_subnet_is_due_after_half_its_size_in_events_and_never_under_50() -> None:
    cidr = "10.0.0.0/16"
    empty = subnet.Subnet(uuid.uuid4(), uuid.uuid4(), "s", cidr, ipam.AddressPool.of(cidr))
    codec = snapshots.SubnetCodec()
    assert codec.size(empty) == 0
    assert codec.size(None) == 0
    assert snapshots.due(codec, empty, 50)
    assert not snapshots.due(codec, empty, 49)
    full = subnet.Subnet.restore(
        empty.id, empty.network_id, "s", cidr, _allocations(1_000), deleted=False
    )
    assert codec.size(full) == 1_000  # allocations and releases alike: every 500 events
    assert snapshots.due(codec, full, 500)
    assert not snapshots.due(codec, full, 499)


def _allocations(count: int) -> Map[str, uuid.UUID]:
    return Map({f"10.0.{n // 250}.{n % 250 + 4}": uuid.uuid4() for n in range(count)})
