"""Command handlers: load the aggregates, decide, append everything with the versions they were
loaded at, in one transaction.

A concurrency conflict means someone else wrote one of the streams in between: reload and decide
again, a bounded number of times with jitter. Only a real rule violation reaches the client.

Each process keeps the aggregates it folded last (`AggregateCache`). A command first decides on
the cached state without reading the store at all: the append expects the cached version, so it
commits only if nobody wrote the stream since, and then the cached state was the current one.
If the cache was stale the append fails, and the command reads what it missed and decides again.
A refusal (a rule violation, "nothing to do") is never answered from the cache: the command
reads the store and decides again first, so a client is only told no on the current state.
A stream whose cached state turned out stale (another process writes it too, like a busy subnet
behind two command services) is read from its cached version on, in the same round trip a
failed append would have cost, until such a read finds nothing new.

Commands of one process take turns on the first stream they load (`StreamTurns`): a command
decides on a stream only after the command before it in this process committed and cached it.
Racing launches on one subnet used to fail each other's appends and read again: 2.5 attempts
per launch at 32 concurrent over 8 subnets. A command waits for one turn only, so turns cannot
deadlock; the other streams it loads, and streams another process writes, stay optimistic.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from command_api import snapshots
from command_api.domain.errors import DomainError, NotFound
from command_api.metrics import CONFLICTS, LOADS, REPLAYS, record_appended
from events import ConcurrencyError, EventStore, ExpectedVersion, IdempotencyKeyReused
from events.contracts import DomainEvent, decode_recorded, to_new_event
from events.model import AppendResult, IdempotencyRecord, RecordedEvent
from infra.telemetry import current_traceparent, span

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
    evolve: Callable[[Any, DomainEvent], Any]
    #: The version of the snapshot it was restored from or last saved to (0: none).
    snapshot_version: int = 0


#: How much folded state a command process keeps, counted in the events folded into it (a
#: stream's version). A subnet weighs as much as its history. Full of new networks (weight 1
#: each), it holds about 56 MiB (tracemalloc: 588 B a network); a command process that had
#: served about 150,000 creates held 135-141 MiB RSS (docs/BENCHMARKS.md, sixteenth session).
CACHE_WEIGHT = 100_000


class AggregateCache:
    """The aggregates this process folded last, each with its stream's tenant; the least
    recently used go first when they weigh more than `capacity` events."""

    def __init__(self, capacity: int = CACHE_WEIGHT) -> None:
        self.capacity = capacity
        self.weight = 0
        self._entries: OrderedDict[str, tuple[str, Loaded]] = OrderedDict()
        #: Streams another process wrote behind this cache's back lately (see module).
        self.contended: set[str] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, stream_id: str) -> tuple[str, Loaded] | None:
        entry = self._entries.get(stream_id)
        if entry is not None:
            self._entries.move_to_end(stream_id)
        return entry

    def put(self, tenant_id: str, loaded: Loaded) -> None:
        """Keep `loaded`, unless a newer version of its stream is kept already (two commands
        of this process may finish in either order)."""
        kept = self._entries.get(loaded.stream_id)
        if kept is not None and kept[1].version > loaded.version:
            return
        replaced = self._entries.pop(loaded.stream_id, None)
        if replaced is not None:
            self.weight -= replaced[1].version
        self._entries[loaded.stream_id] = (tenant_id, loaded)
        self.weight += loaded.version
        while self.weight > self.capacity and len(self._entries) > 1:
            stream_id, (_, evicted) = self._entries.popitem(last=False)
            self.weight -= evicted.version
            self.contended.discard(stream_id)


class StreamTurns:
    """A lock per stream that commands of this process are deciding on, dropped when unused."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    async def take(self, stream_id: str) -> None:
        entry = self._locks.get(stream_id)  # a new lock only for a stream nobody decides on
        if entry is None:
            entry = self._locks[stream_id] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            await lock.acquire()
        except BaseException:  # cancelled while waiting
            self._leave(stream_id, users)
            raise

    def give_back(self, stream_id: str) -> None:
        lock, users = self._locks[stream_id]
        lock.release()
        self._leave(stream_id, users)

    def _leave(self, stream_id: str, users: list[int]) -> None:
        users[0] -= 1
        if not users[0]:
            del self._locks[stream_id]


@dataclass(frozen=True, slots=True)
class Repository:
    """Where commands find aggregates: the event store, this process's cache of it, and the
    turns its commands take on a stream."""

    store: EventStore
    cache: AggregateCache = field(default_factory=AggregateCache)
    turns: StreamTurns = field(default_factory=StreamTurns)


