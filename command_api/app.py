"""Composition root of the command service: settings, event store, routes, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from command_api import errors, routes
from command_api.handlers import Repository
from events import EventStore
from infra.breakers import Breakers
from infra.consul import register
from infra.http.app import create_service_app
from infra.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = await EventStore.connect(
            settings.database_url,
            min_size=min(settings.db_pool_min, settings.command_db_pool),
            max_size=settings.command_db_pool,
            connect_timeout=settings.db_connect_timeout_seconds,
            command_timeout=settings.db_command_timeout_seconds,
        )
        app.state.repository = Repository(app.state.store)
        try:
            async with register(settings, "command_api", "api"):
                yield
        finally:
            await app.state.store.close()

    async def health() -> tuple[bool, dict[str, Any]]:
        try:
            await app.state.store.pool.fetchval("SELECT 1")
        except Exception as error:
            return False, {"event_store": f"down: {error}"}
        return True, {"event_store": "up", "instance": settings.instance}

    app = create_service_app(
        service="command_api",
        lifespan=lifespan,
        health=health,
        jwt_secret=settings.jwt_secret,
        jwt_audience=settings.jwt_audience,
        fast_routes=routes.FAST_ROUTES,
        server_spans=settings.exports_traces,
    )
    app.state.settings = settings
    app.state.breakers = Breakers(settings.breaker_threshold, settings.breaker_ttl_seconds)
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(routes.internal)
    return app
