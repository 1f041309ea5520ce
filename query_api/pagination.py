"""Opaque keyset cursors: the sort key of the last item of a page, base64url-encoded JSON."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from infra.problems import ValidationFailed

DEFAULT_LIMIT, MAX_LIMIT = 50, 200


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    if cursor is None:
        return None
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        key = None
    if not isinstance(key, list) or len(key) != arity:
        raise ValidationFailed(
            "the cursor is not one this API handed out",
            errors=[{"field": "cursor", "message": "invalid cursor"}],
        )
    return key
