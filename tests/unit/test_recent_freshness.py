"""The remembered read-model positions that GETs without X-Min-Position answer from."""

from __future__ import annotations

import asyncio

import pytest

from query_api import freshness
from query_api.freshness import Freshness, RecentFreshness


def test_a_position_is_remembered_per_set_of_read_models_for_max_age(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(freshness.time, "monotonic", lambda: clock[0])
    recent = RecentFreshness(max_age=0.1)
    recent.put(["instances"], Freshness(position=7), read_at=100.0)

    assert recent.get(["instances"]) == Freshness(position=7)
    assert recent.get(["networks"]) is None
    assert recent.get(["instances", "subnets"]) is None
    clock[0] = 100.11
    assert recent.get(["instances"]) is None


async def test_a_request_with_a_min_position_never_uses_a_remembered_one() -> None:
    recent = RecentFreshness(max_age=60)
    recent.put(["instances"], Freshness(position=7), read_at=freshness.time.monotonic())

    class NoDatabase:
        async def fetch(self, *args: object) -> list[object]:
            raise ConnectionError("asked the store")

    assert await freshness.read_model_freshness(NoDatabase(), ["instances"], None, 1, recent) == (  # type: ignore[arg-type]
        Freshness(position=7)
    )
    with pytest.raises(ConnectionError, match="asked the store"):
        await freshness.read_model_freshness(NoDatabase(), ["instances"], 8, 1, recent)  # type: ignore[arg-type]


async def test_requests_that_find_the_position_expired_share_one_read() -> None:
    recent = RecentFreshness(max_age=60)
    reads = []
    release = asyncio.Event()

    async def read() -> Freshness:
        reads.append(1)
        await release.wait()
        return Freshness(position=9)

    waiting = [asyncio.ensure_future(recent.read(["instances"], read)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == [Freshness(position=9)] * 20
    assert reads == [1]
    assert recent.get(["instances"]) == Freshness(position=9)


async def test_a_failed_read_is_not_remembered() -> None:
    recent = RecentFreshness(max_age=60)

    async def down() -> Freshness:
        raise ConnectionError("store down")

    for _ in range(2):  # the second request reads again instead of getting the first's error
        with pytest.raises(ConnectionError):
            await recent.read(["instances"], down)
    assert recent.get(["instances"]) is None
