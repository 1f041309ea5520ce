"""Pure ASGI middleware: request ids, RED metrics, and the guard for write-request bodies."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram

from infra.auth import READ_SCOPE, WRITE_SCOPE, TokenVerifier
from infra.logs import REQUEST_ID, TENANT
from infra.problems import PayloadTooLarge, Problem, UnsupportedMediaType, render

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024
_WRITE_METHODS = {"POST", "PUT", "PATCH"}

REQUESTS = Counter(
    "cloudnet_http_requests_total",
    "HTTP requests answered, by service, route template, method and status.",
    ["service", "route", "method", "status"],
)
LATENCY = Histogram(
    "cloudnet_http_request_duration_seconds",
    "Time from request to the last response byte, by service, route template and method.",
    ["service", "route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class RequestContext:
    """Gives every request an `X-Request-Id` (the gateway's, or a new one) and measures it."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app, self.service = app, service
        # The labelled series by their labels: `labels()` takes a lock and builds a key on
        # every call, which a GET of the fast lane noticed.
        self._series: dict[tuple[Any, ...], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        REQUEST_ID.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append(
                    (b"x-request-id", request_id.encode("latin-1"))
                )
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self._labelled(REQUESTS, route, method, str(status)).inc()
            self._labelled(LATENCY, route, method).observe(time.perf_counter() - started)

    def _labelled(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (metric, *labels)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = metric.labels(self.service, *labels)
        return series


class WriteBodyGuard:
    """Refuses write bodies that are not JSON (415) or larger than 64 KiB (413) before any
    handler runs, so bad input never reaches the domain."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        problem = self._check(headers)
        if problem is not None:
            await render(problem)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise PayloadTooLarge(f"the body exceeds {MAX_BODY_BYTES} bytes")
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    def _check(headers: dict[bytes, bytes]) -> Problem | None:
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return PayloadTooLarge(f"the body exceeds {MAX_BODY_BYTES} bytes")
        has_body = (length is not None and length != b"0") or b"transfer-encoding" in headers
        if not has_body:
            return None
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media_type != b"application/json" and not media_type.endswith(b"+json"):
            return UnsupportedMediaType("send the body as application/json")
        return None


class BearerAuth:
    """Authenticates every `/v1/` request before its body is read: reads need `cloud:read`,
    writes `cloud:write`. The principal is left in `scope["state"]["principal"]`."""

    def __init__(self, app: ASGIApp, secret: str, audience: str) -> None:
        self.app = app
        self.verify = TokenVerifier(secret=secret, audience=audience)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(("/v1/", "/internal/")):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        try:
            principal = self.verify(authorization)
            read = scope["method"] in {"GET", "HEAD"}
            principal.require(READ_SCOPE if read else WRITE_SCOPE)
        except Problem as problem:
            await render(problem, instance=scope["path"])(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        TENANT.set(principal.tenant)
        await self.app(scope, receive, send)
