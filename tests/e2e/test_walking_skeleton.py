"""One write travels the whole mesh started by `cloudnet up`: nginx → command service → store →
relay → RabbitMQ → projector → read model → query service, and a killed projector loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

pytestmark = pytest.mark.e2e


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def event_count(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM events"))
    finally:
        await connection.close()


def program_pids(mesh: Any, prefix: str) -> dict[str, int]:
    result = subprocess.run(
        [mesh.cloudnet, "status", "--json"],
        env=mesh.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    programs = json.loads(result.stdout)
    return {p["name"]: p["pid"] for p in programs if p["name"].startswith(prefix) and p["pid"]}


async def test_a_network_written_through_the_gateway_is_read_back(mesh: Any) -> None:
    token = mesh.token(f"e2e-{uuid.uuid4().hex[:8]}", "cloud:read cloud:write")
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=10) as client:
        created = await client.post(
            "/v1/networks", json={"name": "prod", "cidr": "10.0.0.0/16"}, headers=auth(token)
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert created.headers["X-Event-Position"] == str(body["position"])
        read = await client.get(
            f"/v1/networks/{body['id']}",
            headers={**auth(token), "X-Min-Position": str(body["position"])},
        )
        assert read.status_code == 200, read.text
        assert read.json()["name"] == "prod"
        assert read.json()["cidr"] == "10.0.0.0/16"
        assert "X-Projection-Position" in read.headers


@pytest.mark.parametrize(
    ("content", "content_type", "use_token", "status"),
    [
        (b'{"name": ', "application/json", True, 400),
        (b'{"name": "x", "cidr": "8.8.8.0/24"}', "application/json", True, 422),
        (b'{"name": "x", "cidr": "10.0.0.0/8"}', "application/json", True, 422),
        (b'{"name": "x", "cidr": "10.0.0.0/16", "color": "red"}', "application/json", True, 422),
        (b"name=x&cidr=10.0.0.0%2F16", "application/x-www-form-urlencoded", True, 415),
        (b'{"name": "x", "cidr": "10.0.0.0/16"}', "application/json", False, 401),
    ],
    ids=["malformed", "public-cidr", "slash-8", "extra-field", "form-body", "no-token"],
)
async def test_bad_input_through_the_gateway_is_a_problem_and_writes_nothing(
    mesh: Any, content: bytes, content_type: str, use_token: bool, status: int
) -> None:
    token = mesh.token("e2e-bad-input", "cloud:read cloud:write")
    headers = {"Content-Type": content_type, **(auth(token) if use_token else {})}
    before = await event_count(mesh.database_url)
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=10) as client:
        response = await client.post("/v1/networks", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == status
    assert await event_count(mesh.database_url) == before


async def test_sigkilled_projectors_restart_and_lose_nothing(mesh: Any) -> None:
    tenant = f"e2e-kill-{uuid.uuid4().hex[:8]}"
    token = mesh.token(tenant, "cloud:read cloud:write")
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=10) as client:

        async def write(n: int) -> int:
            response = await client.post(
                "/v1/networks",
                json={"name": f"net-{n}", "cidr": f"10.{n}.0.0/16"},
                headers=auth(token),
            )
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
            return int(response.json()["position"])

        for n in range(10):
            await write(n)
        before = program_pids(mesh, "projector")
        assert before, "no projector is running"
        for pid in before.values():
            os.kill(pid, signal.SIGKILL)
        last = 0
        for n in range(10, 20):
            last = await write(n)
        deadline = time.monotonic() + 60
        while True:  # supervisord brings them back with new pids
            after = program_pids(mesh, "projector")
            if set(after) == set(before) and not set(after.values()) & set(before.values()):
                break
            assert time.monotonic() < deadline, f"projectors not restarted: {after}"
            await asyncio.sleep(0.2)
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
            response = await client.get(
                "/v1/networks",
                params=params,
                headers={**auth(token), "X-Min-Position": str(last)},
            )
            assert response.status_code == 200, response.text
            items += response.json()["items"]
            cursor = response.json()["next_cursor"]
            if cursor is None:
                break
    assert sorted(item["id"] for item in items) == sorted(ids)  # each exactly once
