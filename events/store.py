"""The PostgreSQL event store: appends with optimistic concurrency, reads in commit order.

Commit order. `position` comes from an identity sequence, handed out when a row is inserted, not
when its transaction commits, so a reader that resumes from "the highest position seen" skips an
event whose transaction started earlier and committed later. Every row therefore records its
writing transaction id (`xid8`), and `read_all` returns only rows whose transaction is older than
the oldest transaction still running (`pg_snapshot_xmin(pg_current_snapshot())`), ordered by
(transaction id, position). Everything below that horizon is final, so a checkpoint built from
that pair never has to go backwards. No table lock is taken: appends only lock their own
streams' rows.

What a long write transaction does to readers: transaction ids are cluster-wide, so any
transaction that holds an id (in any database of the cluster) keeps the horizon where it is;
readers see nothing newer until it ends. Nothing in cloudnet holds one: appends are one short
statement, replays and projectors commit per batch.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from events.groups import Append, AppendGroups
from events.model import (
    ORIGIN,
    AppendResult,
    Checkpoint,
    ConcurrencyError,
    ExpectedVersion,
    IdempotencyKeyReused,
    IdempotencyRecord,
    NewEvent,
    RecordedEvent,
    Snapshot,
)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

#: Builds the stored answer of an idempotent command from its append results.
AnswerFor = Callable[[list[AppendResult]], tuple[int, dict[str, Any]]]

#: Channel the store signals after appends, so tailing readers wake without polling hard.
APPENDED_CHANNEL = "cloudnet_events_appended"

_STREAM_STATEMENTS = {
    "no_stream": (
        "INSERT INTO streams (stream_id, version) VALUES ($1, $2) "
        "ON CONFLICT (stream_id) DO NOTHING RETURNING version"
    ),
    "any": (
        "INSERT INTO streams (stream_id, version) VALUES ($1, $2) ON CONFLICT (stream_id) "
        "DO UPDATE SET version = streams.version + EXCLUDED.version RETURNING version"
    ),
    "exists": "UPDATE streams SET version = version + $2 WHERE stream_id = $1 RETURNING version",
    "exact": (
        "UPDATE streams SET version = version + $2 "
        "WHERE stream_id = $1 AND version = $8 RETURNING version"
    ),
}

# One statement, one round trip: move the stream's version, then insert the events after it.
_APPEND = """
WITH stream AS ({stream_statement}),
new AS (
    SELECT * FROM unnest($3::uuid[], $4::text[], $5::int[], $6::jsonb[], $7::jsonb[])
        WITH ORDINALITY AS e(event_id, type, schema_version, data, metadata, n)
)
INSERT INTO events (stream_id, stream_version, event_id, type, schema_version, data, metadata,
                    tenant_id)
SELECT $1, stream.version - $2 + new.n, new.event_id, new.type, new.schema_version, new.data,
       new.metadata, new.metadata ->> 'tenant_id'
FROM stream, new
ORDER BY new.n
RETURNING position, stream_version
"""

# One event (most commands) needs no arrays: scalar parameters skip unnest's cost.
_APPEND_ONE = """
WITH stream AS ({stream_statement})
INSERT INTO events (stream_id, stream_version, event_id, type, schema_version, data, metadata,
                    tenant_id)
SELECT $1, stream.version, $3::uuid, $4::text, $5::int, $6::jsonb, $7::jsonb,
       $7::jsonb ->> 'tenant_id'
FROM stream
RETURNING position, stream_version
"""

_COLUMNS = (
    "position, transaction_id, stream_id, stream_version, event_id, type, schema_version, "
    "data, metadata, recorded_at"
)

_READ_ALL = f"""
SELECT {_COLUMNS} FROM events
WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id, position
LIMIT $3
"""

# Keys are kept 24 h; an expired key is taken over as if it were new.
_SAVE_IDEMPOTENCY = """
INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, answer)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id, key) DO UPDATE
    SET request_hash = EXCLUDED.request_hash, status = EXCLUDED.status,
        answer = EXCLUDED.answer, created_at = now()
    WHERE idempotency_keys.created_at < now() - interval '24 hours'
RETURNING 1
"""

_FIND_IDEMPOTENCY = """
SELECT tenant_id, key, request_hash, status, answer FROM idempotency_keys
WHERE tenant_id = $1 AND key = $2 AND created_at >= now() - interval '24 hours'
"""

_READ_STREAM = f"""
SELECT {_COLUMNS} FROM events
WHERE stream_id = $1 AND stream_version >= $2
ORDER BY stream_version
LIMIT $3
"""

_READ_STREAMS = f"""
SELECT {_COLUMNS} FROM events
WHERE stream_id = ANY($1::text[])
ORDER BY stream_id, stream_version
"""


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection released without asyncpg's reset query (UNLISTEN, RESET ALL, advisory
    unlock...): it costs a round trip per request and cloudnet keeps no session state on pooled
    connections (LISTEN and session locks live on dedicated connections)."""

    def get_reset_query(self) -> str:
        return ""


