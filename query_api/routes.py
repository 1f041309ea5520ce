"""HTTP entrypoints of the query service. Every answer carries `X-Projection-Position` and
honours `X-Min-Position` (read your writes, bounded wait, else 504)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request

from infra.dependencies import DATABASE_DOWN
from infra.http.json import JsonAnswer
from infra.http.principal import CurrentPrincipal
from infra.problems import NotFound, ValidationFailed
from query_api import read_models
from query_api.freshness import EVENT_LOG, read_model_freshness
from query_api.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor
from query_api.time_travel import network_as_of

router = APIRouter(prefix="/v1")

#: Positions are PostgreSQL bigints, stream versions integers: larger numbers are refused
#: with a 422 rather than sent to a query that fails.
MAX_POSITION, MAX_STREAM_VERSION = 2**63 - 1, 2**31 - 1


class InstanceStateFilter(StrEnum):
    pending = "pending"
    running = "running"
    stopped = "stopped"
    terminated = "terminated"


async def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


Pool = Annotated[asyncpg.Pool, Depends(_pool)]
MinPosition = Annotated[
    int | None,
    Header(
        alias="X-Min-Position",
        ge=0,
        le=MAX_POSITION,
        description="Wait until the read model has it.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def _checked_cursor(cursor: str | None, *parts: Callable[[Any], object]) -> str | None:
    """The cursor, if it decodes to one value per part that each part accepts: a forged cursor
    is a 422, never a query that fails."""
    key = decode_cursor(cursor, len(parts))
    if key is None:
        return None
    try:
        for value, part in zip(key, parts, strict=True):
            part(value)
    except (TypeError, ValueError, OverflowError):
        raise ValidationFailed(
            "the cursor is not one this API handed out",
            errors=[{"field": "cursor", "message": "invalid cursor"}],
        ) from None
    return cursor


def _timestamp(value: str) -> object:
    moment = datetime.fromisoformat(value)
    return moment.astimezone(UTC) if moment.tzinfo else moment  # overflows near year 1 or 9999


def _counter(maximum: int) -> Callable[[Any], object]:
    def check(value: int) -> object:
        if type(value) is not int or not 0 <= value <= maximum:
            raise ValueError(f"not an integer in 0..{maximum}")
        return value

    return check


def _uuid_text(value: str) -> object:
    if not isinstance(value, str):
        raise TypeError("not a uuid")
    return uuid.UUID(value)


async def _row_cursor(cursor: str | None = None) -> str | None:
    return _checked_cursor(cursor, _timestamp, _uuid_text)


async def _position_cursor(cursor: str | None = None) -> str | None:
    return _checked_cursor(cursor, _counter(MAX_POSITION))


async def _version_cursor(cursor: str | None = None) -> str | None:
    return _checked_cursor(cursor, _counter(MAX_STREAM_VERSION))


#: Lists page by (created_at, id), the activity by position, a stream's history by version.
RowCursor = Annotated[str | None, Depends(_row_cursor)]
PositionCursor = Annotated[str | None, Depends(_position_cursor)]
VersionCursor = Annotated[str | None, Depends(_version_cursor)]


async def _answer(
    request: Request,
    pool: asyncpg.Pool,
    read_models_used: Sequence[str],
    min_position: int | None,
    read: Callable[[], Awaitable[Any]],
) -> JsonAnswer:
    # Freshness first, then the read: the answer is at least as new as the header says.
    settings = request.app.state.settings
    async with request.app.state.breakers.guard("read_models", failures=DATABASE_DOWN):
        # Position 0 comes before the first event: every read model includes it.
        freshness = await read_model_freshness(
            pool,
            read_models_used,
            min_position or None,
            settings.min_position_timeout_seconds,
            request.app.state.recent_freshness,
        )
        content = await read()
    return JsonAnswer(content, headers={"X-Projection-Position": str(freshness.position)})


def _uuid(value: str, kind: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{kind} {value} does not exist") from None


def _found(item: dict[str, Any] | None, kind: str, item_id: str) -> dict[str, Any]:
    if item is None:
        raise NotFound(f"{kind} {item_id} does not exist")
    return item


def _page(page: read_models.Page) -> dict[str, Any]:
    items, next_cursor = page
    return {"items": items, "next_cursor": next_cursor}


@router.get("/networks")
async def list_networks(
    request: Request,
    principal: CurrentPrincipal,
    pool: Pool,
    min_position: MinPosition = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: RowCursor = None,
) -> JsonAnswer:
    async def read() -> dict[str, Any]:
        return _page(await read_models.list_networks(pool, principal.tenant, limit, cursor))

    return await _answer(request, pool, ["networks"], min_position, read)


@router.get("/networks/{network_id}")
async def get_network(
    request: Request,
    network_id: str,
    principal: CurrentPrincipal,
    pool: Pool,
    min_position: MinPosition = None,
    as_of: Annotated[
        int | None, Query(ge=0, le=MAX_POSITION, description="A global event position")
    ] = None,
) -> JsonAnswer:
    nid = _uuid(network_id, "network")

    async def read() -> dict[str, Any]:
        if as_of is not None:
            history = await read_models.network_history(pool, principal.tenant, nid, as_of)
            return _found(network_as_of(history), "network", network_id)
        found = await read_models.get_network(pool, principal.tenant, nid)
        return _found(found, "network", network_id)

    used = [EVENT_LOG] if as_of is not None else ["networks", "subnets"]
    return await _answer(request, pool, used, min_position, read)


@router.get("/subnets/{subnet_id}")
async def get_subnet(
    request: Request,
    subnet_id: str,
    principal: CurrentPrincipal,
    pool: Pool,
    min_position: MinPosition = None,
) -> JsonAnswer:
    sid = _uuid(subnet_id, "subnet")

    async def read() -> dict[str, Any]:
        return _found(
            await read_models.get_subnet(pool, principal.tenant, sid), "subnet", subnet_id
        )

    return await _answer(request, pool, ["subnets"], min_position, read)


@router.get("/instances")
async def list_instances(
    request: Request,
    principal: CurrentPrincipal,
    pool: Pool,
    min_position: MinPosition = None,
    state: InstanceStateFilter | None = None,
    network_id: uuid.UUID | None = None,
    subnet_id: uuid.UUID | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: RowCursor = None,
) -> JsonAnswer:
    filters = {
        "state": state.value if state else None,
        "network_id": network_id,
        "subnet_id": subnet_id,
    }

    async def read() -> dict[str, Any]:
        page = await read_models.list_instances(pool, principal.tenant, filters, limit, cursor)
        return _page(page)

    return await _answer(request, pool, ["instances"], min_position, read)


@router.get("/instances/{instance_id}")
async def get_instance(
    request: Request,
    instance_id: str,
    principal: CurrentPrincipal,
    pool: Pool,
    min_position: MinPosition = None,
) -> JsonAnswer:
    iid = _uuid(instance_id, "instance")

    async def read() -> dict[str, Any]:
        found = await read_models.get_instance(pool, principal.tenant, iid)
        return _found(found, "instance", instance_id)

    return await _answer(request, pool, ["instances"], min_position, read)


@router.get("/activity")
async def activity(
    request: Request,
    principal: CurrentPrincipal,
    pool: Pool,
    min_position: MinPosition = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: PositionCursor = None,
) -> JsonAnswer:
    async def read() -> dict[str, Any]:
        return _page(await read_models.activity(pool, principal.tenant, limit, cursor))

    return await _answer(request, pool, [EVENT_LOG], min_position, read)


@router.get("/streams/{stream_id}/events")
async def stream_events(
    request: Request,
    stream_id: str,
    principal: CurrentPrincipal,
    pool: Pool,
    min_position: MinPosition = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: VersionCursor = None,
) -> JsonAnswer:
    async def read() -> dict[str, Any]:
        page = await read_models.stream_events(pool, principal.tenant, stream_id, limit, cursor)
        if page is None:
            raise NotFound(f"stream {stream_id} does not exist")
        return _page(page)

    return await _answer(request, pool, [EVENT_LOG], min_position, read)