class Loader:
    """Loads the aggregates of one attempt of one command, as its tenant sees them: another
    tenant's stream looks exactly like a missing one. `trust_cache` (the first attempt) takes a
    cached aggregate as it is; later attempts read what the cache missed (see module)."""

    def __init__(self, repository: Repository, tenant_id: str, *, trust_cache: bool) -> None:
        self.store, self.cache, self.turns = repository.store, repository.cache, repository.turns
        self.tenant_id, self.trust_cache = tenant_id, trust_cache
        #: The streams this attempt took from the cache unread.
        self.trusted: list[str] = []
        #: The stream whose turn this attempt holds: the first it loaded.
        self.turn: str | None = None

    async def __call__(self, stream_id: str, evolve: Callable[[Any, DomainEvent], Any]) -> Loaded:
        if self.turn is None:
            await self.turns.take(stream_id)
            self.turn = stream_id
        cached = self.cache.get(stream_id)
        if cached is None:
            LOADS["read"].inc()
            loaded = await self._read(stream_id, evolve)
        else:
            tenant_id, loaded = cached
            if tenant_id != self.tenant_id:
                raise _missing(stream_id)
            if self.trust_cache and stream_id not in self.cache.contended:
                LOADS["cached"].inc()
                self.trusted.append(stream_id)
                return loaded
            LOADS["tail"].inc()
            was = loaded.version
            loaded = await self._catch_up(loaded)
            if loaded.version == was:
                self.cache.contended.discard(stream_id)  # nobody else wrote it meanwhile
        if loaded.version:
            self.cache.put(self.tenant_id, loaded)
        return loaded

    @property
    def used_cache(self) -> bool:
        """Whether a decision of this attempt rests on cached state it did not check."""
        return bool(self.trusted)

    def end_turn(self) -> None:
        """After the attempt, committed and cached or not: the next command's turn."""
        if self.turn is not None:
            self.turns.give_back(self.turn)
            self.turn = None

    def stale(self) -> None:
        """The attempt's decision on cached state did not stand: read those streams next time."""
        LOADS["stale"].inc(len(self.trusted))
        self.cache.contended.update(self.trusted)

    async def _read(self, stream_id: str, evolve: Callable[[Any, DomainEvent], Any]) -> Loaded:
        """Fold a stream from its snapshot, if any, else from the start."""
        loaded = Loaded(stream_id, None, 0, 0, evolve)
        codec = snapshots.codec_for(stream_id)
        if codec is not None:
            snapshot = await self.store.load_snapshot(stream_id)
            try:
                restored = snapshots.restore(snapshot, codec, self.tenant_id)
            except LookupError:
                raise _missing(stream_id) from None
            if restored is not None:
                version = restored.version
                loaded = Loaded(
                    stream_id, restored.state, version, restored.position, evolve, version
                )
        return await self._catch_up(loaded)

    async def _catch_up(self, loaded: Loaded) -> Loaded:
        """`loaded` with whatever its stream gained since."""
        state, version, position = loaded.state, loaded.version, loaded.position
        async for recorded in self.store.read_stream(loaded.stream_id, from_version=version + 1):
            if recorded.tenant_id != self.tenant_id:
                raise _missing(loaded.stream_id)
            state = _evolved(loaded.evolve, state, recorded)
            version, position = recorded.stream_version, recorded.position
        if version == loaded.version:
            return loaded
        return replace(loaded, state=state, version=version, position=position)


def _missing(stream_id: str) -> NotFound:
    """What a command is told about a stream it may not see: that it does not exist."""
    kind, _, aggregate_id = stream_id.partition("-")
    return NotFound(f"{kind} {aggregate_id} does not exist")


def _evolved(evolve: Callable[[Any, DomainEvent], Any], state: Any, recorded: RecordedEvent) -> Any:
    """`state` with a stored event folded in (an event of a type this code does not know
    changes nothing)."""
    event = decode_recorded(recorded)
    return evolve(state, event) if isinstance(event, DomainEvent) else state


async def read_together(
    repository: Repository,
    tenant_id: str,
    stream_ids: Sequence[str],
    evolve: Callable[[Any, DomainEvent], Any],
) -> None:
    """Cache the tenant's streams among `stream_ids` that the cache lacks, read in one round
    trip, for a batch of commands about to load them one each (the provisioner's boots: half
    of them were launched through the other command service). The commands then decide on the
    cached state as on any other: an append that finds it stale reads again. Streams kept in
    snapshots, and another tenant's, are left to each command's own load."""
    missing = [
        stream_id
        for stream_id in dict.fromkeys(stream_ids)
        if repository.cache.get(stream_id) is None and snapshots.codec_for(stream_id) is None
    ]
    if len(missing) < 2:  # one is read by its command as before
        return
    LOADS["read"].inc(len(missing))
    folded: dict[str, Loaded] = {}
    for recorded in await repository.store.read_streams(missing):
        if recorded.tenant_id != tenant_id:  # another tenant's stream: as if missing
            continue
        loaded = folded.get(recorded.stream_id) or Loaded(recorded.stream_id, None, 0, 0, evolve)
        folded[recorded.stream_id] = replace(
            loaded,
            state=_evolved(evolve, loaded.state, recorded),
            version=recorded.stream_version,
            position=recorded.position,
        )
    for loaded in folded.values():  # `put` keeps a version cached meanwhile if newer
        repository.cache.put(tenant_id, loaded)


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


