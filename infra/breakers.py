"""Circuit breakers around remote calls (purgatory), with their state as a Prometheus gauge.

An open breaker fails fast with `BreakerOpen` instead of waiting on a dead dependency; after
its TTL one probe goes through (half-open) and success closes it again by itself.
See https://github.com/mardiros/purgatory
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import Gauge
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

BREAKER_STATE = Gauge(
    "cloudnet_circuit_breaker_state",
    "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open.",
    ["dependency"],
)
_STATE_VALUES = {"closed": 0, "half-opened": 1, "opened": 2}


class BreakerOpen(Exception):
    """The dependency's breaker is open; retry after `retry_after` seconds."""

    def __init__(self, dependency: str, retry_after: float) -> None:
        super().__init__(f"{dependency} is unavailable (circuit open)")
        self.dependency = dependency
        self.retry_after = retry_after


class Breakers:
    """One breaker per dependency name; failures are exceptions not in `exclude`."""

    def __init__(self, threshold: int = 5, ttl_seconds: float = 5.0) -> None:
        self.ttl = ttl_seconds
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=threshold, default_ttl=ttl_seconds
        )
        self._factory.add_listener(self._on_event)
        #: The dependencies whose gauge shows their breaker's state (set when first guarded,
        #: then by the breaker's state changes): not set again on every call, which cost each
        #: request the gauge's lock and label lookup.
        self._shown: set[str] = set()

    @asynccontextmanager
    async def guard(
        self,
        dependency: str,
        exclude: list[type[BaseException]] | None = None,
        failures: tuple[type[BaseException], ...] | None = None,
    ) -> AsyncIterator[None]:
        """Run the block through the dependency's breaker. Exceptions count as failures unless
        in `exclude`; with `failures`, only those do (e.g. connection errors, not a 409)."""
        excluded: list[Any] = list(exclude or [])
        if failures is not None:
            only = failures
            excluded.append((BaseException, lambda error: not isinstance(error, only)))
        breaker = await self._factory.get_breaker(dependency, exclude=excluded)
        if dependency not in self._shown:
            self._shown.add(dependency)
            BREAKER_STATE.labels(dependency).set(_STATE_VALUES.get(breaker.context.state, 0))
        try:
            async with breaker:
                yield
        except OpenedState as error:
            raise BreakerOpen(dependency, self.ttl) from error

    def _on_event(self, name: str, event_type: str, event: Any) -> None:
        if event_type == "state_changed":
            BREAKER_STATE.labels(name).set(_STATE_VALUES.get(str(event.state), 0))
