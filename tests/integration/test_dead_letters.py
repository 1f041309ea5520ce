"""A poison event: dead-lettered with its error, the projection halts at it (order matters),
the metric shows it, and `retry` after a fix or `skip` resumes it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from events import EventStore, ExpectedVersion, NewEvent, RecordedEvent
from projectors import dead_letters
from projectors.projection import checkpoint_key
from projectors.runtime import HALTED, Outcome, ProjectionRunner


class Tally:
    """A test read model: counts `Tallied` events of its own stream; can be made to choke."""

    def __init__(self, stream_id: str) -> None:
        self.name = f"tally{uuid.uuid4().hex[:8]}"
        self.version = 1
        self.stream_id = stream_id
        self.poison: set[int] = set()

    def tables(self) -> list[str]:
        return [f"{self.name}_v1"]

    def create_tables(self) -> list[str]:
        return [f"CREATE TABLE {self.name}_v1 (n integer PRIMARY KEY)"]

    def create_indexes(self) -> list[str]:
        return []

    def create_view(self) -> list[str]:
        return []

    def statements(self, event: RecordedEvent) -> list[tuple[str, tuple[Any, ...]]]:
        if event.stream_id != self.stream_id:
            return []
        if event.data["n"] in self.poison:
            raise ValueError(f"cannot tally {event.data['n']}")
        return [(f"INSERT INTO {self.name}_v1 (n) VALUES ($1)", (event.data["n"],))]


@pytest.fixture
async def tally(store: EventStore) -> Tally:
    projection = Tally(f"tally-{uuid.uuid4()}")
    for statement in projection.create_tables():
        await store.pool.execute(statement)
    await store.pool.execute(
        "INSERT INTO projection_checkpoints (projection) VALUES ($1)", checkpoint_key(projection)
    )
    return projection


async def tallied(store: EventStore, tally: Tally) -> list[int]:
    rows = await store.pool.fetch(f"SELECT n FROM {tally.name}_v1 ORDER BY n")
    return [row["n"] for row in rows]


async def test_a_poison_event_halts_the_projection_until_retried_after_a_fix(
    store: EventStore, tally: Tally
) -> None:
    tally.poison = {3}
    await store.append(
        tally.stream_id,
        [NewEvent("Tallied", {"n": n}) for n in range(1, 6)],
        ExpectedVersion.NO_STREAM,
    )
    runner = ProjectionRunner(store, tally)
    await runner.catch_up()
    key = checkpoint_key(tally)
    assert await tallied(store, tally) == [1, 2]  # applied up to the poison event, not past it
    assert HALTED.labels(key)._value.get() == 1
    [letter] = [d for d in await dead_letters.open_dead_letters(store) if d.projection == key]
    assert letter.error == "ValueError: cannot tally 3"
    await store.append(tally.stream_id, [NewEvent("Tallied", {"n": 6})], 5)
    assert await runner.apply(await store.read_all(limit=100_000), None) is Outcome.HALTED
    assert await tallied(store, tally) == [1, 2]

    tally.poison = set()  # the fix
    await dead_letters.retry(store, letter.id)
    await runner.catch_up()
    assert await tallied(store, tally) == [1, 2, 3, 4, 5, 6]
    assert HALTED.labels(key)._value.get() == 0
    assert not [d for d in await dead_letters.open_dead_letters(store) if d.projection == key]


async def test_skip_moves_past_the_event_and_records_the_decision(
    store: EventStore, tally: Tally
) -> None:
    tally.poison = {2}
    await store.append(tally.stream_id, [NewEvent("Tallied", {"n": n}) for n in range(1, 4)])
    runner = ProjectionRunner(store, tally)
    await runner.catch_up()
    [letter] = [
        d
        for d in await dead_letters.open_dead_letters(store)
        if d.projection == checkpoint_key(tally)
    ]
    await dead_letters.skip(store, letter.id, actor="test")
    await runner.catch_up()
    assert await tallied(store, tally) == [1, 3]
    [decision] = [e async for e in store.read_stream(f"deadletters-{checkpoint_key(tally)}")]
    assert decision.type == dead_letters.SKIPPED_EVENT
    assert decision.data["event_id"] == letter.event_id
    with pytest.raises(LookupError):
        await dead_letters.retry(store, letter.id)  # already resolved


async def test_a_failing_statement_in_a_pipelined_run_is_pinned_to_its_event(
    store: EventStore, tally: Tally
) -> None:
    # The third event repeats a key: the database refuses it inside a pipelined run, and the
    # runner finds that very event by applying the batch again one event at a time.
    numbers = [1, 2, 2, 3]
    await store.append(tally.stream_id, [NewEvent("Tallied", {"n": n}) for n in numbers])
    runner = ProjectionRunner(store, tally)
    await runner.catch_up()
    assert await tallied(store, tally) == [1, 2]
    [letter] = [
        d
        for d in await dead_letters.open_dead_letters(store)
        if d.projection == checkpoint_key(tally)
    ]
    assert "UniqueViolation" in letter.error
    [third] = [e async for e in store.read_stream(tally.stream_id, from_version=3)][:1]
    assert letter.event_id == str(third.event_id)
