"""IP address management for one subnet: which addresses are usable and which is next.

As in AWS, the first four addresses (network, router, DNS, future use) and the last
(broadcast) of every subnet are reserved, so a /28 has 11 usable addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

RESERVED_AT_START, RESERVED_AT_END = 4, 1


def usable_count(cidr: str) -> int:
    return max(0, ipaddress.IPv4Network(cidr).num_addresses - RESERVED_AT_START - RESERVED_AT_END)


def lowest_free(cidr: str, allocated: Collection[str]) -> str | None:
    """The lowest usable address not in `allocated`, or None when the subnet is full."""
    network = ipaddress.IPv4Network(cidr)
    first = int(network.network_address) + RESERVED_AT_START
    last = int(network.broadcast_address) - RESERVED_AT_END
    if len(allocated) >= last - first + 1:
        return None
    taken = {int(ipaddress.IPv4Address(ip)) for ip in allocated}
    for candidate in range(first, last + 1):
        if candidate not in taken:
            return str(ipaddress.IPv4Address(candidate))
    return None
