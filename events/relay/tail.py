"""The relay loop: leadership, commit-order tailing, adaptive wake-ups, checkpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import asyncpg
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Gauge, Histogram

from events.model import ORIGIN, Checkpoint
from events.store import APPENDED_CHANNEL
from infra.breakers import Breakers
from infra.telemetry import event_spans

if TYPE_CHECKING:
    from events.relay.publisher import BatchPublisher
    from events.store import EventStore

log = logging.getLogger(__name__)

PUBLISHED = Counter("cloudnet_relay_published_events_total", "Events published to the broker.")
BATCHES = Counter("cloudnet_relay_published_batches_total", "Batches published to the broker.")
PUBLISH_SECONDS = Histogram(
    "cloudnet_relay_publish_seconds",
    "Time to publish one batch until the broker confirmed it.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LEADER = Gauge("cloudnet_relay_leader", "1 while this relay holds leadership, else 0.")
CHECKPOINT_POSITION = Gauge(
    "cloudnet_relay_checkpoint_position", "Position of the last event the relay published."
)
LAG_SECONDS = Gauge(
    "cloudnet_relay_lag_seconds", "Age of the newest published event when it was published."
)
CHECKPOINT_TIMESTAMP = Gauge(
    "cloudnet_relay_checkpoint_timestamp_seconds", "When the last published event was recorded."
)
FAILURES = Counter("cloudnet_relay_failures_total", "Relay passes that failed and were retried.")


#: The smallest batch after which the relay lingers (see `_tail`) in proportion to its size.
LINGER_FROM = 4
#: How long the relay lingers per event of the batch it just published, up to its `linger`: the
#: busier the stream of commands, the longer it gathers the next batch. Measured with wrk
#: (`POST /v1/networks`, alternating): a flat 5 ms gave batches of 12 events, and the relay,
#: RabbitMQ, the projector and the provisioner spent 1.10-1.22 ms of CPU per command; this rule
#: gave 17-19 events and 0.78-0.83 ms (docs/BENCHMARKS.md, seventh session).
LINGER_PER_EVENT = 0.001
#: A smaller batch that came less than `STEADY_WITHIN` after the one before is part of a steady
#: stream (at 200 commands/s batches hold one or two events, 5 ms apart): the relay then lingers
#: `STEADY_LINGER`, so the next batch gathers what comes meanwhile. At 200 commands/s the relay,
#: RabbitMQ, the projector and PostgreSQL then spent 15 % of a core less, for 3 ms more lag at the
#: median (docs/BENCHMARKS.md, fourteenth session). A lone command is published at once.
STEADY_WITHIN = 0.02
STEADY_LINGER = 0.005


def linger_after(published: int, ceiling: float, since_last: float = float("inf")) -> float:
    """Seconds to wait after publishing a partial batch of `published` events, `since_last`
    seconds after the batch before it."""
    if published >= LINGER_FROM:
        return min(ceiling, published * LINGER_PER_EVENT)
    if since_last < STEADY_WITHIN:
        return min(ceiling, STEADY_LINGER)
    return 0.0


#: How often the relay saves its checkpoint while it publishes. A checkpoint not saved only
#: means batches published again after a crash or a takeover, which every consumer skips. Saving
#: after every batch cost the relay 7 % more CPU at 200 commands/s (docs/BENCHMARKS.md).
SAVE_EVERY = 0.25


class Relay:
    """Publishes every committed event exactly in commit order, at least once."""

    def __init__(
        self,
        store: EventStore,
        publisher: BatchPublisher,
        *,
        leader_dsn: str,
        name: str = "default",
        batch_size: int = 500,
        idle_poll_max: float = 0.1,
        linger: float = 0.0,
        standby_poll: float = 0.5,
        save_every: float = SAVE_EVERY,
        breakers: Breakers | None = None,
    ) -> None:
        self.store, self.publisher, self.name = store, publisher, name
        self.linger, self.standby_poll = linger, standby_poll
        self.leader_dsn = leader_dsn
        self.breakers = breakers or Breakers()
        self.batch_size, self.idle_poll_max = batch_size, idle_poll_max
        self.is_leader = False
        self.checkpoint = ORIGIN
        #: The checkpoint saved last, and when (`time.monotonic()`).
        self.saved, self.save_every, self._saved_at = ORIGIN, save_every, 0.0
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Lead when possible, wait as a standby otherwise; survives store and broker outages."""
        while True:
            try:
                await self._lead_when_possible()
            except asyncio.CancelledError:
                raise
            except Exception:
                FAILURES.inc()
                log.exception("relay pass failed; retrying")
            finally:
                self._set_leader(False)
            await asyncio.sleep(1.0)

    async def _lead_when_possible(self) -> None:
        # Leadership lives in its own session: when this process dies, PostgreSQL ends the
        # session, the lock is released and a standby takes it at its next try. The standby
        # tries (pg_try_advisory_lock) rather than waits (pg_advisory_lock): a statement that
        # waits keeps its snapshot, and with it the cluster's vacuum horizon, for as long as it
        # waits, so no dead row version anywhere (checkpoints, read models) could be pruned.
        connection = await asyncpg.connect(self.leader_dsn)
        try:
            while True:
                if await connection.fetchval(
                    "SELECT pg_try_advisory_lock(hashtext('cloudnet-relay'), hashtext($1))",
                    self.name,
                ):
                    break
                await asyncio.sleep(self.standby_poll)
            self._set_leader(True)
            await connection.add_listener(APPENDED_CHANNEL, self._on_appended)
            log.info("relay %s leads", self.name)
            await self._tail(connection)
        finally:
            with contextlib.suppress(Exception):
                await connection.remove_listener(APPENDED_CHANNEL, self._on_appended)
            connection.terminate()

    async def _tail(self, leader: asyncpg.Connection) -> None:
        self.checkpoint = self.saved = await self._load_checkpoint()
        idle, published_at = 0.001, float("-inf")
        while not leader.is_closed():
            batch = await self.store.read_all(after=self.checkpoint, limit=self.batch_size)
            if batch:
                await self._publish(batch)
                now = time.monotonic()
                idle, since_last, published_at = 0.001, now - published_at, now
                if len(batch) == self.batch_size:
                    continue
                if pause := linger_after(len(batch), self.linger, since_last):
                    # Under a heavy stream of commands each pass would publish a few events;
                    # waiting lets the next batch gather more, and every message costs the
                    # broker, each consumer and each projection's commit.
                    await asyncio.sleep(pause)
                    continue
            await self._save_when_due()  # the last batch's, once the relay is idle
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle)
            # A wake-up can precede the horizon passing the new events: poll fast, then back off.
            idle = 0.001 if self._wake.is_set() else min(idle * 2, self.idle_poll_max)

    async def _publish(self, batch: list[Any]) -> None:
        started = time.perf_counter()
        with event_spans("publish", batch, SpanKind.PRODUCER):
            # While RabbitMQ is down the breaker opens and the relay backs off instead of
            # piling up connection attempts; the store keeps everything meanwhile.
            async with self.breakers.guard("rabbitmq"):
                await self.publisher.publish(batch, previous=self.checkpoint)
        PUBLISH_SECONDS.observe(time.perf_counter() - started)
        last = batch[-1]
        self.checkpoint = last.checkpoint
        await self._save_when_due()
        PUBLISHED.inc(len(batch))
        BATCHES.inc()
        CHECKPOINT_POSITION.set(last.position)
        LAG_SECONDS.set(max(0.0, time.time() - last.recorded_at.timestamp()))
        CHECKPOINT_TIMESTAMP.set(last.recorded_at.timestamp())

    def _on_appended(self, *_: object) -> None:
        self._wake.set()

    def _set_leader(self, leader: bool) -> None:
        self.is_leader = leader
        LEADER.set(1 if leader else 0)

    async def _load_checkpoint(self) -> Checkpoint:
        row = await self.store.pool.fetchrow(
            "SELECT transaction_id, position FROM relay_checkpoints WHERE relay = $1", self.name
        )
        return Checkpoint(row["transaction_id"], row["position"]) if row else ORIGIN

    async def _save_when_due(self) -> None:
        """Save the checkpoint if it moved and the last save is `save_every` old."""
        if self.checkpoint != self.saved and time.monotonic() - self._saved_at >= self.save_every:
            await self._save_checkpoint(self.checkpoint)
            self.saved, self._saved_at = self.checkpoint, time.monotonic()

    async def _save_checkpoint(self, checkpoint: Checkpoint) -> None:
        await self.store.pool.execute(
            """INSERT INTO relay_checkpoints (relay, transaction_id, position) VALUES ($1, $2, $3)
               ON CONFLICT (relay) DO UPDATE SET transaction_id = EXCLUDED.transaction_id,
               position = EXCLUDED.position, updated_at = now()""",
            self.name,
            checkpoint.transaction_id,
            checkpoint.position,
        )
