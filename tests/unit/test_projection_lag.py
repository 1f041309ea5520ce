"""The projections' lag histogram: per batch applied, the age of its oldest event (what
`benchmarks/visibility.py` and the event-flow dashboard read), beside the gauge of the newest."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from events import Checkpoint, RecordedEvent
from projectors.runtime import Outcome, measure


def recorded(seconds_ago: float, position: int) -> RecordedEvent:
    return RecordedEvent(
        position=position,
        checkpoint=Checkpoint(position, position),
        stream_id=f"network-{uuid.uuid4()}",
        stream_version=1,
        event_id=uuid.uuid4(),
        type="NetworkCreated",
        schema_version=1,
        data={},
        metadata={},
        recorded_at=datetime.now(UTC) - timedelta(seconds=seconds_ago),
    )


def lag_sample(key: str, suffix: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(
        f"cloudnet_projection_apply_lag_seconds{suffix}", {"projection": key, **labels}
    )


def test_a_batch_applied_counts_once_at_the_age_of_its_oldest_event() -> None:
    key = f"lag_test_{uuid.uuid4().hex[:8]}"

    measure(key, 2, [recorded(3.0, 1), recorded(0.2, 2)], Outcome.APPLIED)

    assert lag_sample(key, "_count") == 1
    assert lag_sample(key, "_bucket", le="2.5") == 0  # not the newest event's 0.2 s
    assert lag_sample(key, "_bucket", le="5.0") == 1
    newest = REGISTRY.get_sample_value("cloudnet_projection_lag_seconds", {"projection": key})
    assert newest is not None
    assert 0.2 <= newest < 2.5


def test_a_batch_with_nothing_fresh_observes_nothing() -> None:
    key = f"lag_test_{uuid.uuid4().hex[:8]}"

    measure(key, 3, [], Outcome.APPLIED)  # every event redelivered: the checkpoint covers them
    measure(key, 3, [recorded(1.0, 7)], Outcome.GAP)

    assert lag_sample(key, "_count") in (None, 0)