def _committed(decision: Decision, results: dict[str, AppendResult]) -> list[Loaded]:
    """Each stream the decision wrote, folded up to its new version."""
    committed = []
    for loaded, events in decision.appends:
        result = results.get(loaded.stream_id)
        if result is None:
            continue
        state = loaded.state
        for event in events:
            state = loaded.evolve(state, event)
        # Made directly: `dataclasses.replace` took 1.4 µs a stream, this 0.5 (timeit).
        after = Loaded(
            loaded.stream_id,
            state,
            result.stream_version,
            result.position,
            loaded.evolve,
            loaded.snapshot_version,
        )
        committed.append(after)
    return committed


async def keep_snapshots(store: EventStore, loaded: Loaded, tenant_id: str) -> Loaded:
    """After a commit: snapshot a stream that grew far enough past its last snapshot."""
    codec = snapshots.codec_for(loaded.stream_id)
    if codec is None or not snapshots.due(
        codec, loaded.state, loaded.version - loaded.snapshot_version
    ):
        return loaded
    await store.save_snapshot(
        snapshots.take(
            loaded.stream_id, codec, loaded.state, loaded.version, loaded.position, tenant_id
        )
    )
    return replace(loaded, snapshot_version=loaded.version)


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


#: What a command decides with: the aggregates it loads through the `Loader` it is given.
Decide = Callable[[Loader], Awaitable[Decision]]


class Retry(enum.Enum):
    """How an attempt that did not stand is followed: decide again at once, or after a pause."""

    AT_ONCE = "at once"
    AFTER_A_PAUSE = "after a pause"


async def execute(repository: Repository, context: CommandContext, decide: Decide) -> CommandResult:
    """Run `decide` (load + pure decisions) and append its events atomically, retrying on
    concurrency conflicts; with an idempotency key the answer is stored in the same commit."""
    metadata = context.metadata()
    # The events carry the request's trace, so every process that handles them joins it.
    traceparent = current_traceparent() or context.traceparent
    if traceparent:
        metadata["traceparent"] = traceparent
    for attempt in range(MAX_ATTEMPTS):
        load = Loader(repository, context.tenant_id, trust_cache=attempt == 0)
        try:
            outcome = await _attempt(repository, context, decide, load, metadata)
        finally:
            load.end_turn()
        if isinstance(outcome, CommandResult):
            return outcome
        if outcome is Retry.AFTER_A_PAUSE:
            # Full jitter, capped: racers spread out instead of colliding again in lockstep.
            await asyncio.sleep(random.uniform(0, min(0.05, 0.002 * 2**attempt)))
    raise RetriesExhausted(f"the aggregate changed {MAX_ATTEMPTS} times while deciding")


async def _attempt(
    repository: Repository,
    context: CommandContext,
    decide: Decide,
    load: Loader,
    metadata: dict[str, Any],
) -> CommandResult | Retry:
    store = repository.store
    try:
        decision = await decide(load)
    except DomainError:
        if load.used_cache:
            load.stale()
            return Retry.AT_ONCE  # refused on cached state: decide again on the current one
        raise
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
        if load.used_cache:
            load.stale()
            return Retry.AT_ONCE  # ... and where it is, not where this process last saw it
        return CommandResult(decision.status, _answer(decision, None))
    streams = [stream for stream, _, _ in appends]

    def answer(results: list[AppendResult]) -> tuple[int, dict[str, Any]]:
        primary = dict(zip(streams, results, strict=True)).get(decision.primary.stream_id)
        return decision.status, _answer(decision, primary, results)

    idempotency = None
    if context.idempotency is not None:
        idempotency = (context.tenant_id, *context.idempotency)
    try:
        with span("append", attributes={"cloudnet.streams": streams}):
            results = await store.append_many(appends, idempotency=idempotency, answer=answer)
    except ConcurrencyError:
        if load.used_cache:
            load.stale()
            return Retry.AT_ONCE  # the cache was behind: read what it missed, at once
        CONFLICTS.inc()
        return Retry.AFTER_A_PAUSE
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
    for loaded in _committed(decision, dict(zip(streams, results, strict=True))):
        loaded = await keep_snapshots(store, loaded, context.tenant_id)
        repository.cache.put(context.tenant_id, loaded)
    return CommandResult(status, body)


def replay(record: IdempotencyRecord) -> CommandResult:
    """The stored answer of an earlier request with the same key (checked by the caller)."""
    REPLAYS.inc()
    return CommandResult(
        record.status, record.answer, replayed=True, request_hash=record.request_hash
    )
