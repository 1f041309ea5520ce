"""`python -m projectors`: the projector process (composition root).

At start it catches every read model up from the store (whatever was published before the
queue existed), then consumes batches from RabbitMQ, one queue for all its read models (see
`projectors.group`); a periodic pass heals what a lost message or a resumed (`dlq retry`)
projection still lacks.

The provisioner's pending boots are applied here too, with the read models
(`projectors.catalog.projector_runners`); the provisioner process works that list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from events.model import Checkpoint
from events.store import EventStore
from infra.broker import rabbit_broker
from infra.serve import serve
from infra.settings import Settings
from infra.worker import create_worker_app
from projectors.catalog import READ_MODELS_GROUP, RETIRED_GROUPS, projector_runners
from projectors.consumer import consumer_health, delete_queues, queue_name, subscribe
from projectors.group import ProjectionGroup
from projectors.runtime import TRANSIENT, ProjectionRunner

settings = Settings()
broker = rabbit_broker(settings, "projector")
runners: list[ProjectionRunner] = []
log = logging.getLogger("projectors")


async def heal(period_seconds: float = 2.0) -> None:
    """Catch up the read models whose checkpoint stood still since the last pass (a lost message,
    a `dlq retry`). One that moved is being fed from the queue, here or by the other projector
    process: catching it up as well would only race that consumer for its checkpoint lock."""
    seen: dict[str, Checkpoint] = {}
    while True:
        await asyncio.sleep(period_seconds)
        for runner in runners:
            try:
                checkpoint = await runner.checkpoint()
                if seen.get(runner.name) == checkpoint:
                    await runner.catch_up()
                seen[runner.name] = checkpoint
            except TRANSIENT as error:
                log.warning("catch-up of %s failed: %s", runner.name, error)


async def start() -> tuple[list[Coroutine[Any, Any, None]], Callable[[], Awaitable[None]]]:
    # Read models, their checkpoints and dead letters are all derived from the events: a commit
    # need not wait for the WAL flush (see `EventStore.connect`).
    store = await EventStore.connect(
        settings.database_url, min_size=1, max_size=settings.db_pool_max, durable_commits=False
    )
    runners.extend(projector_runners(store, settings.boot_delay_seconds))
    for runner in runners:
        await runner.catch_up()
    subscribe(broker, settings.exchange, ProjectionGroup(READ_MODELS_GROUP, runners))
    await broker.start()
    await delete_queues(broker, [queue_name(settings.exchange, name) for name in RETIRED_GROUPS])
    for runner in runners:  # what was published before the queue existed is not queued
        await runner.catch_up()

    async def cleanup() -> None:
        await broker.stop()
        await store.close()

    return [heal()], cleanup


async def health() -> tuple[bool, dict[str, Any]]:
    return await consumer_health(broker, list(runners))


serve(
    create_worker_app(service="projector", settings=settings, start=start, health=health),
    settings,
    "projector",
)
