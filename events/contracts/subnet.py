"""Contracts of the subnet stream (`subnet-<uuid>`): its creation and its address book."""

from __future__ import annotations

import uuid

from events.contracts.registry import DomainEvent, event_contract


@event_contract("SubnetCreated")
class SubnetCreated(DomainEvent):
    subnet_id: uuid.UUID
    network_id: uuid.UUID
    name: str
    cidr: str


@event_contract("IpAllocated")
class IpAllocated(DomainEvent):
    subnet_id: uuid.UUID
    instance_id: uuid.UUID
    ip: str


@event_contract("IpReleased")
class IpReleased(DomainEvent):
    subnet_id: uuid.UUID
    instance_id: uuid.UUID
    ip: str


@event_contract("SubnetDeleted")
class SubnetDeleted(DomainEvent):
    subnet_id: uuid.UUID
    network_id: uuid.UUID
