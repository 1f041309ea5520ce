"""A pure-ASGI lane for a service's hottest GET routes, in front of FastAPI's router.

FastAPI's route matching and dependency solving cost a GET more CPU than the SQL it runs (the
profile is in docs/BENCHMARKS.md). A route registered here is answered straight from its path,
its query string and `X-Min-Position`, after the service's own middleware (request id, metrics,
authentication) and without the router. The lane only takes requests whose every part it can
read exactly as FastAPI would accept it; anything else — another method or path, a query
parameter it does not know, a value it cannot parse, a repeated parameter — goes on to FastAPI
unchanged. So FastAPI stays the one definition of the API (OpenAPI, validation errors, every
other route), and each fast route calls the same function as its FastAPI endpoint.

Written by hand: no maintained library routes below a FastAPI app this way.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi.telemetry._api import _route_selected
from starlette.datastructures import State

from infra.auth import Principal

if TYPE_CHECKING:
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

#: PostgreSQL bigint: the largest position `X-Min-Position` may name.
MAX_POSITION = 2**63 - 1
_DIGITS = re.compile(r"(?:0|[1-9][0-9]{0,18})")
_PARAMETER = re.compile(r"\{([a-z_]+)\}")


class NotForTheLane(ValueError):
    """A value the lane does not read the way FastAPI would: FastAPI answers instead."""


def counter(low: int, high: int) -> Callable[[str], int]:
    """A plain decimal integer in `low..high` (no sign, no leading zero)."""

    def parse(text: str) -> int:
        if not _DIGITS.fullmatch(text) or not low <= (value := int(text)) <= high:
            raise NotForTheLane(text)
        return value

    return parse


_position = counter(0, MAX_POSITION)


@dataclass(frozen=True, slots=True)
class LaneRequest:
    """What a fast route's handler gets: the app's state, the caller, and parsed parameters."""

    state: State
    principal: Principal
    path: Mapping[str, str]
    query: Mapping[str, Any]
    min_position: int | None


@dataclass(frozen=True)
class FastRoute:
    """`GET path` (a FastAPI path template), the query parameters it reads with their parsers,
    and its handler. `path` also names the route in metrics and traces, like FastAPI's."""

    path: str
    handler: Callable[[LaneRequest], Awaitable[Response]]
    query: Mapping[str, Callable[[str], Any]] = field(default_factory=dict)
    regex: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        # Literal parts escaped, each `{name}` one path segment (Starlette's `str` convertor).
        parts = _PARAMETER.split(self.path)  # literal, name, literal, name, ..., literal
        pattern = "".join(
            f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part)
            for index, part in enumerate(parts)
        )
        object.__setattr__(self, "regex", re.compile(pattern))

    def parse_query(self, query_string: bytes) -> dict[str, Any] | None:
        """The parsed parameters, or None when FastAPI should read them."""
        if not query_string:
            return {}
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
        parsed: dict[str, Any] = {}
        for name, text in pairs:
            parse = self.query.get(name)
            if parse is None or name in parsed:
                return None
            try:
                parsed[name] = parse(text)
            except ValueError:
                return None
        return parsed


#: Turns an exception a handler raised into the answer FastAPI's handlers would give, or None.
ErrorAnswer = Callable[[Exception, str], "Response | None"]


class FastLane:
    """The middleware: innermost, so the service's own middleware has already run."""

    def __init__(
        self, app: ASGIApp, routes: Sequence[FastRoute], state: State, errors: ErrorAnswer
    ) -> None:
        self.app, self.routes, self.state, self.errors = app, routes, state, errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = self._read(scope) if scope["type"] == "http" else None
        if request is None:
            await self.app(scope, receive, send)
            return
        route, lane_request = request
        scope["route"] = route  # names the request in metrics, as FastAPI's routing would
        _route_selected(scope=scope, path=route.path)  # and in its server span
        try:
            response = await route.handler(lane_request)
        except Exception as error:
            answer = self.errors(error, scope["path"])
            if answer is None:
                raise
            response = answer
        await response(scope, receive, send)

    def _read(self, scope: Scope) -> tuple[FastRoute, LaneRequest] | None:
        if scope["method"] != "GET":
            return None
        path = scope["path"]
        for route in self.routes:
            match = route.regex.fullmatch(path)
            if match is not None:
                break
        else:
            return None
        principal = scope.get("state", {}).get("principal")
        query = route.parse_query(scope["query_string"])
        if not isinstance(principal, Principal) or query is None:
            return None
        min_position: int | None = None
        for name, value in scope["headers"]:
            if name == b"x-min-position":
                if min_position is not None:
                    return None
                try:
                    min_position = _position(value.decode("latin-1"))
                except ValueError:
                    return None
        lane_request = LaneRequest(self.state, principal, match.groupdict(), query, min_position)
        return route, lane_request
