"""The fast lane answers only requests it reads exactly as FastAPI would; the rest go on."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest
from starlette.datastructures import State
from starlette.responses import PlainTextResponse, Response

from infra.auth import Principal
from infra.http.fast_lane import FastLane, FastRoute, LaneRequest, NotForTheLane, counter
from infra.problems import NotFound

PRINCIPAL = Principal(tenant="acme", subject="alice", scopes=frozenset({"cloud:read"}))


class Recorder:
    def __init__(self) -> None:
        self.lane: list[LaneRequest] = []
        self.fastapi = 0

    async def handler(self, lane: LaneRequest) -> Response:
        self.lane.append(lane)
        if lane.path.get("thing_id") == "missing":
            raise NotFound("thing missing does not exist")
        if lane.path.get("thing_id") == "boom":
            raise RuntimeError("unexpected")
        return PlainTextResponse("lane")

    async def inner(self, scope: Any, receive: Any, send: Any) -> None:
        self.fastapi += 1
        await PlainTextResponse("fastapi")(scope, receive, send)


def errors(error: Exception, path: str) -> Response | None:
    return (
        PlainTextResponse(f"problem at {path}", status_code=404)
        if isinstance(error, NotFound)
        else None
    )


async def call(
    lane: FastLane,
    path: str,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    method: str = "GET",
    principal: Principal | None = PRINCIPAL,
) -> tuple[int, bytes, dict[str, Any]]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": headers or [],
        "state": {"principal": principal} if principal else {},
    }
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await lane(scope, receive, send)
    return sent[0]["status"], sent[1]["body"], scope


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def lane(recorder: Recorder) -> FastLane:
    routes = [
        FastRoute("/v1/things/{thing_id}", recorder.handler),
        FastRoute("/v1/things", recorder.handler, {"limit": counter(1, 200), "cursor": str}),
    ]
    return FastLane(recorder.inner, routes, State(), errors)


async def test_a_plain_get_is_answered_by_the_lane_with_its_parameters(
    lane: FastLane, recorder: Recorder
) -> None:
    status, body, scope = await call(lane, "/v1/things/t-1", headers=[(b"x-min-position", b"42")])
    assert (status, body, recorder.fastapi) == (200, b"lane", 0)
    [seen] = recorder.lane
    assert (seen.path, seen.query, seen.min_position, seen.principal) == (
        {"thing_id": "t-1"},
        {},
        42,
        PRINCIPAL,
    )
    assert scope["route"].path == "/v1/things/{thing_id}"  # the metrics label, as FastAPI's
    status, body, _ = await call(lane, "/v1/things", query=b"limit=7&cursor=abc%3D")
    assert (status, body) == (200, b"lane")
    assert recorder.lane[-1].query == {"limit": 7, "cursor": "abc="}


@pytest.mark.parametrize(
    ("method", "path", "query", "headers"),
    [
        ("POST", "/v1/things", b"", []),
        ("HEAD", "/v1/things/t-1", b"", []),
        ("GET", "/v1/things/t-1/", b"", []),  # FastAPI redirects or 404s
        ("GET", "/v1/things/a/b", b"", []),
        ("GET", "/v1/other", b"", []),
        ("GET", "/v1/things/t-1", b"as_of=3", []),  # a parameter this route does not read
        ("GET", "/v1/things", b"limit=0", []),  # FastAPI's 422
        ("GET", "/v1/things", b"limit=201", []),
        ("GET", "/v1/things", b"limit=007", []),  # FastAPI reads it; the lane does not
        ("GET", "/v1/things", b"limit=", []),
        ("GET", "/v1/things", b"limit=1&limit=2", []),
        ("GET", "/v1/things", b"limit=-1", []),
        ("GET", "/v1/things/t-1", b"", [(b"x-min-position", b"-1")]),
        ("GET", "/v1/things/t-1", b"", [(b"x-min-position", b"1e3")]),
        ("GET", "/v1/things/t-1", b"", [(b"x-min-position", b"9223372036854775808")]),
        ("GET", "/v1/things/t-1", b"", [(b"x-min-position", b"1"), (b"x-min-position", b"2")]),
    ],
)
async def test_anything_else_goes_on_to_fastapi(
    lane: FastLane,
    recorder: Recorder,
    method: str,
    path: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
) -> None:
    status, body, _ = await call(lane, path, query, headers, method)
    assert (status, body, recorder.fastapi, recorder.lane) == (200, b"fastapi", 1, [])


async def test_without_a_principal_fastapi_answers(lane: FastLane, recorder: Recorder) -> None:
    _, body, _ = await call(lane, "/v1/things/t-1", principal=None)
    assert (body, recorder.fastapi) == (b"fastapi", 1)


async def test_problems_are_answered_and_other_errors_raised(lane: FastLane) -> None:
    status, body, _ = await call(lane, "/v1/things/missing")
    assert (status, body) == (404, b"problem at /v1/things/missing")
    with pytest.raises(RuntimeError):
        await call(lane, "/v1/things/boom")


def test_counter_reads_plain_decimals_only() -> None:
    parse = counter(0, 10)
    assert [parse(text) for text in ("0", "7", "10")] == [0, 7, 10]
    for text in ("", "11", "+1", "01", " 1", "1.0", "٣"):
        with pytest.raises(NotForTheLane):
            parse(text)
