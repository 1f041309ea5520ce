"""The gateway in front of a real mesh: reads survive a query instance that is stopped or killed
(nginx retries them on the other instance, and sends it requests again once it is back), and a
client over its rate gets 429 problems, then service again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Mesh, running_mesh

pytestmark = pytest.mark.e2e

#: Requests/s one client address may make (burst: twice as many): cheap to exceed on purpose,
#: yet above what the readers below make.
RATE_LIMIT = 40
READERS = 3
#: Each reader's pause between reads: about 25 reads/s in all.
READ_PAUSE_SECONDS = 0.1
VICTIM = "query-1"


@pytest.fixture(scope="module")
def gateway_mesh() -> Iterator[Mesh]:
    with running_mesh(settings={"CLOUDNET_GATEWAY_RATE_LIMIT": str(RATE_LIMIT)}) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def network(gateway_mesh: Mesh) -> tuple[str, dict[str, str]]:
    """The path of a network the read model has, and headers that may read it."""
    token = gateway_mesh.token(f"gateway-{uuid.uuid4().hex[:8]}", "cloud:read cloud:write")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=gateway_mesh.gateway_url, timeout=10) as client:
        created = client.post(
            "/v1/networks", json={"name": "read-me", "cidr": "10.0.0.0/16"}, headers=headers
        )
        assert created.status_code == 201, created.text
        path = f"/v1/networks/{created.json()['id']}"
        position = str(created.json()["position"])
        read = client.get(path, headers={**headers, "X-Min-Position": position})
        assert read.status_code == 200, read.text
    return path, headers


async def admitted(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
    """Wait until the gateway lets this client through again (an earlier test may have spent
    its burst)."""
    deadline = time.monotonic() + 10
    while (response := await client.get(path, headers=headers)).status_code == 429:
        assert time.monotonic() < deadline, "the rate limit never let the client through again"
        await asyncio.sleep(0.2)
    assert response.status_code == 200, response.text


class ReadLoad:
    """Readers GETting one network through the gateway until stopped, each read tagged with the
    current `phase` (an ignored query parameter) so the access log tells the phases apart."""

    def __init__(self, mesh: Mesh, path: str, headers: dict[str, str]) -> None:
        self.mesh, self.path, self.headers = mesh, path, headers
        self.phase = f"before-{uuid.uuid4().hex[:8]}"
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> ReadLoad:
        self._client = httpx.AsyncClient(base_url=self.mesh.gateway_url, timeout=30)
        await admitted(self._client, self.path, self.headers)
        self._tasks = [asyncio.create_task(self._read()) for _ in range(READERS)]
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self._client.aclose()

    async def _read(self) -> None:
        while not self._stop.is_set():
            phase = self.phase
            try:
                response = await self._client.get(
                    self.path, params={"phase": phase}, headers=self.headers
                )
            except httpx.TransportError as error:
                self.failures.append(f"{phase}: transport error {error!r}")
                continue
            self.statuses[response.status_code] += 1
            if response.status_code != 200:
                self.failures.append(f"{phase}: {response.status_code} {response.text[:200]}")
            await asyncio.sleep(READ_PAUSE_SECONDS)


def access_log(mesh: Mesh, phase: str) -> list[dict[str, Any]]:
    """The gateway's access log entries of the reads made in `phase`."""
    lines = (mesh.state_dir / "logs" / "nginx-access.log").read_text().splitlines()
    return [entry for line in lines if f"phase={phase}" in (entry := json.loads(line))["uri"]]


async def logged(mesh: Mesh, phase: str, upstream: str, within: float = 30) -> dict[str, Any]:
    """The first read of `phase` whose upstream attempts (`a, b` when nginx went on to the next
    instance) are `upstream`; waits while nginx flushes its log (every second)."""
    deadline = time.monotonic() + within
    while True:
        found = [entry for entry in access_log(mesh, phase) if entry["upstream"] == upstream]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no read of {phase} went to {upstream}"
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("fault", ["stopped", "sigkilled"])
async def test_reads_survive_a_query_instance_going_away_and_reach_it_once_back(
    gateway_mesh: Mesh, network: tuple[str, dict[str, str]], fault: str
) -> None:
    programs = gateway_mesh.supervisor()
    victim, survivor = (f"127.0.0.1:{gateway_mesh.port_of(f'query-{n}')}" for n in (1, 2))
    async with ReadLoad(gateway_mesh, *network) as load:
        await asyncio.sleep(1.0)
        load.phase = down = f"down-{uuid.uuid4().hex[:8]}"
        if fault == "stopped":
            await asyncio.to_thread(programs.stop, VICTIM)  # returns once it has exited
        else:
            [pid] = [p.pid for p in programs.programs() if p.name == VICTIM]
            os.kill(pid, signal.SIGKILL)  # supervisord starts it again by itself
        await asyncio.sleep(2.0)
        if fault == "stopped":
            assert {p.name: p.state for p in programs.programs()}[VICTIM] == "STOPPED"
            programs.start(VICTIM)
        load.phase = back = f"back-{uuid.uuid4().hex[:8]}"
        # nginx rests a failed instance for 5 s (fail_timeout), then sends it reads again.
        await logged(gateway_mesh, back, victim)

    assert not load.failures, load.failures[:5]
    assert set(load.statuses) == {200}
    # The reads nginx sent to the dead instance were answered by the other one.
    retried = await logged(gateway_mesh, down, f"{victim}, {survivor}")
    assert retried["status"] == 200


async def test_a_client_over_its_rate_gets_429_problems_then_is_served_again(
    gateway_mesh: Mesh, network: tuple[str, dict[str, str]]
) -> None:
    path, headers = network
    requests = 5 * RATE_LIMIT  # sent at once: far over the burst of 2 * RATE_LIMIT
    limits = httpx.Limits(max_connections=requests)
    async with httpx.AsyncClient(
        base_url=gateway_mesh.gateway_url, limits=limits, timeout=30
    ) as client:
        await admitted(client, path, headers)
        answers = await asyncio.gather(
            *(client.get(path, headers=headers) for _ in range(requests))
        )
        limited = [answer for answer in answers if answer.status_code == 429]

        assert limited, Counter(answer.status_code for answer in answers)
        assert {answer.status_code for answer in answers} == {200, 429}
        for answer in limited:
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.headers["retry-after"] == "1"
            problem = answer.json()
            assert problem["status"] == 429
            assert problem["type"].endswith("/too-many-requests")
        await admitted(client, path, headers)
