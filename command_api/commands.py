"""One function per command of DESIGN §3: which aggregates to load and what to decide."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

from command_api.domain import instance, network, subnet
from command_api.handlers import (
    CommandContext,
    CommandResult,
    Decision,
    Loader,
    Repository,
    execute,
    fresh,
    read_together,
)
from events.contracts import IpAllocated

InstanceHandler = Callable[[Repository, CommandContext, uuid.UUID], Awaitable[CommandResult]]


async def create_network(
    repository: Repository, context: CommandContext, name: str, cidr: str
) -> CommandResult:
    network_id = uuid.uuid4()

    async def decide(load: Loader) -> Decision:
        loaded = fresh(network.stream_id(network_id), network.evolve)
        events = network.decide(loaded.state, network.CreateNetwork(network_id, name, cidr))
        return Decision(network_id, loaded, [(loaded, events)], status=201)

    return await execute(repository, context, decide)


async def rename_network(
    repository: Repository, context: CommandContext, network_id: uuid.UUID, name: str
) -> CommandResult:
    async def decide(load: Loader) -> Decision:
        loaded = await load(network.stream_id(network_id), network.evolve)
        events = network.decide(loaded.state, network.RenameNetwork(network_id, name))
        return Decision(network_id, loaded, [(loaded, events)])

    return await execute(repository, context, decide)


async def delete_network(
    repository: Repository, context: CommandContext, network_id: uuid.UUID
) -> CommandResult:
    async def decide(load: Loader) -> Decision:
        loaded = await load(network.stream_id(network_id), network.evolve)
        events = network.decide(loaded.state, network.DeleteNetwork(network_id))
        return Decision(network_id, loaded, [(loaded, events)])

    return await execute(repository, context, decide)


async def create_subnet(
    repository: Repository, context: CommandContext, network_id: uuid.UUID, name: str, cidr: str
) -> CommandResult:
    """The subnet's creation and the network's record of its CIDR commit together."""
    subnet_id = uuid.uuid4()

    async def decide(load: Loader) -> Decision:
        parent = await load(network.stream_id(network_id), network.evolve)
        loaded = fresh(subnet.stream_id(subnet_id), subnet.evolve)
        created = subnet.decide(
            loaded.state, subnet.CreateSubnet(subnet_id, network_id, name, cidr)
        )
        attached = network.decide(parent.state, network.AttachSubnet(network_id, subnet_id, cidr))
        return Decision(subnet_id, loaded, [(loaded, created), (parent, attached)], status=201)

    return await execute(repository, context, decide)


async def delete_subnet(
    repository: Repository, context: CommandContext, subnet_id: uuid.UUID
) -> CommandResult:
    async def decide(load: Loader) -> Decision:
        loaded = await load(subnet.stream_id(subnet_id), subnet.evolve)
        deleted = subnet.decide(loaded.state, subnet.DeleteSubnet(subnet_id))
        network_id = subnet.existing(loaded.state, subnet_id).network_id
        parent = await load(network.stream_id(network_id), network.evolve)
        detached = network.decide(parent.state, network.DetachSubnet(network_id, subnet_id))
        return Decision(subnet_id, loaded, [(loaded, deleted), (parent, detached)])

    return await execute(repository, context, decide)


async def launch_instance(
    repository: Repository, context: CommandContext, name: str, subnet_id: uuid.UUID, size: str
) -> CommandResult:
    """The lowest free address and the instance commit together (two streams, one transaction)."""
    instance_id = uuid.uuid4()

    async def decide(load: Loader) -> Decision:
        instance.check_size(size)
        home = await load(subnet.stream_id(subnet_id), subnet.evolve)
        owner = subnet.existing(home.state, subnet_id)
        [allocated] = subnet.decide(owner, subnet.AllocateIp(subnet_id, instance_id))
        assert isinstance(allocated, IpAllocated)
        ip = allocated.ip
        loaded = fresh(instance.stream_id(instance_id), instance.evolve)
        launched = instance.decide(
            loaded.state,
            instance.LaunchInstance(instance_id, name, subnet_id, owner.network_id, size, ip),
        )
        extra = {
            "ip": ip,
            "state": instance.InstanceState.PENDING.value,
            "subnet_id": str(subnet_id),
            "network_id": str(owner.network_id),
        }
        return Decision(
            instance_id, loaded, [(loaded, launched), (home, [allocated])], status=201, extra=extra
        )

    return await execute(repository, context, decide)


def _lifecycle(
    command: Callable[[uuid.UUID], instance.InstanceCommand],
) -> InstanceHandler:
    async def handle(
        repository: Repository, context: CommandContext, instance_id: uuid.UUID
    ) -> CommandResult:
        async def decide(load: Loader) -> Decision:
            loaded = await load(instance.stream_id(instance_id), instance.evolve)
            events = instance.decide(loaded.state, command(instance_id))
            appends = [(loaded, events)]
            if events and command is instance.TerminateInstance:
                current: instance.Instance = loaded.state
                home = await load(subnet.stream_id(current.subnet_id), subnet.evolve)
                released = subnet.decide(
                    home.state, subnet.ReleaseIp(current.subnet_id, instance_id, current.ip)
                )
                appends.append((home, released))
            state = loaded.state
            for event in events:
                state = instance.evolve(state, event)
            assert state is not None
            return Decision(instance_id, loaded, appends, extra={"state": state.state.value})

        return await execute(repository, context, decide)

    return handle


async def read_instances(
    repository: Repository, context: CommandContext, instance_ids: Sequence[uuid.UUID]
) -> None:
    """Ahead of a command on each of many instances (the provisioner's boots): the instances
    this process has not cached, read in one round trip."""
    streams = [instance.stream_id(instance_id) for instance_id in instance_ids]
    await read_together(repository, context.tenant_id, streams, instance.evolve)


mark_running = _lifecycle(instance.MarkRunning)
start_instance = _lifecycle(instance.StartInstance)
stop_instance = _lifecycle(instance.StopInstance)
terminate_instance = _lifecycle(instance.TerminateInstance)
