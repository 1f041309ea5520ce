"""Queries over the read models' views and the event log; every one is tenant-scoped.

Instances are read as the JSON documents their read model stores (`projectors.instances`),
embedded in the answer as they are (`orjson.Fragment`), not decoded column by column.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from query_api.pagination import decode_cursor, encode_cursor
from query_api.point_reads import PointReads

#: A page's items (rows, or their stored JSON documents as one array) and the next cursor.
Page = tuple[list[dict[str, Any]] | orjson.Fragment, str | None]

_NETWORK = "id, name, cidr, subnet_count, created_at, updated_at, version"
_SUBNET = "id, network_id, name, cidr, total, used, free, created_at, updated_at, version"
_EVENT = (
    "position, event_id, stream_id, stream_version, type, schema_version, data, metadata, "
    "recorded_at"
)


async def _keyset_rows(
    pool: asyncpg.Pool,
    select: str,
    filters: Sequence[tuple[str, Any]],
    limit: int,
    cursor: str | None,
) -> list[asyncpg.Record]:
    """One page ordered by (created_at, id), and one row more if a next page exists; the
    cursor is the previous page's last sort key."""
    conditions = [f"{column} = ${n}" for n, (column, _) in enumerate(filters, start=1)]
    arguments = [value for _, value in filters]
    after = decode_cursor(cursor, 2)
    if after is not None:
        conditions.append(f"(created_at, id) > (${len(arguments) + 1}, ${len(arguments) + 2})")
        arguments += [datetime.fromisoformat(after[0]), uuid.UUID(after[1])]
    arguments.append(limit + 1)
    where = " AND ".join(conditions)
    return list(
        await pool.fetch(
            f"{select} WHERE {where} ORDER BY created_at, id LIMIT ${len(arguments)}", *arguments
        )
    )


async def _keyset_page(
    pool: asyncpg.Pool,
    select: str,
    filters: Sequence[tuple[str, Any]],
    limit: int,
    cursor: str | None,
) -> Page:
    rows = await _keyset_rows(pool, select, filters, limit, cursor)
    items = [dict(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor([last["created_at"].isoformat(), str(last["id"])])
    return items, next_cursor


async def list_networks(pool: asyncpg.Pool, tenant_id: str, limit: int, cursor: str | None) -> Page:
    return await _keyset_page(
        pool, f"SELECT {_NETWORK} FROM rm_networks", [("tenant_id", tenant_id)], limit, cursor
    )


async def get_network(
    pool: asyncpg.Pool, tenant_id: str, network_id: uuid.UUID
) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        f"SELECT {_NETWORK} FROM rm_networks WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        network_id,
    )
    if row is None:
        return None
    subnets = await pool.fetch(
        f"SELECT {_SUBNET} FROM rm_subnets WHERE tenant_id = $1 AND network_id = $2 "
        "ORDER BY created_at, id",
        tenant_id,
        network_id,
    )
    return {**dict(row), "subnets": [dict(subnet) for subnet in subnets]}


async def get_subnet(
    pool: asyncpg.Pool, tenant_id: str, subnet_id: uuid.UUID
) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        f"SELECT {_SUBNET} FROM rm_subnets WHERE tenant_id = $1 AND id = $2", tenant_id, subnet_id
    )
    return dict(row) if row else None


async def list_instances(
    pool: asyncpg.Pool,
    tenant_id: str,
    filters: dict[str, Any],
    limit: int,
    cursor: str | None,
) -> Page:
    conditions = [("tenant_id", tenant_id)] + [(k, v) for k, v in filters.items() if v is not None]
    rows = await _keyset_rows(pool, "SELECT doc FROM rm_instances", conditions, limit, cursor)
    documents = [row[0] for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = orjson.loads(documents[-1])  # its timestamp as `isoformat` writes it
        next_cursor = encode_cursor([last["created_at"], last["id"]])
    return orjson.Fragment(f"[{','.join(documents)}]"), next_cursor


#: Instances by id for `PointReads` (query_api/point_reads.py): many GETs in one statement.
INSTANCES_BY_ID = "SELECT id, tenant_id, doc FROM rm_instances WHERE id = ANY($1::uuid[])"


async def get_instance(
    reads: PointReads, tenant_id: str, instance_id: uuid.UUID
) -> orjson.Fragment | None:
    document = await reads.get(tenant_id, str(instance_id))
    return None if document is None else orjson.Fragment(document)


async def activity(pool: asyncpg.Pool, tenant_id: str, limit: int, cursor: str | None) -> Page:
    """The tenant's events, newest first (straight from the event log)."""
    before = decode_cursor(cursor, 1)
    rows = await pool.fetch(
        f"SELECT {_EVENT} FROM events WHERE tenant_id = $1 AND position < $2 "
        "ORDER BY position DESC LIMIT $3",
        tenant_id,
        int(before[0]) if before else 2**63 - 1,
        limit + 1,
    )
    items = [dict(row) for row in rows[:limit]]
    next_cursor = encode_cursor([items[-1]["position"]]) if len(rows) > limit else None
    return items, next_cursor


async def stream_events(
    pool: asyncpg.Pool, tenant_id: str, stream_id: str, limit: int, cursor: str | None
) -> Page | None:
    """A stream's history, oldest first; None when the tenant has no such stream."""
    after = decode_cursor(cursor, 1)
    rows = await pool.fetch(
        f"SELECT {_EVENT} FROM events WHERE stream_id = $1 AND tenant_id = $2 "
        "AND stream_version > $3 ORDER BY stream_version LIMIT $4",
        stream_id,
        tenant_id,
        int(after[0]) if after else 0,
        limit + 1,
    )
    if not rows and after is None:
        return None
    items = [dict(row) for row in rows[:limit]]
    next_cursor = encode_cursor([items[-1]["stream_version"]]) if len(rows) > limit else None
    return items, next_cursor


async def network_history(
    pool: asyncpg.Pool, tenant_id: str, network_id: uuid.UUID, as_of: int
) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT type, schema_version, data, recorded_at, stream_version, position "
            "FROM events WHERE stream_id = $1 AND tenant_id = $2 AND position <= $3 "
            "ORDER BY stream_version",
            f"network-{network_id}",
            tenant_id,
            as_of,
        )
    )
