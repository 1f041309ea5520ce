"""IP address management for one subnet: which addresses are usable and which is next.

As in AWS, the first four addresses (network, router, DNS, future use) and the last
(broadcast) of every subnet are reserved, so a /28 has 11 usable addresses.

Addresses are handed out lowest first. `AddressPool` answers "which is next" without looking at
every allocation: addresses are taken upwards from the start, so the free ones are everything
from `next_unused` up plus the few released below it (`holes`). Allocating or releasing one
address costs O(holes), not O(allocations): a /16 holds 65,531 instances.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

RESERVED_AT_START, RESERVED_AT_END = 4, 1


def usable_count(cidr: str) -> int:
    return max(0, ipaddress.IPv4Network(cidr).num_addresses - RESERVED_AT_START - RESERVED_AT_END)


@dataclass(frozen=True, slots=True)
class AddressPool:
    """The free usable addresses of a subnet, as integers: `holes`, and `next_unused` to `last`."""

    first: int
    last: int
    next_unused: int
    holes: frozenset[int] = frozenset()

    @classmethod
    def of(cls, cidr: str, allocated: frozenset[int] = frozenset()) -> AddressPool:
        """The pool of `cidr` with the addresses in `allocated` taken."""
        network = ipaddress.IPv4Network(cidr)
        first = int(network.network_address) + RESERVED_AT_START
        last = int(network.broadcast_address) - RESERVED_AT_END
        next_unused = max(allocated, default=first - 1) + 1
        return cls(first, last, next_unused, frozenset(range(first, next_unused)) - allocated)

    def lowest_free(self) -> str | None:
        """The lowest usable address not allocated, or None when the subnet is full."""
        if self.holes:
            return str(ipaddress.IPv4Address(min(self.holes)))
        if self.next_unused <= self.last:
            return str(ipaddress.IPv4Address(self.next_unused))
        return None

    def allocate(self, ip: str) -> AddressPool:
        address = int(ipaddress.IPv4Address(ip))
        if address in self.holes:
            return replace(self, holes=self.holes - {address})
        if address < self.next_unused:
            return self  # already taken
        # Anything jumped over stays free (lowest-first never jumps; history is taken as it is).
        skipped = frozenset(range(self.next_unused, address))
        return replace(self, next_unused=address + 1, holes=self.holes | skipped)

    def release(self, ip: str) -> AddressPool:
        address = int(ipaddress.IPv4Address(ip))
        if address >= self.next_unused or address in self.holes:
            return self  # not taken
        if address != self.next_unused - 1:
            return replace(self, holes=self.holes | {address})
        # The topmost one: move `next_unused` down past every free address below it too.
        next_unused, holes = address, self.holes
        while next_unused - 1 in holes:
            next_unused -= 1
            holes = holes - {next_unused}
        return replace(self, next_unused=next_unused, holes=holes)
