"""Reads of single rows by key that wait for a connection go to the database together: one
`WHERE id = ANY($1)` statement for every read that waits (infra/batches.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from infra.batches import WaitingBatches


class PointReads:
    """One row's value by id, for one tenant: `select` takes `$1::uuid[]` and returns
    `(id, tenant_id, value)` rows; a row of another tenant is not found."""

    def __init__(self, pool: asyncpg.Pool, select: str, parallel: int) -> None:
        self.pool, self.select = pool, select
        self._batches: WaitingBatches[tuple[str, str, asyncio.Future[Any]]] = WaitingBatches(
            self._read, parallel
        )

    async def get(self, tenant_id: str, row_id: str) -> Any:
        """The row's value, or None when the tenant has no such row."""
        found: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batches.add((tenant_id, row_id, found))
        return await found

    async def _read(self, batch: list[tuple[str, str, asyncio.Future[Any]]]) -> None:
        try:
            rows = await self.pool.fetch(self.select, list({row_id for _, row_id, _ in batch}))
        except Exception as error:  # each read fails as its own query would have
            for _, _, found in batch:
                if not found.done():
                    found.set_exception(error)
            return
        values = {(str(tenant_id), str(row_id)): value for row_id, tenant_id, value in rows}
        for tenant_id, row_id, found in batch:
            if not found.done():  # a cancelled GET
                found.set_result(values.get((tenant_id, row_id)))
