"""HTTP entrypoints of the query service. Every answer carries `X-Projection-Position` and
honours `X-Min-Position` (read your writes, bounded wait, else 504)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Query, Request
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from infra.auth import Principal
from infra.dependencies import DATABASE_DOWN, connection_broke
from infra.http.fast_lane import MAX_POSITION, FastRoute, LaneRequest, NotForTheLane, counter
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
MAX_STREAM_VERSION = 2**31 - 1


class InstanceStateFilter(StrEnum):
    pending = "pending"
    running = "running"
    stopped = "stopped"
    terminated = "terminated"


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


# Lists page by (created_at, id), the activity by position, a stream's history by version.
def _row_cursor(cursor: str | None) -> str | None:
    return _checked_cursor(cursor, _timestamp, _uuid_text)


def _position_cursor(cursor: str | None) -> str | None:
    return _checked_cursor(cursor, _counter(MAX_POSITION))


def _version_cursor(cursor: str | None) -> str | None:
    return _checked_cursor(cursor, _counter(MAX_STREAM_VERSION))


Cursor = Annotated[str | None, Query(description="The `next_cursor` of the previous page")]


#: Tries of one read when its connection breaks (see `_answer`).
READ_ATTEMPTS = 3


async def _answer(
    lane: LaneRequest, read_models_used: Sequence[str], read: Callable[[], Awaitable[Any]]
) -> JsonAnswer:
    async def answer() -> JsonAnswer:
        # Freshness first, then the read: the answer is at least as new as the header says.
        # Position 0 comes before the first event: every read model includes it.
        freshness = await read_model_freshness(
            state.pool,
            read_models_used,
            lane.min_position or None,
            state.settings.min_position_timeout_seconds,
            state.recent_freshness,
        )
        content = await read()
        return JsonAnswer(content, headers={"X-Projection-Position": str(freshness.position)})

    state = lane.state
    async with state.breakers.guard("read_models", failures=DATABASE_DOWN):
        try:
            return await answer()
        except Exception as error:
            if not connection_broke(error):
                raise
        # A read is safe to repeat: a pooled connection that broke, or a new one that could not
        # be opened (seen in the containerised mesh while a sibling replica was killed), costs
        # a retry on another connection, not a 503. A database that is down fails every try.
        # The retrier is built only here: per GET it cost a sixth of the request's CPU.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(connection_broke),
            stop=stop_after_attempt(READ_ATTEMPTS - 1),
            wait=wait_exponential_jitter(multiplier=0.01, jitter=0.01, max=0.1),
            reraise=True,
        ):
            with attempt:
                return await answer()
    raise AssertionError("unreachable: the last try returns or raises")


Item = TypeVar("Item")
Source = TypeVar("Source")


def _uuid(value: str, kind: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{kind} {value} does not exist") from None


def _found(item: Item | None, kind: str, item_id: str) -> Item:
    if item is None:
        raise NotFound(f"{kind} {item_id} does not exist")
    return item


def _page(page: read_models.Page) -> dict[str, Any]:
    items, next_cursor = page
    return {"items": items, "next_cursor": next_cursor}


# Each read is one handler of a `LaneRequest`, called by its FastAPI endpoint below and, for
# plain requests, straight from the fast lane (`FAST_ROUTES`, infra/http/fast_lane.py).


async def networks_page(lane: LaneRequest) -> JsonAnswer:
    limit, cursor = lane.query.get("limit", DEFAULT_LIMIT), _row_cursor(lane.query.get("cursor"))
    pool, tenant = lane.state.pool, lane.principal.tenant

    async def read() -> dict[str, Any]:
        return _page(await read_models.list_networks(pool, tenant, limit, cursor))

    return await _answer(lane, ["networks"], read)


async def network(lane: LaneRequest) -> JsonAnswer:
    network_id, as_of = lane.path["network_id"], lane.query.get("as_of")
    nid = _uuid(network_id, "network")
    pool, tenant = lane.state.pool, lane.principal.tenant

    async def read() -> dict[str, Any]:
        if as_of is not None:
            history = await read_models.network_history(pool, tenant, nid, as_of)
            return _found(network_as_of(history), "network", network_id)
        return _found(await read_models.get_network(pool, tenant, nid), "network", network_id)

    return await _answer(lane, [EVENT_LOG] if as_of is not None else ["networks", "subnets"], read)


async def _one(
    lane: LaneRequest,
    kind: str,
    get: Callable[[Source, str, uuid.UUID], Awaitable[Item | None]],
    source: Source,
) -> JsonAnswer:
    """One item of read model `<kind>s` by its `<kind>_id` from `source` (the pool, or the
    batched point reads): 404 if not the caller's."""
    item_id = lane.path[f"{kind}_id"]
    uid = _uuid(item_id, kind)
    tenant = lane.principal.tenant

    async def read() -> Item:
        return _found(await get(source, tenant, uid), kind, item_id)

    return await _answer(lane, [f"{kind}s"], read)


async def subnet(lane: LaneRequest) -> JsonAnswer:
    return await _one(lane, "subnet", read_models.get_subnet, lane.state.pool)


