"""The baseline the gateway benchmark puts next to cloudnet: the least a FastAPI service on uvicorn
does for the same paths. One INSERT per POST, one SELECT per GET (by primary key, or one page),
no auth, no events, no projections, orjson answers like cloudnet's.

Run by benchmarks/gateway.py as `uvicorn benchmarks.baseline_app:app --workers 2` behind an nginx
rendered from the gateway's own template; the database (BASELINE_DATABASE_URL) must have
`SCHEMA` applied first.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, StrictStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SCHEMA = """
CREATE TABLE networks (
    id uuid PRIMARY KEY, tenant_id text NOT NULL, name text NOT NULL, cidr text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE instances (
    id uuid PRIMARY KEY, tenant_id text NOT NULL, name text NOT NULL, subnet_id uuid NOT NULL,
    size text NOT NULL, state text NOT NULL, created_at timestamptz NOT NULL DEFAULT now()
);
"""
_INSTANCE = "id, tenant_id, name, subnet_id, size, state, created_at"


class BaselineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BASELINE_")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    #: asyncpg's default `max_size`, per process, as the docs would have it (cloudnet's query
    #: services and projectors use as many; its command services use 2, `command_db_pool`).
    pool_size: int = 10


class NetworkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr
    cidr: StrictStr


class LaunchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr
    subnet_id: uuid.UUID
    size: StrictStr


class Answer(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = BaselineSettings()
    app.state.pool = await asyncpg.create_pool(
        settings.database_url, min_size=2, max_size=settings.pool_size
    )
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(title="cloudnet benchmark baseline", lifespan=lifespan, default_response_class=Answer)


@app.get("/health")
async def health() -> Answer:
    return Answer({"status": "ok"})


@app.post("/v1/networks", status_code=201)
async def create_network(request: Request, body: NetworkBody) -> Answer:
    network_id = uuid.uuid4()
    await request.app.state.pool.execute(
        "INSERT INTO networks (id, tenant_id, name, cidr) VALUES ($1, $2, $3, $4)",
        network_id,
        "baseline",
        body.name,
        body.cidr,
    )
    return Answer({"id": network_id}, status_code=201)


@app.post("/v1/instances", status_code=201)
async def launch_instance(request: Request, body: LaunchBody) -> Answer:
    instance_id = uuid.uuid4()
    await request.app.state.pool.execute(
        "INSERT INTO instances (id, tenant_id, name, subnet_id, size, state) "
        "VALUES ($1, $2, $3, $4, $5, 'pending')",
        instance_id,
        "baseline",
        body.name,
        body.subnet_id,
        body.size,
    )
    return Answer({"id": instance_id, "state": "pending"}, status_code=201)


@app.get("/v1/instances/{instance_id}")
async def get_instance(request: Request, instance_id: uuid.UUID) -> Answer:
    row = await request.app.state.pool.fetchrow(
        f"SELECT {_INSTANCE} FROM instances WHERE id = $1", instance_id
    )
    if row is None:
        return Answer({"status": 404}, status_code=404)
    return Answer(dict(row))


@app.get("/v1/instances")
async def list_instances(
    request: Request, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> Answer:
    rows = await request.app.state.pool.fetch(
        f"SELECT {_INSTANCE} FROM instances WHERE tenant_id = $1 ORDER BY id LIMIT $2",
        "baseline",
        limit,
    )
    return Answer({"items": [dict(row) for row in rows], "next_cursor": None})
