"""Two command services on one event store, each with its own aggregate cache: what one writes,
the other must take into account, although it decides on cached state first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from ipaddress import IPv4Address

import httpx
import pytest

from command_api.app import create_app as create_command_app
from command_api.metrics import AGGREGATE_LOADS, CONFLICTS
from infra.settings import Settings
from tests.integration.conftest import asgi_client, network_and_subnet


@pytest.fixture
async def other_command_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A second command service process (its own app, pool and cache) on the same store."""
    async with asgi_client(create_command_app(settings), "http://command-2") as client:
        yield client


def launch(subnet_id: str) -> dict[str, str]:
    return {"name": "vm", "subnet_id": subnet_id, "size": "small"}


async def test_launches_alternating_between_services_get_the_lowest_free_addresses(
    command_client: httpx.AsyncClient,
    other_command_client: httpx.AsyncClient,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    _, subnet_id = await network_and_subnet(command_client, auth)
    launched = []
    for n in range(8):  # each service's cached subnet is behind every other launch
        client = (command_client, other_command_client)[n % 2]
        response = await client.post("/v1/instances", json=launch(subnet_id), headers=auth)
        assert response.status_code == 201, response.text
        launched.append(response.json())
    assert [each["ip"] for each in launched] == [f"10.0.0.{n}" for n in range(4, 12)]
    # An address released through one service is the next one the other hands out, although
    # its cached subnet still has it taken.
    released = await other_command_client.delete(f"/v1/instances/{launched[2]['id']}", headers=auth)
    assert released.status_code == 200, released.text
    again = await command_client.post("/v1/instances", json=launch(subnet_id), headers=auth)
    assert again.json()["ip"] == "10.0.0.6"


async def test_a_refusal_is_decided_on_the_current_state_not_the_cached_one(
    command_client: httpx.AsyncClient,
    other_command_client: httpx.AsyncClient,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    """The first service caches a pending instance; the second boots and stops it. Starting it
    through the first must succeed: 'a pending instance cannot be started' is only what the
    first service last saw."""
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    _, subnet_id = await network_and_subnet(command_client, auth)
    launched = await command_client.post("/v1/instances", json=launch(subnet_id), headers=auth)
    instance = launched.json()["id"]
    refused = await command_client.post(f"/v1/instances/{instance}/start", headers=auth)
    assert refused.status_code == 409, refused.text  # pending: truly refused, and now cached
    running = await other_command_client.post(
        f"/internal/instances/{instance}/running", headers=auth
    )
    assert running.status_code == 200, running.text
    stopped = await other_command_client.post(f"/v1/instances/{instance}/stop", headers=auth)
    assert stopped.json()["state"] == "stopped"
    started = await command_client.post(f"/v1/instances/{instance}/start", headers=auth)
    assert started.status_code == 200, started.text
    assert started.json()["state"] == "running"
    assert started.json()["stream_version"] == 4
    # The first service now has it running at version 4. Stopped elsewhere, then stopped here:
    # the cached decision conflicts, and the current state says there is nothing to do.
    await other_command_client.post(f"/v1/instances/{instance}/stop", headers=auth)
    again = await command_client.post(f"/v1/instances/{instance}/stop", headers=auth)
    assert (again.json()["state"], again.json()["stream_version"]) == ("stopped", 5)
    # Now it has it stopped at 5. Started elsewhere, then stopped here: "nothing to do" on the
    # cached state is not the answer; the stop is.
    await other_command_client.post(f"/v1/instances/{instance}/start", headers=auth)
    last = await command_client.post(f"/v1/instances/{instance}/stop", headers=auth)
    assert last.status_code == 200, last.text
    assert (last.json()["state"], last.json()["stream_version"]) == ("stopped", 7)


async def test_a_cached_aggregate_keeps_the_tenant_boundary(
    command_client: httpx.AsyncClient, tenant: str, token_for: Callable[..., str]
) -> None:
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    _, subnet_id = await network_and_subnet(command_client, auth)
    assert (
        await command_client.post("/v1/instances", json=launch(subnet_id), headers=auth)
    ).status_code == 201  # the subnet is now cached for its tenant
    other = {"Authorization": f"Bearer {token_for(tenant + '-other')}"}
    stolen = await command_client.post("/v1/instances", json=launch(subnet_id), headers=other)
    assert stolen.status_code == 404, stolen.text


def loads() -> dict[str, float]:
    return {how: AGGREGATE_LOADS.labels(how)._value.get() for how in HOW}


HOW = ("cached", "stale", "tail", "read")


async def test_a_stream_written_elsewhere_is_read_until_it_is_quiet_again(
    command_client: httpx.AsyncClient,
    other_command_client: httpx.AsyncClient,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    """After its cached subnet proved stale once, a service reads the subnet's new events
    before deciding (no failed append), and trusts its cache again once a read finds none."""
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    _, subnet_id = await network_and_subnet(command_client, auth)

    async def launch_through(client: httpx.AsyncClient) -> dict[str, float]:
        before = loads()
        response = await client.post("/v1/instances", json=launch(subnet_id), headers=auth)
        assert response.status_code == 201, response.text
        return {how: loads()[how] - before[how] for how in HOW}

    await launch_through(command_client)  # the first service caches the subnet
    await launch_through(other_command_client)  # ... which the second one writes meanwhile
    stale = await launch_through(command_client)
    assert stale == {"cached": 1, "stale": 1, "tail": 1, "read": 0}
    assert await launch_through(command_client) == {"cached": 0, "stale": 0, "tail": 1, "read": 0}
    assert await launch_through(command_client) == {"cached": 1, "stale": 0, "tail": 0, "read": 0}


async def test_racing_launches_in_one_service_take_turns_instead_of_conflicting(
    command_client: httpx.AsyncClient, tenant: str, token_for: Callable[..., str]
) -> None:
    """Launches on one subnet in one process wait for each other's commit, then decide on the
    cached subnet: no append of theirs fails, and nothing is read again."""
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    _, subnet_id = await network_and_subnet(command_client, auth)
    await command_client.post("/v1/instances", json=launch(subnet_id), headers=auth)  # cached
    before, conflicts = loads(), CONFLICTS._value.get()
    launched = await asyncio.gather(
        *(
            command_client.post("/v1/instances", json=launch(subnet_id), headers=auth)
            for _ in range(16)
        )
    )
    assert [response.status_code for response in launched] == [201] * 16
    assert sorted(IPv4Address(response.json()["ip"]) for response in launched) == [
        IPv4Address(f"10.0.0.{n}") for n in range(5, 21)
    ]
    after = loads()
    assert (after["stale"], after["tail"], after["read"]) == (
        before["stale"],
        before["tail"],
        before["read"],
    )
    assert CONFLICTS._value.get() == conflicts
