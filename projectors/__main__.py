"""`python -m projectors`: the projector process (composition root).

At start it catches every projection up from the store (whatever was published before its
queue existed), then consumes batches from RabbitMQ.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from faststream.rabbit import RabbitBroker

from events.store import EventStore
from infra.serve import serve
from infra.settings import Settings
from infra.worker import create_worker_app
from projectors.catalog import live_projections
from projectors.consumer import subscribe
from projectors.runtime import ProjectionRunner

settings = Settings()
broker = RabbitBroker(settings.amqp_url, logger=logging.getLogger("faststream"))
runners: list[ProjectionRunner] = []


async def start() -> tuple[list[Coroutine[Any, Any, None]], Callable[[], Awaitable[None]]]:
    store = await EventStore.connect(
        settings.database_url, min_size=1, max_size=settings.db_pool_max
    )
    runners.extend(ProjectionRunner(store, projection) for projection in live_projections())
    for runner in runners:
        await runner.catch_up()
        subscribe(broker, settings.exchange, runner)
    await broker.start()
    for runner in runners:  # what was published before the queues existed is not queued
        await runner.catch_up()

    async def cleanup() -> None:
        await broker.stop()
        await store.close()

    return [], cleanup


async def health() -> tuple[bool, dict[str, Any]]:
    broker_up = await broker.ping(timeout=1.0)
    checkpoints = {runner.key: str(await runner.checkpoint()) for runner in runners}
    detail = {"broker": "up" if broker_up else "down", "checkpoints": checkpoints}
    return broker_up and bool(runners), detail


serve(
    create_worker_app(service="projector", settings=settings, start=start, health=health),
    settings,
    "projector",
)
