"""The projections one consumer feeds, applied together: one batch, one transaction, one commit.

The relay publishes a batch once; a process that decoded, consumed and committed it once per
read model spent most of its time on that overhead, not on the rows. A group locks every
projection's checkpoint, applies each one's fresh events in one pipelined run and saves the
checkpoints together. When one projection cannot take the batch with the others (halted at a
dead letter, behind the batch, or a statement fails), the transaction rolls back and each
projection gets the batch on its own (`ProjectionRunner.deliver`): dead letters, halts and
catch-ups stay per read model, and a poison event for one stops no other.

Batches that queued up while one was applied (the projector is behind) are applied together
when they follow each other (each one's `previous` is the last checkpoint of the one before):
one transaction for all of them, so catching up costs fewer commits, not more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
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


@dataclass(eq=False)
class _Delivery:
    events: list[RecordedEvent]
    previous: Checkpoint | None
    #: Set when the batch was applied together with an earlier delivery.
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ProjectionGroup:
    """Runners that take every batch of one queue (`name`) together."""

    def __init__(self, name: str, runners: Sequence[ProjectionRunner]) -> None:
        if not runners:
            raise ValueError(f"projection group {name} has no projections")
        self.name, self.runners = name, list(runners)
        self.store = self.runners[0].store
        # One batch at a time, in the order they came (asyncio.Lock wakes its waiters in order).
        self._turn = asyncio.Lock()
        self._waiting: list[_Delivery] = []

    async def deliver(self, events: list[RecordedEvent], previous: Checkpoint | None) -> None:
        """Apply a batch from the broker to every projection (see module); returns once it is
        committed, alone or with the batches that waited with it."""
        if not events:
            return
        delivery = _Delivery(events, previous)
        self._waiting.append(delivery)
        async with self._turn:
            if delivery.done.done():
                delivery.done.result()  # applied with an earlier one (or raises its error)
                return
            taken = self._take_following(delivery)
            try:
                await self._deliver(
                    [event for each in taken for event in each.events], delivery.previous
                )
            except BaseException as error:
                for each in taken[1:]:
                    each.done.set_exception(error)
                raise
            for each in taken[1:]:
                each.done.set_result(None)

    def _take_following(self, first: _Delivery) -> list[_Delivery]:
        """`first` and the waiting deliveries that continue it without a gap, in order."""
        taken = [first]
        self._waiting.remove(first)
        for waiting in list(self._waiting):
            if waiting.previous != taken[-1].events[-1].checkpoint:
                break
            taken.append(waiting)
            self._waiting.remove(waiting)
        return taken

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
