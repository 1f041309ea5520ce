"""`python -m projectors.provisioner`: the provisioner process (composition root).

It works the pending boots the projector keeps (`PendingBoots`, applied with the read models);
it consumes nothing from the broker itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from events.store import EventStore
from infra.breakers import Breakers
from infra.discovery import RoundRobin, discovery_from_settings
from infra.serve import serve
from infra.settings import Settings
from infra.worker import create_worker_app
from projectors.provisioner.boots import PendingBoots
from projectors.provisioner.command_client import (
    COMMAND_SERVICE,
    CommandServiceClient,
    http_session,
)
from projectors.provisioner.loop import BootLoop
from projectors.runtime import ProjectionRunner

settings = Settings()
#: The pending boots as the projector keeps them (read for `/health`).
runners: list[ProjectionRunner] = []


async def start() -> tuple[list[Coroutine[Any, Any, None]], Callable[[], Awaitable[None]]]:
    # A boot done twice is one boot (the command service's internal endpoint changes nothing
    # the second time), and its rows are derived from the events: its commits need not wait for
    # the WAL flush.
    store = await EventStore.connect(
        settings.database_url, min_size=1, max_size=4, durable_commits=False
    )
    boots = PendingBoots()  # its table: the projector gives each boot its due time
    runners.append(ProjectionRunner(store, boots))
    # Consul's healthy instances when CONSUL_HTTP_ADDR is set, else what the launcher wrote.
    discovery = discovery_from_settings(
        settings,
        {COMMAND_SERVICE: [url.strip() for url in settings.command_api_urls.split(",") if url]},
    )
    http = http_session()
    client = CommandServiceClient(
        http,
        RoundRobin(discovery, COMMAND_SERVICE),
        Breakers(settings.breaker_threshold, settings.breaker_ttl_seconds),
        settings.jwt_secret,
    )
    loop = BootLoop(store.pool, boots, client)

    async def cleanup() -> None:
        await discovery.aclose()
        await http.close()
        await store.close()

    return [loop.run()], cleanup


async def health() -> tuple[bool, dict[str, Any]]:
    """Ready when its list of pending boots can be read; how far the projector kept it, as
    detail."""
    checkpoints = {runner.key: str(await runner.checkpoint()) for runner in runners}
    return bool(runners), {"checkpoints": checkpoints}


serve(
    create_worker_app(service="provisioner", settings=settings, start=start, health=health),
    settings,
    "provisioner",
)
