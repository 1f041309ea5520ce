"""The query service's fast lane gives the answers FastAPI gives: every read asked twice, once
plain (the lane answers) and once with a parameter the lane does not read, which FastAPI ignores
but which sends the request on to FastAPI's router (tests/unit/test_fast_lane.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from infra.http.fast_lane import FastLane
from projectors.runtime import ProjectionRunner
from tests.integration.conftest import network_and_subnet


async def test_lane_and_fastapi_answer_every_read_alike(
    mesh: ProjectionRunner,
    command_client: httpx.AsyncClient,
    query_client: httpx.AsyncClient,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    app = query_client._transport.app  # type: ignore[attr-defined]
    assert any(middleware.cls is FastLane for middleware in app.user_middleware)
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    network_id, subnet_id = await network_and_subnet(command_client, auth)
    launched = [
        await command_client.post(
            "/v1/instances",
            json={"name": f"vm{n}", "subnet_id": subnet_id, "size": "small"},
            headers=auth,
        )
        for n in range(3)
    ]
    assert {answer.status_code for answer in launched} == {201}
    position = max(int(answer.headers["X-Event-Position"]) for answer in launched)
    instance_id = launched[0].json()["id"]
    fresh = {**auth, "X-Min-Position": str(position)}
    first_page = await query_client.get("/v1/instances", params={"limit": "2"}, headers=fresh)
    cursor = first_page.json()["next_cursor"]
    assert cursor is not None
    reads: list[tuple[str, dict[str, str], dict[str, str]]] = [
        (f"/v1/instances/{instance_id}", {}, fresh),
        (f"/v1/instances/{instance_id}", {}, auth),
        (f"/v1/instances/{uuid.uuid4()}", {}, fresh),  # 404
        ("/v1/instances/not-a-uuid", {}, fresh),  # 404
        ("/v1/instances", {}, fresh),
        ("/v1/instances", {"limit": "2"}, fresh),
        ("/v1/instances", {"limit": "2", "cursor": cursor}, fresh),
        ("/v1/instances", {"cursor": "junk"}, fresh),  # 422
        ("/v1/instances", {"state": "pending", "subnet_id": subnet_id}, fresh),
        ("/v1/instances", {"network_id": network_id}, fresh),
        (f"/v1/networks/{network_id}", {}, fresh),
        ("/v1/networks", {"limit": "1"}, fresh),
        (f"/v1/subnets/{subnet_id}", {}, fresh),
        ("/v1/activity", {"limit": "3"}, fresh),
        (f"/v1/streams/network-{network_id}/events", {}, fresh),
        ("/v1/streams/network-nope/events", {}, fresh),  # 404
    ]
    for path, params, headers in reads:
        lane = await query_client.get(path, params=params, headers=headers)
        fastapi = await query_client.get(path, params={**params, "via": "fastapi"}, headers=headers)
        assert lane.status_code == fastapi.status_code, (path, params, lane.text, fastapi.text)
        assert lane.json() == fastapi.json(), (path, params)
        for header in ("content-type", "x-projection-position"):
            assert lane.headers.get(header) == fastapi.headers.get(header), (path, header)
    statuses = {
        (path, tuple(params)): (
            await query_client.get(path, params=params, headers=headers)
        ).status_code
        for path, params, headers in reads
    }
    assert sorted(set(statuses.values())) == [200, 404, 422], statuses


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"limit": "0"}, {}),
        ({"state": "sleeping"}, {}),
        ({"subnet_id": "nope"}, {}),
        ({}, {"X-Min-Position": "-1"}),
        ({}, {"X-Min-Position": str(2**63)}),
    ],
)
async def test_what_the_lane_leaves_to_fastapi_is_still_refused(
    mesh: ProjectionRunner,
    query_client: httpx.AsyncClient,
    tenant: str,
    token_for: Callable[..., str],
    params: dict[str, str],
    headers: dict[str, str],
) -> None:
    auth = {"Authorization": f"Bearer {token_for(tenant)}", **headers}
    answer = await query_client.get("/v1/instances", params=params, headers=auth)
    assert answer.status_code == 422, answer.text
    assert answer.json()["type"].endswith("/validation-failed")
