"""The problem answers (DESIGN §4) in the services' OpenAPI documents, so that the documents say
what clients really get: `application/problem+json` bodies for every refusal, not FastAPI's
`HTTPValidationError`. See https://fastapi.tiangolo.com/advanced/additional-responses/
"""

from __future__ import annotations

from typing import Any

from infra.problems import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

_MEANINGS = {
    400: "Malformed request or JSON body",
    401: "No or invalid bearer token",
    403: "The token lacks the scope",
    404: "Unknown id, or another tenant's",
    409: "A domain rule refuses the command",
    413: "Body over 64 KiB",
    415: "Body is not JSON",
    422: "Invalid or unknown fields, parameters or headers",
    429: "Too many requests",
    502: "No service instance answered the gateway",
    503: "A dependency is down or a breaker is open",
    504: "Timed out (e.g. X-Min-Position not reached)",
}

#: What any `/v1` request may be answered (writes add `WRITE_PROBLEMS`).
EVERY_REQUEST_PROBLEMS = (400, 401, 403, 404, 422, 429, 502, 503, 504)
#: What only commands answer: bodies that are too large or not JSON, and rule violations.
WRITE_PROBLEMS = (409, 413, 415)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` declarations of problem answers with these statuses."""
    return {
        status: {
            "description": _MEANINGS[status],
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses
    }
