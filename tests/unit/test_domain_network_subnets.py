"""Network lifecycle and subnet carving rules, pure."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from command_api.domain import network
from command_api.domain.errors import (
    CidrOutsideNetwork,
    CidrOverlap,
    InvalidName,
    NetworkNotEmpty,
    NotFound,
)
from events.contracts import DomainEvent, NetworkDeleted, NetworkRenamed, SubnetAttached

NET = uuid.uuid4()


def fold(
    events: Sequence[DomainEvent], state: network.Network | None = None
) -> network.Network | None:
    for event in events:
        state = network.evolve(state, event)
    return state


def created(cidr: str = "10.0.0.0/16") -> network.Network:
    state = fold(network.decide(None, network.CreateNetwork(NET, "prod", cidr)))
    assert state is not None
    return state


def attach(state: network.Network, cidr: str) -> network.Network:
    events = network.decide(state, network.AttachSubnet(NET, uuid.uuid4(), cidr))
    result = fold(events, state)
    assert result is not None
    return result


def test_rename_emits_renamed_and_same_name_is_a_no_op() -> None:
    state = created()
    assert network.decide(state, network.RenameNetwork(NET, "staging")) == [
        NetworkRenamed(network_id=NET, name="staging")
    ]
    assert network.decide(state, network.RenameNetwork(NET, "prod")) == []
    with pytest.raises(InvalidName):
        network.decide(state, network.RenameNetwork(NET, "Not Valid"))


def test_commands_on_a_missing_or_deleted_network_are_not_found() -> None:
    with pytest.raises(NotFound):
        network.decide(None, network.RenameNetwork(NET, "x"))
    deleted = fold(network.decide(created(), network.DeleteNetwork(NET)), created())
    assert deleted is not None
    assert deleted.deleted
    with pytest.raises(NotFound):
        network.decide(deleted, network.DeleteNetwork(NET))


def test_subnets_must_lie_inside_and_not_overlap_siblings() -> None:
    state = attach(created(), "10.0.1.0/24")
    [event] = network.decide(state, network.AttachSubnet(NET, uuid.uuid4(), "10.0.2.0/24"))
    assert isinstance(event, SubnetAttached)
    with pytest.raises(CidrOverlap):
        network.decide(state, network.AttachSubnet(NET, uuid.uuid4(), "10.0.1.128/25"))
    with pytest.raises(CidrOverlap):
        network.decide(state, network.AttachSubnet(NET, uuid.uuid4(), "10.0.0.0/16"))
    with pytest.raises(CidrOutsideNetwork):
        network.decide(state, network.AttachSubnet(NET, uuid.uuid4(), "10.1.0.0/24"))


def test_a_network_with_subnets_cannot_be_deleted_until_they_are_detached() -> None:
    subnet_id = uuid.uuid4()
    state = fold(
        network.decide(created(), network.AttachSubnet(NET, subnet_id, "10.0.0.0/28")), created()
    )
    assert state is not None
    with pytest.raises(NetworkNotEmpty):
        network.decide(state, network.DeleteNetwork(NET))
    state = fold(network.decide(state, network.DetachSubnet(NET, subnet_id)), state)
    assert state is not None
    assert network.decide(state, network.DeleteNetwork(NET)) == [NetworkDeleted(network_id=NET)]
