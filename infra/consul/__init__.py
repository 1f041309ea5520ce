"""Consul as cloudnet's service registry (DESIGN §7): every HTTP process registers itself with
the agent at `CONSUL_HTTP_ADDR` (`register`), and callers find the healthy instances of a service
through the agent's health API (`ConsulDiscovery`).

Spoken over httpx rather than py-consul: py-consul's asyncio client needs aiohttp, which cloudnet
does not otherwise use, and its requests client would hold a thread through every blocking query.
"""

from infra.consul.agent import agent_url
from infra.consul.discovery import ConsulDiscovery
from infra.consul.registration import ServiceRegistration, advertised_address, register

__all__ = ["ConsulDiscovery", "ServiceRegistration", "advertised_address", "agent_url", "register"]
