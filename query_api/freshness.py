"""Read-your-writes: wait until a read model includes a given event position.

A read model includes position N when N's (transaction id, position) is at or below the
projection's checkpoint; positions alone are not commit order (see `events.store`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg

from infra.problems import GatewayTimeout, NotFound

_STATUS = """
SELECT c.position,
       $2::bigint IS NOT NULL AND EXISTS (
           SELECT 1 FROM events e
           WHERE e.position = $2
             AND (e.transaction_id, e.position) <= (c.transaction_id::text::xid8, c.position)
       ) AS reached
FROM projection_views v JOIN projection_checkpoints c ON c.projection = v.projection
WHERE v.name = $1
"""


@dataclass(frozen=True, slots=True)
class Freshness:
    """How far a read model is: the position of the last event it applied."""

    position: int


async def read_model_freshness(
    pool: asyncpg.Pool, read_model: str, min_position: int | None, wait_seconds: float
) -> Freshness:
    """The read model's position, after waiting (bounded) until it includes `min_position`."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.002
    while True:
        row = await pool.fetchrow(_STATUS, read_model, min_position)
        if row is None:
            raise NotFound(f"read model {read_model!r} is not installed; run `cloudnet migrate`")
        if min_position is None or row["reached"]:
            return Freshness(position=row["position"])
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GatewayTimeout(
                f"the {read_model} read model has not reached position {min_position} "
                f"within {wait_seconds:g} s (it is at {row['position']})"
            )
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)
