"""The projector's read models and the provisioner's pending boots take a batch together: one
transaction for all of them, while a poison event, a gap or a redelivery is still handled per read
model (real PostgreSQL; a database
of each test's own, so the session's relay and projectors never apply these events too)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika
import pytest
from faststream.rabbit import RabbitBroker

from events import ORIGIN, Checkpoint, EventStore, ExpectedVersion, RecordedEvent
from events.contracts import (
    DomainEvent,
    InstanceLaunched,
    IpAllocated,
    NetworkCreated,
    NetworkRenamed,
    SubnetAttached,
    SubnetCreated,
    to_new_event,
)
from infra.settings import Settings
from projectors import dead_letters
from projectors.catalog import READ_MODELS_GROUP, RETIRED_GROUPS, projector_runners
from projectors.consumer import delete_queues, queue_name
from projectors.group import ProjectionGroup
from projectors.runtime import APPLIED, DUPLICATES, HALTED, Outcome, ProjectionRunner

KEYS = ["instances_v1", "networks_v1", "subnets_v1", "provisioner_v1"]


@pytest.fixture
def group(own_store: EventStore) -> ProjectionGroup:
    return ProjectionGroup(READ_MODELS_GROUP, projector_runners(own_store, 0.0))


#: What the query side shows of an `Estate` once every read model applied it.
SHOWN = {
    "network": {"name": "prod", "subnet_count": 1},
    "subnet": {"name": "web", "used": 1},
    "instance": {"name": "vm", "ip": "10.0.1.4", "state": "pending"},
    "boot": {"attempts": 0},  # the provisioner's to-do list
}


class Estate:
    """One tenant's network with a subnet and an instance, appended as the domain would."""

    def __init__(self) -> None:
        self.tenant = f"t-{uuid.uuid4().hex[:12]}"
        self.network, self.subnet, self.instance = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    async def append(self, store: EventStore, stream: str, *events: DomainEvent) -> None:
        metadata = {"tenant_id": self.tenant}
        new = [to_new_event(event, metadata) for event in events]
        await store.append(stream, new, ExpectedVersion.ANY)

    async def build(self, store: EventStore) -> None:
        await self.append(
            store,
            f"network-{self.network}",
            NetworkCreated(network_id=self.network, name="prod", cidr="10.0.0.0/16"),
            SubnetAttached(network_id=self.network, subnet_id=self.subnet, cidr="10.0.1.0/24"),
        )
        await self.append(
            store,
            f"subnet-{self.subnet}",
            SubnetCreated(
                subnet_id=self.subnet, network_id=self.network, name="web", cidr="10.0.1.0/24"
            ),
            IpAllocated(subnet_id=self.subnet, instance_id=self.instance, ip="10.0.1.4"),
        )
        await self.append(
            store,
            f"instance-{self.instance}",
            InstanceLaunched(
                instance_id=self.instance,
                name="vm",
                subnet_id=self.subnet,
                network_id=self.network,
                size="small",
                ip="10.0.1.4",
            ),
        )

    async def rows(self, store: EventStore) -> dict[str, dict[str, object] | None]:
        """What the query side would show of this estate."""
        queries = {
            "network": ("SELECT name, subnet_count FROM rm_networks WHERE id = $1", self.network),
            "subnet": ("SELECT name, used FROM rm_subnets WHERE id = $1", self.subnet),
            "instance": ("SELECT name, ip, state FROM rm_instances WHERE id = $1", self.instance),
            "boot": (
                "SELECT attempts FROM provisioner_boots_v1 WHERE instance_id = $1",
                self.instance,
            ),
        }
        rows = {name: await store.pool.fetchrow(*query) for name, query in queries.items()}
        return {name: dict(row) if row else None for name, row in rows.items()}


@pytest.fixture
async def estate(own_store: EventStore) -> Estate:
    built = Estate()
    await built.build(own_store)
    return built


async def checkpoints_of(store: EventStore) -> dict[str, tuple[Checkpoint, bool, str]]:
    """Each read model's checkpoint, whether it is halted, and the transaction that wrote it."""
    rows = await store.pool.fetch(
        "SELECT projection, transaction_id, position, halted_at IS NOT NULL AS halted, "
        "xmin::text AS written_by FROM projection_checkpoints WHERE projection = ANY($1)",
        KEYS,
    )
    return {
        row["projection"]: (
            Checkpoint(row["transaction_id"], row["position"]),
            row["halted"],
            row["written_by"],
        )
        for row in rows
    }


