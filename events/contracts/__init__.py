"""Event contracts: pydantic models registered by type, upcast from old schema versions on read.

A contract is what every consumer may rely on; change one only by adding a new schema version
and an upcaster from the previous one (see `registry`).
"""

from events.contracts.instance import (
    InstanceLaunched,
    InstanceStarted,
    InstanceStopped,
    InstanceTerminated,
)
from events.contracts.network import (
    NetworkCreated,
    NetworkDeleted,
    NetworkRenamed,
    SubnetAttached,
    SubnetDetached,
)
from events.contracts.registry import (
    DomainEvent,
    RawEvent,
    decode,
    decode_recorded,
    event_contract,
    to_new_event,
    upcaster,
)
from events.contracts.subnet import IpAllocated, IpReleased, SubnetCreated, SubnetDeleted

__all__ = [
    "DomainEvent",
    "InstanceLaunched",
    "InstanceStarted",
    "InstanceStopped",
    "InstanceTerminated",
    "IpAllocated",
    "IpReleased",
    "NetworkCreated",
    "NetworkDeleted",
    "NetworkRenamed",
    "RawEvent",
    "SubnetAttached",
    "SubnetCreated",
    "SubnetDeleted",
    "SubnetDetached",
    "decode",
    "decode_recorded",
    "event_contract",
    "to_new_event",
    "upcaster",
]
