"""The aggregate cache's and the stream turns' bookkeeping, pure (their use by commands:
tests/integration/test_aggregate_cache.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from command_api.handlers import AggregateCache, Loaded, StreamTurns


def loaded(stream_id: str, version: int) -> Loaded:
    def evolve(state: Any, event: Any) -> Any:
        return state

    return Loaded(stream_id, f"{stream_id}@{version}", version, version, evolve)


def test_an_older_version_never_replaces_a_newer_one() -> None:
    cache = AggregateCache()
    cache.put("t", loaded("subnet-1", 7))
    cache.put("t", loaded("subnet-1", 6))  # a command that committed earlier, finishing later
    kept = cache.get("subnet-1")
    assert kept is not None
    assert kept[1].version == 7
    assert cache.weight == 7


def test_the_least_recently_used_go_first_when_the_cache_weighs_too_much() -> None:
    cache = AggregateCache(capacity=10)
    cache.put("t", loaded("a", 4))
    cache.put("t", loaded("b", 4))
    cache.contended.add("a")
    assert cache.get("a") is not None  # now "b" is the least recently used
    cache.put("t", loaded("c", 4))
    assert (cache.get("b"), len(cache), cache.weight) == (None, 2, 8)
    cache.put("t", loaded("d", 9))
    assert (len(cache), cache.weight, cache.contended) == (1, 9, set())  # "a" went too
    cache.put("t", loaded("huge", 50))  # heavier than the whole cache: kept alone
    assert (len(cache), cache.get("huge") is not None) == (1, True)


async def test_turns_on_a_stream_go_one_at_a_time_and_leave_nothing_behind() -> None:
    turns = StreamTurns()
    order: list[str] = []

    async def command(name: str) -> None:
        await turns.take("subnet-1")
        order.append(f"{name} decides")
        await asyncio.sleep(0)  # its append
        order.append(f"{name} committed")
        turns.give_back("subnet-1")

    await asyncio.gather(command("a"), command("b"), turns.take("subnet-2"))
    assert order == ["a decides", "a committed", "b decides", "b committed"]
    assert len(turns) == 1  # subnet-2's turn is still held
    turns.give_back("subnet-2")
    assert len(turns) == 0


async def test_a_command_cancelled_while_waiting_for_its_turn_gives_up_its_place() -> None:
    turns = StreamTurns()
    await turns.take("subnet-1")
    waiting = asyncio.create_task(turns.take("subnet-1"))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    turns.give_back("subnet-1")
    assert len(turns) == 0
    await asyncio.wait_for(turns.take("subnet-1"), timeout=1)  # free again
