"""The Network aggregate: a tenant's private IPv4 address space. Pure: decide and evolve."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from command_api.domain.errors import AlreadyExists
from command_api.domain.rules import check_name, check_private_cidr
from events.contracts import DomainEvent, NetworkCreated


def stream_id(network_id: uuid.UUID) -> str:
    return f"network-{network_id}"


@dataclass(frozen=True, slots=True)
class Network:
    id: uuid.UUID
    name: str
    cidr: str


@dataclass(frozen=True, slots=True)
class CreateNetwork:
    network_id: uuid.UUID
    name: str
    cidr: str


NetworkCommand = CreateNetwork


def decide(state: Network | None, command: NetworkCommand) -> list[DomainEvent]:
    """The events that `command` causes in `state`, or a named domain error."""
    if state is not None:
        raise AlreadyExists(f"network {command.network_id} already exists")
    check_name(command.name)
    network = check_private_cidr(command.cidr)
    return [NetworkCreated(network_id=command.network_id, name=command.name, cidr=str(network))]


def evolve(state: Network | None, event: DomainEvent) -> Network | None:
    """The state after `event`; events of other aggregates leave it unchanged."""
    if isinstance(event, NetworkCreated):
        return Network(id=event.network_id, name=event.name, cidr=event.cidr)
    return state
