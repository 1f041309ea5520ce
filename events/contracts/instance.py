"""Contracts of the instance stream (`instance-<uuid>`): launch and lifecycle."""

from __future__ import annotations

import uuid

from events.contracts.registry import DomainEvent, event_contract


@event_contract("InstanceLaunched")
class InstanceLaunched(DomainEvent):
    instance_id: uuid.UUID
    name: str
    subnet_id: uuid.UUID
    network_id: uuid.UUID
    size: str
    ip: str


@event_contract("InstanceStarted")
class InstanceStarted(DomainEvent):
    """pending → running (the provisioner finished booting) or stopped → running."""

    instance_id: uuid.UUID


@event_contract("InstanceStopped")
class InstanceStopped(DomainEvent):
    instance_id: uuid.UUID


@event_contract("InstanceTerminated")
class InstanceTerminated(DomainEvent):
    instance_id: uuid.UUID
    subnet_id: uuid.UUID
    ip: str
