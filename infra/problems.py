"""HTTP problems (RFC 9457): the error types every service raises and the one place that
renders them as `application/problem+json`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

PROBLEM_TYPE_BASE = "https://cloudnet.dev/problems/"
PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error with an HTTP status; `kind` becomes the problem `type` URI's last segment."""

    status = 500
    title = "Internal Server Error"
    kind = "internal-error"

    def __init__(
        self,
        detail: str,
        *,
        kind: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.kind = kind or self.kind
        self.errors = errors
        self.headers = headers or {}


class MalformedJson(Problem):
    status, title, kind = 400, "Malformed JSON", "malformed-json"


class NotAuthenticated(Problem):
    status, title, kind = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="cloudnet"'})


class Forbidden(Problem):
    status, title, kind = 403, "Forbidden", "missing-scope"


class NotFound(Problem):
    status, title, kind = 404, "Not Found", "not-found"


class Conflict(Problem):
    status, title, kind = 409, "Conflict", "conflict"


class PayloadTooLarge(Problem):
    status, title, kind = 413, "Payload Too Large", "payload-too-large"


class UnsupportedMediaType(Problem):
    status, title, kind = 415, "Unsupported Media Type", "unsupported-media-type"


class ValidationFailed(Problem):
    status, title, kind = 422, "Unprocessable Content", "validation-failed"


class ServiceUnavailable(Problem):
    status, title, kind = 503, "Service Unavailable", "service-unavailable"

    def __init__(self, detail: str, *, retry_after_seconds: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_seconds)})


class GatewayTimeout(Problem):
    status, title, kind = 504, "Gateway Timeout", "timeout"


def problem_response(
    status: int,
    title: str,
    kind: str,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    instance: str | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    if instance is not None:
        body["instance"] = instance
    return Response(orjson.dumps(body), status, headers=headers, media_type=PROBLEM_JSON)


def render(problem: Problem, instance: str | None = None) -> Response:
    return problem_response(
        problem.status,
        problem.title,
        problem.kind,
        problem.detail,
        errors=problem.errors,
        headers=problem.headers,
        instance=instance,
    )
