"""The Network aggregate, pure: every rule of DESIGN §3 for creation."""

from __future__ import annotations

import uuid

import pytest

from command_api.domain import network
from command_api.domain.errors import AlreadyExists, InvalidCidr, InvalidName
from events.contracts import NetworkCreated


def create(name: str = "prod", cidr: str = "10.0.0.0/16") -> network.CreateNetwork:
    return network.CreateNetwork(network_id=uuid.uuid4(), name=name, cidr=cidr)


def test_create_emits_network_created() -> None:
    command = create()
    assert network.decide(None, command) == [
        NetworkCreated(network_id=command.network_id, name="prod", cidr="10.0.0.0/16")
    ]


@pytest.mark.parametrize("cidr", ["10.0.0.0/16", "172.16.0.0/20", "192.168.1.0/24", "10.9.9.16/28"])
def test_private_cidrs_between_16_and_28_are_accepted(cidr: str) -> None:
    [event] = network.decide(None, create(cidr=cidr))
    assert isinstance(event, NetworkCreated)
    assert event.cidr == cidr


@pytest.mark.parametrize(
    ("cidr", "reason"),
    [
        ("8.8.8.0/24", "private"),
        ("172.32.0.0/16", "private"),
        ("10.0.0.0/8", "/8"),
        ("10.0.0.0/15", "/15"),
        ("10.0.0.0/29", "/29"),
        ("10.0.0.1/16", "not an IPv4 network"),
        ("10.0.0.0", "not an IPv4 network"),
        ("fd00::/64", "not an IPv4 network"),
        ("banana", "not an IPv4 network"),
    ],
)
def test_invalid_cidrs_are_refused_with_the_reason(cidr: str, reason: str) -> None:
    with pytest.raises(InvalidCidr, match=reason) as error:
        network.decide(None, create(cidr=cidr))
    assert error.value.field == "cidr"


@pytest.mark.parametrize("name", ["", "Prod", "a" * 65, "has space", "ünï"])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        network.decide(None, create(name=name))


def test_an_existing_network_cannot_be_created_again() -> None:
    command = create()
    state = None
    for event in network.decide(None, command):
        state = network.evolve(state, event)
    assert state == network.Network(id=command.network_id, name="prod", cidr="10.0.0.0/16")
    with pytest.raises(AlreadyExists):
        network.decide(state, command)
