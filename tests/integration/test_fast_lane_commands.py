"""The command service's fast lane gives the answers FastAPI gives. Two command services share
the event store, one built without the lane and one with it; every request goes to both, each
for a tenant of its own, and the answers are compared byte for byte, bar what differs by nature
(new ids, positions, request ids), which is compared by its shape. Each service also tells who
answered: the lane, FastAPI's router, or no route (the middleware in front of both)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

import command_api.app
from command_api import routes
from events import EventStore
from infra.auth import issue_token
from infra.http.app import create_service_app
from infra.http.fast_lane import FastRoute
from infra.settings import Settings
from tests.integration.conftest import JWT_SECRET

LANE, FASTAPI, NO_ROUTE = "lane", "fastapi", "no route"
#: Headers that differ by nature; `shaped` checks them apart.
_BY_NATURE = {"x-request-id", "x-event-position", "content-length", "location"}


def command_app(settings: Settings, fast_routes: tuple[FastRoute, ...]) -> FastAPI:
    """The command service as `create_app` builds it, with these fast routes (whether or not
    command_api/app.py passes them itself)."""

    def service_app(**options: Any) -> FastAPI:
        return create_service_app(**{**options, "fast_routes": fast_routes})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(command_api.app, "create_service_app", service_app)
        return command_api.app.create_app(settings)


@dataclass
class Service:
    """One command service, a tenant of it, and the ids its answers handed out, by name."""

    app: FastAPI
    tenant: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:12]}")
    ids: dict[str, str] = field(default_factory=dict)
    answered_by: str = ""

    def token(self, scopes: str) -> str:
        return issue_token(secret=JWT_SECRET, tenant=self.tenant, scopes=scopes.split())

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self._note_who_answers)
        return httpx.AsyncClient(transport=transport, base_url="http://command")

    async def _note_who_answers(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":  # the route the lane or FastAPI's router left in the scope
            kinds = {FastRoute: LANE, APIRoute: FASTAPI, type(None): NO_ROUTE}
            self.answered_by = kinds[type(scope.get("route"))]

    def filled(self, text: str) -> str:
        for name, value in self.ids.items():
            text = text.replace(f"{{{name}}}", value)
        return text

    def shaped(self, answer: httpx.Response) -> dict[str, Any]:
        """The answer with this service's ids as their names and positions as their shape."""
        body = answer.json() if answer.content else None  # a redirect has none
        new_id = body.get("id") if isinstance(body, dict) else None
        names = [*self.ids.items(), ("new", new_id)]

        def named(text: str) -> str:
            for name, value in names:
                text = text.replace(value, f"<{name}>") if value else text
            return text

        shaped = orjson.loads(named(answer.text)) if body is not None else None
        if isinstance(shaped, dict) and "position" in shaped:
            assert answer.headers["x-event-position"] == str(shaped["position"])
            shaped["position"] = "<position>"
        else:
            assert "x-event-position" not in answer.headers
        assert answer.headers["content-length"] == str(len(answer.content))
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])
        location = answer.headers.get("location")
        return {
            "status": answer.status_code,
            "body": shaped,
            "headers": {k: v for k, v in answer.headers.items() if k not in _BY_NATURE},
            "location": location and named(location),
        }


@dataclass(frozen=True)
class Ask:
    """A request and the status both services answer it with. `{name}` in its path or JSON body
    is the service's id of that name; `keep` names the id its answer hands out."""

    method: str
    path: str
    status: int
    body: Any = None  # JSON, bytes as they are, or a function of the chunks to stream
    headers: dict[str, str] = field(default_factory=dict)
    scopes: str | None = "cloud:read cloud:write"
    by: str = LANE  # who answers on the service with the lane
    keep: str | None = None


