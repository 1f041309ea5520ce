"""HTTP entrypoints of the query service: every answer carries `X-Projection-Position`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request

from infra.http.json import JsonAnswer
from infra.http.principal import CurrentPrincipal
from infra.problems import NotFound
from query_api import read_models
from query_api.freshness import read_model_freshness
from query_api.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(prefix="/v1")


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


Pool = Annotated[asyncpg.Pool, Depends(_pool)]
MinPosition = Annotated[
    int | None,
    Header(alias="X-Min-Position", ge=0, description="Wait until the read model has it."),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


async def _answer(
    request: Request, pool: asyncpg.Pool, read_model: str, min_position: int | None, body: Any
) -> JsonAnswer:
    # Freshness first, then the read: the answer is at least as new as the header says.
    settings = request.app.state.settings
    freshness = await read_model_freshness(
        pool, read_model, min_position, settings.min_position_timeout_seconds
    )
    content = await body() if callable(body) else body
    return JsonAnswer(content, headers={"X-Projection-Position": str(freshness.position)})


def _uuid(value: str, kind: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{kind} {value} does not exist") from None


@router.get("/networks")
async def list_networks(
    request: Request,
    principal: CurrentPrincipal,
    pool: Pool,
    min_position: MinPosition = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> JsonAnswer:
    async def page() -> dict[str, Any]:
        items, next_cursor = await read_models.list_networks(pool, principal.tenant, limit, cursor)
        return {"items": items, "next_cursor": next_cursor}

    return await _answer(request, pool, "networks", min_position, page)


@router.get("/networks/{network_id}")
async def get_network(
    request: Request,
    network_id: str,
    principal: CurrentPrincipal,
    pool: Pool,
    min_position: MinPosition = None,
) -> JsonAnswer:
    async def one() -> dict[str, Any]:
        found = await read_models.get_network(pool, principal.tenant, _uuid(network_id, "network"))
        if found is None:
            raise NotFound(f"network {network_id} does not exist")
        return found

    return await _answer(request, pool, "networks", min_position, one)
