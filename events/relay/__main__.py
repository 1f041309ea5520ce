"""`python -m events.relay`: the relay process (composition root)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from events.relay.publisher import RabbitBatchPublisher
from events.relay.tail import Relay
from events.store import EventStore
from infra.breakers import Breakers
from infra.broker import rabbit_broker
from infra.serve import serve
from infra.settings import Settings
from infra.worker import create_worker_app

settings = Settings()
broker = rabbit_broker(settings, "relay")
parts: dict[str, Any] = {}


async def start() -> tuple[list[Coroutine[Any, Any, None]], Callable[[], Awaitable[None]]]:
    # The relay writes only its checkpoint: a lost one means batches published again, which
    # every consumer skips (see `EventStore.connect`).
    store = await EventStore.connect(
        settings.database_url, min_size=1, max_size=4, durable_commits=False
    )
    await broker.start()
    publisher = RabbitBatchPublisher(broker, settings.exchange)
    await publisher.declare()
    relay = Relay(
        store,
        publisher,
        leader_dsn=settings.database_url,
        batch_size=settings.relay_batch_size,
        idle_poll_max=settings.relay_idle_poll_max_seconds,
        linger=settings.relay_linger_seconds,
        breakers=Breakers(settings.breaker_threshold, settings.breaker_ttl_seconds),
    )
    parts.update(store=store, relay=relay)

    async def cleanup() -> None:
        await broker.stop()
        await store.close()

    return [relay.run()], cleanup


async def health() -> tuple[bool, dict[str, Any]]:
    relay: Relay | None = parts.get("relay")
    broker_up = await broker.ping(timeout=1.0)
    detail = {
        "broker": "up" if broker_up else "down",
        "role": "leader" if relay and relay.is_leader else "standby",
        "checkpoint": str(relay.checkpoint) if relay else None,
        "instance": settings.instance,
    }
    return broker_up and relay is not None, detail


serve(
    create_worker_app(service="relay", settings=settings, start=start, health=health),
    settings,
    "relay",
)
