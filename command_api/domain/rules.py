"""Named checks shared by the aggregates: names and IPv4 CIDR blocks."""

from __future__ import annotations

import ipaddress
import re

from command_api.domain.errors import InvalidCidr, InvalidName

NAME_PATTERN = re.compile(r"[a-z0-9-]{1,64}")
PRIVATE_RANGES = tuple(
    ipaddress.IPv4Network(block) for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
MIN_PREFIX, MAX_PREFIX = 16, 28


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidName("name must be 1-64 characters of a-z, 0-9 and '-'", field="name")
    return name


def parse_cidr(cidr: str) -> ipaddress.IPv4Network:
    """A strict IPv4 network (`10.0.0.0/16`, not `10.0.0.1/16`)."""
    try:
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError as error:
        raise InvalidCidr(
            f"{cidr!r} is not an IPv4 network in CIDR notation: {error}", field="cidr"
        ) from error
    if not isinstance(network, ipaddress.IPv4Network) or "/" not in cidr:
        raise InvalidCidr(f"{cidr!r} is not an IPv4 network in CIDR notation", field="cidr")
    return network


def check_private_cidr(cidr: str) -> ipaddress.IPv4Network:
    """RFC 1918 private IPv4, prefix /16 to /28."""
    network = parse_cidr(cidr)
    if not MIN_PREFIX <= network.prefixlen <= MAX_PREFIX:
        raise InvalidCidr(
            f"prefix /{network.prefixlen} is outside /{MIN_PREFIX}../{MAX_PREFIX}", field="cidr"
        )
    if not any(network.subnet_of(block) for block in PRIVATE_RANGES):
        raise InvalidCidr(f"{cidr} is not in a private (RFC 1918) range", field="cidr")
    return network
