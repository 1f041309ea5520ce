"""Prometheus metrics of the write side: events committed (by type), the store's head as this
process last saw it, concurrency conflicts retried, how aggregates were loaded and idempotent
replays.

The head gauges are what readers are measured against: dashboards and alerts subtract the
relay's and each projection's position from `max(cloudnet_events_head_position)`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

if TYPE_CHECKING:
    from events.model import AppendResult, NewEvent

EVENTS_APPENDED = Counter(
    "cloudnet_events_appended_total",
    "Events committed to the store by commands, by type.",
    ["type"],
)
HEAD_POSITION = Gauge(
    "cloudnet_events_head_position", "Highest global position this process has committed."
)
HEAD_TIMESTAMP = Gauge(
    "cloudnet_events_head_timestamp_seconds", "Unix time this process last committed events."
)
CONFLICTS = Counter(
    "cloudnet_command_conflicts_total",
    "Concurrency conflicts after which a command reloaded its streams and decided again.",
)
AGGREGATE_LOADS = Counter(
    "cloudnet_command_aggregate_loads_total",
    "Aggregates a command loaded, by how: `cached` (decided on without a read), `stale` (a "
    "decision on cached state that had to be made again), `tail` (the cache plus what its "
    "stream gained since) or `read` (from the snapshot or the start).",
    ["how"],
)
#: `AGGREGATE_LOADS`'s children, by how, taken once: `labels()` takes a lock and builds a key on
#: every call, and a command makes one per aggregate it loads.
LOADS = {how: AGGREGATE_LOADS.labels(how) for how in ("cached", "stale", "tail", "read")}
REPLAYS = Counter(
    "cloudnet_command_idempotent_replays_total",
    "Commands answered from their Idempotency-Key record, appending nothing.",
)

_head = 0


@functools.cache
def _appended(event_type: str) -> Counter:
    return EVENTS_APPENDED.labels(event_type)


def record_appended(
    appends: Sequence[tuple[str, Sequence[NewEvent], object]], results: Sequence[AppendResult]
) -> None:
    """Count one committed `append_many` and move the head forward (never back: commands
    finish out of position order)."""
    global _head
    for _, events, _ in appends:
        for event in events:
            _appended(event.type).inc()
    _head = max(_head, *(result.position for result in results))
    HEAD_POSITION.set(_head)
    HEAD_TIMESTAMP.set_to_current_time()
