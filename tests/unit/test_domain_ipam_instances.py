"""Address allocation and the instance lifecycle, pure."""

from __future__ import annotations

import ipaddress
import random
import uuid

import pytest

from command_api.domain import instance, ipam, subnet
from command_api.domain.errors import (
    InvalidSize,
    InvalidTransition,
    SubnetExhausted,
    SubnetNotEmpty,
)
from events.contracts import (
    InstanceStarted,
    InstanceStopped,
    InstanceTerminated,
    IpAllocated,
    IpReleased,
    SubnetDeleted,
)

SUBNET, NET = uuid.uuid4(), uuid.uuid4()


def new_subnet(cidr: str = "10.0.0.0/28") -> subnet.Subnet:
    [event] = subnet.decide(None, subnet.CreateSubnet(SUBNET, NET, "web", cidr))
    state = subnet.evolve(None, event)
    assert state is not None
    return state


def allocate(state: subnet.Subnet) -> tuple[subnet.Subnet, str]:
    [event] = subnet.decide(state, subnet.AllocateIp(SUBNET, uuid.uuid4()))
    assert isinstance(event, IpAllocated)
    after = subnet.evolve(state, event)
    assert after is not None
    return after, event.ip


@pytest.mark.parametrize(
    ("cidr", "usable"), [("10.0.0.0/28", 11), ("10.0.0.0/24", 251), ("10.0.0.0/16", 65531)]
)
def test_usable_addresses_exclude_the_first_four_and_the_last(cidr: str, usable: int) -> None:
    assert ipam.usable_count(cidr) == usable


def test_a_slash_28_hands_out_its_11_addresses_lowest_first_then_is_exhausted() -> None:
    state, ips = new_subnet(), []
    for _ in range(11):
        state, ip = allocate(state)
        ips.append(ip)
    assert ips == [f"10.0.0.{n}" for n in range(4, 15)]
    with pytest.raises(SubnetExhausted):
        subnet.decide(state, subnet.AllocateIp(SUBNET, uuid.uuid4()))


def test_a_released_address_is_the_next_one_handed_out() -> None:
    state = new_subnet()
    state, first = allocate(state)
    state, _ = allocate(state)
    owner = state.allocations[first]
    [released] = subnet.decide(state, subnet.ReleaseIp(SUBNET, owner, first))
    assert released == IpReleased(subnet_id=SUBNET, instance_id=owner, ip=first)
    state = subnet.evolve(state, released)
    assert state is not None
    assert subnet.decide(state, subnet.ReleaseIp(SUBNET, owner, first)) == []  # idempotent
    assert allocate(state)[1] == first


def test_a_subnet_with_allocations_cannot_be_deleted() -> None:
    state, _ = allocate(new_subnet())
    with pytest.raises(SubnetNotEmpty):
        subnet.decide(state, subnet.DeleteSubnet(SUBNET))
    assert subnet.decide(new_subnet(), subnet.DeleteSubnet(SUBNET)) == [
        SubnetDeleted(subnet_id=SUBNET, network_id=NET)
    ]


def launched(size: str = "small") -> instance.Instance:
    iid = uuid.uuid4()
    [event] = instance.decide(
        None, instance.LaunchInstance(iid, "vm", SUBNET, NET, size, "10.0.0.4")
    )
    state = instance.evolve(None, event)
    assert state is not None
    assert state.state is instance.InstanceState.PENDING
    return state


def step(state: instance.Instance, command: instance.InstanceCommand) -> instance.Instance:
    for event in instance.decide(state, command):
        next_state = instance.evolve(state, event)
        assert next_state is not None
        state = next_state
    return state


def test_lifecycle_pending_running_stopped_running_terminated() -> None:
    state = launched()
    iid = state.id
    assert instance.decide(state, instance.MarkRunning(iid)) == [InstanceStarted(instance_id=iid)]
    state = step(state, instance.MarkRunning(iid))
    assert instance.decide(state, instance.StopInstance(iid)) == [InstanceStopped(instance_id=iid)]
    state = step(state, instance.StopInstance(iid))
    state = step(state, instance.StartInstance(iid))
    assert state.state is instance.InstanceState.RUNNING
    assert instance.decide(state, instance.TerminateInstance(iid)) == [
        InstanceTerminated(instance_id=iid, subnet_id=SUBNET, ip="10.0.0.4")
    ]
    state = step(state, instance.TerminateInstance(iid))
    assert state.state is instance.InstanceState.TERMINATED


