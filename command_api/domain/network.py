"""The Network aggregate: a tenant's private IPv4 space and the subnets carved out of it.

Pure: `decide(state, command) -> events`, `evolve(state, event) -> state`. The network records
its subnets' CIDRs, so "no overlap between siblings" is decided here, in one aggregate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

from command_api.domain.errors import (
    AlreadyExists,
    CidrOutsideNetwork,
    CidrOverlap,
    NetworkNotEmpty,
    NotFound,
)
from command_api.domain.rules import check_name, check_private_cidr, parse_cidr
from events.contracts import (
    DomainEvent,
    NetworkCreated,
    NetworkDeleted,
    NetworkRenamed,
    SubnetAttached,
    SubnetDetached,
)


def stream_id(network_id: uuid.UUID) -> str:
    return f"network-{network_id}"


@dataclass(frozen=True, slots=True)
class Network:
    id: uuid.UUID
    name: str
    cidr: str
    subnets: dict[uuid.UUID, str] = field(default_factory=dict)  # subnet id → cidr
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class CreateNetwork:
    network_id: uuid.UUID
    name: str
    cidr: str


@dataclass(frozen=True, slots=True)
class RenameNetwork:
    network_id: uuid.UUID
    name: str


@dataclass(frozen=True, slots=True)
class DeleteNetwork:
    network_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class AttachSubnet:
    """Part of creating a subnet: reserve its CIDR in the network."""

    network_id: uuid.UUID
    subnet_id: uuid.UUID
    cidr: str


@dataclass(frozen=True, slots=True)
class DetachSubnet:
    network_id: uuid.UUID
    subnet_id: uuid.UUID


NetworkCommand = CreateNetwork | RenameNetwork | DeleteNetwork | AttachSubnet | DetachSubnet


def decide(state: Network | None, command: NetworkCommand) -> list[DomainEvent]:
    """The events `command` causes in `state`, or a named domain error."""
    if isinstance(command, CreateNetwork):
        if state is not None:
            raise AlreadyExists(f"network {command.network_id} already exists")
        check_name(command.name)
        cidr = str(check_private_cidr(command.cidr))
        return [NetworkCreated(network_id=command.network_id, name=command.name, cidr=cidr)]
    network = _existing(state, command.network_id)
    if isinstance(command, RenameNetwork):
        check_name(command.name)
        if command.name == network.name:
            return []
        return [NetworkRenamed(network_id=network.id, name=command.name)]
    if isinstance(command, DeleteNetwork):
        if network.subnets:
            raise NetworkNotEmpty(f"network {network.id} still has {len(network.subnets)} subnets")
        return [NetworkDeleted(network_id=network.id)]
    if isinstance(command, AttachSubnet):
        return [_attach(network, command)]
    if command.subnet_id not in network.subnets:
        return []
    return [SubnetDetached(network_id=network.id, subnet_id=command.subnet_id)]


def _existing(state: Network | None, network_id: uuid.UUID) -> Network:
    if state is None or state.deleted:
        raise NotFound(f"network {network_id} does not exist")
    return state


def _attach(network: Network, command: AttachSubnet) -> SubnetAttached:
    subnet = check_private_cidr(command.cidr)
    if not subnet.subnet_of(parse_cidr(network.cidr)):
        raise CidrOutsideNetwork(
            f"{subnet} is not inside the network's {network.cidr}", field="cidr"
        )
    for sibling_id, sibling in network.subnets.items():
        if subnet.overlaps(parse_cidr(sibling)):
            raise CidrOverlap(f"{subnet} overlaps subnet {sibling_id} ({sibling})")
    return SubnetAttached(network_id=network.id, subnet_id=command.subnet_id, cidr=str(subnet))


def evolve(state: Network | None, event: DomainEvent) -> Network | None:
    """The state after `event`; events of other aggregates leave it unchanged."""
    if isinstance(event, NetworkCreated):
        return Network(id=event.network_id, name=event.name, cidr=event.cidr)
    if state is None:
        return None
    if isinstance(event, NetworkRenamed):
        return replace(state, name=event.name)
    if isinstance(event, NetworkDeleted):
        return replace(state, deleted=True)
    if isinstance(event, SubnetAttached):
        return replace(state, subnets={**state.subnets, event.subnet_id: event.cidr})
    if isinstance(event, SubnetDetached):
        return replace(
            state, subnets={k: v for k, v in state.subnets.items() if k != event.subnet_id}
        )
    return state