async def instances_page(lane: LaneRequest) -> JsonAnswer:
    query = lane.query
    state = query.get("state")
    filters = {
        "state": state.value if state else None,
        "network_id": query.get("network_id"),
        "subnet_id": query.get("subnet_id"),
    }
    limit, cursor = query.get("limit", DEFAULT_LIMIT), _row_cursor(query.get("cursor"))
    pool, tenant = lane.state.pool, lane.principal.tenant

    async def read() -> dict[str, Any]:
        return _page(await read_models.list_instances(pool, tenant, filters, limit, cursor))

    return await _answer(lane, ["instances"], read)


async def instance(lane: LaneRequest) -> JsonAnswer:
    return await _one(lane, "instance", read_models.get_instance, lane.state.instance_reads)


async def activity_page(lane: LaneRequest) -> JsonAnswer:
    limit = lane.query.get("limit", DEFAULT_LIMIT)
    cursor = _position_cursor(lane.query.get("cursor"))
    pool, tenant = lane.state.pool, lane.principal.tenant

    async def read() -> dict[str, Any]:
        return _page(await read_models.activity(pool, tenant, limit, cursor))

    return await _answer(lane, [EVENT_LOG], read)


async def stream_page(lane: LaneRequest) -> JsonAnswer:
    stream_id = lane.path["stream_id"]
    limit = lane.query.get("limit", DEFAULT_LIMIT)
    cursor = _version_cursor(lane.query.get("cursor"))
    pool, tenant = lane.state.pool, lane.principal.tenant

    async def read() -> dict[str, Any]:
        page = await read_models.stream_events(pool, tenant, stream_id, limit, cursor)
        if page is None:
            raise NotFound(f"stream {stream_id} does not exist")
        return _page(page)

    return await _answer(lane, [EVENT_LOG], read)


def _lane(
    request: Request,
    principal: Principal,
    min_position: int | None,
    path: dict[str, str] | None = None,
    **query: Any,
) -> LaneRequest:
    given = {name: value for name, value in query.items() if value is not None}
    return LaneRequest(request.app.state, principal, path or {}, given, min_position)


@router.get("/networks")
async def list_networks(
    request: Request,
    principal: CurrentPrincipal,
    min_position: MinPosition = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> JsonAnswer:
    return await networks_page(_lane(request, principal, min_position, limit=limit, cursor=cursor))


@router.get("/networks/{network_id}")
async def get_network(
    request: Request,
    network_id: str,
    principal: CurrentPrincipal,
    min_position: MinPosition = None,
    as_of: Annotated[
        int | None, Query(ge=0, le=MAX_POSITION, description="A global event position")
    ] = None,
) -> JsonAnswer:
    path = {"network_id": network_id}
    return await network(_lane(request, principal, min_position, path, as_of=as_of))


@router.get("/subnets/{subnet_id}")
async def get_subnet(
    request: Request,
    subnet_id: str,
    principal: CurrentPrincipal,
    min_position: MinPosition = None,
) -> JsonAnswer:
    return await subnet(_lane(request, principal, min_position, {"subnet_id": subnet_id}))


@router.get("/instances")
async def list_instances(
    request: Request,
    principal: CurrentPrincipal,
    min_position: MinPosition = None,
    state: InstanceStateFilter | None = None,
    network_id: uuid.UUID | None = None,
    subnet_id: uuid.UUID | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> JsonAnswer:
    lane = _lane(
        request,
        principal,
        min_position,
        state=state,
        network_id=network_id,
        subnet_id=subnet_id,
        limit=limit,
        cursor=cursor,
    )
    return await instances_page(lane)


@router.get("/instances/{instance_id}")
async def get_instance(
    request: Request,
    instance_id: str,
    principal: CurrentPrincipal,
    min_position: MinPosition = None,
) -> JsonAnswer:
    return await instance(_lane(request, principal, min_position, {"instance_id": instance_id}))


@router.get("/activity")
async def activity(
    request: Request,
    principal: CurrentPrincipal,
    min_position: MinPosition = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> JsonAnswer:
    return await activity_page(_lane(request, principal, min_position, limit=limit, cursor=cursor))


@router.get("/streams/{stream_id}/events")
async def stream_events(
    request: Request,
    stream_id: str,
    principal: CurrentPrincipal,
    min_position: MinPosition = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> JsonAnswer:
    path = {"stream_id": stream_id}
    return await stream_page(
        _lane(request, principal, min_position, path, limit=limit, cursor=cursor)
    )


def _canonical_uuid(text: str) -> uuid.UUID:
    if not _UUID.fullmatch(text):
        raise NotForTheLane(text)
    return uuid.UUID(text)


_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_PAGE: dict[str, Callable[[str], Any]] = {"limit": counter(1, MAX_LIMIT), "cursor": str}

#: The reads the fast lane answers when their parameters are plain (see infra/http/fast_lane.py).
FAST_ROUTES = (
    FastRoute("/v1/instances/{instance_id}", instance),
    FastRoute(
        "/v1/instances",
        instances_page,
        {
            **_PAGE,
            "state": InstanceStateFilter,
            "network_id": _canonical_uuid,
            "subnet_id": _canonical_uuid,
        },
    ),
    FastRoute("/v1/networks/{network_id}", network),
    FastRoute("/v1/networks", networks_page, _PAGE),
    FastRoute("/v1/subnets/{subnet_id}", subnet),
    FastRoute("/v1/activity", activity_page, _PAGE),
    FastRoute("/v1/streams/{stream_id}/events", stream_page, _PAGE),
)
