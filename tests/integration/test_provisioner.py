"""The provisioner boots launched instances through the command service (real PostgreSQL and
RabbitMQ; the command service on a port of its own, called over real HTTP), and a dead command
service opens its circuit breaker instead of losing boots."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable

import aiohttp
import httpx
import pytest

from events import EventStore
from infra.breakers import BREAKER_STATE, Breakers
from infra.discovery import RoundRobin, StaticDiscovery
from infra.settings import Settings
from projectors.provisioner.boots import PendingBoots
from projectors.provisioner.command_client import (
    COMMAND_SERVICE,
    CommandServiceClient,
    PermanentFailure,
    http_session,
)
from projectors.provisioner.loop import BootLoop
from projectors.runtime import ProjectionRunner
from tests.integration.conftest import JWT_SECRET


async def wait_until(condition: Callable[[], object], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
def boots(store: EventStore) -> ProjectionRunner:
    """The provisioner's pending boots, fed from the store (as after a catch-up)."""
    return ProjectionRunner(store, PendingBoots(boot_delay_seconds=0.0))


def client_for(http: aiohttp.ClientSession, url: str, breakers: Breakers) -> CommandServiceClient:
    discovery = StaticDiscovery({COMMAND_SERVICE: [url]})
    return CommandServiceClient(
        http, RoundRobin(discovery, COMMAND_SERVICE), breakers, JWT_SECRET, attempts=2
    )


async def launch(command_client: httpx.AsyncClient, token: str) -> str:
    auth = {"Authorization": f"Bearer {token}"}
    network = (
        await command_client.post(
            "/v1/networks", json={"name": "n", "cidr": "10.0.0.0/16"}, headers=auth
        )
    ).json()
    subnet = (
        await command_client.post(
            f"/v1/networks/{network['id']}/subnets",
            json={"name": "s", "cidr": "10.0.0.0/24"},
            headers=auth,
        )
    ).json()
    launched = await command_client.post(
        "/v1/instances",
        json={"name": "vm", "subnet_id": subnet["id"], "size": "small"},
        headers=auth,
    )
    assert launched.status_code == 201, launched.text
    return str(launched.json()["id"])


async def instance_state(store: EventStore, instance_id: str) -> list[str]:
    return [e.type async for e in store.read_stream(f"instance-{instance_id}")]


