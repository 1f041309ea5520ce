"""The cloudnet event store: append with optimistic concurrency, read in commit order.

Public API (DESIGN §5): `EventStore`, `NewEvent`, `RecordedEvent`, `ExpectedVersion`,
`ConcurrencyError`, `Checkpoint`, `AppendResult`.
"""

from events.model import (
    ORIGIN,
    AppendResult,
    Checkpoint,
    ConcurrencyError,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
)
from events.store import EventStore

__all__ = [
    "ORIGIN",
    "AppendResult",
    "Checkpoint",
    "ConcurrencyError",
    "EventStore",
    "ExpectedVersion",
    "NewEvent",
    "RecordedEvent",
]
