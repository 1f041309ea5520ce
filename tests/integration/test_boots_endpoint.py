"""The command service's call for many boots (`POST /internal/instances/running`, the
provisioner's): each boot is a command of its own with its own answer, its events continue its
own launch's trace, the instances it has not cached are read in one round trip, and a call it
refuses writes nothing (real PostgreSQL; the command service in-process, through its fast lane
and through FastAPI alike)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from command_api.app import create_app as create_command_app
from events import EventStore
from infra.settings import Settings
from tests.integration.conftest import asgi_client, network_and_subnet

PATH = "/internal/instances/running"
#: Through the fast lane, and (a content type the lane leaves alone) through FastAPI.
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8"]


def traceparent(trace: int) -> str:
    return f"00-{trace:032x}-{trace:016x}-01"


async def launch(client: httpx.AsyncClient, auth: dict[str, str], subnet_id: str) -> str:
    launched = await client.post(
        "/v1/instances", json={"name": "vm", "subnet_id": subnet_id, "size": "small"}, headers=auth
    )
    assert launched.status_code == 201, launched.text
    return str(launched.json()["id"])


async def boot(
    client: httpx.AsyncClient, auth: dict[str, str], body: Any, content_type: str
) -> httpx.Response:
    return await client.post(
        PATH,
        content=json.dumps(body),
        headers={**auth, "Content-Type": content_type},
    )


async def events_of(store: EventStore, instance_id: str) -> list[tuple[str, str | None]]:
    return [
        (e.type, e.metadata.get("traceparent"))
        async for e in store.read_stream(f"instance-{instance_id}")
    ]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
async def test_each_boot_of_a_call_gets_its_own_answer_and_only_those_allowed_commit(
    command_client: httpx.AsyncClient,
    store: EventStore,
    tenant: str,
    token_for: Callable[..., str],
    content_type: str,
) -> None:
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    _, subnet_id = await network_and_subnet(command_client, auth)
    pending, terminated, running, second = [
        await launch(command_client, auth, subnet_id) for _ in range(4)
    ]
    assert (await command_client.delete(f"/v1/instances/{terminated}", headers=auth)).is_success
    booted = await boot(command_client, auth, {"instances": [{"id": running}]}, content_type)
    assert booted.json()["instances"][0]["status"] == 200
    other_auth = {"Authorization": f"Bearer {token_for(tenant + '-other')}"}
    _, other_subnet = await network_and_subnet(command_client, other_auth)
    anothers = await launch(command_client, other_auth, other_subnet)
    before = {i: await events_of(store, i) for i in (terminated, running, anothers)}

    answer = await boot(
        command_client,
        auth,
        {
            "instances": [
                {"id": pending, "traceparent": traceparent(1)},
                {"id": terminated},
                {"id": running},
                {"id": anothers},
                {"id": second, "traceparent": traceparent(2)},
            ]
        },
        content_type,
    )

    assert answer.status_code == 200, answer.text
    statuses = {a["id"]: (a["status"], a.get("state")) for a in answer.json()["instances"]}
    assert statuses == {
        pending: (200, "running"),
        terminated: (409, None),
        running: (200, "running"),
        anothers: (404, None),  # another tenant's instance does not exist for this one
        second: (200, "running"),
    }
    # Each boot's event continues its own launch's trace, not the call's.
    [_, (started, trace)] = await events_of(store, pending)
    assert (started, trace.split("-")[1]) == ("InstanceStarted", f"{1:032x}")
    [_, (started, trace)] = await events_of(store, second)
    assert (started, trace.split("-")[1]) == ("InstanceStarted", f"{2:032x}")
    # The refused, the unchanged and the foreign ones wrote nothing.
    assert {i: await events_of(store, i) for i in before} == before


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize(
    ("body", "scope", "status"),
    [
        ({"instances": []}, "cloud:read cloud:write", 422),
        ({"instances": [{"id": "not-a-uuid"}]}, "cloud:read cloud:write", 422),
        ({"instances": [{"id": "{instance}", "state": "running"}]}, "cloud:read cloud:write", 422),
        ({"instances": [{"id": "{instance}"}] * 101}, "cloud:read cloud:write", 422),
        ({"instances": [{"id": "{instance}"}]}, "cloud:read", 403),
    ],
    ids=["none", "not-an-id", "unknown-field", "too-many", "read-only"],
)
async def test_a_call_it_refuses_writes_nothing(
    command_client: httpx.AsyncClient,
    store: EventStore,
    tenant: str,
    token_for: Callable[..., str],
    content_type: str,
    body: dict[str, Any],
    scope: str,
    status: int,
) -> None:
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    _, subnet_id = await network_and_subnet(command_client, auth)
    instance = await launch(command_client, auth, subnet_id)
    sent = {
        "instances": [
            {k: v.replace("{instance}", instance) for k, v in b.items()} for b in body["instances"]
        ]
    }
    before = await events_of(store, instance)
    refused = await boot(
        command_client, {"Authorization": f"Bearer {token_for(tenant, scope)}"}, sent, content_type
    )
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert await events_of(store, instance) == before


async def test_instances_another_process_launched_are_read_in_one_round_trip(
    command_client: httpx.AsyncClient,
    settings: Settings,
    store: EventStore,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    _, subnet_id = await network_and_subnet(command_client, auth)
    launched = [await launch(command_client, auth, subnet_id) for _ in range(3)]
    other_auth = {"Authorization": f"Bearer {token_for(tenant + '-other')}"}
    _, other_subnet = await network_and_subnet(command_client, other_auth)
    anothers = await launch(command_client, other_auth, other_subnet)
    other = create_command_app(settings)  # a second command process: nothing of them cached
    async with asgi_client(other, "http://other") as client:
        real = other.state.store
        read_alone: list[str] = []
        read_together: list[list[str]] = []

        def read_stream(stream_id: str, *args: Any, **kwargs: Any) -> Any:
            read_alone.append(stream_id)
            return EventStore.read_stream(real, stream_id, *args, **kwargs)

        def read_streams(stream_ids: list[str]) -> Any:
            read_together.append(list(stream_ids))
            return EventStore.read_streams(real, stream_ids)

        real.read_stream, real.read_streams = read_stream, read_streams
        answer = await boot(
            client,
            auth,
            {"instances": [{"id": i} for i in [*launched, anothers]]},
            "application/json",
        )
    assert [a["status"] for a in answer.json()["instances"]] == [200, 200, 200, 404]
    assert read_together == [[f"instance-{i}" for i in [*launched, anothers]]]
    assert read_alone == [f"instance-{anothers}"]  # read by its command, found another's
    for instance_id in launched:
        assert [t for t, _ in await events_of(store, instance_id)][-1] == "InstanceStarted"