async def test_one_batch_reaches_every_read_model_in_one_transaction(
    own_store: EventStore, group: ProjectionGroup, estate: Estate
) -> None:
    batch = await own_store.read_all(after=ORIGIN)
    applied = {key: APPLIED.labels(key)._value.get() for key in KEYS}

    await group.deliver(batch, previous=ORIGIN)

    assert await estate.rows(own_store) == SHOWN
    saved = await checkpoints_of(own_store)
    assert {key: checkpoint for key, (checkpoint, _, _) in saved.items()} == dict.fromkeys(
        KEYS, batch[-1].checkpoint
    )
    assert len({written_by for _, _, written_by in saved.values()}) == 1  # one commit
    # Every read model counts the events of the batch it applied (each sees all of them).
    assert {key: APPLIED.labels(key)._value.get() - applied[key] for key in KEYS} == dict.fromkeys(
        KEYS, len(batch)
    )


async def test_a_poison_event_halts_only_its_read_model(
    own_store: EventStore, group: ProjectionGroup, estate: Estate
) -> None:
    # A second stream claims the same network id: the networks model cannot insert it twice;
    # the subnets and instances models ignore `NetworkCreated`.
    await estate.append(
        own_store,
        f"network-{uuid.uuid4()}",
        NetworkCreated(network_id=estate.network, name="twin", cidr="10.1.0.0/16"),
    )
    await estate.append(
        own_store, f"network-{estate.network}", NetworkRenamed(network_id=estate.network, name="x")
    )
    batch = await own_store.read_all(after=ORIGIN)
    [poison] = [e for e in batch if e.type == "NetworkCreated" and e.data["name"] == "twin"]

    await group.deliver(batch, previous=ORIGIN)
    halted = {key: HALTED.labels(key)._value.get() for key in KEYS}

    assert halted == {"instances_v1": 0, "networks_v1": 1, "subnets_v1": 0, "provisioner_v1": 0}
    saved = await checkpoints_of(own_store)
    before_poison = max(e.checkpoint for e in batch if e.checkpoint < poison.checkpoint)
    assert saved["networks_v1"][:2] == (before_poison, True)
    assert saved["subnets_v1"][:2] == (batch[-1].checkpoint, False)
    assert saved["instances_v1"][:2] == (batch[-1].checkpoint, False)
    assert saved["provisioner_v1"][:2] == (batch[-1].checkpoint, False)
    [letter] = await dead_letters.open_dead_letters(own_store)
    assert (letter.projection, letter.event_id) == ("networks_v1", str(poison.event_id))
    assert "UniqueViolation" in letter.error
    # The rename after the poison event waits with it; the other models have everything.
    assert await estate.rows(own_store) == SHOWN

    later = Estate()
    await later.build(own_store)
    await group.deliver(await own_store.read_all(after=batch[-1].checkpoint), batch[-1].checkpoint)
    assert HALTED.labels("networks_v1")._value.get() == 1  # still stopped at the poison event
    assert await later.rows(own_store) == {**SHOWN, "network": None}

    await dead_letters.skip(own_store, letter.id, actor="test")
    await group.deliver(await own_store.read_all(after=ORIGIN), previous=None)
    network = await own_store.pool.fetchval(
        "SELECT name FROM rm_networks WHERE id = $1", estate.network
    )
    assert network == "x"
    assert await later.rows(own_store) == SHOWN
    assert HALTED.labels("networks_v1")._value.get() == 0


async def test_a_read_model_behind_the_batch_catches_up_from_the_store(
    own_store: EventStore, group: ProjectionGroup
) -> None:
    first, second = Estate(), Estate()
    await first.build(own_store)
    missed = await own_store.read_all(after=ORIGIN)
    await second.build(own_store)
    batch = await own_store.read_all(after=missed[-1].checkpoint)
    # The networks and instances models got the first batch; the subnets model never did.
    for runner in group.runners:
        if runner.name != "subnets":
            assert await runner.apply(missed, previous=ORIGIN) is Outcome.APPLIED

    await group.deliver(batch, previous=missed[-1].checkpoint)

    saved = await checkpoints_of(own_store)
    assert {key: checkpoint for key, (checkpoint, _, _) in saved.items()} == dict.fromkeys(
        KEYS, batch[-1].checkpoint
    )
    assert [await own_store.read_all(after=batch[-1].checkpoint)] == [[]]  # the head
    assert [await first.rows(own_store), await second.rows(own_store)] == [SHOWN, SHOWN]


