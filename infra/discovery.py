"""Service discovery: where the healthy instances of a service are.

One small port, two adapters: Consul's health API when `CONSUL_HTTP_ADDR` is set, otherwise
the static list the local launcher wrote into settings. Callers balance round-robin.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from infra.consul import ConsulDiscovery

if TYPE_CHECKING:
    from infra.settings import Settings


class NoInstances(Exception):
    """No healthy instance of the service is known."""


class ServiceDiscovery(Protocol):
    """Healthy instances of a service, as base URLs (`http://host:port`)."""

    async def instances(self, service: str) -> list[str]:
        """Every healthy instance now; may be cached by the adapter. The list is the caller's."""
        ...

    async def aclose(self) -> None:
        """Stop what the adapter runs in the background and release its connections."""
        ...


class StaticDiscovery:
    """Fixed instances per service (what the local launcher started)."""

    def __init__(self, services: dict[str, Sequence[str]]) -> None:
        self.services = {name: list(urls) for name, urls in services.items()}

    async def instances(self, service: str) -> list[str]:
        return list(self.services.get(service, []))

    async def aclose(self) -> None:
        return None


def discovery_from_settings(
    settings: Settings, static: dict[str, Sequence[str]]
) -> ServiceDiscovery:
    """Consul when `CONSUL_HTTP_ADDR` is set, else the `static` instances per service."""
    if settings.consul_http_addr:
        return ConsulDiscovery(settings.consul_http_addr)
    return StaticDiscovery(static)


class RoundRobin:
    """Spreads calls over a service's instances, re-reading discovery on every pick."""

    def __init__(self, discovery: ServiceDiscovery, service: str) -> None:
        self.discovery, self.service = discovery, service
        self._turn: Iterator[int] = itertools.count()

    async def pick(self) -> str:
        instances = await self.discovery.instances(self.service)
        if not instances:
            raise NoInstances(f"no healthy instance of {self.service}")
        return instances[next(self._turn) % len(instances)]
