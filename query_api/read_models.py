"""Queries over the read models' views; every one is scoped to the caller's tenant."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from query_api.pagination import decode_cursor, encode_cursor

_NETWORK_COLUMNS = "id, name, cidr, subnet_count, created_at, updated_at, version"


def _network(row: asyncpg.Record) -> dict[str, Any]:
    return dict(row)


async def list_networks(
    pool: asyncpg.Pool, tenant_id: str, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    after = decode_cursor(cursor, 2)
    if after is None:
        rows = await pool.fetch(
            f"SELECT {_NETWORK_COLUMNS} FROM rm_networks WHERE tenant_id = $1 "
            "ORDER BY created_at, id LIMIT $2",
            tenant_id,
            limit + 1,
        )
    else:
        rows = await pool.fetch(
            f"SELECT {_NETWORK_COLUMNS} FROM rm_networks WHERE tenant_id = $1 "
            "AND (created_at, id) > ($3, $4) ORDER BY created_at, id LIMIT $2",
            tenant_id,
            limit + 1,
            datetime.fromisoformat(after[0]),
            uuid.UUID(after[1]),
        )
    items = [_network(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor([last["created_at"].isoformat(), str(last["id"])])
    return items, next_cursor


async def get_network(
    pool: asyncpg.Pool, tenant_id: str, network_id: uuid.UUID
) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        f"SELECT {_NETWORK_COLUMNS} FROM rm_networks WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        network_id,
    )
    if row is None:
        return None
    return {**_network(row), "subnets": []}
