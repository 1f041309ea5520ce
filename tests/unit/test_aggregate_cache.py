"""The aggregate cache's bookkeeping, pure (its use by commands: tests/integration/
test_aggregate_cache.py)."""

from __future__ import annotations

from typing import Any

from command_api.handlers import AggregateCache, Loaded


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
