"""The Subnet aggregate: a CIDR inside a network and the addresses handed out from it. Pure."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass, field, replace

from immutables import Map

from command_api.domain import ipam
from command_api.domain.errors import (
    AlreadyExists,
    InvalidCidr,
    NotFound,
    SubnetExhausted,
    SubnetNotEmpty,
)
from command_api.domain.rules import check_name, check_private_cidr
from events.contracts import DomainEvent, IpAllocated, IpReleased, SubnetCreated, SubnetDeleted


def stream_id(subnet_id: uuid.UUID) -> str:
    return f"subnet-{subnet_id}"


@dataclass(frozen=True, slots=True)
class Subnet:
    id: uuid.UUID
    network_id: uuid.UUID
    name: str
    cidr: str
    #: Which addresses are free, so the next one is found without scanning `allocations`.
    pool: ipam.AddressPool
    #: ip → instance id; a persistent map, so one allocation does not copy all the others.
    allocations: Map[str, uuid.UUID] = field(default_factory=Map)
    deleted: bool = False

    @classmethod
    def restore(
        cls,
        id: uuid.UUID,
        network_id: uuid.UUID,
        name: str,
        cidr: str,
        allocations: Map[str, uuid.UUID],
        deleted: bool,
    ) -> Subnet:
        """A subnet from its stored allocations (a snapshot), with its pool worked out."""
        taken = frozenset(int(ipaddress.IPv4Address(ip)) for ip in allocations)
        pool = ipam.AddressPool.of(cidr, taken)
        return cls(id, network_id, name, cidr, pool, allocations, deleted)


@dataclass(frozen=True, slots=True)
class CreateSubnet:
    subnet_id: uuid.UUID
    network_id: uuid.UUID
    name: str
    cidr: str


@dataclass(frozen=True, slots=True)
class AllocateIp:
    subnet_id: uuid.UUID
    instance_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class ReleaseIp:
    subnet_id: uuid.UUID
    instance_id: uuid.UUID
    ip: str


@dataclass(frozen=True, slots=True)
class DeleteSubnet:
    subnet_id: uuid.UUID


SubnetCommand = CreateSubnet | AllocateIp | ReleaseIp | DeleteSubnet


def decide(state: Subnet | None, command: SubnetCommand) -> list[DomainEvent]:
    if isinstance(command, CreateSubnet):
        if state is not None:
            raise AlreadyExists(f"subnet {command.subnet_id} already exists")
        check_name(command.name)
        cidr = check_private_cidr(command.cidr)
        if ipam.usable_count(str(cidr)) < 1:
            raise InvalidCidr(f"{cidr} has no usable addresses", field="cidr")
        return [
            SubnetCreated(
                subnet_id=command.subnet_id,
                network_id=command.network_id,
                name=command.name,
                cidr=str(cidr),
            )
        ]
    subnet = existing(state, command.subnet_id)
    if isinstance(command, AllocateIp):
        ip = subnet.pool.lowest_free()
        if ip is None:
            raise SubnetExhausted(f"subnet {subnet.id} ({subnet.cidr}) has no free address")
        return [IpAllocated(subnet_id=subnet.id, instance_id=command.instance_id, ip=ip)]
    if isinstance(command, ReleaseIp):
        if subnet.allocations.get(command.ip) != command.instance_id:
            return []  # already released: releasing is idempotent
        return [IpReleased(subnet_id=subnet.id, instance_id=command.instance_id, ip=command.ip)]
    if subnet.allocations:
        raise SubnetNotEmpty(
            f"subnet {subnet.id} still has {len(subnet.allocations)} allocated addresses"
        )
    return [SubnetDeleted(subnet_id=subnet.id, network_id=subnet.network_id)]


def existing(state: Subnet | None, subnet_id: uuid.UUID) -> Subnet:
    if state is None or state.deleted:
        raise NotFound(f"subnet {subnet_id} does not exist")
    return state


def evolve(state: Subnet | None, event: DomainEvent) -> Subnet | None:
    if isinstance(event, SubnetCreated):
        return Subnet(
            id=event.subnet_id,
            network_id=event.network_id,
            name=event.name,
            cidr=event.cidr,
            pool=ipam.AddressPool.of(event.cidr),
        )
    if state is None:
        return None
    if isinstance(event, IpAllocated):
        return replace(
            state,
            allocations=state.allocations.set(event.ip, event.instance_id),
            pool=state.pool.allocate(event.ip),
        )
    if isinstance(event, IpReleased):
        if event.ip not in state.allocations:
            return state
        return replace(
            state,
            allocations=state.allocations.delete(event.ip),
            pool=state.pool.release(event.ip),
        )
    if isinstance(event, SubnetDeleted):
        return replace(state, deleted=True)
    return state
