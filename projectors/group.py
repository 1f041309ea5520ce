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

A batch with no event type any projection of the group handles (`Projection.handled_types`: a
network's events, to the provisioner) changes no row: the group passes over it without a
transaction, and saves the checkpoints it reached with the next batch it applies or, at the
latest, `SAVE_PASSED_AFTER` seconds later. At 200 commands/s the provisioner spent about 13 % of
a core on a transaction per batch for batches of networks (docs/BENCHMARKS.md, tenth session).
A process that stops before it saved them leaves its checkpoints behind those batches; whoever
consumes next sees the gap and catches up from the store, applying nothing but the checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from projectors import checkpoints
from projectors.projection import checkpoint_key
from projectors.runtime import (
    TRANSIENT,
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

log = logging.getLogger(__name__)

#: How long the checkpoints of batches passed over may wait in memory before they are saved: a
#: transaction per 0.1 s instead of one per batch (about 80 a second at 200 commands/s), and a
#: stored checkpoint at most 0.1 s behind (0.5 s left the provisioner's 2,880 events behind when
#: the pipeline benchmark's appends stopped, 0.99x of their rate).
SAVE_PASSED_AFTER = 0.1


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
        # Every projection's stored checkpoint is at `_saved` or later, and no batch between it
        # and `_reached` changes a row of the group: set by an applied batch, moved by the ones
        # passed over. None: not known (at the start, after a batch the group did not apply).
        self._saved: Checkpoint | None = None
        self._reached: Checkpoint | None = None
        self._save: asyncio.Task[None] | None = None

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
        if previous is not None and previous == self._reached:
            if self._changes_nothing(events):
                self._pass_over(events)
                return
            previous = self._saved  # what came between changed nothing
        try:
            applied = await self._apply_together(events, previous)
        except (_NotTogether, BatchFailed, Poisoned):  # rolled back
            self._saved = self._reached = None
            for runner in self.runners:
                await runner.deliver(events, previous)
            return
        except BaseException:
            self._saved = self._reached = None
            raise
        self._saved = self._reached = events[-1].checkpoint
        for key, fresh in applied:
            measure(key, len(events), fresh, Outcome.APPLIED)

    def _changes_nothing(self, events: list[RecordedEvent]) -> bool:
        for runner in self.runners:
            handled = runner.projection.handled_types
            if handled is None or any(event.type in handled for event in events):
                return False
        return True

    def _pass_over(self, events: list[RecordedEvent]) -> None:
        self._reached = events[-1].checkpoint
        for runner in self.runners:
            measure(runner.key, len(events), events, Outcome.APPLIED)
        if self._save is None:
            self._save = asyncio.create_task(self._save_soon())

    async def _save_soon(self) -> None:
        try:
            await asyncio.sleep(SAVE_PASSED_AFTER)
            async with self._turn:
                await self._save_reached()
        except TRANSIENT as error:  # saved with the next batch applied, or the next one passed
            log.warning("checkpoints of group %s not saved: %s", self.name, error)
        finally:
            self._save = None

    async def _save_reached(self) -> None:
        saved, reached = self._saved, self._reached
        if saved is None or reached is None or reached == saved:
            return
        async with self.store.pool.acquire() as connection, connection.transaction():
            projections = await current_versions(connection, self.runners)
            keys = [checkpoint_key(projection) for projection in projections]
            rows = await checkpoints.lock_checkpoints(connection, keys)
            if any(row.halted or row.checkpoint < saved for row in rows.values()):
                # Moved back or halted meanwhile (a replay, `cloudnet dlq`): the next batch
                # finds out what to do, as after any gap.
                self._saved = self._reached = None
                return
            moved = {key: reached for key, row in rows.items() if row.checkpoint < reached}
            await checkpoints.save_checkpoints(connection, moved)
        self._saved = reached  # under `_turn`: no batch moved `_reached` meanwhile

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
