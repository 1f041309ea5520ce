"""This process in Consul's catalog while it serves: registered with an HTTP check on `/health`
at start-up, deregistered on shutdown. Should it die without a word, the agent drops it once its
check has stayed critical for `deregister_critical_after`.

API: https://developer.hashicorp.com/consul/api-docs/agent/service#register-service
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from infra.consul.agent import agent_client

if TYPE_CHECKING:
    from infra.settings import Settings

log = logging.getLogger(__name__)

#: `host` values that mean "every interface": nobody can be sent there.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


@dataclass(frozen=True, slots=True)
class ServiceRegistration:
    """One instance of a service, in the shape the agent's register endpoint documents."""

    name: str
    instance: str
    address: str
    port: int
    tags: tuple[str, ...]
    check_interval: str = "5s"
    check_timeout: str = "2s"
    deregister_critical_after: str = "1m"

    @property
    def service_id(self) -> str:
        return f"{self.name}-{self.instance}"

    def payload(self) -> dict[str, Any]:
        return {
            "ID": self.service_id,
            "Name": self.name,
            "Address": self.address,
            "Port": self.port,
            "Tags": list(self.tags),
            # Prometheus labels its targets with this, as the local launcher names its programs.
            "Meta": {"instance": self.instance},
            "Check": {
                "Name": f"{self.service_id} /health",
                "HTTP": f"http://{self.address}:{self.port}/health",
                "Method": "GET",
                "Interval": self.check_interval,
                "Timeout": self.check_timeout,
                "DeregisterCriticalServiceAfter": self.deregister_critical_after,
            },
        }

    @classmethod
    def of(cls, settings: Settings, service: str, role: str) -> ServiceRegistration:
        """`role` says what the instance is for (`api`, `worker`); `metrics` asks Prometheus
        to scrape it."""
        return cls(
            name=service,
            instance=settings.instance,
            address=advertised_address(settings),
            port=settings.port,
            tags=("metrics", role),
        )


def advertised_address(settings: Settings) -> str:
    """Where other processes reach this one: the configured address, else the listening host,
    else (listening everywhere, as in a container) the address this machine's name resolves to.

    An address rather than a name: nginx refuses to reload a config naming a host that no longer
    resolves, which a container's name does not once the container is gone."""
    if settings.advertise_address:
        return settings.advertise_address
    if settings.host not in WILDCARD_HOSTS:
        return settings.host
    hostname = socket.gethostname()
    try:
        return socket.gethostbyname(hostname)
    except OSError:
        return hostname


@asynccontextmanager
async def register(
    settings: Settings, service: str, role: str, *, deadline_seconds: float = 30.0
) -> AsyncIterator[ServiceRegistration | None]:
    """Registered in Consul while inside; without `CONSUL_HTTP_ADDR` nothing happens (None).

    An agent that cannot be reached for `deadline_seconds` fails the start-up, so the process
    supervisor restarts the process rather than running it undiscoverable."""
    if not settings.consul_http_addr:
        yield None
        return
    registration = ServiceRegistration.of(settings, service, role)
    async with agent_client(settings.consul_http_addr) as agent:
        retrying = AsyncRetrying(
            retry=retry_if_exception(_worth_retrying),
            wait=wait_exponential_jitter(multiplier=0.2, max=2.0),
            stop=stop_after_delay(deadline_seconds),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await agent.put(
                    "/v1/agent/service/register",
                    params={"replace-existing-checks": "true"},
                    json=registration.payload(),
                )
                response.raise_for_status()
        log.info("registered %s in Consul", registration.service_id)
        try:
            yield registration
        finally:
            await _deregister(agent, registration.service_id)


async def _deregister(agent: httpx.AsyncClient, service_id: str) -> None:
    try:
        response = await agent.put(f"/v1/agent/service/deregister/{quote(service_id, safe='')}")
        response.raise_for_status()
    except httpx.HTTPError as error:  # the critical check removes it a little later anyway
        log.warning("could not deregister %s from Consul: %r", service_id, error)
    else:
        log.info("deregistered %s from Consul", service_id)


def _worth_retrying(error: BaseException) -> bool:
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code >= 500
    return isinstance(error, httpx.TransportError)
