"""One write travels store → relay → RabbitMQ → projector → read model → query service, with
the real PostgreSQL and RabbitMQ; repeats are no-ops and a missed batch is caught up."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from events import Checkpoint, EventStore
from projectors.runtime import Outcome, ProjectionRunner


async def create(client: httpx.AsyncClient, token: str, name: str, cidr: str) -> dict[str, object]:
    response = await client.post(
        "/v1/networks",
        json={"name": name, "cidr": cidr},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def test_a_created_network_is_readable_with_min_position(
    mesh: ProjectionRunner,
    command_client: httpx.AsyncClient,
    query_client: httpx.AsyncClient,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    token = token_for(tenant)
    created = await create(command_client, token, "prod", "10.0.0.0/16")
    response = await query_client.get(
        f"/v1/networks/{created['id']}",
        headers={"Authorization": f"Bearer {token}", "X-Min-Position": str(created["position"])},
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "prod"
    assert response.json()["cidr"] == "10.0.0.0/16"
    assert int(response.headers["X-Projection-Position"]) >= 1
    other = token_for(f"{tenant}-other")
    hidden = await query_client.get(
        f"/v1/networks/{created['id']}", headers={"Authorization": f"Bearer {other}"}
    )
    assert hidden.status_code == 404  # another tenant's network does not exist for them


async def test_list_is_tenant_scoped_and_paginated(
    mesh: ProjectionRunner,
    command_client: httpx.AsyncClient,
    query_client: httpx.AsyncClient,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    token = token_for(tenant)
    last = None
    for n in range(5):
        last = await create(command_client, token, f"net-{n}", f"10.{n}.0.0/16")
    await create(command_client, token_for(f"{tenant}-x"), "foreign", "10.9.0.0/16")
    names, cursor = [], None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await query_client.get(
            "/v1/networks",
            params=params,
            headers={"Authorization": f"Bearer {token}", "X-Min-Position": str(last["position"])},
        )
        assert response.status_code == 200, response.text
        page = response.json()
        names += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert names == [f"net-{n}" for n in range(5)]


async def test_min_position_beyond_the_read_model_times_out_with_504(
    query_client: httpx.AsyncClient, tenant: str, token_for: Callable[..., str]
) -> None:
    response = await query_client.get(
        "/v1/networks",
        headers={"Authorization": f"Bearer {token_for(tenant)}", "X-Min-Position": str(2**62)},
    )
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"


async def test_repeated_and_missed_batches_leave_each_network_exactly_once(
    mesh: ProjectionRunner,
    store: EventStore,
    command_client: httpx.AsyncClient,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    token = token_for(tenant)
    created = [await create(command_client, token, f"n{n}", f"10.{n}.0.0/16") for n in range(3)]
    everything = await store.read_all(limit=100_000)
    # Delivered again from the very start: the checkpoint makes every event a no-op.
    assert await mesh.apply(everything, previous=None) is Outcome.APPLIED
    # A batch claiming to follow a checkpoint the projection never reached is a gap.
    beyond = Checkpoint(everything[-1].checkpoint.transaction_id + 1000, 0)
    assert await mesh.apply(everything[-1:], previous=beyond) is Outcome.GAP
    await mesh.catch_up()
    rows = await store.pool.fetch(
        "SELECT id::text, count(*) AS copies FROM rm_networks WHERE tenant_id = $1 GROUP BY id",
        tenant,
    )
    assert {row["id"]: row["copies"] for row in rows} == {str(c["id"]): 1 for c in created}
