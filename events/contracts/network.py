"""Contracts of the network stream (`network-<uuid>`). The stream also records its subnets'
CIDRs, so overlap is decided inside one aggregate."""

from __future__ import annotations

import uuid

from events.contracts.registry import DomainEvent, event_contract


@event_contract("NetworkCreated")
class NetworkCreated(DomainEvent):
    network_id: uuid.UUID
    name: str
    cidr: str


@event_contract("NetworkRenamed")
class NetworkRenamed(DomainEvent):
    network_id: uuid.UUID
    name: str


@event_contract("NetworkDeleted")
class NetworkDeleted(DomainEvent):
    network_id: uuid.UUID


@event_contract("SubnetAttached")
class SubnetAttached(DomainEvent):
    """A subnet was carved out of the network (appended with `SubnetCreated`, atomically)."""

    network_id: uuid.UUID
    subnet_id: uuid.UUID
    cidr: str


@event_contract("SubnetDetached")
class SubnetDetached(DomainEvent):
    network_id: uuid.UUID
    subnet_id: uuid.UUID