def _chunks_of(size: int) -> Callable[[], AsyncIterator[bytes]]:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the guard counts as it goes
        yield b'{"name": "'
        for _ in range(size // 4096):
            yield b"x" * 4096
        yield b'", "cidr": "10.1.0.0/16"}'

    return chunks


NETWORK = {"name": "n", "cidr": "10.0.0.0/16"}
UNKNOWN = str(uuid.uuid4())
KEY = {"Idempotency-Key": "key-1"}
KEYED = {"name": "k", "cidr": "10.4.0.0/16"}
REPLAY = Ask("POST", "/v1/networks", 201, KEYED, KEY)
TRACE = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}
ASKS = [
    Ask("POST", "/v1/networks", 201, NETWORK, keep="network"),
    Ask(
        "POST",
        "/v1/networks/{network}/subnets",
        201,
        {"name": "s", "cidr": "10.0.1.0/24"},
        keep="subnet",
    ),
    Ask(
        "POST",
        "/v1/instances",
        201,
        {"name": "vm", "subnet_id": "{subnet}", "size": "small"},
        keep="instance",
    ),
    # Refused by the domain (command_api/errors.py) or the route.
    Ask("POST", "/v1/instances", 404, {"name": "vm", "subnet_id": UNKNOWN, "size": "small"}),
    Ask("POST", "/v1/networks", 422, {"name": "n", "cidr": "10.0.0/16"}),
    Ask("POST", "/v1/networks/{network}/subnets", 409, {"name": "s2", "cidr": "10.0.1.0/25"}),
    Ask("DELETE", "/v1/networks/not-a-uuid", 404),
    Ask("DELETE", f"/v1/subnets/{UNKNOWN}", 404),
    # Bodies FastAPI reads: the lane hands them on.
    Ask("POST", "/v1/networks", 422, {**NETWORK, "extra": 1}, by=FASTAPI),
    Ask("POST", "/v1/networks", 422, {"name": 1, "cidr": "10.0.0.0/16"}, by=FASTAPI),
    Ask(
        "POST", "/v1/instances", 422, {"name": "vm", "subnet_id": "x", "size": "small"}, by=FASTAPI
    ),
    Ask("POST", "/v1/networks", 422, {"name": "n"}, by=FASTAPI),
    Ask("POST", "/v1/networks", 422, [NETWORK], by=FASTAPI),
    Ask("POST", "/v1/networks", 422, b"", by=FASTAPI),
    Ask("POST", "/v1/networks", 400, b'{"name": "n", "cidr":', by=FASTAPI),
    Ask("POST", "/v1/networks", 400, b'{"name": "\xff", "cidr": "10.2.0.0/16"}', by=FASTAPI),
    Ask("POST", "/v1/networks", 422, b'{"name": "\\ud800", "cidr": "10.2.0.0/16"}', by=FASTAPI),
    Ask(
        "POST",
        "/v1/networks",
        201,
        NETWORK,
        {"Content-Type": "application/json; charset=utf-8"},
        by=FASTAPI,
    ),
    Ask("POST", "/v1/networks?dry_run=1", 201, NETWORK, by=FASTAPI),
    Ask("POST", "/v1/networks", 201, b'{"name": "a", "name": "dup", "cidr": "10.3.0.0/16"}'),
    # Idempotency: the first answer again for the same request, refusals otherwise.
    Ask("POST", "/v1/networks", 201, KEYED, KEY, keep="keyed"),
    REPLAY,
    Ask("POST", "/v1/networks", 201, b'{"cidr":"10.4.0.0/16",  "name":"k"}', KEY),  # same JSON
    Ask("POST", "/v1/networks", 422, {**KEYED, "name": "other"}, KEY),
    Ask("POST", "/v1/instances/{instance}/stop", 422, headers=KEY),
    Ask("POST", "/v1/networks", 422, NETWORK, {"Idempotency-Key": "k" * 256}, by=FASTAPI),
    Ask("POST", "/v1/networks", 422, NETWORK, {"Idempotency-Key": ""}, by=FASTAPI),
    # Answered before the lane, or while it reads.
    Ask("POST", "/v1/networks", 413, b'{"name": "' + b"x" * 70_000 + b'"}', by=NO_ROUTE),
    Ask("POST", "/v1/networks", 413, _chunks_of(70_000), by=FASTAPI),
    Ask("POST", "/v1/networks", 415, b"name=n", {"Content-Type": "text/plain"}, by=NO_ROUTE),
    Ask("POST", "/v1/networks", 401, NETWORK, scopes=None, by=NO_ROUTE),
    Ask("POST", "/v1/networks", 403, NETWORK, scopes="cloud:read", by=NO_ROUTE),
    Ask(
        "POST",
        "/v1/networks/{network}/subnets/",
        307,
        {"name": "s", "cidr": "10.0.2.0/24"},
        by=NO_ROUTE,
    ),
    # The other commands.
    Ask("PATCH", "/v1/networks/{network}", 200, {"name": "renamed"}, TRACE),
    Ask("PATCH", "/v1/networks/{network}", 422, {"name": "renamed", "cidr": "x"}, by=FASTAPI),
    Ask("POST", "/v1/instances/{instance}/start", 409),
    Ask("POST", "/v1/instances/{instance}/stop", 409, {"force": True}, by=FASTAPI),
    Ask("DELETE", "/v1/subnets/{subnet}", 409),
    Ask("DELETE", "/v1/instances/{instance}", 200),
    Ask("POST", "/v1/instances/{instance}/stop", 409),
    Ask("DELETE", "/v1/networks/{network}", 409),
    Ask("DELETE", "/v1/subnets/{subnet}", 200, headers=TRACE),
    Ask("DELETE", "/v1/networks/{network}", 200),
]