async def test_a_launched_instance_is_marked_running(
    store: EventStore,
    settings: Settings,
    command_client: httpx.AsyncClient,
    command_service: str,
    boots: ProjectionRunner,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    instance_id = await launch(command_client, token_for(tenant))
    await boots.catch_up()
    async with http_session() as http:
        loop = BootLoop(
            store.pool,
            boots.projection,  # type: ignore[arg-type]
            client_for(http, command_service, Breakers()),
            idle_seconds=0.02,
        )
        task = asyncio.create_task(loop.run())
        try:
            await wait_until(lambda: _started(store, instance_id))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert await instance_state(store, instance_id) == ["InstanceLaunched", "InstanceStarted"]
        # The booted instance's row stays, leased, until the projection applies InstanceStarted.
        assert await pending_rows(store, instance_id) == 1
        await boots.catch_up()
        assert await pending_rows(store, instance_id) == 0
        # Booting again (a repeated delivery, a retry) changes nothing: the endpoint is
        # idempotent.
        await client_for(http, command_service, Breakers()).mark_running(
            tenant, uuid.UUID(instance_id)
        )
    assert await instance_state(store, instance_id) == ["InstanceLaunched", "InstanceStarted"]


async def _started(store: EventStore, instance_id: str) -> bool:
    return "InstanceStarted" in await instance_state(store, instance_id)


async def empty_boots(store: EventStore) -> PendingBoots:
    """The pending boots' table, created empty in `store` (no projection feeds it)."""
    boots = PendingBoots(boot_delay_seconds=0.0)
    async with store.pool.acquire() as connection:
        for statement in boots.create_tables() + boots.create_indexes():
            await connection.execute(statement)
    return boots


async def pending_rows(store: EventStore, instance_id: str) -> int:
    return int(
        await store.pool.fetchval(
            "SELECT count(*) FROM provisioner_boots_v1 WHERE instance_id = $1",
            uuid.UUID(instance_id),
        )
    )


async def test_a_dead_command_service_opens_the_breaker_and_keeps_the_boot(
    store: EventStore,
    command_client: httpx.AsyncClient,
    command_service: str,
    boots: ProjectionRunner,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    instance_id = await launch(command_client, token_for(tenant))

    async def boot_pending() -> bool:
        # The commit-order horizon may hold the launch back for a moment: catch up until the
        # boot is there, or the dead loop below would have nothing to fail on.
        await boots.catch_up()
        return bool(
            await store.pool.fetchval(
                "SELECT count(*) FROM provisioner_boots_v1 WHERE instance_id = $1",
                uuid.UUID(instance_id),
            )
        )

    await wait_until(boot_pending)
    # Only this test's boot is due: other tests' boots claimed with it would share the one
    # half-open probe below, and under load one of theirs could take it instead of this one.
    await store.pool.execute(
        "UPDATE provisioner_boots_v1 SET due_at = now() + interval '1 hour' "
        "WHERE instance_id <> $1",
        uuid.UUID(instance_id),
    )
    breakers = Breakers(threshold=2, ttl_seconds=0.5)
    async with http_session(timeout_seconds=1.0) as http:
        dead = BootLoop(
            store.pool,
            boots.projection,  # type: ignore[arg-type]
            client_for(http, "http://127.0.0.1:9", breakers),
        )
        started = time.monotonic()
        for _ in range(3):
            await dead.boot_due()
            await store.pool.execute(  # make the deferred boot due again at once
                "UPDATE provisioner_boots_v1 SET due_at = now() WHERE instance_id = $1",
                uuid.UUID(instance_id),
            )
        assert time.monotonic() - started < 5  # failing fast, not hanging
    assert BREAKER_STATE.labels(COMMAND_SERVICE)._value.get() == 2  # open
    pending = await store.pool.fetchval(
        "SELECT count(*) FROM provisioner_boots_v1 WHERE instance_id = $1", uuid.UUID(instance_id)
    )
    assert pending == 1  # nothing lost while the command service was down
    await asyncio.sleep(0.6)  # the breaker's TTL: the next call is a half-open probe
    async with http_session() as http:
        alive = BootLoop(
            store.pool,
            boots.projection,  # type: ignore[arg-type]
            client_for(http, command_service, breakers),
        )
        assert await alive.boot_due() >= 1
    assert await _started(store, instance_id)
    assert BREAKER_STATE.labels(COMMAND_SERVICE)._value.get() == 0  # closed again


class _OneSlowBoot:
    """Stands in for the command service client: one instance's boot hangs until released."""

    def __init__(self, slow: uuid.UUID) -> None:
        self.slow, self.release, self.booted = slow, asyncio.Event(), set[uuid.UUID]()

    async def mark_running(self, tenant_id: str, instance_id: uuid.UUID) -> None:
        if instance_id == self.slow:
            await self.release.wait()
        self.booted.add(instance_id)


async def test_a_slow_boot_does_not_hold_back_the_boots_due_after_it(own_store: EventStore) -> None:
    boots = await empty_boots(own_store)
    ids = [uuid.uuid4() for _ in range(6)]
    for n, instance_id in enumerate(ids):  # the slow one is due first
        await own_store.pool.execute(
            f"INSERT INTO {boots.table} (instance_id, tenant_id, due_at) "
            "VALUES ($1, 'acme', now() - make_interval(secs => $2))",
            instance_id,
            float(10 - n),
        )
    client = _OneSlowBoot(slow=ids[0])
    loop = BootLoop(own_store.pool, boots, client, idle_seconds=0.02, batch=2)  # type: ignore[arg-type]
    task = asyncio.create_task(loop.run())
    try:
        # With two places and one held by the slow boot, the other five go through the second.
        await wait_until(lambda: client.booted == set(ids[1:]), seconds=5)
        client.release.set()
        await wait_until(lambda: client.booted == set(ids), seconds=5)
        # Each booted row stays, leased, for the projection to remove on InstanceStarted.
        leased = await own_store.pool.fetchval(
            f"SELECT count(*) FROM {boots.table} "
            "WHERE attempts = 1 AND due_at > now() + interval '20 seconds'"
        )
        assert leased == len(ids)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _RefusesOne:
    """Stands in for the command service client: refuses one instance, boots the others."""

    def __init__(self, refused: uuid.UUID) -> None:
        self.refused = refused

    async def mark_running(self, tenant_id: str, instance_id: uuid.UUID) -> None:
        if instance_id == self.refused:
            raise PermanentFailure("409: cannot mark running an instance that is terminated")


async def test_a_refused_boot_is_removed_and_a_booted_one_stays_leased(
    own_store: EventStore,
) -> None:
    boots = await empty_boots(own_store)
    refused, booted = uuid.uuid4(), uuid.uuid4()
    await own_store.pool.execute(
        f"INSERT INTO {boots.table} (instance_id, tenant_id, due_at) "
        "SELECT unnest($1::uuid[]), 'acme', now()",
        [refused, booted],
    )
    loop = BootLoop(own_store.pool, boots, _RefusesOne(refused))  # type: ignore[arg-type]
    assert await loop.boot_due() == 2
    rows = await own_store.pool.fetch(f"SELECT instance_id, attempts FROM {boots.table}")
    # No event will remove the refused one's row; the booted one's InstanceStarted will.
    assert {row["instance_id"]: row["attempts"] for row in rows} == {booted: 1}


class _HeldBoots:
    """Stands in for the command service client: each boot hangs until it is released."""

    def __init__(self) -> None:
        self.started: list[uuid.UUID] = []
        self.releases: dict[uuid.UUID, asyncio.Event] = {}

    async def mark_running(self, tenant_id: str, instance_id: uuid.UUID) -> None:
        self.started.append(instance_id)
        await self.releases.setdefault(instance_id, asyncio.Event()).wait()


async def test_places_are_filled_a_quarter_of_the_batch_at_a_time(own_store: EventStore) -> None:
    # The client sends a tenant's boots started together in one call: places filled one at a
    # time as boots end would make calls of one boot each.
    boots = await empty_boots(own_store)
    await own_store.pool.execute(
        f"INSERT INTO {boots.table} (instance_id, tenant_id, due_at) "
        "SELECT gen_random_uuid(), 'acme', now() FROM generate_series(1, 20)"
    )
    client = _HeldBoots()
    loop = BootLoop(own_store.pool, boots, client, idle_seconds=0.02, batch=8)  # type: ignore[arg-type]
    task = asyncio.create_task(loop.run())
    try:
        await wait_until(lambda: len(client.started) == 8)
        client.releases[client.started[0]].set()
        await asyncio.sleep(0.3)  # many idle passes: one free place is not worth a claim
        assert len(client.started) == 8
        client.releases[client.started[1]].set()
        await wait_until(lambda: len(client.started) == 10)  # two are: a quarter of 8
        await asyncio.sleep(0.1)
        assert len(client.started) == 10
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_pass_claims_no_more_boots_than_its_batch(own_store: EventStore) -> None:
    # The claim is planned while the table is empty (a provisioner started, idle). As
    # `IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`, PostgreSQL then ran the subquery again
    # for every row, skipping the rows the statement had just updated, and so claimed every due
    # boot at once: 673 for a batch of 20 in one benchmark run, in 389 ms.
    boots = await empty_boots(own_store)
    client = _Booted()
    loop = BootLoop(own_store.pool, boots, client, batch=20)  # type: ignore[arg-type]
    await own_store.pool.execute(f"VACUUM ANALYZE {boots.table}")  # as autovacuum: empty
    for _ in range(6):  # idle passes: after five, PostgreSQL keeps a plan for an empty table
        assert await loop.boot_due() == 0
    oldest = await own_store.pool.fetch(
        f"INSERT INTO {boots.table} (instance_id, tenant_id, due_at) "
        "SELECT gen_random_uuid(), 'acme', now() - make_interval(secs => 201 - n) "
        "FROM generate_series(1, 200) AS n "  # in the order they fell due, as launched
        "RETURNING instance_id"
    )
    assert await loop.boot_due() == 20
    assert set(client.booted) == {row["instance_id"] for row in oldest[:20]}
    # The other 180 are still due and were not leased.
    untouched = await own_store.pool.fetchval(
        f"SELECT count(*) FROM {boots.table} WHERE attempts = 0 AND due_at <= now()"
    )
    assert untouched == 180


class _Booted:
    """Stands in for the command service client: every boot succeeds at once."""

    def __init__(self) -> None:
        self.booted: list[uuid.UUID] = []

    async def mark_running(self, tenant_id: str, instance_id: uuid.UUID) -> None:
        self.booted.append(instance_id)


async def test_boots_coming_due_one_by_one_are_gathered_into_few_claims(
    own_store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Thirty boots fall due 10 ms apart, and each ends at once. Looking again whenever a boot
    # ended claimed them one or two at a time; the loop waits `gather_seconds` after a claim
    # that found some, so a claim (and a call per tenant) takes what fell due meanwhile.
    boots = await empty_boots(own_store)
    await own_store.pool.execute(
        f"INSERT INTO {boots.table} (instance_id, tenant_id, due_at) "
        "SELECT gen_random_uuid(), 'acme', now() + make_interval(secs => n * 0.01) "
        "FROM generate_series(1, 30) AS n"
    )
    client = _Booted()
    loop = BootLoop(  # type: ignore[arg-type]
        own_store.pool, boots, client, idle_seconds=0.02, gather_seconds=0.1
    )
    claims: list[int] = []
    claim = loop._claim

    async def counted(limit: int) -> list[object]:
        rows = await claim(limit)
        if rows:
            claims.append(len(rows))
        return rows  # type: ignore[return-value]

    monkeypatch.setattr(loop, "_claim", counted)
    task = asyncio.create_task(loop.run())
    try:
        await wait_until(lambda: len(client.booted) == 30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sum(claims) == 30
    assert len(claims) <= 6, claims  # the 0.3 s they fall due over, in looks 0.1 s apart
