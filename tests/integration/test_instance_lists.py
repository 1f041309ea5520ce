"""A page of a tenant's instances in one state reads that page, not the tenant's other instances
(real PostgreSQL, a database of the test's own)."""

from __future__ import annotations

import orjson

from events import EventStore
from query_api import read_models

#: The statement `read_models.list_instances` runs for `?state=pending&limit=50`.
PENDING_PAGE = (
    "SELECT doc FROM rm_instances WHERE tenant_id = $1 AND state = $2 "
    "ORDER BY created_at, id LIMIT $3"
)


async def test_a_page_of_pending_instances_does_not_walk_the_running_ones(
    own_store: EventStore,
) -> None:
    pool = own_store.pool
    # 3,000 running instances of one tenant, launched before its 2 pending ones.
    await pool.execute(
        "INSERT INTO rm_instances_v1 (id, tenant_id, name, subnet_id, network_id, size, ip, "
        "state, created_at, updated_at, version, last_position, doc_head, doc) "
        "SELECT gen_random_uuid(), 'acme', 'vm', gen_random_uuid(), gen_random_uuid(), 'small', "
        "'10.0.0.4', CASE WHEN n > 3000 THEN 'pending' ELSE 'running' END, "
        "now() - make_interval(secs => 4000 - n), now(), 1, n, '{', "
        "json_build_object('n', n)::text FROM generate_series(1, 3002) AS n"
    )
    await pool.execute("ANALYZE rm_instances_v1")
    page, cursor = await read_models.list_instances(pool, "acme", {"state": "pending"}, 50, None)
    assert [item["n"] for item in orjson.loads(orjson.dumps(page))] == [3001, 3002]
    assert cursor is None
    [plan] = await pool.fetchval(  # the event store's pool decodes json
        f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {PENDING_PAGE}", "acme", "pending", 51
    )
    # Read through (tenant_id, state, created_at, id): a few index pages and the two rows. By
    # (tenant_id, created_at, id) it read 58 pages to skip the running ones.
    assert plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"] < 10
