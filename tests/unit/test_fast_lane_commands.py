"""The fast lane takes a command only when it reads its body and headers exactly as FastAPI
would; otherwise FastAPI gets the request unchanged, body and all."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from command_api import routes
from command_api.routes import COMMAND_HEADERS, LaunchBody, NetworkBody
from infra.auth import Principal
from infra.http.fast_lane import FastLane, FastRoute, LaneRequest
from infra.problems import NotFound, PayloadTooLarge

PRINCIPAL = Principal(tenant="acme", subject="alice", scopes=frozenset({"cloud:write"}))
JSON = (b"content-type", b"application/json")
BODY = b'{"name": "prod", "cidr": "10.0.0.0/16"}'


class Refused(Exception):
    """Stands for a domain error the service registered a handler for."""


class Recorder:
    """The lane's handlers and, below the lane, FastAPI: each notes what it got."""

    def __init__(self) -> None:
        self.lane: list[LaneRequest] = []
        self.fastapi: list[list[dict[str, Any]]] = []  # the messages FastAPI received

    async def handler(self, lane: LaneRequest) -> Response:
        self.lane.append(lane)
        if lane.path.get("thing_id") == "refused":
            raise Refused("no")
        if lane.path.get("thing_id") == "boom":
            raise RuntimeError("unexpected")
        return PlainTextResponse("lane", status_code=201)

    async def inner(self, scope: Any, receive: Any, send: Any) -> None:
        received: list[dict[str, Any]] = []
        self.fastapi.append(received)
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await PlainTextResponse("fastapi")(scope, receive, send)


def errors(error: Exception, path: str) -> Response | None:
    return PlainTextResponse(f"problem at {path}", 404) if isinstance(error, NotFound) else None


class App:
    """What the lane consults for errors `errors` does not answer: the app's handlers."""

    @staticmethod
    async def on_refused(request: Request, error: Exception) -> Response:
        return PlainTextResponse(f"refused at {request.url.path}", status_code=409)

    async def on_anything(self, request: Request, error: Exception) -> Response:
        return PlainTextResponse("500 from the wrong handler", status_code=500)

    def __init__(self) -> None:
        self.exception_handlers = {Refused: self.on_refused, Exception: self.on_anything}


async def call(
    lane: FastLane,
    path: str = "/v1/networks",
    chunks: list[dict[str, Any]] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    method: str = "POST",
    query: bytes = b"",
    principal: Principal | None = PRINCIPAL,
) -> tuple[int, bytes]:
    """`chunks`: the messages the client sends (one with BODY by default); an exception in
    them is raised by `receive` instead, as WriteBodyGuard's PayloadTooLarge is."""
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": [JSON] if headers is None else headers,
        "state": {"request_id": "r-1", **({"principal": principal} if principal else {})},
        "app": App(),
    }
    pending = list(chunks or [{"type": "http.request", "body": BODY}])
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> Any:
        message = pending.pop(0) if pending else {"type": "http.disconnect"}
        if isinstance(message, Exception):
            raise message
        return message

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await lane(scope, receive, send)
    return sent[0]["status"], sent[1]["body"]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def lane(recorder: Recorder) -> FastLane:
    handler, headers = recorder.handler, COMMAND_HEADERS
    fast_routes = [
        FastRoute("/v1/networks", handler, method="POST", body=NetworkBody, headers=headers),
        FastRoute("/v1/instances", handler, method="POST", body=LaunchBody, headers=headers),
        FastRoute("/v1/things/{thing_id}", handler, method="DELETE", headers=headers),
    ]
    return FastLane(recorder.inner, fast_routes, State(), errors)


async def test_a_plain_command_is_answered_by_the_lane_with_its_body_and_headers(
    lane: FastLane, recorder: Recorder
) -> None:
    key, trace = "k" * 255, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = [JSON, (b"idempotency-key", key.encode()), (b"traceparent", trace.encode())]
    assert await call(lane, headers=headers) == (201, b"lane")
    [seen] = recorder.lane
    assert (seen.body, seen.raw_body, seen.headers) == (
        NetworkBody(name="prod", cidr="10.0.0.0/16"),
        BODY,
        {"idempotency-key": key, "traceparent": trace},
    )
    assert (seen.principal, seen.request_id, seen.method, seen.url_path) == (
        PRINCIPAL,
        "r-1",
        "POST",
        "/v1/networks",
    )
    assert recorder.fastapi == []


