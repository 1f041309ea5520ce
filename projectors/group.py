"""The projections one consumer feeds, applied together: one batch, one transaction, one commit.

The relay publishes a batch once; a process that decoded, consumed and committed it once per
read model spent most of its time on that overhead, not on the rows. A group locks every
projection's checkpoint, applies each one's fresh events in one pipelined run and saves the
checkpoints together. When one projection cannot take the batch with the others (halted at a
dead letter, behind the batch, or a statement fails), the transaction rolls back and each
projection gets the batch on its own (`ProjectionRunner.deliver`): dead letters, halts and
catch-ups stay per read model, and a poison event for one stops no other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from projectors.projection import checkpoint_key
from projectors.runtime import (
    BatchFailed,
    Outcome,
    Poisoned,
    apply_planned,
    current_versions,
    measure,
    plan_batch,
)

if TYPE_CHECKING:
    from events import Checkpoint, RecordedEvent
    from projectors.runtime import ProjectionRunner


class _NotTogether(Exception):
    """A projection of the group is halted or behind the batch."""


class ProjectionGroup:
    """Runners that take every batch of one queue (`name`) together."""

    def __init__(self, name: str, runners: Sequence[ProjectionRunner]) -> None:
        if not runners:
            raise ValueError(f"projection group {name} has no projections")
        self.name, self.runners = name, list(runners)
        self.store = self.runners[0].store
        # One batch at a time, in the order they came (asyncio.Lock wakes its waiters in order).
        self._turn = asyncio.Lock()

    async def deliver(self, events: list[RecordedEvent], previous: Checkpoint | None) -> None:
        """Apply a batch from the broker to every projection (see module)."""
        async with self._turn:
            await self._deliver(events, previous)

    async def _deliver(self, events: list[RecordedEvent], previous: Checkpoint | None) -> None:
        try:
            applied = await self._apply_together(events, previous)
        except (_NotTogether, BatchFailed, Poisoned):  # rolled back
            for runner in self.runners:
                await runner.deliver(events, previous)
            return
        for key, fresh in applied:
            measure(key, len(events), fresh, Outcome.APPLIED)

    async def _apply_together(
        self, events: list[RecordedEvent], previous: Checkpoint | None
    ) -> list[tuple[str, list[RecordedEvent]]]:
        async with self.store.pool.acquire() as connection, connection.transaction():
            projections = await current_versions(connection, self.runners)
            plans = await plan_batch(connection, projections, events, previous)
            if any(outcome is not Outcome.APPLIED for outcome, _ in plans):
                raise _NotTogether
            work = [(p, fresh) for p, (_, fresh) in zip(projections, plans, strict=True)]
            await apply_planned(connection, work)
        return [(checkpoint_key(projection), fresh) for projection, fresh in work]
