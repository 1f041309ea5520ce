"""Long subnet streams are loaded from a snapshot plus the tail, with the same decisions."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from command_api.snapshots import SNAPSHOT_EVERY
from events import EventStore
from tests.integration.conftest import network_and_subnet


async def test_a_snapshot_is_taken_and_decisions_after_it_stay_exact(
    store: EventStore,
    command_client: httpx.AsyncClient,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    _, subnet_id = await network_and_subnet(command_client, auth)
    subnet = {"id": subnet_id}
    launched = []
    for _ in range(SNAPSHOT_EVERY + 5):
        response = await command_client.post(
            "/v1/instances",
            json={"name": "vm", "subnet_id": subnet["id"], "size": "small"},
            headers=auth,
        )
        assert response.status_code == 201, response.text
        launched.append(response.json())
    snapshot = await store.load_snapshot(f"subnet-{subnet['id']}")
    assert snapshot is not None
    assert snapshot.stream_version >= SNAPSHOT_EVERY
    assert len(snapshot.state["state"]["allocations"]) == snapshot.stream_version - 1
    # Free one address below the snapshot's version and one above: both are reused, lowest first.
    for instance in (launched[3], launched[-1]):
        assert (
            await command_client.delete(f"/v1/instances/{instance['id']}", headers=auth)
        ).status_code == 200
    again = [
        (
            await command_client.post(
                "/v1/instances",
                json={"name": "vm", "subnet_id": subnet["id"], "size": "small"},
                headers=auth,
            )
        ).json()["ip"]
        for _ in range(3)
    ]
    assert again == [launched[3]["ip"], launched[-1]["ip"], f"10.0.0.{4 + len(launched)}"]
    other = {"Authorization": f"Bearer {token_for(tenant + '-x')}"}
    stolen = await command_client.post(
        "/v1/instances",
        json={"name": "vm", "subnet_id": subnet["id"], "size": "small"},
        headers=other,
    )
    assert stolen.status_code == 404  # the snapshot keeps the tenant boundary too
