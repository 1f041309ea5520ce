"""Composition root of the query service: settings, read-model pool, routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI

from events.store import PooledConnection, init_connection
from infra.breakers import Breakers
from infra.consul import register
from infra.http.app import create_service_app
from infra.settings import Settings
from query_api import read_models, routes
from query_api.freshness import RecentFreshness
from query_api.point_reads import PointReads


async def init_read_connection(connection: asyncpg.Connection) -> None:
    """The store's codecs, and uuid columns as their text: every answer renders them as strings,
    and orjson renders asyncpg's own UUID type only through a Python fallback per value (150
    calls for a page of 50 instances)."""
    await init_connection(connection)
    await connection.set_type_codec(
        "uuid", schema="pg_catalog", encoder=str, decoder=str, format="text"
    )


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(
            # The query side may read a streaming replica; read-your-writes still holds because
            # X-Min-Position waits on the checkpoints the replica has replayed.
            settings.read_database_url or settings.database_url,
            # Every connection is opened at start, so a GET never waits on a new one (a name
            # lookup and a TCP connect): in the containerised mesh, while podman removed a killed
            # sibling, new connections timed out for seconds and their GETs answered 503
            # (docs/RELIABILITY.md). A broken connection is still replaced on demand.
            min_size=settings.db_pool_max,
            max_size=settings.db_pool_max,
            init=init_read_connection,
            connection_class=PooledConnection,
            timeout=settings.db_connect_timeout_seconds,
            command_timeout=settings.db_command_timeout_seconds,
        )
        app.state.instance_reads = PointReads(
            app.state.pool, read_models.INSTANCES_BY_ID, parallel=settings.db_pool_max
        )
        try:
            async with register(settings, "query_api", "api"):
                yield
        finally:
            await app.state.pool.close()

    async def health() -> tuple[bool, dict[str, Any]]:
        try:
            await app.state.pool.fetchval("SELECT 1")
        except Exception as error:
            return False, {"read_models": f"down: {error}"}
        return True, {"read_models": "up", "instance": settings.instance}

    app = create_service_app(
        service="query_api",
        lifespan=lifespan,
        health=health,
        jwt_secret=settings.jwt_secret,
        jwt_audience=settings.jwt_audience,
        fast_routes=routes.FAST_ROUTES,
        server_spans=settings.exports_traces,
    )
    app.state.settings = settings
    app.state.recent_freshness = RecentFreshness()
    app.state.breakers = Breakers(settings.breaker_threshold, settings.breaker_ttl_seconds)

    app.include_router(routes.router)
    return app
