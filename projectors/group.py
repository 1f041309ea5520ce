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

A batch that changes nothing in any of the group's projections (the provisioner is sent every
network and subnet event and keeps none) is not committed at once: the group remembers that it
skipped it, and the next batch that continues it is applied as if it followed the last stored
checkpoint, moving the checkpoints past both. A run of skipped batches is committed
`IDLE_FLUSH_SECONDS` after it began if nothing else committed it, so the stored checkpoints
(what `cloudnet status` shows, and where a restart catches up from) are at most that far
behind. A batch that does not continue the skipped ones is a gap as before.
"""

from __future__ import annotations

import asyncio
import logging
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


#: How long batches that change nothing may go without committing their checkpoints: at most
#: 5 commits a second instead of one per batch, and a stored checkpoint 0.2 s behind at most.
IDLE_FLUSH_SECONDS = 0.2


log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class _Skipped:
    """Batches skipped because they change nothing: the checkpoint before the first, and the
    last one (committing it moves the checkpoints past them all)."""

    previous: Checkpoint | None
    last: list[RecordedEvent]


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
        self._skipped: _Skipped | None = None
        self._flush: asyncio.Task[None] | None = None

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
        skipped, self._skipped = self._skipped, None
        continues = skipped is not None and previous == skipped.last[-1].checkpoint
        if skipped is not None and continues:
            previous = skipped.previous  # the skipped batches changed nothing
        if self._changes_nothing(events):
            # Not measured either: the metrics follow the stored checkpoints.
            if skipped is not None and continues:
                skipped.last, self._skipped = events, skipped
            else:
                self._skipped = _Skipped(previous, events)
                self._flush = asyncio.create_task(self._flush_later(self._skipped))
            return
        await self._commit(events, previous)

    async def _flush_later(self, skipped: _Skipped) -> None:
        """Commit a run of skipped batches that nothing committed in `IDLE_FLUSH_SECONDS`."""
        await asyncio.sleep(IDLE_FLUSH_SECONDS)
        async with self._turn:
            if self._skipped is not skipped:  # committed, or followed by a gap
                return
            self._skipped = None
            try:
                await self._commit(skipped.last, skipped.previous)
            except Exception as error:  # the next batch is then a gap, caught up from the store
                log.warning("group %s could not commit its skipped batches: %s", self.name, error)

    async def _commit(self, events: list[RecordedEvent], previous: Checkpoint | None) -> None:
        try:
            applied = await self._apply_together(events, previous)
        except (_NotTogether, BatchFailed, Poisoned):  # rolled back
            for runner in self.runners:
                await runner.deliver(events, previous)
            return
        for key, fresh in applied:
            measure(key, len(events), fresh, Outcome.APPLIED)

    def _changes_nothing(self, events: list[RecordedEvent]) -> bool:
        """True when no projection of the group has a statement for any of the events (an
        event whose handler fails is left to the transaction, which dead-letters it). Event by
        event: a batch of the read models' usually stops at its first."""
        try:
            return not any(
                runner.projection.statements(event) for event in events for runner in self.runners
            )
        except Exception:
            return False

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
