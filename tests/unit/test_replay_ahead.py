"""A rebuild builds the next batch's statements while the current batch is applied: between
slices it lets the loop run (the applying batch's round trips), and it hands out exactly what
the projection would have built, building anything not ready, or that failed, when asked."""

from __future__ import annotations

import asyncio

import pytest

from events import RecordedEvent
from projectors.networks import NetworksProjection
from projectors.replay import AheadOfTime
from tests.unit.test_wire_formats import recorded


def test_the_statements_handed_out_are_the_projections_own() -> None:
    projection = NetworksProjection(3)
    ahead = AheadOfTime(projection)
    events = [recorded(position) for position in range(1, 61)]
    asyncio.run(ahead.prepare(events[:50]))  # the last ten were not prepared
    assert [ahead.statements(event) for event in events] == [
        projection.statements(event) for event in events
    ]
    assert (ahead.name, ahead.version, ahead.tables()) == ("networks", 3, projection.tables())


def test_preparing_lets_the_loop_run_between_slices() -> None:
    ahead = AheadOfTime(NetworksProjection(1))
    events = [recorded(position) for position in range(1, 4 * AheadOfTime.SLICE + 1)]
    turns = 0

    async def applying() -> None:  # stands in for the batch being applied meanwhile
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def both() -> None:
        other = asyncio.create_task(applying())
        await asyncio.sleep(0)
        before = turns
        await ahead.prepare(events)
        during = turns - before
        other.cancel()
        assert during >= 4  # one turn after each slice

    asyncio.run(both())


class _Poisoned(NetworksProjection):
    """Fails on the event at position 2; counts the events it built statements for."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.built = 0

    def statements(self, event: RecordedEvent) -> list[tuple[str, tuple[object, ...]]]:
        self.built += 1
        if event.position == 2:
            raise ValueError("poison")
        return super().statements(event)


def test_an_event_that_fails_fails_again_when_it_is_applied() -> None:
    projection = _Poisoned(1)
    ahead = AheadOfTime(projection)
    events = [recorded(position) for position in (1, 2, 3)]
    asyncio.run(ahead.prepare(events))
    assert projection.built == 3
    assert ahead.statements(events[0])
    assert projection.built == 3  # handed out as prepared, and no longer kept
    assert ahead.statements(events[0])
    assert projection.built == 4
    with pytest.raises(ValueError, match="poison"):
        ahead.statements(events[1])
    assert projection.built == 5  # built again, and failed again
    ahead.forget()  # what was left over is dropped: built again on demand
    assert ahead.statements(events[2])
    assert projection.built == 6