async def init_connection(connection: asyncpg.Connection) -> None:
    """Decode json/jsonb with orjson on every pooled connection."""
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name,
            schema="pg_catalog",
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
        )


def _stream_statement(expected: ExpectedVersion | int) -> tuple[str, int]:
    if expected is ExpectedVersion.NO_STREAM or expected == 0:
        return "no_stream", 0
    if isinstance(expected, ExpectedVersion):
        return expected.value, 0
    if expected < 0:
        raise ValueError(f"expected version must be >= 0, got {expected}")
    return "exact", expected


def _append_arguments(
    stream_id: str, events: Sequence[NewEvent], expected: ExpectedVersion | int
) -> tuple[str, list[Any]]:
    if not events:
        raise ValueError("append needs at least one event")
    kind, exact = _stream_statement(expected)
    arguments: list[Any]
    if len(events) == 1:
        (event,) = events
        query = _APPEND_ONE.format(stream_statement=_STREAM_STATEMENTS[kind])
        arguments = [
            stream_id,
            1,
            event.event_id or uuid.uuid4(),
            event.type,
            event.schema_version,
            event.data,
            event.metadata,
        ]
    else:
        query = _APPEND.format(stream_statement=_STREAM_STATEMENTS[kind])
        arguments = [
            stream_id,
            len(events),
            [event.event_id or uuid.uuid4() for event in events],
            [event.type for event in events],
            [event.schema_version for event in events],
            [event.data for event in events],
            [event.metadata for event in events],
        ]
    if kind == "exact":
        arguments.append(exact)
    return query, arguments


def record_from_row(row: asyncpg.Record) -> RecordedEvent:
    # Positional, in _COLUMNS order: name lookups and NamedTuple.__new__ are a large part of
    # a commit-order read's per-row cost (measured in benchmarks/eventstore.py).
    position, transaction_id, *rest = row
    return RecordedEvent(position, _new_tuple(Checkpoint, (transaction_id, position)), *rest)


_new_tuple = tuple.__new__


