"""The event store's contract against the real PostgreSQL: versions, atomicity, commit order."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from events import (
    AppendResult,
    ConcurrencyError,
    EventStore,
    ExpectedVersion,
    IdempotencyKeyReused,
    IdempotencyRecord,
    NewEvent,
    Snapshot,
)
from events.contracts import DomainEvent, event_contract, upcaster
from events.contracts.registry import decode_recorded
from events.store import init_connection


def stream() -> str:
    return f"test-{uuid.uuid4()}"


def event(n: int = 0, **metadata: str) -> NewEvent:
    return NewEvent(type="Tested", data={"n": n}, metadata=metadata)


async def test_appends_number_versions_and_read_back_in_order(store: EventStore) -> None:
    stream_id = stream()
    first = await store.append(stream_id, [event(1), event(2)], ExpectedVersion.NO_STREAM)
    second = await store.append(stream_id, [event(3)], 2)
    assert (first.stream_version, second.stream_version) == (2, 3)
    assert second.position > first.position
    read = [e async for e in store.read_stream(stream_id)]
    assert [(e.stream_version, e.data["n"]) for e in read] == [(1, 1), (2, 2), (3, 3)]
    assert [e.stream_version for e in [x async for x in store.read_stream(stream_id, 2)]] == [2, 3]


async def test_metadata_and_event_ids_round_trip(store: EventStore) -> None:
    stream_id, event_id = stream(), uuid.uuid4()
    metadata = {
        "tenant_id": "acme",
        "actor": "alice",
        "correlation_id": "c1",
        "causation_id": "c0",
        "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    }
    await store.append(
        stream_id, [NewEvent("Tested", {"x": [1, {"y": None}]}, metadata, event_id=event_id)]
    )
    [read] = [e async for e in store.read_stream(stream_id)]
    assert (read.event_id, read.metadata, read.data) == (
        event_id,
        metadata,
        {"x": [1, {"y": None}]},
    )
    assert read.tenant_id == "acme"
    tenant_column = await store.pool.fetchval(
        "SELECT tenant_id FROM events WHERE event_id = $1", event_id
    )
    assert tenant_column == "acme"


@pytest.mark.parametrize(
    ("existing", "expected"),
    [(1, ExpectedVersion.NO_STREAM), (0, ExpectedVersion.EXISTS), (2, 1), (0, 3), (1, 0)],
)
async def test_a_wrong_expectation_raises_and_writes_nothing(
    store: EventStore, existing: int, expected: ExpectedVersion | int
) -> None:
    stream_id = stream()
    if existing:
        await store.append(stream_id, [event(n) for n in range(existing)])
    with pytest.raises(ConcurrencyError):
        await store.append(stream_id, [event(99)], expected)
    assert len([e async for e in store.read_stream(stream_id)]) == existing
    assert await store.stream_version(stream_id) == existing


async def test_any_and_exists_append_after_whatever_is_there(store: EventStore) -> None:
    stream_id = stream()
    await store.append(stream_id, [event()], ExpectedVersion.ANY)
    await store.append(stream_id, [event()], ExpectedVersion.EXISTS)
    result = await store.append(stream_id, [event()], ExpectedVersion.ANY)
    assert result.stream_version == 3


async def test_racing_writers_exactly_one_wins_each_version(store: EventStore) -> None:
    stream_id = stream()
    await store.append(stream_id, [event()], ExpectedVersion.NO_STREAM)

    async def write(n: int) -> bool:
        try:
            await store.append(stream_id, [event(n)], 1)
        except ConcurrencyError:
            return False
        return True

    outcomes = await asyncio.gather(*(write(n) for n in range(16)))
    assert outcomes.count(True) == 1
    assert [e.stream_version async for e in store.read_stream(stream_id)] == [1, 2]


async def test_append_many_is_all_or_nothing(store: EventStore) -> None:
    ok, taken = stream(), stream()
    await store.append(taken, [event()])
    with pytest.raises(ConcurrencyError) as error:
        await store.append_many(
            [
                (ok, [event(1)], ExpectedVersion.NO_STREAM),
                (taken, [event(2)], ExpectedVersion.NO_STREAM),
            ]
        )
    assert error.value.stream_id == taken
    assert await store.stream_version(ok) == 0
    assert [e async for e in store.read_stream(ok)] == []
    results = await store.append_many(
        [(ok, [event(1)], ExpectedVersion.NO_STREAM), (taken, [event(2)], 1)]
    )
    assert [r.stream_version for r in results] == [1, 2]


async def test_reader_never_skips_an_event_that_commits_late(
    store: EventStore, database_url: str
) -> None:
    """A slow writer takes a lower position, fast writers commit higher ones first; a reader
    resuming from its checkpoint must still see the slow writer's event once it commits."""
    slow_stream, fast_streams = stream(), [stream() for _ in range(5)]
    mine = {slow_stream, *fast_streams}
    slow = await asyncpg.connect(database_url)
    await init_connection(slow)
    seen: list[str] = []
    checkpoint = None
    try:
        transaction = slow.transaction()
        await transaction.start()
        await store.append_many_on(slow, [(slow_stream, [event()], ExpectedVersion.NO_STREAM)])
        for fast in fast_streams:
            await store.append(fast, [event()])
        while True:  # drain everything committed so far
            batch = await store.read_all(after=checkpoint, limit=100)
            if not batch:
                break
            seen.extend(e.stream_id for e in batch if e.stream_id in mine)
            checkpoint = batch[-1].checkpoint
        assert slow_stream not in seen
        await transaction.commit()
    finally:
        await slow.close()
    for _ in range(250):  # any transaction in the cluster may hold the horizon for a while
        batch = await store.read_all(after=checkpoint, limit=100)
        seen.extend(e.stream_id for e in batch if e.stream_id in mine)
        checkpoint = batch[-1].checkpoint if batch else checkpoint
        if mine <= set(seen):  # not just the slow one: the horizon may pass it before the others
            break
        await asyncio.sleep(0.02)
    assert sorted(seen) == sorted(mine)  # every event exactly once, the late one included


