"""The HTTP face of a background worker (relay, projector): `/health`, `/metrics`, and a
lifespan that starts the broker and the worker's tasks and stops them on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from infra.consul import register
from infra.http.app import HealthCheck, create_service_app
from infra.settings import Settings

log = logging.getLogger(__name__)

#: Starts the worker: returns the long-running coroutines to supervise and a cleanup.
WorkerStart = Callable[
    [], Awaitable[tuple[list[Coroutine[Any, Any, None]], Callable[[], Awaitable[None]]]]
]


def create_worker_app(
    *, service: str, settings: Settings, start: WorkerStart, health: HealthCheck
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loops, cleanup = await start()
        tasks = [asyncio.create_task(loop) for loop in loops]
        for task in tasks:
            task.add_done_callback(_exit_when_crashed)
        try:
            async with register(settings, service, "worker"):
                yield
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
            await cleanup()

    return create_service_app(
        service=service,
        lifespan=lifespan,
        health=health,
        jwt_secret=settings.jwt_secret,
        server_spans=settings.exports_traces,
    )


def _exit_when_crashed(task: asyncio.Task[None]) -> None:
    # A worker loop must not die silently behind a healthy HTTP face: crash the process and let
    # the supervisor restart it.
    if not task.cancelled() and task.exception() is not None:
        log.critical("worker loop crashed", exc_info=task.exception())
        raise SystemExit(1)
