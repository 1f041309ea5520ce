"""The gateway benchmark's rounds: each side's rounds pooled, and the ratio round by round."""

from __future__ import annotations

import pytest

from benchmarks.gateway import Sides, pooled
from benchmarks.wrk_driver import WrkResult

TITLE = "POST /v1/networks"


def run(ok: int, p99: float, seconds: float = 10.0, refused: int = 0) -> WrkResult:
    statuses = {201: ok, 503: refused} if refused else {201: ok}
    return WrkResult(seconds, ok + refused, {"p50": p99 / 4, "p99": p99}, statuses, {"timeout": 0})


def test_rounds_pool_their_answers_and_take_the_median_rounds_latency() -> None:
    result = pooled([run(1_000, 0.5), run(3_000, 0.1, refused=5), run(2_000, 0.12, seconds=5.0)])

    assert result.seconds == 25.0
    assert result.statuses == {201: 6_000, 503: 5}
    assert result.ok_per_second == 240.0
    assert result.latency["p99"] == 0.12  # not the mean, 0.24


def test_the_ratio_is_taken_round_by_round_and_a_round_without_a_baseline_has_none() -> None:
    sides = Sides()
    for ours, base in ((500, 1_000), (900, 1_000), (700, 0)):
        sides.add(TITLE, "cloudnet", run(ours, 0.1))
        sides.add(TITLE, "baseline", run(base, 0.1, refused=10))
    sides.drained[TITLE] = 6.0

    assert sides.round_ratios(TITLE) == [0.5, 0.9]
    # 2,100 answers over 30 s of runs and 6 s of draining their backlogs.
    assert sides.until_done(TITLE) == pytest.approx(2_100 / 36)
