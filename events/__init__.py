"""The cloudnet event store: append with optimistic concurrency, read in commit order.

Public API (DESIGN §5): `EventStore`, `NewEvent`, `RecordedEvent`, `ExpectedVersion`,
`ConcurrencyError`, `Checkpoint`, `AppendResult`, plus idempotency records and snapshots.
"""

from events.model import (
    ORIGIN,
    AppendResult,
    Checkpoint,
    ConcurrencyError,
    ExpectedVersion,
    IdempotencyKeyReused,
    IdempotencyRecord,
    NewEvent,
    RecordedEvent,
    Snapshot,
)
from events.store import EventStore

__all__ = [
    "ORIGIN",
    "AppendResult",
    "Checkpoint",
    "ConcurrencyError",
    "EventStore",
    "ExpectedVersion",
    "IdempotencyKeyReused",
    "IdempotencyRecord",
    "NewEvent",
    "RecordedEvent",
    "Snapshot",
]
