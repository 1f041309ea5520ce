"""Small helpers the gateway benchmarks share to turn samples into the figures they print."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

PERCENTILES = (50, 90, 99)
#: The percentiles the issue asks of the visibility lag and the pipeline's appends.
TAIL_PERCENTILES = (50, 95, 99)


def finite(value: Any) -> Any:
    """`value` with NaN and infinities as None, so that the JSON is standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of `samples` (NaN when there are none)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    """Seconds as milliseconds with sensible precision, '-' for no value."""
    if math.isnan(seconds):
        return "-"
    value = seconds * 1000
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def ratio(ours: float, baseline: float) -> str:
    if baseline == 0 or math.isnan(ours) or math.isnan(baseline):
        return "-"
    return f"{ours / baseline:.2f}"


def mib(size_bytes: int) -> str:
    return f"{size_bytes / 2**20:,.0f}"
