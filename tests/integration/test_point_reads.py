"""Point reads that wait for a connection share one statement, and each still gets exactly its
own row: the caller's tenant only, not found as None, an error as its own (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from query_api.app import init_read_connection
from query_api.point_reads import PointReads

SELECT = "SELECT id, tenant_id, doc FROM point_reads_test WHERE id = ANY($1::uuid[])"


class CountingPool:
    """The pool's `fetch`, counted, and failing once on demand."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool, self.statements, self.fail_next = pool, 0, False

    async def fetch(self, query: str, *arguments: Any) -> list[asyncpg.Record]:
        self.statements += 1
        if self.fail_next:
            self.fail_next = False
            raise ConnectionResetError("the connection broke")
        return list(await self.pool.fetch(query, *arguments))


@pytest.fixture
async def rows(database_url: str) -> AsyncIterator[tuple[CountingPool, dict[str, str]]]:
    """20 rows, half of tenant `a`, half of `b`: id -> tenant."""
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=2, init=init_read_connection
    )
    owners = {str(uuid.uuid4()): "a" if n % 2 else "b" for n in range(20)}
    await pool.execute(
        "CREATE TABLE point_reads_test (id uuid PRIMARY KEY, tenant_id text, doc text)"
    )
    try:
        await pool.executemany(
            "INSERT INTO point_reads_test VALUES ($1, $2, $3)",
            [(row_id, tenant, f"doc {row_id}") for row_id, tenant in owners.items()],
        )
        yield CountingPool(pool), owners
    finally:
        await pool.execute("DROP TABLE point_reads_test")
        await pool.close()


async def test_waiting_reads_share_a_statement_and_each_gets_its_own_row(
    rows: tuple[CountingPool, dict[str, str]],
) -> None:
    pool, owners = rows
    reads = PointReads(pool, SELECT, parallel=1)  # type: ignore[arg-type]
    asked = [(tenant, row_id) for row_id, tenant in owners.items()]
    asked += [("b" if tenant == "a" else "a", row_id) for row_id, tenant in owners.items()]
    asked += [("a", str(uuid.uuid4())), asked[0]]  # no such row; the same read twice

    found = await asyncio.gather(*(reads.get(tenant, row_id) for tenant, row_id in asked))

    expected = [
        f"doc {row_id}" if owners.get(row_id) == tenant else None for tenant, row_id in asked
    ]
    assert found == expected
    assert found.count(None) == 21  # the other tenant's 20 and the missing one
    assert pool.statements == 1  # 42 reads, one statement: they all waited for the first


async def test_a_read_that_finds_a_query_free_goes_at_once_on_its_own(
    rows: tuple[CountingPool, dict[str, str]],
) -> None:
    pool, owners = rows
    reads = PointReads(pool, SELECT, parallel=2)  # type: ignore[arg-type]
    found = [await reads.get(tenant, row_id) for row_id, tenant in owners.items()]
    assert found == [f"doc {row_id}" for row_id in owners]
    assert pool.statements == 20


async def test_reads_that_queue_while_queries_run_start_no_more_than_the_limit(
    rows: tuple[CountingPool, dict[str, str]],
) -> None:
    pool, owners = rows
    reads = PointReads(pool, SELECT, parallel=2)  # type: ignore[arg-type]
    first = asyncio.create_task(reads.get("a", next(iter(owners))))
    await asyncio.sleep(0)  # its query is running
    rest = [reads.get(tenant, row_id) for row_id, tenant in owners.items()]
    found = await asyncio.gather(first, *rest)
    assert found[1:] == [f"doc {row_id}" for row_id in owners]
    assert pool.statements == 2  # the first read's, then one for the 20 that queued meanwhile


async def test_a_failed_statement_fails_each_read_it_carried_and_not_the_next(
    rows: tuple[CountingPool, dict[str, str]],
) -> None:
    pool, owners = rows
    reads = PointReads(pool, SELECT, parallel=1)  # type: ignore[arg-type]
    pool.fail_next = True
    outcomes = await asyncio.gather(
        *(reads.get(tenant, row_id) for row_id, tenant in owners.items()), return_exceptions=True
    )
    assert all(isinstance(outcome, ConnectionResetError) for outcome in outcomes)

    row_id, tenant = next(iter(owners.items()))
    assert await reads.get(tenant, row_id) == f"doc {row_id}"


async def test_a_cancelled_read_leaves_the_others_their_rows(
    rows: tuple[CountingPool, dict[str, str]],
) -> None:
    pool, owners = rows
    reads = PointReads(pool, SELECT, parallel=1)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(reads.get(tenant, row_id)) for row_id, tenant in owners.items()]
    await asyncio.sleep(0)  # every read is queued
    tasks[3].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[3], asyncio.CancelledError)
    assert [d for n, d in enumerate(done) if n != 3] == [
        f"doc {row_id}" for n, row_id in enumerate(owners) if n != 3
    ]