async def test_a_body_in_pieces_is_read_whole(lane: FastLane, recorder: Recorder) -> None:
    chunks = [
        {"type": "http.request", "body": BODY[:10], "more_body": True},
        {"type": "http.request", "body": BODY[10:], "more_body": False},
    ]
    assert await call(lane, chunks=chunks) == (201, b"lane")
    assert recorder.lane[0].raw_body == BODY


async def test_a_command_without_a_body_is_answered_with_its_path(
    lane: FastLane, recorder: Recorder
) -> None:
    status, _ = await call(lane, "/v1/things/t-1", [{"type": "http.request"}], [], "DELETE")
    assert status == 201
    [seen] = recorder.lane
    assert (seen.path, seen.body, seen.raw_body, seen.headers) == (
        {"thing_id": "t-1"},
        None,
        b"",
        {},
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b'{"name": "prod", "cidr":',  # FastAPI's 400
        b"[]",
        b'"prod"',
        b"null",
        b'{"name": "prod", "cidr": "10.0.0.0/16", "extra": 1}',  # FastAPI's 422s
        b'{"name": 1, "cidr": "10.0.0.0/16"}',
        b'{"name": "prod"}',
        b'{"name": "\\ud800", "cidr": "10.0.0.0/16"}',  # json.loads takes a lone surrogate
        b'{"name": "\xed\xa0\x80", "cidr": "10.0.0.0/16"}',  # ... encoded, too
        b'\xef\xbb\xbf{"name": "prod", "cidr": "10.0.0.0/16"}',  # ... and a byte-order mark
        b'{"name": "\xff", "cidr": "10.0.0.0/16"}',  # not UTF-8
        b'{"name": "a\tb", "cidr": "10.0.0.0/16"}',  # a raw control character
        b'{"name": "prod", "cidr": "10.0.0.0/16"} x',
        '{"name": "prod", "cidr": "10.0.0.0/16"}'.encode("utf-16"),
    ],
)
async def test_a_body_the_model_refuses_goes_to_fastapi_as_it_came(
    lane: FastLane, recorder: Recorder, body: bytes
) -> None:
    chunks = [
        {"type": "http.request", "body": body[:3], "more_body": True},
        {"type": "http.request", "body": body[3:], "more_body": False},
    ]
    assert await call(lane, chunks=chunks) == (200, b"fastapi")
    assert (recorder.fastapi, recorder.lane) == ([chunks], [])


@pytest.mark.parametrize(
    ("method", "path", "query", "headers"),
    [
        ("GET", "/v1/networks", b"", [JSON]),
        ("PUT", "/v1/networks", b"", [JSON]),
        ("POST", "/v1/networks/", b"", [JSON]),  # FastAPI redirects
        ("POST", "/v1/networks", b"dry_run=1", [JSON]),  # a parameter the route does not read
        ("POST", "/v1/networks", b"", []),  # FastAPI's 422 (no content type)
        ("POST", "/v1/networks", b"", [(b"content-type", b"application/json; charset=utf-8")]),
        ("POST", "/v1/networks", b"", [(b"content-type", b"application/merge-patch+json")]),
        ("POST", "/v1/networks", b"", [(b"content-type", b"Application/JSON")]),
        ("POST", "/v1/networks", b"", [JSON, JSON]),
        ("POST", "/v1/networks", b"", [JSON, (b"idempotency-key", b"")]),  # FastAPI's 422s
        ("POST", "/v1/networks", b"", [JSON, (b"idempotency-key", b"k" * 256)]),
        (
            "POST",
            "/v1/networks",
            b"",
            [JSON, (b"idempotency-key", b"a"), (b"idempotency-key", b"a")],
        ),
        ("POST", "/v1/networks", b"", [JSON, (b"traceparent", b"a"), (b"traceparent", b"b")]),
        ("POST", "/v1/networks", b"", [JSON, (b"x-min-position", b"-1")]),
    ],
)
async def test_headers_or_a_target_it_does_not_read_go_to_fastapi_with_the_body(
    lane: FastLane,
    recorder: Recorder,
    method: str,
    path: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
) -> None:
    assert await call(lane, path, None, headers, method, query) == (200, b"fastapi")
    assert (recorder.fastapi, recorder.lane) == ([[{"type": "http.request", "body": BODY}]], [])


