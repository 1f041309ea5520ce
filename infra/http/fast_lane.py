"""A pure-ASGI lane for a service's hottest routes, in front of FastAPI's router.

FastAPI's route matching, dependency solving and body validation cost a GET more CPU than the
SQL it runs, and a command a quarter of its own (the profiles are in docs/BENCHMARKS.md). A route
registered here is answered straight from its path, its query string, the headers it reads and,
for a write, its JSON body, after the service's own middleware (request id, metrics,
authentication, the body guard) and without the router. The lane only takes requests whose
every part it can read exactly as FastAPI would accept it; anything else — another method or
path, a query parameter or header it does not know or cannot parse, a repeated one, a body its
model refuses — goes on to FastAPI unchanged (with the body the lane read handed on again). So
FastAPI stays the one definition of the API (OpenAPI, validation errors, every other route), and
each fast route calls the same function as its FastAPI endpoint.

Written by hand: no maintained library routes below a FastAPI app this way.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi.telemetry._api import _route_selected
from starlette.datastructures import State
from starlette.requests import Request

from infra.auth import Principal

if TYPE_CHECKING:
    from pydantic import BaseModel
    from starlette.responses import Response
    from starlette.types import ASGIApp, HTTPExceptionHandler, Message, Receive, Scope, Send

#: PostgreSQL bigint: the largest position `X-Min-Position` may name.
MAX_POSITION = 2**63 - 1
_DIGITS = re.compile(r"(?:0|[1-9][0-9]{0,18})")
_PARAMETER = re.compile(r"\{([a-z_]+)\}")
# One path segment, as Starlette's `str` convertor, but without the characters whose
# `request.url.path` differs from the ASGI path (it escapes ?, # and \, and drops tabs and line
# breaks): a problem's `instance` and an idempotency fingerprint read that one.
_SEGMENT = r"[^/?#\\\x00-\x20\x7f]+"
_JSON = b"application/json"


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
    #: The headers the route reads (by lower-case name), parsed; absent ones are left out.
    headers: Mapping[str, Any] = field(default_factory=dict)
    #: A write's body as its route's model validated it, and the bytes it came as.
    body: Any = None
    raw_body: bytes = b""
    #: `X-Request-Id`, the method and `request.url.path`: what a command records and hashes.
    request_id: str = ""
    method: str = "GET"
    url_path: str = ""


@dataclass(frozen=True)
class FastRoute:
    """`method path` (a FastAPI path template), the query parameters and headers it reads with
    their parsers, the model of its JSON body (if it takes one), and its handler. `path` also
    names the route in metrics and traces, like FastAPI's."""

    path: str
    handler: Callable[[LaneRequest], Awaitable[Response]]
    query: Mapping[str, Callable[[str], Any]] = field(default_factory=dict)
    method: str = "GET"
    body: type[BaseModel] | None = None
    headers: Mapping[str, Callable[[str], Any]] = field(default_factory=dict)
    regex: re.Pattern[str] = field(init=False)
    _header_parsers: dict[bytes, tuple[str, Callable[[str], Any]]] = field(init=False)

    def __post_init__(self) -> None:
        # Literal parts escaped, each `{name}` one path segment.
        parts = _PARAMETER.split(self.path)  # literal, name, literal, name, ..., literal
        pattern = "".join(
            f"(?P<{part}>{_SEGMENT})" if index % 2 else re.escape(part)
            for index, part in enumerate(parts)
        )
        object.__setattr__(self, "regex", re.compile(pattern))
        parsers = {
            name.lower().encode("latin-1"): (name, parse) for name, parse in self.headers.items()
        }
        object.__setattr__(self, "_header_parsers", parsers)

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

    def parse_headers(
        self, headers: Iterable[tuple[bytes, bytes]]
    ) -> tuple[int | None, dict[str, Any]] | None:
        """`X-Min-Position` and the route's own headers, parsed; None when FastAPI should read
        them: one is repeated or odd, or the route takes a body and its type is not exactly
        `application/json` (a charset or a `+json` type is FastAPI's to read)."""
        min_position: int | None = None
        parsed: dict[str, Any] = {}
        content_type: bytes | None = None
        for name, value in headers:
            if name == b"x-min-position":
                if min_position is not None:
                    return None
                try:
                    min_position = _position(value.decode("latin-1"))
                except ValueError:
                    return None
            elif name == b"content-type":
                if content_type is not None:
                    return None
                content_type = value
            elif (known := self._header_parsers.get(name)) is not None:
                header, parse = known
                if header in parsed:
                    return None
                try:
                    parsed[header] = parse(value.decode("latin-1"))
                except ValueError:
                    return None
        if self.body is not None and content_type != _JSON:
            return None
        return min_position, parsed

    def parse_body(self, raw: bytes) -> BaseModel | None:
        """The body as the route's model reads it, or None: FastAPI answers it (its 400 or
        422). Where `model_validate_json` accepts a body, FastAPI's `json.loads` then validation
        read the same values (duplicate keys: the last; tests/unit/test_fast_lane_commands.py);
        where they part (lone surrogates, a byte-order mark) the model refuses it."""
        assert self.body is not None
        try:
            return self.body.model_validate_json(raw)
        except ValueError:
            return None