async def test_a_redelivered_batch_is_skipped(
    own_store: EventStore, group: ProjectionGroup, estate: Estate
) -> None:
    batch = await own_store.read_all(after=ORIGIN)
    await group.deliver(batch, previous=ORIGIN)
    saved = await checkpoints_of(own_store)
    skipped = {key: DUPLICATES.labels(key)._value.get() for key in KEYS}

    await group.deliver(batch, previous=ORIGIN)

    assert await checkpoints_of(own_store) == saved  # not even rewritten
    assert {key: DUPLICATES.labels(key)._value.get() - skipped[key] for key in KEYS} == (
        dict.fromkeys(KEYS, len(batch))
    )
    copies = await own_store.pool.fetchval(
        "SELECT count(*) FROM rm_instances WHERE id = $1", estate.instance
    )
    assert copies == 1
    assert await estate.rows(own_store) == SHOWN


async def batches_of(store: EventStore, estates: list[Estate], after: Checkpoint) -> list[Batch]:
    """Builds each estate and reads its events as one batch, as the relay would publish them."""
    batches = []
    for each in estates:
        await each.build(store)
        batch = await store.read_all(after=after)
        batches.append((batch, after))
        after = batch[-1].checkpoint
    return batches


Batch = tuple[list[RecordedEvent], Checkpoint]


def count_transactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many events each transaction of a group applied together, in order."""
    sizes: list[int] = []
    apply_together = ProjectionGroup._apply_together

    async def counted(self: ProjectionGroup, events: list[RecordedEvent], *rest: Any) -> Any:
        sizes.append(len(events))
        return await apply_together(self, events, *rest)

    monkeypatch.setattr(ProjectionGroup, "_apply_together", counted)
    return sizes


async def test_batches_delivered_at_once_are_applied_in_order_the_waiting_ones_together(
    own_store: EventStore, group: ProjectionGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aio-pika starts a task per delivery: the group still applies them in order, so no batch
    finds its predecessor unapplied (no fallback, no catch-up from the store), and the batches
    that waited for the first one go in one transaction."""
    estates = [Estate() for _ in range(4)]
    batches = await batches_of(own_store, estates, ORIGIN)
    after = batches[-1][0][-1].checkpoint
    fallbacks: list[str] = []

    async def deliver_alone(runner: object, *_: object) -> None:
        fallbacks.append(str(runner))

    monkeypatch.setattr(ProjectionRunner, "deliver", deliver_alone)
    transactions = count_transactions(monkeypatch)

    await asyncio.gather(*(group.deliver(batch, previous) for batch, previous in batches))

    assert fallbacks == []
    sizes = [len(batch) for batch, _ in batches]
    assert transactions == [sizes[0], sum(sizes[1:])]
    saved = await checkpoints_of(own_store)
    assert {key: checkpoint for key, (checkpoint, _, _) in saved.items()} == dict.fromkeys(
        KEYS, after
    )
    assert [await each.rows(own_store) for each in estates] == [SHOWN] * len(estates)


async def test_waiting_batches_with_a_gap_between_them_are_not_applied_together(
    own_store: EventStore, group: ProjectionGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The third batch never arrives: the fourth, waiting behind the second, does not follow it
    and is applied on its own, so it finds the gap and catches up from the store."""
    estates = [Estate() for _ in range(4)]
    batches = await batches_of(own_store, estates, ORIGIN)
    transactions = count_transactions(monkeypatch)
    delivered = [batches[0], batches[1], batches[3]]

    await asyncio.gather(*(group.deliver(batch, previous) for batch, previous in delivered))

    assert transactions[:3] == [len(batch) for batch, _ in delivered]
    assert [await each.rows(own_store) for each in estates] == [SHOWN] * len(estates)
    saved = await checkpoints_of(own_store)
    assert {key: checkpoint for key, (checkpoint, _, _) in saved.items()} == dict.fromkeys(
        KEYS, batches[-1][0][-1].checkpoint
    )


async def test_the_queues_read_models_and_the_provisioner_had_of_their_own_are_deleted(
    settings: Settings,
) -> None:
    exchange = f"{settings.exchange}-legacy"
    legacy = [queue_name(exchange, name) for name in RETIRED_GROUPS]
    assert queue_name(exchange, "provisioner") in legacy
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(legacy[0], durable=True)  # the others never existed
        broker = RabbitBroker(settings.amqp_url, log_level=30)
        try:
            await delete_queues(broker, legacy)
        finally:
            await broker.stop()
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await channel.declare_queue(legacy[0], passive=True)