@pytest.mark.parametrize(
    ("setup", "command"),
    [
        ([], instance.StartInstance),  # pending cannot be started by a user
        ([], instance.StopInstance),  # pending cannot be stopped
        ([instance.TerminateInstance], instance.StartInstance),
        ([instance.TerminateInstance], instance.StopInstance),
        ([instance.TerminateInstance], instance.MarkRunning),
    ],
)
def test_invalid_transitions_are_refused(
    setup: list[type[instance.InstanceCommand]], command: type[instance.InstanceCommand]
) -> None:
    state = launched()
    for previous in setup:
        state = step(state, previous(state.id))  # type: ignore[call-arg]
    with pytest.raises(InvalidTransition):
        instance.decide(state, command(state.id))  # type: ignore[call-arg]


def test_repeating_the_current_state_is_a_no_op() -> None:
    state = launched()
    state = step(state, instance.MarkRunning(state.id))
    assert instance.decide(state, instance.MarkRunning(state.id)) == []
    assert instance.decide(state, instance.StartInstance(state.id)) == []


def test_unknown_sizes_are_refused() -> None:
    with pytest.raises(InvalidSize):
        instance.decide(None, instance.LaunchInstance(uuid.uuid4(), "vm", SUBNET, NET, "huge", "x"))


def _lowest_by_scan(cidr: str, allocated: set[str]) -> str | None:
    """The definition the pool must agree with: scan every usable address."""
    addresses = list(ipaddress.IPv4Network(cidr))[ipam.RESERVED_AT_START : -ipam.RESERVED_AT_END]
    return next((str(a) for a in addresses if str(a) not in allocated), None)


@pytest.mark.parametrize("seed", range(20))
def test_the_pool_always_names_the_lowest_free_address(seed: int) -> None:
    """Random launches and terminations on a /27: after each, the subnet's next address is the
    lowest one a full scan finds, and a snapshot's restored pool agrees with the folded one."""
    chooser = random.Random(seed)
    state, owners = new_subnet("10.0.0.0/27"), {}
    for _ in range(120):
        if owners and chooser.random() < 0.4:
            ip = chooser.choice(sorted(owners))
            [event] = subnet.decide(state, subnet.ReleaseIp(SUBNET, owners.pop(ip), ip))
            folded = subnet.evolve(state, event)
        elif _lowest_by_scan("10.0.0.0/27", set(owners)) is None:
            with pytest.raises(SubnetExhausted):
                subnet.decide(state, subnet.AllocateIp(SUBNET, uuid.uuid4()))
            continue
        else:
            folded, ip = allocate(state)
            assert ip == _lowest_by_scan("10.0.0.0/27", set(owners))
            owners[ip] = folded.allocations[ip] if folded else None
        assert folded is not None
        state = folded
        restored = subnet.Subnet.restore(
            SUBNET, NET, "web", state.cidr, state.allocations, state.deleted
        )
        assert restored.pool.lowest_free() == state.pool.lowest_free()
        assert restored.pool.holes == state.pool.holes
        assert set(state.allocations) == set(owners)


def test_history_that_skipped_addresses_leaves_them_free() -> None:
    """Evolve takes stored events as they are: an allocation above the next address leaves the
    ones it jumped over free, lowest first."""
    state = subnet.evolve(
        new_subnet(), IpAllocated(subnet_id=SUBNET, instance_id=uuid.uuid4(), ip="10.0.0.7")
    )
    assert state is not None
    assert [allocate(state)[1]] == ["10.0.0.4"]
    assert state.pool.holes == frozenset(
        int(ipaddress.IPv4Address(f"10.0.0.{n}")) for n in (4, 5, 6)
    )