class EventStore:
    """An event store over one asyncpg pool. Create with `await EventStore.connect(dsn)`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._groups = AppendGroups(
            pool, pool.get_max_size(), self._append_alone, self.signal_appended
        )
        self._signal_task: asyncio.Task[None] | None = None
        self._signal_again = False

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float | None = 30.0,
        durable_commits: bool = True,
    ) -> EventStore:
        """Open the pool. Timeouts keep a dead database from hanging callers.

        `durable_commits=False` is for processes that write only state derived from the events
        (read models and checkpoints): their commits do not wait for the WAL flush
        (`synchronous_commit = off`). A PostgreSQL crash may then lose their last few hundred
        milliseconds, but only whole transactions, rows and checkpoint together, and always the
        newest ones (the WAL is sequential), so the checkpoint moves back with the rows and the
        events are applied again from the store, whose appends always wait for the flush."""
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=init_connection,
            connection_class=PooledConnection,
            timeout=connect_timeout,
            command_timeout=command_timeout,
            server_settings={} if durable_commits else {"synchronous_commit": "off"},
        )
        return cls(pool)

    async def close(self) -> None:
        if self._signal_task is not None:
            await asyncio.gather(self._signal_task, return_exceptions=True)
        await self.pool.close()

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion | int = ExpectedVersion.ANY,
    ) -> AppendResult:
        """Append `events` to one stream if it is at `expected_version`, atomically.

        Raises `ConcurrencyError` when it is not; nothing is written then.
        """
        async with self.pool.acquire() as connection:
            result = await self._append_on(connection, stream_id, events, expected_version)
        self.signal_appended()
        return result

    async def append_many(
        self,
        appends: Iterable[tuple[str, Sequence[NewEvent], ExpectedVersion | int]],
        *,
        idempotency: tuple[str, str, str] | None = None,
        answer: AnswerFor | None = None,
    ) -> list[AppendResult]:
        """Append to several streams in one transaction: every expectation holds, or nothing
        is written and `ConcurrencyError` names the first stream that failed.

        With `idempotency=(tenant_id, key, request_hash)` and `answer`, the command's answer is
        recorded in the same transaction; if another request committed that key first, nothing
        is written and `IdempotencyKeyReused` carries the stored answer.
        """
        appends = list(appends)
        if idempotency is None or answer is None:
            # Nothing else to record: one statement, shared with the commands that wait for a
            # connection meanwhile (events/groups.py).
            return await self._groups.append(appends)
        async with self.pool.acquire() as connection, connection.transaction():
            results = await self.append_many_on(connection, appends)
            status, body = answer(results)
            saved = await connection.fetchval(_SAVE_IDEMPOTENCY, *idempotency, status, body)
            if not saved:
                existing = await self._find_idempotency(connection, *idempotency[:2])
                if existing is not None:
                    raise IdempotencyKeyReused(existing)
        self.signal_appended()
        return results

    async def _append_alone(self, append: Append) -> AppendResult:
        # Its one statement is its own transaction: no BEGIN and COMMIT round trips.
        async with self.pool.acquire() as connection:
            return await self._append_on(connection, *append)

    async def idempotent_answer(self, tenant_id: str, key: str) -> IdempotencyRecord | None:
        """The answer stored under `key` for `tenant_id` in the last 24 h, if any."""
        async with self.pool.acquire() as connection:
            return await self._find_idempotency(connection, tenant_id, key)

    async def _find_idempotency(
        self, connection: asyncpg.Connection | PoolConnectionProxy[Any], tenant_id: str, key: str
    ) -> IdempotencyRecord | None:
        row = await connection.fetchrow(_FIND_IDEMPOTENCY, tenant_id, key)
        return IdempotencyRecord(**dict(row)) if row else None

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Keep the newest snapshot of a stream (an older one never replaces a newer one)."""
        await self.pool.execute(
            """INSERT INTO snapshots (stream_id, stream_version, schema_version, state)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (stream_id) DO UPDATE SET stream_version = EXCLUDED.stream_version,
                   schema_version = EXCLUDED.schema_version, state = EXCLUDED.state,
                   taken_at = now()
               WHERE snapshots.stream_version < EXCLUDED.stream_version""",
            snapshot.stream_id,
            snapshot.stream_version,
            snapshot.schema_version,
            snapshot.state,
        )

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        row = await self.pool.fetchrow(
            "SELECT stream_id, stream_version, schema_version, state FROM snapshots "
            "WHERE stream_id = $1",
            stream_id,
        )
        return Snapshot(**dict(row)) if row else None

    async def append_many_on(
        self,
        connection: asyncpg.Connection | PoolConnectionProxy[Any],
        appends: Iterable[tuple[str, Sequence[NewEvent], ExpectedVersion | int]],
    ) -> list[AppendResult]:
        """`append_many` inside a transaction the caller owns (e.g. with an idempotency
        record); the caller commits and then calls `signal_appended`."""
        return [
            await self._append_on(connection, stream_id, events, expected)
            for stream_id, events, expected in appends
        ]

    async def _append_on(
        self,
        connection: asyncpg.Connection | PoolConnectionProxy[Any],
        stream_id: str,
        events: Sequence[NewEvent],
        expected: ExpectedVersion | int,
    ) -> AppendResult:
        query, arguments = _append_arguments(stream_id, events, expected)
        rows = await connection.fetch(query, *arguments)
        if not rows:
            raise ConcurrencyError(stream_id, expected)
        last = rows[-1]
        return AppendResult(stream_version=last["stream_version"], position=last["position"])

    async def read_stream(
        self, stream_id: str, from_version: int = 0, *, page_size: int = 1000
    ) -> AsyncIterator[RecordedEvent]:
        """Yield a stream's events with `stream_version >= from_version`, oldest first."""
        next_version = from_version
        while True:
            rows = await self.pool.fetch(_READ_STREAM, stream_id, next_version, page_size)
            for row in rows:
                yield record_from_row(row)
            if len(rows) < page_size:
                return
            next_version = rows[-1]["stream_version"] + 1

    async def read_streams(self, stream_ids: Sequence[str]) -> list[RecordedEvent]:
        """Every event of the streams, by stream and each stream's oldest first, in one round
        trip: for many short streams read together (a whole stream is read, unpaged)."""
        rows = await self.pool.fetch(_READ_STREAMS, list(stream_ids))
        return [record_from_row(row) for row in rows]

    async def read_all(
        self, after: Checkpoint | None = None, limit: int = 1000
    ) -> list[RecordedEvent]:
        """Up to `limit` committed events after `after`, in commit order; never skips one."""
        start = after or ORIGIN
        rows = await self.pool.fetch(_READ_ALL, start.transaction_id, start.position, limit)
        return [record_from_row(row) for row in rows]

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version; 0 when it does not exist."""
        version = await self.pool.fetchval(
            "SELECT version FROM streams WHERE stream_id = $1", stream_id
        )
        return int(version or 0)

    def signal_appended(self) -> None:
        """Wake tailing readers (the relay) after a commit (`append_many_on` callers too)."""
        # NOTIFY inside the append transaction would serialise every commit in the cluster on
        # the notification queue lock; one coalesced NOTIFY after commit costs appends nothing.
        if self._signal_task is not None and not self._signal_task.done():
            self._signal_again = True
            return
        self._signal_task = asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        self._signal_again = True
        while self._signal_again:
            self._signal_again = False
            try:
                await self.pool.execute("SELECT pg_notify($1, '')", APPENDED_CHANNEL)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                return  # readers poll as well; a lost wake-up only costs latency
            # Appends made meanwhile share the next wake-up: at most one NOTIFY per ms.
            await asyncio.sleep(0.001)
