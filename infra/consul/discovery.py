"""`ConsulDiscovery`: the healthy instances of a service from the agent's health API, cached and
kept fresh by one blocking query per service in the background.

API: https://developer.hashicorp.com/consul/api-docs/health#list-service-instances-for-service
Blocking queries: https://developer.hashicorp.com/consul/api-docs/features/blocking
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field, TypeAdapter

from infra.consul.agent import AGENT_TIMEOUT_SECONDS, agent_client

log = logging.getLogger(__name__)


class _Node(BaseModel):
    address: str = Field(alias="Address")


class _Service(BaseModel):
    address: str = Field(default="", alias="Address")
    port: int = Field(alias="Port")


class HealthEntry(BaseModel):
    """One element of the health API's answer; the fields cloudnet does not use are ignored."""

    node: _Node = Field(alias="Node")
    service: _Service = Field(alias="Service")

    @property
    def base_url(self) -> str:
        # Documented: an empty Service.Address means the instance listens on its node's address.
        host = self.service.address or self.node.address
        host = f"[{host}]" if ":" in host else host  # an IPv6 literal
        return f"http://{host}:{self.service.port}"


_ENTRIES = TypeAdapter(list[HealthEntry])


def next_index(previous: int, answered: int) -> int:
    """The `index` of the next blocking query, as the blocking-query docs ask: start over when the
    index goes backwards (a restored or restarted server), and never block on 0 (that answers
    at once, a tight loop)."""
    if answered < previous:
        return 0
    return max(answered, 1)


@dataclass
class _Watch:
    """What is known of one service, and the task that keeps it fresh."""

    urls: list[str] = field(default_factory=list)
    index: int = 0
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class ConsulDiscovery:
    """`ServiceDiscovery` over Consul: only instances whose checks pass; the last known instances
    while the agent cannot be reached (the caller's breaker deals with dead ones)."""

    def __init__(
        self,
        address: str,
        *,
        wait_seconds: float = 30.0,
        first_answer_seconds: float = 2.0,
        retry_seconds: float = 1.0,
        min_interval_seconds: float = 0.1,
    ) -> None:
        self._agent = agent_client(address)
        self.wait_seconds, self.first_answer_seconds = wait_seconds, first_answer_seconds
        self.retry_seconds, self.min_interval_seconds = retry_seconds, min_interval_seconds
        self._watches: dict[str, _Watch] = {}

    async def instances(self, service: str) -> list[str]:
        watch = self._watches.get(service)
        if watch is None:
            watch = self._watches[service] = _Watch()
            watch.task = asyncio.create_task(self._follow(service, watch), name=f"consul {service}")
        if not watch.answered.is_set():  # the first call waits (bounded) for the first answer
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.answered.wait(), self.first_answer_seconds)
        return list(watch.urls)

    async def aclose(self) -> None:
        tasks = [watch.task for watch in self._watches.values() if watch.task is not None]
        self._watches.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._agent.aclose()

    async def _follow(self, service: str, watch: _Watch) -> None:
        while True:
            try:
                await self._query(service, watch)
                # The docs ask clients to rate-limit: a busy catalog answers every query at once.
                pause = self.min_interval_seconds
            except (httpx.HTTPError, ValueError) as error:
                log.warning(
                    "Consul did not answer for %s (%r); keeping the %d instances known",
                    service,
                    error,
                    len(watch.urls),
                )
                watch.index, pause = 0, self.retry_seconds
            watch.answered.set()
            await asyncio.sleep(pause)

    async def _query(self, service: str, watch: _Watch) -> None:
        params = {"passing": "true"}
        timeout = AGENT_TIMEOUT_SECONDS
        if watch.index:
            params |= {"index": str(watch.index), "wait": f"{round(self.wait_seconds * 1000)}ms"}
            timeout += self.wait_seconds * 17 / 16  # Consul adds up to wait/16 of jitter
        response = await self._agent.get(
            f"/v1/health/service/{quote(service, safe='')}", params=params, timeout=timeout
        )
        response.raise_for_status()
        answered = response.headers.get("X-Consul-Index")
        if answered is None:
            raise ValueError("the answer has no X-Consul-Index header")
        entries = _ENTRIES.validate_json(response.content)
        watch.urls = sorted({entry.base_url for entry in entries})
        watch.index = next_index(watch.index, int(answered))