async def send(service: Service, client: httpx.AsyncClient, ask: Ask) -> httpx.Response:
    headers = {"Content-Type": "application/json"} if ask.body is not None else {}
    headers.update(ask.headers)
    if ask.scopes is not None:
        headers["Authorization"] = f"Bearer {service.token(ask.scopes)}"
    content: Any = ask.body
    if callable(ask.body):
        content = ask.body()
    elif ask.body is not None and not isinstance(ask.body, bytes):
        content = service.filled(orjson.dumps(ask.body).decode()).encode()
    path = service.filled(ask.path)
    return await client.request(ask.method, path, content=content, headers=headers)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[tuple[Service, Service]]:
    fastapi = Service(command_app(settings, ()))
    lane = Service(command_app(settings, routes.FAST_ROUTES))
    async with (
        fastapi.app.router.lifespan_context(fastapi.app),
        lane.app.router.lifespan_context(lane.app),
    ):
        yield fastapi, lane


async def network_story(store: EventStore, service: Service) -> list[tuple[str, ...]]:
    """The network's events: type, actor, request id shape and trace id of each."""
    return [
        (
            event.type,
            event.metadata["actor"],
            str(re.fullmatch(r"[0-9a-f]{32}", event.metadata["correlation_id"]) is not None),
            event.metadata.get("traceparent", "")[3:35],
        )
        async for event in store.read_stream(f"network-{service.ids['network']}")
    ]


async def test_the_lane_answers_every_command_as_fastapi_does(
    services: tuple[Service, Service], store: EventStore
) -> None:
    fastapi, lane = services
    async with fastapi.client() as to_fastapi, lane.client() as to_lane:
        for ask in ASKS:
            by_fastapi, by_lane = (
                await send(fastapi, to_fastapi, ask),
                await send(lane, to_lane, ask),
            )
            assert (by_lane.status_code, by_fastapi.status_code) == (ask.status,) * 2, (
                ask,
                by_lane.text,
            )
            expected = ask.by if ask.by != LANE else FASTAPI
            assert (lane.answered_by, fastapi.answered_by) == (ask.by, expected), ask
            assert lane.shaped(by_lane) == fastapi.shaped(by_fastapi), ask
            if ask is REPLAY:
                assert by_lane.headers["Idempotent-Replayed"] == "true"
            if ask.keep:
                lane.ids[ask.keep] = by_lane.json()["id"]
                fastapi.ids[ask.keep] = by_fastapi.json()["id"]
    story = await network_story(store, lane)
    assert story == await network_story(store, fastapi)
    assert ("NetworkRenamed", "cli", "True", "1" * 32) in story
