"""Contracts of the network stream (`network-<uuid>`)."""

from __future__ import annotations

import uuid

from events.contracts.registry import DomainEvent, event_contract


@event_contract("NetworkCreated")
class NetworkCreated(DomainEvent):
    network_id: uuid.UUID
    name: str
    cidr: str