async def test_idempotency_record_is_written_with_the_events_and_replayed(
    store: EventStore,
) -> None:
    stream_id, key = stream(), f"key-{uuid.uuid4()}"
    tenant = f"t-{uuid.uuid4().hex[:8]}"

    def answer(results: list[AppendResult]) -> tuple[int, dict[str, object]]:
        return 201, {"position": results[-1].position}

    [result] = await store.append_many(
        [(stream_id, [event(1)], ExpectedVersion.NO_STREAM)],
        idempotency=(tenant, key, "hash-1"),
        answer=answer,
    )
    stored = await store.idempotent_answer(tenant, key)
    assert stored == IdempotencyRecord(tenant, key, "hash-1", 201, {"position": result.position})
    assert await store.idempotent_answer(f"{tenant}-other", key) is None  # keys are per tenant
    # A second request with the same key (decided before it saw the first) writes nothing.
    with pytest.raises(IdempotencyKeyReused) as reused:
        await store.append_many(
            [(stream(), [event(2)], ExpectedVersion.NO_STREAM)],
            idempotency=(tenant, key, "hash-1"),
            answer=answer,
        )
    assert reused.value.record == stored
    assert await store.stream_version(stream_id) == 1


async def test_snapshots_keep_the_newest_state(store: EventStore) -> None:
    stream_id = stream()
    assert await store.load_snapshot(stream_id) is None
    await store.save_snapshot(Snapshot(stream_id, 10, 1, {"used": [1, 2]}))
    await store.save_snapshot(Snapshot(stream_id, 5, 1, {"used": [1]}))  # older: ignored
    assert await store.load_snapshot(stream_id) == Snapshot(stream_id, 10, 1, {"used": [1, 2]})


@event_contract("TestSubnetRenamed", schema_version=2)
class SubnetRenamedV2(DomainEvent):
    subnet_id: str
    display_name: str
    reason: str


@upcaster("TestSubnetRenamed", from_version=1)
def _rename_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {"subnet_id": data["subnet_id"], "display_name": data["name"], "reason": "unknown"}


async def test_a_stored_v1_event_is_read_as_v2(store: EventStore) -> None:
    stream_id = stream()
    await store.append(
        stream_id,
        [NewEvent("TestSubnetRenamed", {"subnet_id": "s1", "name": "old"}, schema_version=1)],
    )
    [recorded] = [e async for e in store.read_stream(stream_id)]
    assert recorded.schema_version == 1
    assert decode_recorded(recorded) == SubnetRenamedV2(
        subnet_id="s1", display_name="old", reason="unknown"
    )


async def test_only_derived_state_writers_commit_without_waiting_for_the_flush(
    store: EventStore, database_url: str
) -> None:
    setting = "SELECT current_setting('synchronous_commit')"
    assert await store.pool.fetchval(setting) == "on"  # appends: durable at commit
    derived = await EventStore.connect(database_url, min_size=1, max_size=1, durable_commits=False)
    try:
        assert await derived.pool.fetchval(setting) == "off"
    finally:
        await derived.close()
