"""Command handlers: load the aggregates, decide, append everything with the versions they were
loaded at, in one transaction.

A concurrency conflict means someone else wrote one of the streams in between: reload and decide
again, a bounded number of times with jitter. Only a real rule violation reaches the client.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from command_api import snapshots
from command_api.domain.errors import NotFound
from command_api.metrics import CONFLICTS, REPLAYS, record_appended
from events import ConcurrencyError, EventStore, ExpectedVersion, IdempotencyKeyReused
from events.contracts import DomainEvent, decode_recorded, to_new_event
from events.model import AppendResult, IdempotencyRecord
from infra.telemetry import current_traceparent, tracer

S = TypeVar("S")
log = logging.getLogger(__name__)

# Enough for a few dozen writers racing on one stream (each round, one of them wins).
MAX_ATTEMPTS = 30


class RetriesExhausted(Exception):
    """The streams kept changing under the handler; the client may retry."""


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Who asked, and the request this command belongs to (stored as event metadata)."""

    tenant_id: str
    actor: str
    correlation_id: str
    traceparent: str | None = None
    #: (Idempotency-Key, request hash) when the client sent a key.
    idempotency: tuple[str, str] | None = None

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
class Loaded:
    """An aggregate's state with the version and last position it was loaded at."""

    stream_id: str
    state: Any
    version: int
    position: int
    evolve: Callable[[Any, DomainEvent], Any] | None = None
    #: The version of the snapshot it was restored from (0: folded from the start).
    snapshot_version: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """What one attempt decided: events per stream (primary stream first) and the answer."""

    aggregate_id: uuid.UUID
    primary: Loaded
    appends: Sequence[tuple[Loaded, list[DomainEvent]]]
    status: int = 200
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommandResult:
    status: int
    body: dict[str, Any]
    replayed: bool = False
    #: For a replayed answer: the fingerprint of the request that first used the key.
    request_hash: str | None = None

    @property
    def position(self) -> int:
        return int(self.body["position"])


def fresh(stream_id: str, evolve: Callable[[Any, DomainEvent], Any]) -> Loaded:
    """The stream of an aggregate this command is creating under an id it has just made (a
    uuid4): there is nothing to read, which saves a query per create. The append still expects
    no stream, so even a clash of ids could not add to an existing one."""
    return Loaded(stream_id, None, 0, 0, evolve)


async def load(
    store: EventStore,
    stream_id: str,
    evolve: Callable[[S | None, DomainEvent], S | None],
    tenant_id: str,
) -> Loaded:
    """Fold a stream (from its snapshot, if any); another tenant's stream looks exactly like a
    missing one."""
    missing = NotFound(f"{stream_id.split('-')[0]} {stream_id.partition('-')[2]} does not exist")
    state: S | None = None
    version = position = snapshot_version = 0
    codec = snapshots.codec_for(stream_id)
    if codec is not None:
        try:
            restored = snapshots.restore(await store.load_snapshot(stream_id), codec, tenant_id)
        except LookupError:
            raise missing from None
        if restored is not None:
            state, version, position = restored.state, restored.version, restored.position
            snapshot_version = version
    async for recorded in store.read_stream(stream_id, from_version=version + 1):
        if recorded.tenant_id != tenant_id:
            raise missing
        event = decode_recorded(recorded)
        if isinstance(event, DomainEvent):
            state = evolve(state, event)
        version, position = recorded.stream_version, recorded.position
    return Loaded(stream_id, state, version, position, evolve, snapshot_version)


async def keep_snapshots(
    store: EventStore,
    decision: Decision,
    results: dict[str, AppendResult],
    tenant_id: str,
) -> None:
    """After a commit: snapshot the streams that grew far enough past their last snapshot."""
    for loaded, events in decision.appends:
        codec = snapshots.codec_for(loaded.stream_id)
        result = results.get(loaded.stream_id)
        if codec is None or result is None or loaded.evolve is None:
            continue
        if result.stream_version - loaded.snapshot_version < snapshots.SNAPSHOT_EVERY:
            continue
        state = loaded.state
        for event in events:
            state = loaded.evolve(state, event)
        await store.save_snapshot(
            snapshots.take(
                loaded.stream_id, codec, state, result.stream_version, result.position, tenant_id
            )
        )


def _answer(
    decision: Decision, primary: AppendResult | None, results: Sequence[AppendResult] = ()
) -> dict[str, Any]:
    """`{id, position, stream_version}`: the primary stream's version (where it stood if
    unchanged) and the last position the command wrote, so `X-Min-Position` covers all of it."""
    return {
        "id": str(decision.aggregate_id),
        "position": max((r.position for r in results), default=decision.primary.position),
        "stream_version": primary.stream_version if primary else decision.primary.version,
        **decision.extra,
    }


async def execute(
    store: EventStore, context: CommandContext, decide: Callable[[], Awaitable[Decision]]
) -> CommandResult:
    """Run `decide` (load + pure decisions) and append its events atomically, retrying on
    concurrency conflicts; with an idempotency key the answer is stored in the same commit."""
    metadata = context.metadata()
    # The events carry the request's trace, so every process that handles them joins it.
    traceparent = current_traceparent() or context.traceparent
    if traceparent:
        metadata["traceparent"] = traceparent
    for attempt in range(MAX_ATTEMPTS):
        decision = await decide()
        appends = [
            (
                loaded.stream_id,
                [to_new_event(e, metadata) for e in events],
                loaded.version or ExpectedVersion.NO_STREAM,
            )
            for loaded, events in decision.appends
            if events
        ]
        if not appends:  # nothing changes: answer with where the aggregate already is
            return CommandResult(decision.status, _answer(decision, None))
        streams = [stream for stream, _, _ in appends]

        def answer(
            results: list[AppendResult], d: Decision = decision, names: list[str] = streams
        ) -> tuple[int, dict[str, Any]]:
            by_stream = dict(zip(names, results, strict=True))
            return d.status, _answer(d, by_stream.get(d.primary.stream_id), results)

        idempotency = None
        if context.idempotency is not None:
            idempotency = (context.tenant_id, *context.idempotency)
        try:
            with tracer.start_as_current_span("append", attributes={"cloudnet.streams": streams}):
                results = await store.append_many(appends, idempotency=idempotency, answer=answer)
        except ConcurrencyError:
            CONFLICTS.inc()
            # Full jitter, capped: racers spread out instead of colliding again in lockstep.
            await asyncio.sleep(random.uniform(0, min(0.05, 0.002 * 2**attempt)))
            continue
        except IdempotencyKeyReused as reused:
            return replay(reused.record)
        record_appended(appends, results)
        status, body = answer(results)
        # DEBUG: one line per command cost 4.5 % of its CPU at INFO (docs/BENCHMARKS.md); the
        # gateway's access log has every request with its id and status.
        log.debug(
            "command committed",
            extra={"streams": streams, "position": body["position"], "status": status},
        )
        await keep_snapshots(
            store, decision, dict(zip(streams, results, strict=True)), context.tenant_id
        )
        return CommandResult(status, body)
    raise RetriesExhausted(f"the aggregate changed {MAX_ATTEMPTS} times while deciding")


def replay(record: IdempotencyRecord) -> CommandResult:
    """The stored answer of an earlier request with the same key (checked by the caller)."""
    REPLAYS.inc()
    return CommandResult(
        record.status, record.answer, replayed=True, request_hash=record.request_hash
    )
