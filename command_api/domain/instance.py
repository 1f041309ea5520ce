"""The Instance aggregate: pending → running ⇄ stopped → terminated. Pure.

Launching allocates the subnet's lowest free address in the same transaction (the handler
appends `IpAllocated` and `InstanceLaunched` together); terminating releases it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from enum import StrEnum

from command_api.domain.errors import AlreadyExists, InvalidSize, InvalidTransition, NotFound
from command_api.domain.rules import check_name
from events.contracts import (
    DomainEvent,
    InstanceLaunched,
    InstanceStarted,
    InstanceStopped,
    InstanceTerminated,
)

SIZES = ("small", "medium", "large")


class InstanceState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPED = "stopped"
    TERMINATED = "terminated"


def stream_id(instance_id: uuid.UUID) -> str:
    return f"instance-{instance_id}"


@dataclass(frozen=True, slots=True)
class Instance:
    id: uuid.UUID
    name: str
    subnet_id: uuid.UUID
    network_id: uuid.UUID
    size: str
    ip: str
    state: InstanceState


@dataclass(frozen=True, slots=True)
class LaunchInstance:
    instance_id: uuid.UUID
    name: str
    subnet_id: uuid.UUID
    network_id: uuid.UUID
    size: str
    ip: str  # allocated by the subnet in the same decision


@dataclass(frozen=True, slots=True)
class MarkRunning:
    """The provisioner finished booting a pending instance."""

    instance_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class StartInstance:
    instance_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class StopInstance:
    instance_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class TerminateInstance:
    instance_id: uuid.UUID


InstanceCommand = LaunchInstance | MarkRunning | StartInstance | StopInstance | TerminateInstance

#: Which states each lifecycle command may leave from.
_ALLOWED_FROM: dict[type, tuple[InstanceState, ...]] = {
    MarkRunning: (InstanceState.PENDING,),
    StartInstance: (InstanceState.STOPPED,),
    StopInstance: (InstanceState.RUNNING,),
    TerminateInstance: (InstanceState.PENDING, InstanceState.RUNNING, InstanceState.STOPPED),
}
#: Asking for the state the instance is already in changes nothing (safe to retry).
_ALREADY_IN: dict[type, InstanceState] = {
    MarkRunning: InstanceState.RUNNING,
    StartInstance: InstanceState.RUNNING,
    StopInstance: InstanceState.STOPPED,
    TerminateInstance: InstanceState.TERMINATED,
}


def check_size(size: str) -> str:
    if size not in SIZES:
        raise InvalidSize(f"size must be one of {', '.join(SIZES)}", field="size")
    return size


def decide(state: Instance | None, command: InstanceCommand) -> list[DomainEvent]:
    if isinstance(command, LaunchInstance):
        if state is not None:
            raise AlreadyExists(f"instance {command.instance_id} already exists")
        check_name(command.name)
        check_size(command.size)
        return [
            InstanceLaunched(
                instance_id=command.instance_id,
                name=command.name,
                subnet_id=command.subnet_id,
                network_id=command.network_id,
                size=command.size,
                ip=command.ip,
            )
        ]
    if state is None:
        raise NotFound(f"instance {command.instance_id} does not exist")
    if state.state is _ALREADY_IN[type(command)]:
        return []
    if state.state not in _ALLOWED_FROM[type(command)]:
        action = type(command).__name__.removesuffix("Instance").lower()
        raise InvalidTransition(f"cannot {action} an instance that is {state.state}")
    if isinstance(command, MarkRunning | StartInstance):
        return [InstanceStarted(instance_id=state.id)]
    if isinstance(command, StopInstance):
        return [InstanceStopped(instance_id=state.id)]
    return [InstanceTerminated(instance_id=state.id, subnet_id=state.subnet_id, ip=state.ip)]


def evolve(state: Instance | None, event: DomainEvent) -> Instance | None:
    if isinstance(event, InstanceLaunched):
        return Instance(
            id=event.instance_id,
            name=event.name,
            subnet_id=event.subnet_id,
            network_id=event.network_id,
            size=event.size,
            ip=event.ip,
            state=InstanceState.PENDING,
        )
    if state is None:
        return None
    if isinstance(event, InstanceStarted):
        return replace(state, state=InstanceState.RUNNING)
    if isinstance(event, InstanceStopped):
        return replace(state, state=InstanceState.STOPPED)
    if isinstance(event, InstanceTerminated):
        return replace(state, state=InstanceState.TERMINATED)
    return state
