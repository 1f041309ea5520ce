"""Every row of DESIGN §4 through the real services in-process (real PostgreSQL and RabbitMQ):
statuses, problem types, read models, and that refused commands write no event."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from events import EventStore
from projectors.runtime import ProjectionRunner


class Api:
    """A tenant's view of both services (commands and queries), as the gateway would route."""

    def __init__(self, commands: httpx.AsyncClient, queries: httpx.AsyncClient, token: str) -> None:
        self.commands, self.queries = commands, queries
        self.auth = {"Authorization": f"Bearer {token}"}
        self.position = 0

    async def send(
        self, method: str, path: str, body: Any = None, **headers: str
    ) -> httpx.Response:
        response = await self.commands.request(
            method, path, json=body, headers={**self.auth, **headers}
        )
        if response.status_code < 300:
            self.position = max(self.position, int(response.headers["X-Event-Position"]))
        return response

    async def get(self, path: str, **params: str) -> httpx.Response:
        headers = {**self.auth, "X-Min-Position": str(self.position)}
        return await self.queries.get(path, params=params, headers=headers)

    async def ok(
        self, method: str, path: str, body: Any = None, status: int = 200
    ) -> dict[str, Any]:
        response = await self.send(method, path, body)
        assert response.status_code == status, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def read(self, path: str, **params: str) -> dict[str, Any]:
        response = await self.get(path, **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def api(
    mesh: ProjectionRunner,
    command_client: httpx.AsyncClient,
    query_client: httpx.AsyncClient,
    tenant: str,
    token_for: Callable[..., str],
) -> Api:
    return Api(command_client, query_client, token_for(tenant))


async def events_of(store: EventStore, tenant: str) -> int:
    return int(
        await store.pool.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1", tenant)
    )


def assert_problem(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/" + kind), response.json()


async def network_with_subnet(api: Api, cidr: str = "10.0.1.0/28") -> tuple[str, str]:
    network = await api.ok("POST", "/v1/networks", {"name": "prod", "cidr": "10.0.0.0/16"}, 201)
    subnet = await api.ok(
        "POST", f"/v1/networks/{network['id']}/subnets", {"name": "web", "cidr": cidr}, 201
    )
    return network["id"], subnet["id"]


async def test_the_whole_lifecycle_through_commands_and_read_models(api: Api) -> None:
    network_id, subnet_id = await network_with_subnet(api)
    launched = await api.ok(
        "POST", "/v1/instances", {"name": "vm-1", "subnet_id": subnet_id, "size": "small"}, 201
    )
    assert (launched["ip"], launched["state"]) == ("10.0.1.4", "pending")
    instance_id = launched["id"]

    subnet = await api.read(f"/v1/subnets/{subnet_id}")
    assert (subnet["total"], subnet["used"], subnet["free"]) == (11, 1, 10)
    network = await api.read(f"/v1/networks/{network_id}")
    assert network["subnet_count"] == 1
    assert [s["id"] for s in network["subnets"]] == [subnet_id]
    listed = await api.read("/v1/networks")
    assert [(n["id"], n["subnet_count"]) for n in listed["items"]] == [(network_id, 1)]

    assert_problem(
        await api.send("POST", f"/v1/instances/{instance_id}/stop"), 409, "invalid-transition"
    )
    running = await api.ok("POST", f"/internal/instances/{instance_id}/running")
    assert running["state"] == "running"
    assert (await api.ok("POST", f"/v1/instances/{instance_id}/stop"))["state"] == "stopped"
    assert (await api.ok("POST", f"/v1/instances/{instance_id}/start"))["state"] == "running"
    assert (await api.read(f"/v1/instances/{instance_id}"))["state"] == "running"

    assert_problem(await api.send("DELETE", f"/v1/subnets/{subnet_id}"), 409, "subnet-not-empty")
    assert_problem(await api.send("DELETE", f"/v1/networks/{network_id}"), 409, "network-not-empty")
    assert (await api.ok("DELETE", f"/v1/instances/{instance_id}"))["state"] == "terminated"
    subnet = await api.read(f"/v1/subnets/{subnet_id}")
    assert (subnet["used"], subnet["free"]) == (0, 11)

    await api.ok("PATCH", f"/v1/networks/{network_id}", {"name": "renamed"})
    assert (await api.read(f"/v1/networks/{network_id}"))["name"] == "renamed"
    await api.ok("DELETE", f"/v1/subnets/{subnet_id}")
    await api.ok("DELETE", f"/v1/networks/{network_id}")
    assert (await api.get(f"/v1/networks/{network_id}")).status_code == 404
    assert (await api.get(f"/v1/subnets/{subnet_id}")).status_code == 404


async def test_subnet_rules_overlap_outside_and_bad_cidrs(
    api: Api, store: EventStore, tenant: str
) -> None:
    network_id, _ = await network_with_subnet(api, "10.0.1.0/24")
    before = await events_of(store, tenant)
    path = f"/v1/networks/{network_id}/subnets"
    assert_problem(
        await api.send("POST", path, {"name": "b", "cidr": "10.0.1.128/25"}), 409, "cidr-overlap"
    )
    assert_problem(
        await api.send("POST", path, {"name": "b", "cidr": "10.1.0.0/24"}),
        422,
        "cidr-outside-network",
    )
    assert_problem(
        await api.send("POST", path, {"name": "b", "cidr": "10.0.2.0/30"}), 422, "invalid-cidr"
    )
    assert_problem(
        await api.send("POST", path, {"name": "B!", "cidr": "10.0.2.0/24"}), 422, "invalid-name"
    )
    assert_problem(
        await api.send(
            "POST", f"/v1/networks/{uuid.uuid4()}/subnets", {"name": "b", "cidr": "10.0.2.0/24"}
        ),
        404,
        "not-found",
    )
    assert await events_of(store, tenant) == before


async def test_launch_rules(api: Api, store: EventStore, tenant: str) -> None:
    _, subnet_id = await network_with_subnet(api)
    before = await events_of(store, tenant)
    bad = [
        ({"name": "vm", "subnet_id": subnet_id, "size": "huge"}, 422, "invalid-size"),
        ({"name": "vm", "subnet_id": str(uuid.uuid4()), "size": "small"}, 404, "not-found"),
        ({"name": "vm", "subnet_id": "not-a-uuid", "size": "small"}, 422, "validation-failed"),
        ({"name": "vm", "subnet_id": subnet_id}, 422, "validation-failed"),
    ]
    for body, status, kind in bad:
        assert_problem(await api.send("POST", "/v1/instances", body), status, kind)
    assert_problem(await api.send("POST", f"/v1/instances/{uuid.uuid4()}/start"), 404, "not-found")
    assert_problem(await api.send("POST", "/v1/instances/nope/start"), 404, "not-found")
    assert await events_of(store, tenant) == before


async def test_concurrent_launches_into_a_slash_28_get_exactly_11_addresses(
    api: Api, store: EventStore, tenant: str
) -> None:
    _, subnet_id = await network_with_subnet(api)
    body = {"name": "vm", "subnet_id": subnet_id, "size": "small"}
    responses = await asyncio.gather(*(api.send("POST", "/v1/instances", body) for _ in range(30)))
    won = [r.json()["ip"] for r in responses if r.status_code == 201]
    lost = [r for r in responses if r.status_code != 201]
    assert sorted(won, key=lambda ip: int(ip.rsplit(".", 1)[1])) == [
        f"10.0.1.{n}" for n in range(4, 15)
    ]
    assert len(lost) == 19
    for response in lost:
        assert_problem(response, 409, "subnet-exhausted")
    subnet = await api.read(f"/v1/subnets/{subnet_id}")
    assert (subnet["used"], subnet["free"]) == (11, 0)
    launched = await store.pool.fetchval(
        "SELECT count(*) FROM events WHERE tenant_id = $1 AND type = 'InstanceLaunched'", tenant
    )
    assert launched == 11


async def test_concurrent_overlapping_subnets_one_wins(api: Api) -> None:
    network = await api.ok("POST", "/v1/networks", {"name": "n", "cidr": "10.0.0.0/16"}, 201)
    path = f"/v1/networks/{network['id']}/subnets"
    responses = await asyncio.gather(
        api.send("POST", path, {"name": "a", "cidr": "10.0.0.0/24"}),
        api.send("POST", path, {"name": "b", "cidr": "10.0.0.0/25"}),
    )
    assert sorted(r.status_code for r in responses) == [201, 409]
    assert_problem(next(r for r in responses if r.status_code == 409), 409, "cidr-overlap")


async def test_idempotency_key_replays_the_first_answer_and_refuses_another_body(
    api: Api, store: EventStore, tenant: str
) -> None:
    key = str(uuid.uuid4())
    body = {"name": "idem", "cidr": "10.0.0.0/16"}
    first = await api.send("POST", "/v1/networks", body, **{"Idempotency-Key": key})
    assert first.status_code == 201
    count = await events_of(store, tenant)
    again = await api.send("POST", "/v1/networks", body, **{"Idempotency-Key": key})
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await api.send(
        "POST", "/v1/networks", {**body, "name": "other"}, **{"Idempotency-Key": key}
    )
    assert_problem(other, 422, "idempotency-key-reused")
    racing = await asyncio.gather(
        *(
            api.send(
                "POST",
                "/v1/networks",
                {"name": "race", "cidr": "10.1.0.0/16"},
                **{"Idempotency-Key": "race-key"},
            )
            for _ in range(5)
        )
    )
    assert {r.status_code for r in racing} == {201}
    assert len({r.json()["id"] for r in racing}) == 1
    assert await events_of(store, tenant) == count + 1


async def test_another_tenants_resources_answer_404(
    api: Api,
    command_client: httpx.AsyncClient,
    query_client: httpx.AsyncClient,
    token_for: Callable[..., str],
    tenant: str,
) -> None:
    network_id, subnet_id = await network_with_subnet(api)
    instance = await api.ok(
        "POST", "/v1/instances", {"name": "vm", "subnet_id": subnet_id, "size": "small"}, 201
    )
    intruder = Api(command_client, query_client, token_for(f"{tenant}-intruder"))
    intruder.position = api.position
    for method, path, body in [
        ("PATCH", f"/v1/networks/{network_id}", {"name": "x"}),
        ("DELETE", f"/v1/networks/{network_id}", None),
        ("POST", f"/v1/networks/{network_id}/subnets", {"name": "x", "cidr": "10.0.9.0/24"}),
        ("DELETE", f"/v1/subnets/{subnet_id}", None),
        ("POST", "/v1/instances", {"name": "x", "subnet_id": subnet_id, "size": "small"}),
        ("POST", f"/v1/instances/{instance['id']}/stop", None),
        ("DELETE", f"/v1/instances/{instance['id']}", None),
    ]:
        assert_problem(await intruder.send(method, path, body), 404, "not-found")
    for path in [
        f"/v1/networks/{network_id}",
        f"/v1/subnets/{subnet_id}",
        f"/v1/instances/{instance['id']}",
        f"/v1/streams/network-{network_id}/events",
    ]:
        assert_problem(await intruder.get(path), 404, "not-found")
    assert (await intruder.read("/v1/instances"))["items"] == []
    assert (await intruder.read("/v1/activity"))["items"] == []


async def test_instances_list_filters_and_paginates(api: Api) -> None:
    network_id, subnet_a = await network_with_subnet(api, "10.0.1.0/24")
    subnet_b = (
        await api.ok(
            "POST", f"/v1/networks/{network_id}/subnets", {"name": "b", "cidr": "10.0.2.0/24"}, 201
        )
    )["id"]
    ids = []
    for n in range(5):
        subnet_id = subnet_a if n % 2 == 0 else subnet_b
        ids.append(
            (
                await api.ok(
                    "POST",
                    "/v1/instances",
                    {"name": f"vm{n}", "subnet_id": subnet_id, "size": "small"},
                    201,
                )
            )["id"]
        )
    await api.ok("POST", f"/internal/instances/{ids[0]}/running")
    seen, cursor = [], None
    while True:
        page = await api.read("/v1/instances", limit="2", **({"cursor": cursor} if cursor else {}))
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    in_b = await api.read("/v1/instances", subnet_id=subnet_b)
    assert [i["id"] for i in in_b["items"]] == [ids[1], ids[3]]
    running = await api.read("/v1/instances", state="running", network_id=network_id)
    assert [i["id"] for i in running["items"]] == [ids[0]]
    for params in [
        {"state": "sleeping"},
        {"limit": "0"},
        {"limit": "201"},
        {"cursor": "junk"},
        {"subnet_id": "nope"},
    ]:
        assert_problem(await api.get("/v1/instances", **params), 422, "validation-failed")


async def test_activity_history_and_time_travel(api: Api) -> None:
    created = await api.ok("POST", "/v1/networks", {"name": "first", "cidr": "10.0.0.0/16"}, 201)
    network_id = created["id"]
    await api.ok("PATCH", f"/v1/networks/{network_id}", {"name": "second"})
    subnet = await api.ok(
        "POST", f"/v1/networks/{network_id}/subnets", {"name": "web", "cidr": "10.0.1.0/24"}, 201
    )
    feed = await api.read("/v1/activity", limit="2")
    # Newest first; one transaction wrote the subnet, then the network's record of it.
    assert [e["type"] for e in feed["items"]] == ["SubnetAttached", "SubnetCreated"]
    older = await api.read("/v1/activity", limit="50", cursor=feed["next_cursor"])
    assert [e["type"] for e in older["items"]] == ["NetworkRenamed", "NetworkCreated"]
    history = await api.read(f"/v1/streams/network-{network_id}/events")
    assert [e["type"] for e in history["items"]] == [
        "NetworkCreated",
        "NetworkRenamed",
        "SubnetAttached",
    ]
    then = await api.read(f"/v1/networks/{network_id}", as_of=str(created["position"]))
    assert (then["name"], then["subnet_count"]) == ("first", 0)
    now = await api.read(f"/v1/networks/{network_id}", as_of=str(api.position))
    assert (now["name"], [s["id"] for s in now["subnets"]]) == ("second", [subnet["id"]])
    assert (await api.get(f"/v1/networks/{network_id}", as_of="0")).status_code == 404
