"""Command handlers: load the aggregate, decide, append with the version it was loaded at.

A concurrency conflict means someone else wrote the stream in between: reload and decide again,
a bounded number of times with jitter. Only a real rule violation reaches the client.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from command_api.domain import network
from command_api.domain.errors import NotFound
from events import ConcurrencyError, EventStore
from events.contracts import DomainEvent, to_new_event
from events.contracts.registry import decode_recorded

S = TypeVar("S")
C = TypeVar("C")

MAX_ATTEMPTS = 8


class RetriesExhausted(Exception):
    """The stream kept changing under the handler; the client may retry."""


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Who asked, and the request this command belongs to (stored as event metadata)."""

    tenant_id: str
    actor: str
    correlation_id: str
    traceparent: str | None = None

    def metadata(self) -> dict[str, Any]:
        metadata = {
            "tenant_id": self.tenant_id,
            "actor": self.actor,
            "correlation_id": self.correlation_id,
            "causation_id": self.correlation_id,
        }
        if self.traceparent:
            metadata["traceparent"] = self.traceparent
        return metadata


@dataclass(frozen=True, slots=True)
class CommandResult:
    id: uuid.UUID
    position: int
    stream_version: int


@dataclass(frozen=True, slots=True)
class Aggregate(Generic[S, C]):
    """The pure functions of one aggregate, as the handler needs them."""

    decide: Callable[[S | None, C], list[DomainEvent]]
    evolve: Callable[[S | None, DomainEvent], S | None]


NETWORK: Aggregate[network.Network, network.NetworkCommand] = Aggregate(
    network.decide, network.evolve
)


async def load(
    store: EventStore,
    stream_id: str,
    evolve: Callable[[S | None, DomainEvent], S | None],
    tenant_id: str,
) -> tuple[S | None, int]:
    """The aggregate's state and version; another tenant's stream looks like no stream."""
    state: S | None = None
    version = 0
    async for recorded in store.read_stream(stream_id):
        if recorded.tenant_id != tenant_id:
            raise NotFound(f"{stream_id} does not exist")
        event = decode_recorded(recorded)
        if isinstance(event, DomainEvent):
            state = evolve(state, event)
        version = recorded.stream_version
    return state, version


async def execute(
    store: EventStore,
    aggregate: Aggregate[S, C],
    stream_id: str,
    aggregate_id: uuid.UUID,
    command: C,
    context: CommandContext,
) -> CommandResult:
    for attempt in range(MAX_ATTEMPTS):
        state, version = await load(store, stream_id, aggregate.evolve, context.tenant_id)
        events = aggregate.decide(state, command)
        metadata = context.metadata()
        try:
            result = await store.append(
                stream_id, [to_new_event(event, metadata) for event in events], version
            )
        except ConcurrencyError:
            await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))  # decorrelate racers
            continue
        return CommandResult(aggregate_id, result.position, result.stream_version)
    raise RetriesExhausted(f"{stream_id} changed {MAX_ATTEMPTS} times while deciding")


async def create_network(
    store: EventStore, command: network.CreateNetwork, context: CommandContext
) -> CommandResult:
    stream = network.stream_id(command.network_id)
    return await execute(store, NETWORK, stream, command.network_id, command, context)
