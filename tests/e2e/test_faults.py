"""Faults against the real processes of a mesh of their own: nothing lost, nothing applied
twice, nobody answered 500. Every test ends with `cloudnet check` clean (the read models equal a
fresh fold of the store)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aio_pika
import httpx
import pytest

from tests.e2e.conftest import Mesh, running_mesh

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def broken() -> Iterator[Mesh]:
    with running_mesh() as mesh:
        yield mesh


class WriteLoad:
    """Clients creating networks through the gateway until stopped; every answer is kept."""

    def __init__(self, mesh: Mesh, clients: int = 4) -> None:
        self.mesh, self.clients = mesh, clients
        self.tenant = f"fault-{uuid.uuid4().hex[:10]}"
        self.headers = {
            "Authorization": f"Bearer {mesh.token(self.tenant, 'cloud:read cloud:write')}"
        }
        self.statuses: Counter[int] = Counter()
        self.created: list[str] = []
        self.position = 0
        self.slowest = 0.0
        self.problems: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> WriteLoad:
        self._client = httpx.AsyncClient(base_url=self.mesh.gateway_url, timeout=30)
        self._tasks = [asyncio.create_task(self._write()) for _ in range(self.clients)]
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self._client.aclose()

    async def _write(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                response = await self._client.post(
                    "/v1/networks",
                    json={"name": "load", "cidr": "10.0.0.0/16"},
                    headers=self.headers,
                )
            except httpx.TransportError as error:
                self.problems.append(f"transport error: {error!r}")
                continue
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.statuses[response.status_code] += 1
            if response.status_code == 201:
                self.created.append(response.json()["id"])
                self.position = max(self.position, response.json()["position"])
            elif response.status_code == 503:
                if "Retry-After" not in response.headers:
                    self.problems.append("503 without Retry-After")
                await asyncio.sleep(0.05)
            else:
                self.problems.append(f"{response.status_code}: {response.text[:200]}")
            await asyncio.sleep(0.005)

    async def during(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def converged(load: WriteLoad, within: float = 60.0) -> list[dict[str, Any]]:
    """The tenant's networks once the read model includes every write (each exactly once)."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=load.mesh.gateway_url, timeout=30) as client:
        while True:
            items: list[dict[str, Any]] = []
            cursor = None
            headers = {**load.headers, "X-Min-Position": str(load.position)}
            response = None
            while True:
                params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
                response = await client.get("/v1/networks", params=params, headers=headers)
                if response.status_code != 200:
                    break
                items += response.json()["items"]
                cursor = response.json()["next_cursor"]
                if cursor is None:
                    return items
            assert time.monotonic() < deadline, f"read model never caught up: {response.text}"
            await asyncio.sleep(0.5)


def report(fault: str, load: WriteLoad, **figures: object) -> None:
    """One line per fault for docs/RELIABILITY.md (shown with `pytest -s`)."""
    measured = ", ".join(f"{k}={v}" for k, v in figures.items())
    print(
        f"\nRELIABILITY | {fault} | statuses {dict(load.statuses)}, "
        f"slowest {load.slowest:.2f} s, {len(load.created)} created {measured}"
    )


