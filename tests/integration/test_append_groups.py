"""Group commit (events/groups.py) against the real PostgreSQL: commands that wait for a connection
share one statement and one transaction, each all or nothing, as if run one after another."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from events import AppendResult, ConcurrencyError, EventStore, ExpectedVersion, NewEvent


def stream() -> str:
    return f"test-{uuid.uuid4()}"


def event(n: int = 0, event_id: uuid.UUID | None = None) -> NewEvent:
    return NewEvent(type="Tested", data={"n": n}, metadata={"tenant_id": "t"}, event_id=event_id)


@pytest.fixture
async def one_connection(own_database: str) -> AsyncIterator[EventStore]:
    """A store with one connection: every command that waits for it joins the next group."""
    store = await EventStore.connect(own_database, min_size=1, max_size=1)
    yield store
    await store.close()


async def outcome(call: Any) -> list[AppendResult] | BaseException:
    try:
        return list(await call)
    except (ConcurrencyError, asyncpg.PostgresError, ValueError) as error:
        return error


async def transactions(store: EventStore, *streams: str) -> set[int]:
    rows = await store.pool.fetch(
        "SELECT DISTINCT transaction_id::text::bigint FROM events WHERE stream_id = ANY($1)",
        list(streams),
    )
    return {row[0] for row in rows}


async def test_waiting_commands_share_a_commit_and_a_failed_one_leaves_nothing(
    one_connection: EventStore,
) -> None:
    store = one_connection
    existing = stream()
    await store.append(existing, [event()], ExpectedVersion.NO_STREAM)
    first, half, last = stream(), stream(), stream()
    busy, a, b, c = await asyncio.gather(
        outcome(store.append_many([(stream(), [event()], ExpectedVersion.NO_STREAM)])),
        outcome(store.append_many([(first, [event(1), event(2)], ExpectedVersion.NO_STREAM)])),
        # its first stream would move, its second is not at version 5: neither moves
        outcome(
            store.append_many(
                [(half, [event(3)], ExpectedVersion.NO_STREAM), (existing, [event(4)], 5)]
            )
        ),
        outcome(
            store.append_many(
                [(last, [event(5)], ExpectedVersion.NO_STREAM), (existing, [event(6)], 1)]
            )
        ),
    )
    assert isinstance(busy, list)
    assert isinstance(a, list)
    assert [r.stream_version for r in a] == [2]
    assert isinstance(b, ConcurrencyError)
    assert (b.stream_id, b.expected) == (existing, 5)
    assert isinstance(c, list)
    assert [r.stream_version for r in c] == [1, 2]
    assert a[0].position < c[0].position < c[1].position
    assert await store.stream_version(half) == 0
    assert [e.data async for e in store.read_stream(half)] == []
    assert [e.data["n"] async for e in store.read_stream(existing)] == [0, 6]
    assert [e.data["n"] async for e in store.read_stream(first)] == [1, 2]
    # the three commands that waited for the one connection committed together
    assert len(await transactions(store, first, last, existing)) == 2  # + the first append


async def test_a_failed_command_puts_back_what_it_moved_before_the_next_one_runs(
    one_connection: EventStore,
) -> None:
    """A command fails on its last stream after moving others: an existing stream it moved (even
    twice) is back at its version, a stream it created is gone, and the next command of the group
    finds both as they were."""
    store = one_connection
    existing, created, elsewhere = stream(), stream(), stream()
    await store.append(existing, [event()], ExpectedVersion.NO_STREAM)
    await store.append(elsewhere, [event()], ExpectedVersion.NO_STREAM)
    busy, failed, after_it = await asyncio.gather(
        outcome(store.append_many([(stream(), [event()], ExpectedVersion.NO_STREAM)])),
        outcome(
            store.append_many(
                [
                    (existing, [event(1), event(2)], ExpectedVersion.ANY),
                    (created, [event(3)], ExpectedVersion.ANY),
                    (existing, [event(4)], ExpectedVersion.EXISTS),
                    (elsewhere, [event(5)], 7),
                ]
            )
        ),
        outcome(
            store.append_many(
                [
                    (existing, [event(6)], 1),
                    (created, [event(7), event(8)], ExpectedVersion.NO_STREAM),
                ]
            )
        ),
    )
    assert isinstance(busy, list)
    assert isinstance(failed, ConcurrencyError)
    assert (failed.stream_id, failed.expected) == (elsewhere, 7)
    assert isinstance(after_it, list)
    assert [r.stream_version for r in after_it] == [2, 2]
    assert after_it[0].position < after_it[1].position
    assert [e.data["n"] async for e in store.read_stream(existing)] == [0, 6]
    assert [e.data["n"] async for e in store.read_stream(created)] == [7, 8]
    assert [e.data["n"] async for e in store.read_stream(elsewhere)] == [0]
    assert len(await transactions(store, existing, created)) == 2  # the group + the first append


async def test_a_stream_twice_in_a_group_is_as_if_one_after_the_other(
    one_connection: EventStore,
) -> None:
    store = one_connection
    shared, other = stream(), stream()
    await store.append(shared, [event()], ExpectedVersion.NO_STREAM)
    outcomes = await asyncio.gather(
        outcome(store.append_many([(other, [event()], ExpectedVersion.NO_STREAM)])),
        *(outcome(store.append_many([(shared, [event(n)], 1)])) for n in range(1, 4)),
        *(outcome(store.append_many([(shared, [event(n)], ExpectedVersion.ANY)])) for n in (4, 5)),
    )
    exact = outcomes[1:4]
    assert [type(o).__name__ for o in exact] == ["list", "ConcurrencyError", "ConcurrencyError"]
    assert [o[0].stream_version for o in outcomes[4:] if isinstance(o, list)] == [3, 4]
    assert [e.data["n"] async for e in store.read_stream(shared)] == [0, 1, 4, 5]


async def test_a_group_whose_statement_fails_runs_each_command_alone(
    one_connection: EventStore,
) -> None:
    store = one_connection
    taken = uuid.uuid4()
    await store.append(stream(), [event(event_id=taken)])
    good, bad, multi = stream(), stream(), [stream(), stream()]
    _, ok, duplicate, both = await asyncio.gather(
        outcome(store.append_many([(stream(), [event()], ExpectedVersion.NO_STREAM)])),
        outcome(store.append_many([(good, [event(1)], ExpectedVersion.NO_STREAM)])),
        outcome(store.append_many([(bad, [event(2, event_id=taken)], ExpectedVersion.ANY)])),
        outcome(store.append_many([(s, [event(3)], ExpectedVersion.NO_STREAM) for s in multi])),
    )
    assert isinstance(ok, list)
    assert isinstance(duplicate, asyncpg.UniqueViolationError)
    assert isinstance(both, list)
    assert [r.stream_version for r in both] == [1, 1]
    assert await store.stream_version(bad) == 0
    assert await store.stream_version(good) == 1


async def test_bad_arguments_fail_their_own_call(one_connection: EventStore) -> None:
    with pytest.raises(ValueError, match="at least one event"):
        await one_connection.append_many([(stream(), [], ExpectedVersion.ANY)])
    with pytest.raises(ValueError, match=">= 0"):
        await one_connection.append_many([(stream(), [event()], -1)])
    assert await one_connection.append_many([]) == []


async def test_groups_on_four_pools_crossing_the_same_streams_never_deadlock(
    own_database: str,
) -> None:
    """Every command appends to three of six streams, in a shuffled order, from four stores:
    without the ordered locks two statements wait for each other's rows, and PostgreSQL breaks
    the deadlock by failing one (a group's commands then go one by one, a lone command fails)."""
    stores = [await EventStore.connect(own_database, min_size=4, max_size=4) for _ in range(4)]
    shared = [stream() for _ in range(6)]
    try:
        for s in shared:
            await stores[0].append(s, [event()], ExpectedVersion.NO_STREAM)

        async def command(store: EventStore, n: int) -> list[AppendResult]:
            streams = random.sample(shared, 3)
            return await store.append_many([(s, [event(n)], ExpectedVersion.ANY) for s in streams])

        results = await asyncio.gather(*(command(store, n) for n in range(300) for store in stores))
        assert len(results) == 1200
        assert sum([await stores[0].stream_version(s) for s in shared]) == 6 + 3600
        assert len(await transactions(stores[0], *shared)) < 1200  # groups did form
    finally:
        for store in stores:
            await store.close()
    assert await deadlocks(own_database) == 0


async def deadlocks(database_url: str) -> int:
    """The database's deadlock count, once every other backend on it has ended (a backend
    reports its statistics when it exits, at the latest)."""
    connection = await asyncpg.connect(database_url)
    try:
        for _ in range(100):
            others = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if not others:
                break
            await asyncio.sleep(0.05)
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        return int(
            await connection.fetchval(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            )
        )
    finally:
        await connection.close()
