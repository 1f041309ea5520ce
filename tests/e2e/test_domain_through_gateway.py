"""The cloud domain through nginx on the whole mesh: IPAM under concurrency, subnet overlap
races, the provisioner booting an instance, and `cloudnet check` agreeing with the store."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e


class Tenant:
    def __init__(self, mesh: Any) -> None:
        token = mesh.token(f"e2e-{uuid.uuid4().hex[:10]}", "cloud:read cloud:write")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.position = 0

    def fresh(self) -> dict[str, str]:
        return {**self.headers, "X-Min-Position": str(self.position)}

    async def post(self, client: httpx.AsyncClient, path: str, body: Any = None) -> httpx.Response:
        response = await client.post(path, json=body, headers=self.headers)
        if response.status_code < 300:
            self.position = max(self.position, int(response.headers["X-Event-Position"]))
        return response


async def subnet_in_new_network(client: httpx.AsyncClient, tenant: Tenant, cidr: str) -> str:
    network = await tenant.post(client, "/v1/networks", {"name": "n", "cidr": "10.0.0.0/16"})
    assert network.status_code == 201, network.text
    subnet = await tenant.post(
        client, f"/v1/networks/{network.json()['id']}/subnets", {"name": "s", "cidr": cidr}
    )
    assert subnet.status_code == 201, subnet.text
    return str(subnet.json()["id"])


async def test_thirty_simultaneous_launches_into_a_slash_28(mesh: Any) -> None:
    tenant = Tenant(mesh)
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as client:
        subnet_id = await subnet_in_new_network(client, tenant, "10.0.7.0/28")
        body = {"name": "vm", "subnet_id": subnet_id, "size": "small"}
        responses = await asyncio.gather(
            *(tenant.post(client, "/v1/instances", body) for _ in range(30))
        )
        won = [r.json()["ip"] for r in responses if r.status_code == 201]
        refused = [r for r in responses if r.status_code != 201]
        assert len(won) == 11
        assert sorted(won) == sorted(f"10.0.7.{n}" for n in range(4, 15))
        assert len(refused) == 19
        assert {r.status_code for r in refused} == {409}
        assert {r.json()["type"].rsplit("/", 1)[1] for r in refused} == {"subnet-exhausted"}
        subnet = await client.get(f"/v1/subnets/{subnet_id}", headers=tenant.fresh())
        assert subnet.status_code == 200, subnet.text
        assert (subnet.json()["used"], subnet.json()["free"]) == (11, 0)


async def test_two_simultaneous_overlapping_subnets_one_wins(mesh: Any) -> None:
    tenant = Tenant(mesh)
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as client:
        network = await tenant.post(client, "/v1/networks", {"name": "n", "cidr": "10.1.0.0/16"})
        path = f"/v1/networks/{network.json()['id']}/subnets"
        responses = await asyncio.gather(
            tenant.post(client, path, {"name": "a", "cidr": "10.1.0.0/24"}),
            tenant.post(client, path, {"name": "b", "cidr": "10.1.0.128/25"}),
        )
        assert sorted(r.status_code for r in responses) == [201, 409]


async def test_the_provisioner_boots_a_launched_instance(mesh: Any) -> None:
    tenant = Tenant(mesh)
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as client:
        subnet_id = await subnet_in_new_network(client, tenant, "10.0.8.0/24")
        launched = await tenant.post(
            client, "/v1/instances", {"name": "vm", "subnet_id": subnet_id, "size": "medium"}
        )
        assert launched.status_code == 201, launched.text
        assert launched.json()["state"] == "pending"
        deadline = time.monotonic() + 30
        while True:
            current = await client.get(
                f"/v1/instances/{launched.json()['id']}", headers=tenant.fresh()
            )
            assert current.status_code == 200, current.text
            if current.json()["state"] == "running":
                break
            assert time.monotonic() < deadline, "the provisioner did not boot the instance"
            await asyncio.sleep(0.2)
        internal = await client.post(
            f"/internal/instances/{launched.json()['id']}/running", headers=tenant.headers
        )
        assert internal.status_code in {403, 404}  # never reachable through the gateway


def test_cloudnet_check_finds_every_read_model_equal_to_the_store(mesh: Any) -> None:
    result = mesh.run("check", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("equals a fresh fold of the store") == 3