@pytest.mark.parametrize("thing_id", ["a?b", "a#b", "a\\b", "a\tb", "a b", "a\nb"])
async def test_a_path_whose_url_path_differs_goes_to_fastapi(
    lane: FastLane, recorder: Recorder, thing_id: str
) -> None:
    # Starlette's `request.url.path` escapes or drops these: the problem `instance` and the
    # idempotency fingerprint would differ.
    status, _ = await call(lane, f"/v1/things/{thing_id}", [{"type": "http.request"}], [], "DELETE")
    assert (status, recorder.lane) == (200, [])


async def test_without_a_principal_fastapi_answers(lane: FastLane, recorder: Recorder) -> None:
    assert await call(lane, principal=None) == (200, b"fastapi")
    assert len(recorder.fastapi) == 1


async def test_a_body_on_a_route_that_takes_none_goes_to_fastapi(
    lane: FastLane, recorder: Recorder
) -> None:
    chunks = [{"type": "http.request", "body": b"{}"}]
    assert await call(lane, "/v1/things/t-1", chunks, [JSON], "DELETE") == (200, b"fastapi")
    assert (recorder.fastapi, recorder.lane) == ([chunks], [])


async def test_a_client_that_leaves_mid_body_is_left_to_fastapi(
    lane: FastLane, recorder: Recorder
) -> None:
    chunks = [{"type": "http.request", "body": BODY[:5], "more_body": True}]
    assert await call(lane, chunks=chunks) == (200, b"fastapi")
    assert recorder.fastapi == [[*chunks, {"type": "http.disconnect"}]]


async def test_a_body_the_guard_refuses_meets_fastapi_with_the_same_refusal(
    lane: FastLane, recorder: Recorder
) -> None:
    """WriteBodyGuard raises PayloadTooLarge from `receive`; FastAPI turns it into the 413."""
    first = {"type": "http.request", "body": b"{" * 10, "more_body": True}
    refusal = PayloadTooLarge("the body exceeds 65536 bytes")
    with pytest.raises(PayloadTooLarge) as raised:
        await call(lane, chunks=[first, refusal])  # type: ignore[list-item]
    assert raised.value is refusal
    assert (recorder.fastapi, recorder.lane) == ([[first]], [])  # then `receive` raised it


async def test_errors_are_answered_by_errors_then_by_the_apps_handlers(lane: FastLane) -> None:
    no_body = [{"type": "http.request"}]
    assert await call(lane, "/v1/things/refused", no_body, [], "DELETE") == (
        409,
        b"refused at /v1/things/refused",
    )
    with pytest.raises(RuntimeError):  # `Exception`'s handler is ServerErrorMiddleware's
        await call(lane, "/v1/things/boom", no_body, [], "DELETE")


@pytest.mark.parametrize(
    "body",
    [
        BODY,
        b'{"name": "a", "name": "b", "cidr": "x"}',  # the last of duplicate keys, in both
        b'{"cidr": "x", "name": "\\u00e9\\/\\"\\n"}',
        b' {"name": "\xc3\xa9\x7f", "cidr": "x"}\r\n',
    ],
)
def test_where_the_model_reads_a_body_fastapi_reads_the_same(body: bytes) -> None:
    route = FastRoute("/v1/networks", Recorder().handler, method="POST", body=NetworkBody)
    assert route.parse_body(body) == NetworkBody.model_validate(json.loads(body))


def test_the_fast_routes_are_the_fastapi_routes() -> None:
    """Every command (/v1 and the provisioner's) has a fast route with its method, path and body
    model."""
    fastapi = {
        (method, route.path): route.body_field and route.body_field.field_info.annotation
        for route in [*routes.router.routes, *routes.internal.routes]
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    lane = {(route.method, route.path): route.body for route in routes.FAST_ROUTES}
    assert lane == fastapi
    # The headers each reads, as its endpoint: the boots' call takes no Idempotency-Key.
    assert {route.path: route.headers for route in routes.FAST_ROUTES} == {
        route.path: routes.BOOT_HEADERS
        if route.path == "/internal/instances/running"
        else COMMAND_HEADERS
        for route in routes.FAST_ROUTES
    }
