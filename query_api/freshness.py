"""Read-your-writes: wait until the read models an answer comes from include a given position.

A read model includes position N when N's (transaction id, position) is at or below the
projection's checkpoint; positions alone are not commit order (see `events.store`). Answers
read straight from the event store (`EVENT_LOG`) include every committed event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from infra.problems import GatewayTimeout, NotFound

EVENT_LOG = "events"

_STATUS = """
SELECT v.name, c.position,
       $2::bigint IS NOT NULL AND EXISTS (
           SELECT 1 FROM events e
           WHERE e.position = $2
             AND (e.transaction_id, e.position) <= (c.transaction_id::text::xid8, c.position)
       ) AS reached
FROM projection_views v JOIN projection_checkpoints c ON c.projection = v.projection
WHERE v.name = ANY($1::text[])
"""

_LOG_STATUS = """
SELECT 'events' AS name, coalesce((SELECT max(position) FROM events), 0) AS position,
       $1::bigint IS NOT NULL AND EXISTS (SELECT 1 FROM events WHERE position = $1) AS reached
"""


@dataclass(frozen=True, slots=True)
class Freshness:
    """How far the answer's read models are: the lowest of their last applied positions."""

    position: int


class RecentFreshness:
    """The read models' last known positions, for answers that ask for no position.

    `X-Projection-Position` is a lower bound ("the answer includes at least this"), and a read
    model's position only grows, so a position read up to `max_age` seconds ago is still true:
    a GET without `X-Min-Position` then takes one statement instead of two. With a position to
    wait for, the store is always asked."""

    def __init__(self, max_age: float = 0.1) -> None:
        self.max_age = max_age
        self._known: dict[tuple[str, ...], tuple[float, Freshness]] = {}
        self._reading: dict[tuple[str, ...], asyncio.Future[Freshness]] = {}

    def get(self, read_models: Sequence[str]) -> Freshness | None:
        known = self._known.get(tuple(read_models))
        if known is None or time.monotonic() - known[0] > self.max_age:
            return None
        return known[1]

    def put(self, read_models: Sequence[str], freshness: Freshness, read_at: float) -> None:
        self._known[tuple(read_models)] = (read_at, freshness)

    async def read(
        self, read_models: Sequence[str], read: Callable[[], Awaitable[Freshness]]
    ) -> Freshness:
        """The remembered position, else one `read` shared by every request that asks while
        it runs (when the position expires under load, dozens of GETs would each read it)."""
        known = self.get(read_models)
        if known is not None:
            return known
        key = tuple(read_models)
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.ensure_future(self._read_and_put(read_models, read))
            self._reading[key] = reading
            reading.add_done_callback(lambda _: self._reading.pop(key, None))
        return await asyncio.shield(reading)

    async def _read_and_put(
        self, read_models: Sequence[str], read: Callable[[], Awaitable[Freshness]]
    ) -> Freshness:
        read_at = time.monotonic()  # before the read: the position is at least this fresh
        freshness = await read()
        self.put(read_models, freshness, read_at)
        return freshness


async def read_model_freshness(
    pool: asyncpg.Pool,
    read_models: Sequence[str],
    min_position: int | None,
    wait_seconds: float,
    recent: RecentFreshness | None = None,
) -> Freshness:
    """The read models' position, after waiting (bounded) until all include `min_position`."""
    if min_position is None and recent is not None:
        return await recent.read(
            read_models, lambda: read_model_freshness(pool, read_models, None, wait_seconds)
        )
    deadline = time.monotonic() + wait_seconds
    delay = 0.002
    while True:
        rows = await _status(pool, read_models, min_position)
        lowest = min(row["position"] for row in rows)
        if min_position is None or all(row["reached"] for row in rows):
            return Freshness(position=lowest)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GatewayTimeout(
                f"the read model has not reached position {min_position} within "
                f"{wait_seconds:g} s (it is at {lowest})"
            )
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)


async def _status(
    pool: asyncpg.Pool, read_models: Sequence[str], min_position: int | None
) -> list[asyncpg.Record]:
    views = [name for name in read_models if name != EVENT_LOG]
    rows: list[asyncpg.Record] = []
    if views:
        rows = list(await pool.fetch(_STATUS, views, min_position))
        if len(rows) != len(views):
            missing = set(views) - {row["name"] for row in rows}
            raise NotFound(
                f"read models {sorted(missing)} are not installed; run `cloudnet migrate`"
            )
    if EVENT_LOG in read_models:
        rows.append(await pool.fetchrow(_LOG_STATUS, min_position))
    return rows