async def assert_nothing_lost(mesh: Mesh, load: WriteLoad) -> None:
    assert not load.problems, load.problems[:5]
    assert load.created, "no command succeeded"
    items = await converged(load)
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids))  # each network exactly once
    assert set(ids) == set(load.created)
    check = mesh.run("check", timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr


async def test_sigkilled_projectors_under_write_load(broken: Mesh) -> None:
    async with WriteLoad(broken) as load:
        await load.during(1.0)
        for pid in broken.pids("projector").values():
            os.kill(pid, signal.SIGKILL)
        await load.during(2.0)
    assert set(load.statuses) == {201}
    await assert_nothing_lost(broken, load)
    report("SIGKILL both projectors under write load", load)


async def test_rabbitmq_restart_under_write_load(broken: Mesh) -> None:
    async with WriteLoad(broken) as load:
        await load.during(1.0)
        await asyncio.to_thread(broken.supervisor().stop, "rabbitmq")
        await load.during(2.0)
        broken.supervisor().start("rabbitmq")
        await load.during(3.0)
    assert set(load.statuses) == {201}  # the store is the truth: commands never needed the broker
    await assert_nothing_lost(broken, load)
    report("RabbitMQ stopped 2 s and restarted under write load", load)


async def test_postgresql_restart_under_write_load(broken: Mesh) -> None:
    async with WriteLoad(broken) as load:
        await load.during(1.0)
        await asyncio.to_thread(broken.supervisor().stop, "postgres")
        await load.during(3.0)
        down = Counter(load.statuses)
        broken.supervisor().start("postgres")
        deadline = time.monotonic() + 60
        recovered = load.statuses[201]
        while load.statuses[201] <= recovered + 20:
            assert time.monotonic() < deadline, f"never recovered: {load.statuses}"
            await load.during(0.5)
    assert down[503] > 0, down  # refused while the database was away...
    assert set(load.statuses) <= {201, 503}  # ...with 503 + Retry-After, never a 500
    assert load.slowest < 15, load.slowest  # bounded, nothing hangs
    await assert_nothing_lost(broken, load)
    report("PostgreSQL stopped 3 s and restarted under write load", load, while_down=dict(down))


async def relay_leader(mesh: Mesh) -> str:
    """The relay that leads, once one does. After an outage (the PostgreSQL restart before this
    test) each relay waits a second before it tries for leadership again, so for a moment both
    can be standbys; more than one leader is never right."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            roles = {}
            for name in mesh.pids("relay"):
                health = await client.get(f"http://127.0.0.1:{mesh.port_of(name)}/health")
                roles[name] = health.json()["role"]
            leaders = [name for name, role in roles.items() if role == "leader"]
            assert len(leaders) <= 1, roles
            if leaders:
                return leaders[0]
            assert time.monotonic() < deadline, f"no relay leads: {roles}"
            await asyncio.sleep(0.2)


async def test_sigkilled_relay_leader_hands_over_to_the_standby(broken: Mesh) -> None:
    leader = await relay_leader(broken)
    async with WriteLoad(broken, clients=2) as load:
        await load.during(0.5)
        os.kill(broken.pids(leader)[leader], signal.SIGKILL)
        killed_at = time.monotonic()
        await load.during(1.0)
    await assert_nothing_lost(broken, load)
    took_over = time.monotonic() - killed_at
    assert took_over < 30  # the standby took over within seconds
    report("SIGKILL the relay leader under write load", load, all_visible_after=f"{took_over:.1f}s")


async def test_republishing_everything_changes_no_read_model(broken: Mesh) -> None:
    async with WriteLoad(broken, clients=1) as load:
        await load.during(0.5)
    before = await converged(load)
    result = broken.run("events", "republish", "--from-position", "0", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    check = broken.run("check", timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    assert await converged(load) == before
    report("republish every event (duplicates)", load, read_model="unchanged")


async def test_dead_consumers_let_queues_grow_and_lose_nothing(broken: Mesh) -> None:
    for name in broken.pids("projector"):
        await asyncio.to_thread(broken.supervisor().stop, name)
    async with WriteLoad(broken, clients=2) as load:
        await load.during(2.0)
    connection = await aio_pika.connect(broken.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("cloudnet.events.projections", passive=True)
        waiting = queue.declaration_result.message_count
        assert waiting > 0  # waiting, not dropped
    await alert_raised(broken, "CloudnetTargetDown", job="projector")
    for name in broken.pids("projector"):
        broken.supervisor().start(name)
    await assert_nothing_lost(broken, load)
    report(
        "both projectors stopped under write load",
        load,
        queued_batches=waiting,
        alert="CloudnetTargetDown raised",
    )


async def alert_raised(mesh: Mesh, alert: str, **labels: str) -> None:
    """Prometheus holds the alert pending (its `for:` not yet over) or firing."""
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=mesh.prometheus_url, timeout=10) as client:
        while True:
            alerts = (await client.get("/api/v1/alerts")).json()["data"]["alerts"]
            if any(
                a["labels"].get("alertname") == alert
                and all(a["labels"].get(k) == v for k, v in labels.items())
                and a["state"] in {"pending", "firing"}
                for a in alerts
            ):
                return
            assert time.monotonic() < deadline, f"{alert} never raised: {alerts}"
            await asyncio.sleep(1)
