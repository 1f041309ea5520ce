"""Event contracts: pydantic models registered by type, upcast from old schema versions on read.

A contract is what every consumer may rely on; change one only by adding a new schema version
and an upcaster from the previous one (see `registry`).
"""

from events.contracts.network import NetworkCreated
from events.contracts.registry import (
    DomainEvent,
    RawEvent,
    decode,
    event_contract,
    to_new_event,
    upcaster,
)

__all__ = [
    "DomainEvent",
    "NetworkCreated",
    "RawEvent",
    "decode",
    "event_contract",
    "to_new_event",
    "upcaster",
]