#: Turns an exception a handler raised into the answer FastAPI's handlers would give, or None.
ErrorAnswer = Callable[[Exception, str], "Response | None"]


class FastLane:
    """The middleware: innermost, so the service's own middleware has already run.

    An error a handler raises is answered by `errors` (the problems every service renders
    alike) or else, as FastAPI's ExceptionMiddleware would, by the handler the service
    registered for its type (the command service's domain errors, command_api/errors.py)."""

    def __init__(
        self, app: ASGIApp, routes: Sequence[FastRoute], state: State, errors: ErrorAnswer
    ) -> None:
        self.app, self.routes, self.state, self.errors = app, routes, state, errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._route(scope) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        route, match = found
        lane_request, receive = await self._read(route, match, scope, receive)
        if lane_request is None:  # FastAPI reads it, body and all
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # names the request in metrics, as FastAPI's routing would
        _route_selected(scope=scope, path=route.path)  # and in its server span
        try:
            response = await route.handler(lane_request)
        except Exception as error:
            answer = await self._answer(error, scope, receive)
            if answer is None:
                raise
            response = answer
        await response(scope, receive, send)

    def _route(self, scope: Scope) -> tuple[FastRoute, re.Match[str]] | None:
        method, path = scope["method"], scope["path"]
        for route in self.routes:
            if route.method == method and (match := route.regex.fullmatch(path)) is not None:
                return route, match
        return None

    async def _read(
        self, route: FastRoute, match: re.Match[str], scope: Scope, receive: Receive
    ) -> tuple[LaneRequest | None, Receive]:
        """The request as the route's handler takes it, or None for FastAPI; and the `receive`
        to go on with, which hands on again the body the lane read."""
        state = scope.get("state", {})
        principal = state.get("principal")
        query = route.parse_query(scope["query_string"])
        headers = route.parse_headers(scope["headers"])
        if not isinstance(principal, Principal) or query is None or headers is None:
            return None, receive
        body: BaseModel | None = None
        raw = b""
        if route.method != "GET":
            received, receive = await _received(receive, takes_body=route.body is not None)
            if received is None:
                return None, receive
            raw = received
            if route.body is not None and (body := route.parse_body(raw)) is None:
                return None, receive
        min_position, parsed = headers
        lane_request = LaneRequest(
            self.state,
            principal,
            match.groupdict(),
            query,
            min_position,
            headers=parsed,
            body=body,
            raw_body=raw,
            request_id=state.get("request_id", ""),
            method=route.method,
            url_path=scope["path"],
        )
        return lane_request, receive

    async def _answer(self, error: Exception, scope: Scope, receive: Receive) -> Response | None:
        answer = self.errors(error, scope["path"])
        if answer is not None:
            return answer
        handlers: Mapping[Any, HTTPExceptionHandler] = getattr(
            scope.get("app"), "exception_handlers", {}
        )
        # ExceptionMiddleware's lookup; `Exception`'s handler belongs to ServerErrorMiddleware,
        # which answers 500 and re-raises, so an unexpected error is raised to it as from FastAPI.
        for kind in type(error).__mro__:
            if kind is Exception:
                return None
            handler = handlers.get(kind)
            if handler is not None:
                handled = handler(Request(scope, receive), error)
                return await handled if inspect.isawaitable(handled) else handled
        return None


async def _received(receive: Receive, *, takes_body: bool) -> tuple[bytes | None, Receive]:
    """The request's body, and a `receive` that hands its messages on again, so that FastAPI
    reads the same request if the lane declines it. None instead of the body when it did not
    arrive whole (the client left, or WriteBodyGuard refused it: FastAPI meets that as it
    always has) or came to a route that takes none."""
    messages: list[Message] = []
    refusal: Exception | None = None
    whole = False
    try:
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or (message.get("body") and not takes_body):
                break
            if not message.get("more_body", False):
                whole = True
                break
    except Exception as error:  # WriteBodyGuard's PayloadTooLarge: FastAPI makes it the 413
        refusal = error
    pending = iter(messages)

    async def replay() -> Message:
        message = next(pending, None)
        if message is not None:
            return message
        if refusal is not None:
            raise refusal
        return await receive()

    if not whole:
        return None, replay
    if len(messages) == 1:
        return messages[0].get("body", b""), replay
    return b"".join(message.get("body", b"") for message in messages), replay
