"""Zero-downtime rebuilds and verification against the real PostgreSQL and RabbitMQ, while
commands keep arriving."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from events import EventStore
from projectors import replay
from projectors.runtime import ProjectionRunner


async def test_replay_under_write_load_never_shows_a_partial_model_and_ends_equal(
    mesh: ProjectionRunner,
    store: EventStore,
    command_client: httpx.AsyncClient,
    query_client: httpx.AsyncClient,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    last_position = 0

    async def create(n: int) -> None:
        nonlocal last_position
        response = await command_client.post(
            "/v1/networks", json={"name": f"n{n}", "cidr": "10.0.0.0/16"}, headers=auth
        )
        assert response.status_code == 201
        last_position = max(last_position, response.json()["position"])

    for n in range(150):
        await create(n)
    seen_counts: list[int] = []
    stop = asyncio.Event()
    floor = {**auth, "X-Min-Position": str(last_position)}  # the first 150 are in the model

    async def keep_writing() -> None:
        n = 150
        while not stop.is_set():
            await create(n)
            n += 1

    async def keep_reading() -> None:
        while not stop.is_set():
            response = await query_client.get(
                "/v1/networks", params={"limit": "200"}, headers=floor
            )
            assert response.status_code == 200
            seen_counts.append(len(response.json()["items"]))

    writer, reader = asyncio.create_task(keep_writing()), asyncio.create_task(keep_reading())
    old = await replay.live_key(store, "networks")
    report = await replay.replay(store, "networks", batch_size=100, grace_seconds=0.1)
    stop.set()
    await asyncio.gather(writer, reader)

    assert report.swapped
    assert report.old_key == old
    assert await replay.live_key(store, "networks") == report.new_key != old
    assert seen_counts
    assert min(seen_counts) >= 150  # never empty, never partial
    assert seen_counts == sorted(seen_counts)  # never going back either
    # The live projector moved to the new version and keeps it current.
    response = await query_client.get(
        "/v1/networks",
        params={"limit": "200"},
        headers={**auth, "X-Min-Position": str(last_position)},
    )
    assert response.status_code == 200
    await mesh.catch_up()
    assert await replay.verify(store, "networks") == []
    old_tables = await store.pool.fetchval(
        "SELECT to_regclass($1)", f"rm_{old.replace('_v', '_v')}"
    )
    assert old_tables is None  # retired after the grace period


async def test_verify_reports_a_corrupted_row(
    mesh: ProjectionRunner,
    store: EventStore,
    command_client: httpx.AsyncClient,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    created = await command_client.post(
        "/v1/networks", json={"name": "intact", "cidr": "10.0.0.0/16"}, headers=auth
    )
    await mesh.catch_up()
    assert await replay.verify(store, "subnets") == []
    live = await replay.live_key(store, "networks")
    table = "rm_networks_v" + live.rsplit("_v", 1)[1]
    await store.pool.execute(
        f"UPDATE {table} SET name = 'tampered' WHERE id = $1", created.json()["id"]
    )
    [difference] = await replay.verify(store, "networks")
    assert difference.row_id == created.json()["id"]
    assert difference.live is not None
    assert difference.live["name"] == "tampered"
    assert difference.rebuilt is not None
    assert difference.rebuilt["name"] == "intact"
    await store.pool.execute(
        f"UPDATE {table} SET name = 'intact' WHERE id = $1", created.json()["id"]
    )
    assert await replay.verify(store, "networks") == []


async def test_a_dry_run_to_a_past_position_builds_the_model_as_it_was_and_drops_it(
    mesh: ProjectionRunner,
    store: EventStore,
    command_client: httpx.AsyncClient,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    first = await command_client.post(
        "/v1/networks", json={"name": "then", "cidr": "10.0.0.0/16"}, headers=auth
    )
    await command_client.post(
        "/v1/networks", json={"name": "later", "cidr": "10.1.0.0/16"}, headers=auth
    )
    live = await replay.live_key(store, "networks")
    report = await replay.replay(
        store, "networks", dry_run=True, to_position=first.json()["position"]
    )
    assert not report.swapped
    assert await replay.live_key(store, "networks") == live
    assert report.events <= first.json()["position"]
    dropped = await store.pool.fetchval("SELECT to_regclass($1)", f"rm_{report.new_key}")
    assert dropped is None
