"""What the gateway benchmarks need in a mesh before they start, created through its public API:
tenants, each with networks holding one /16 subnet (room for 65,531 instances, so launches never
exhaust it), and instances to read back. Also the wait until the read models caught up."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.mesh import Mesh

CONCURRENCY = 16
#: How long the read models may take to catch up after a write scenario before the run fails.
CATCH_UP_SECONDS = 180


@dataclass
class Seeded:
    """Per tenant token: its subnets and instances."""

    subnets: dict[str, list[str]] = field(default_factory=dict)
    instances: dict[str, list[str]] = field(default_factory=dict)

    @property
    def tokens(self) -> list[str]:
        return list(self.subnets)

    def lines(self, kind: str) -> list[tuple[str, str]]:
        """(token, id) pairs, the tenants interleaved so consecutive requests change tenant."""
        by_token = self.subnets if kind == "subnets" else self.instances
        columns = [[(token, i) for i in ids] for token, ids in by_token.items()]
        return [pair for row in _interleave(columns) for pair in row]


def _interleave(columns: list[list[tuple[str, str]]]) -> Iterable[list[tuple[str, str]]]:
    for index in range(max((len(c) for c in columns), default=0)):
        yield [column[index] for column in columns if index < len(column)]


def write_lines(path: Path, lines: Iterable[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{token}\t{item}\n" for token, item in lines))
    return path


async def seed(
    mesh: Mesh, tenants: int, subnets_per_tenant: int, instances_per_tenant: int
) -> Seeded:
    """Create the tenants' subnets and instances, then wait until the read models show them
    running."""
    seeded = Seeded()
    run = uuid.uuid4().hex[:8]
    tokens = [mesh.token(f"bench-{run}-{n}") for n in range(tenants)]
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as client:

        async def post(token: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with gate:
                response = await client.post(path, json=body, headers=_auth(token))
            response.raise_for_status()
            answer: dict[str, Any] = response.json()
            return answer

        async def subnet(token: str, n: int) -> str:
            cidr = f"10.{n}.0.0/16"
            network = await post(token, "/v1/networks", {"name": f"bench-{n}", "cidr": cidr})
            created = await post(
                token, f"/v1/networks/{network['id']}/subnets", {"name": "all", "cidr": cidr}
            )
            return str(created["id"])

        for token in tokens:
            seeded.subnets[token] = list(
                await asyncio.gather(*(subnet(token, n) for n in range(subnets_per_tenant)))
            )
        for token, subnet_ids in seeded.subnets.items():
            launched = await asyncio.gather(
                *(
                    post(
                        token,
                        "/v1/instances",
                        {
                            "name": "bench",
                            "subnet_id": subnet_ids[n % len(subnet_ids)],
                            "size": "small",
                        },
                    )
                    for n in range(instances_per_tenant)
                )
            )
            seeded.instances[token] = [str(answer["id"]) for answer in launched]
    await catch_up(mesh, tokens)
    return seeded


async def wait_caught_up(client: httpx.AsyncClient, token: str, position: int) -> float:
    """Seconds until the instances read model includes `position` (X-Min-Position waits up to
    5 s per request; 504 means not yet)."""
    started = time.monotonic()
    while time.monotonic() - started < CATCH_UP_SECONDS:
        response = await client.get(
            "/v1/instances",
            params={"limit": "1"},
            headers={**_auth(token), "X-Min-Position": str(position)},
        )
        if response.status_code == 200:
            return time.monotonic() - started
        if response.status_code != 504:
            response.raise_for_status()
    raise TimeoutError(f"the read models did not reach position {position} in time")


async def catch_up(mesh: Mesh, tokens: list[str]) -> float:
    """Seconds until the backlog a write scenario left is drained: the read models include an
    event written now, and the provisioner has marked every tenant's instances running."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as client:
        response = await client.post(
            "/v1/networks", json={"name": "mark", "cidr": "10.0.0.0/16"}, headers=_auth(tokens[0])
        )
        response.raise_for_status()
        await wait_caught_up(client, tokens[0], int(response.json()["position"]))
        for token in tokens:
            while await _pending(client, token):
                if time.monotonic() - started > CATCH_UP_SECONDS:
                    raise TimeoutError("instances stayed pending (is the provisioner running?)")
                await asyncio.sleep(0.25)
    return time.monotonic() - started


async def _pending(client: httpx.AsyncClient, token: str) -> bool:
    response = await client.get(
        "/v1/instances", params={"state": "pending", "limit": "1"}, headers=_auth(token)
    )
    response.raise_for_status()
    return bool(response.json()["items"])


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
