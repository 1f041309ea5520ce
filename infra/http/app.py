"""The FastAPI application every cloudnet HTTP service is built on: one place that renders
errors as problems, serves `/health` and `/metrics`, and installs the middleware."""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.responses import Response

from infra.breakers import BreakerOpen
from infra.dependencies import DATABASE_DOWN
from infra.http.fast_lane import FastLane, FastRoute
from infra.http.json import JsonAnswer
from infra.http.middleware import BearerAuth, RequestContext, WriteBodyGuard
from infra.http.openapi import EVERY_REQUEST_PROBLEMS, problem_responses
from infra.problems import (
    MalformedJson,
    Problem,
    ServiceUnavailable,
    ValidationFailed,
    problem_response,
    render,
)

log = logging.getLogger(__name__)

#: Answers (ready, detail); the service is ready when every dependency it needs answers.
HealthCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


def create_service_app(
    *,
    service: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    health: HealthCheck,
    jwt_secret: str,
    jwt_audience: str = "cloudnet",
    version: str = "1.0.0",
    fast_routes: Sequence[FastRoute] = (),
    server_spans: bool = True,
) -> FastAPI:
    """The app every service serves. `server_spans`: FastAPI's own OpenTelemetry span per
    request, which a process that exports no traces (`tracing = none`) leaves off: there they
    are no-ops that cost the command services about 5 % of their CPU per create (BENCHMARKS.md).
    The `traceparent` a request carries reaches its events either way (`command_api.routes`)."""

    @asynccontextmanager
    async def started_then_tuned(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app):
            tune_garbage_collector()
            yield

    app = FastAPI(
        title=f"cloudnet {service}",
        version=version,
        lifespan=started_then_tuned,
        default_response_class=JsonAnswer,
        responses=problem_responses(*EVERY_REQUEST_PROBLEMS),
        # FastAPI's own OpenTelemetry server spans (they continue an incoming `traceparent`);
        # our Prometheus metrics and JSON logs already cover the rest.
        telemetry={
            "tracing": server_spans,
            "operation_spans": False,
            "metrics": False,
            "logs": False,
        },
    )
    # Outermost last: request id and metrics, then auth, then the body guard, then the fast
    # lane for the hottest routes (infra/http/fast_lane.py).
    if fast_routes:
        app.add_middleware(FastLane, routes=fast_routes, state=app.state, errors=error_answer)
    app.add_middleware(WriteBodyGuard)
    app.add_middleware(BearerAuth, secret=jwt_secret, audience=jwt_audience)
    app.add_middleware(RequestContext, service=service)
    _install_problem_handlers(app)

    @app.get("/health", include_in_schema=False)
    async def health_endpoint() -> Response:
        ready, detail = await health()
        body = {"status": "ok" if ready else "unavailable", "service": service, **detail}
        return JsonAnswer(body, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


#: The collector's thresholds once a service started: a young collection every 50,000 net
#: allocations instead of 700 (a request allocates hundreds of objects, so the default collected
#: every request or two: 0.25 ms each in a busy command service), the older generations at their
#: default pace. Measured with wrk (`POST /v1/networks`), alternating with the default twice:
#: creates 2,402 and 2,046/s against 2,227 and 1,903/s, the command services' CPU per create
#: 0.351 and 0.395 ms against 0.389 and 0.419 (docs/BENCHMARKS.md, eighth session).
GC_THRESHOLDS = (50_000, 20, 10)


def tune_garbage_collector() -> None:
    """Once startup is done: leave what it built (modules, the app, pools, schemas: about
    50,000 objects) out of the collector's full passes from now on, and collect the young less
    often. Each full pass walks every tracked object, and on this machine that took 20 ms in an
    idle query service and up to 165 ms in a busy projector, stalling every request and batch
    it had in hand. What is frozen is still freed by reference counting when dropped; only
    cycles among startup objects would stay, and startup builds to keep, not to drop. See
    https://docs.python.org/3/library/gc.html#gc.freeze"""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def error_answer(error: Exception, path: str) -> Response | None:
    """The answer to a problem, an open breaker or an unreachable database; None for others."""
    if isinstance(error, Problem):
        return render(error, instance=path)
    if isinstance(error, BreakerOpen):
        retry_after = max(1, math.ceil(error.retry_after))
        return render(ServiceUnavailable(str(error), retry_after_seconds=retry_after), path)
    if isinstance(error, DATABASE_DOWN):
        log.warning("dependency down on %s: %r", path, error)
        return render(ServiceUnavailable("a dependency is unreachable; retry shortly"), path)
    return None


def _install_problem_handlers(app: FastAPI) -> None:
    async def on_error(request: Request, error: Exception) -> Response:
        answer = error_answer(error, request.url.path)
        assert answer is not None  # registered only for the types error_answer answers
        return answer

    for known in (Problem, BreakerOpen, *DATABASE_DOWN):
        app.add_exception_handler(known, on_error)

    @app.exception_handler(RequestValidationError)
    async def on_invalid_request(request: Request, error: RequestValidationError) -> Response:
        errors = error.errors()
        if any(item.get("type") == "json_invalid" for item in errors):
            return render(MalformedJson("the body is not valid JSON"), request.url.path)
        details = [
            {
                "field": ".".join(str(part) for part in item["loc"][1:]) or "body",
                "message": item["msg"],
            }
            for item in errors
        ]
        problem = ValidationFailed("the request has invalid or unknown fields", errors=details)
        return render(problem, request.url.path)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, error: HTTPException) -> Response:
        if isinstance(error.__cause__, Problem):  # raised while FastAPI read the body
            return render(error.__cause__, request.url.path)
        if error.status_code == 400:  # FastAPI could not decode the body: bad UTF-8, too deep
            return render(MalformedJson("the body is not valid UTF-8 JSON"), request.url.path)
        title = {404: "Not Found", 405: "Method Not Allowed"}.get(error.status_code, "Error")
        kind = title.lower().replace(" ", "-")
        return problem_response(
            error.status_code,
            title,
            kind,
            str(error.detail),
            headers=error.headers,
            instance=request.url.path,
        )

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "Internal Server Error",
            "internal-error",
            "an unexpected error occurred",
            instance=request.url.path,
        )
