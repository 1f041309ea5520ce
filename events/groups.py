"""Appends that wait for a connection commit together: group commit for commands.

A command's append (one or more streams, all or nothing) joins a queue; while fewer than
`parallel` appends run, one starts at once and takes the whole queue, up to `MAX_GROUP`
commands. Under light load that is one command per statement, as before, with no added wait.
When every connection is busy, commands queue up, and the next statement carries them all: one
round trip, one transaction and one WAL flush for the group (`append_group`, migrations 0003 and
0004): a command whose expectation fails puts back what it moved and leaves nothing behind, and
the others commit. The outcome is what the commands one after another would have had: a
command that appends to a stream an earlier command of the group moved sees it moved. The
queueing is infra/batches.py's, as for the query service's GETs by id.

A command alone on one stream runs the store's single statement (cheaper than the function).
If PostgreSQL refuses a group's statement for another reason (a duplicate event id), none of it
committed, and its commands run again one by one, so only the culprit fails; if the connection
is lost instead, the outcome is unknown and every command of the group gets that error.

Hand-written: no maintained library groups asyncpg writes this way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from events.model import AppendResult, ConcurrencyError, ExpectedVersion, NewEvent
from infra.batches import WaitingBatches

#: Events for one stream, if it is at the expected version.
Append = tuple[str, Sequence[NewEvent], ExpectedVersion | int]
#: One command's appends, all or nothing.
Appends = Sequence[Append]

#: At most this many commands per statement. Under 32 concurrent creates in one process, groups
#: of 32 went one at a time in lockstep (2,900/s); groups of 16 keep two statements in flight
#: (3,975/s), groups of 8 four (3,656/s). (Measured when each command was a subtransaction,
#: migration 0003.)
MAX_GROUP = 16

_APPEND_GROUP = "SELECT * FROM append_group($1, $2, $3, $4, $5, $6, $7, $8, $9)"

_EXPECTATION_CODES = {
    ExpectedVersion.ANY: -1,
    ExpectedVersion.EXISTS: -2,
    ExpectedVersion.NO_STREAM: 0,
}


def expectation_code(expected: ExpectedVersion | int) -> int:
    """`append_group`'s number for an expectation: -1 any, -2 exists, 0 no stream, n exactly n."""
    if isinstance(expected, ExpectedVersion):
        return _EXPECTATION_CODES[expected]
    if expected < 0:
        raise ValueError(f"expected version must be >= 0, got {expected}")
    return expected


def group_arguments(commands: Sequence[Appends]) -> list[list[Any]]:
    """`append_group`'s nine arrays for `commands`, in order (`AppendGroups.append` checked
    them)."""
    columns: list[list[Any]] = [[] for _ in range(9)]
    entry_commands, stream_ids, expectations, counts, ids, types, versions, data, metadata = columns
    for number, appends in enumerate(commands, start=1):
        for stream_id, events, expected in appends:
            entry_commands.append(number)
            stream_ids.append(stream_id)
            expectations.append(expectation_code(expected))
            counts.append(len(events))
            for event in events:
                ids.append(event.event_id or uuid.uuid4())
                types.append(event.type)
                versions.append(event.schema_version)
                data.append(event.data)
                metadata.append(event.metadata)
    return columns


def group_outcomes(
    commands: Sequence[Appends], rows: Sequence[asyncpg.Record]
) -> list[list[AppendResult] | ConcurrencyError]:
    """Each command's results, or the `ConcurrencyError` naming its stream that failed."""
    entries = [(stream_id, expected) for appends in commands for stream_id, _, expected in appends]
    answered: dict[int, tuple[int | None, int | None]] = {
        entry: (version, position) for entry, version, position in rows
    }
    outcomes: list[list[AppendResult] | ConcurrencyError] = []
    first = 1
    for appends in commands:
        numbers = range(first, first + len(appends))
        first += len(appends)
        failed = next((n for n in numbers if n in answered and answered[n][0] is None), None)
        if failed is not None:
            outcomes.append(ConcurrencyError(*entries[failed - 1]))
            continue
        results = []
        for n in numbers:
            version, position = answered[n]
            assert version is not None
            assert position is not None
            results.append(AppendResult(stream_version=version, position=position))
        outcomes.append(results)
    return outcomes


#: Where a waiting command learns its outcome.
Done = asyncio.Future[list[AppendResult]]

#: Appends to one stream on a connection of its own: the store's single statement.
AppendAlone = Callable[[Append], Awaitable[AppendResult]]


class AppendGroups:
    """Runs commands' appends on `pool`, grouping those that wait (see the module)."""

    def __init__(
        self, pool: asyncpg.Pool, parallel: int, alone: AppendAlone, committed: Callable[[], None]
    ) -> None:
        self.pool, self.alone, self.committed = pool, alone, committed
        self._batches: WaitingBatches[tuple[Appends, Done]] = WaitingBatches(
            self._commit, parallel, largest=MAX_GROUP
        )

    async def append(self, appends: Appends) -> list[AppendResult]:
        """Commit one command's appends, all or nothing; `ConcurrencyError` when they fail."""
        for _, events, expected in appends:  # bad arguments fail here, not in someone's group
            if not events:
                raise ValueError("append needs at least one event")
            expectation_code(expected)
        if not appends:
            return []
        done: Done = asyncio.get_running_loop().create_future()
        self._batches.add((appends, done))
        return await done

    async def _commit(self, group: list[tuple[Appends, Done]]) -> None:
        try:
            if len(group) == 1:
                await self._alone(*group[0])
                return
            commands = [appends for appends, _ in group]
            try:
                rows = await self.pool.fetch(_APPEND_GROUP, *group_arguments(commands))
            except asyncpg.PostgresError:
                # The statement failed, so nothing of it committed: each command alone finds
                # the culprit. (A lost connection or a timeout is not such an answer: the group
                # may have committed, so its commands fail with that error, as one would alone.)
                for appends, done in group:
                    await self._alone(appends, done)
                return
            except Exception as error:
                for _, done in group:
                    if not done.done():
                        done.set_exception(error)
                return
            self.committed()
            for (_, done), outcome in zip(group, group_outcomes(commands, rows), strict=True):
                if done.done():  # a cancelled caller: its command committed or failed anyway
                    continue
                if isinstance(outcome, ConcurrencyError):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)
        except BaseException as error:  # cancelled (shutdown): no caller waits for ever
            for _, done in group:
                if not done.done():
                    done.set_exception(ConnectionError(f"the append was interrupted: {error!r}"))
            raise

    async def _alone(self, appends: Appends, done: Done) -> None:
        try:
            if len(appends) == 1:
                results = [await self.alone(appends[0])]
            else:
                rows = await self.pool.fetch(_APPEND_GROUP, *group_arguments([appends]))
                (outcome,) = group_outcomes([appends], rows)
                if isinstance(outcome, ConcurrencyError):
                    raise outcome
                results = outcome
        except Exception as error:
            if not done.done():
                done.set_exception(error)
            return
        self.committed()
        if not done.done():
            done.set_result(results)
