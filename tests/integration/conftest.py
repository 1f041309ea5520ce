"""Integration fixtures: a fresh database on the machine's PostgreSQL and a private exchange on
its RabbitMQ for every test session, so runs never collide and leave nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable

import aio_pika
import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from faststream.rabbit import RabbitBroker

from command_api.app import create_app as create_command_app
from events import EventStore
from events.relay import RabbitBatchPublisher, Relay
from infra.auth import issue_token
from infra.database import migrate
from infra.settings import Settings
from projectors.catalog import READ_MODELS, READ_MODELS_GROUP
from projectors.consumer import queue_name, subscribe
from projectors.group import ProjectionGroup
from projectors.runtime import LiveProjection, ProjectionRunner
from query_api.app import create_app as create_query_app

POSTGRES = os.environ.get("CLOUDNET_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
RABBITMQ = os.environ.get("CLOUDNET_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/")
JWT_SECRET = "integration-test-secret-long-enough-for-hs256"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:10]


@contextlib.asynccontextmanager
async def migrated_database(name: str) -> AsyncIterator[str]:
    """A database of this name, migrated, dropped when the block ends: its URL."""
    url = f"{POSTGRES}/{name}"
    await migrate(url)
    try:
        yield url
    finally:
        connection = await asyncpg.connect(f"{POSTGRES}/postgres")
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


@pytest.fixture(scope="session")
async def database_url(run_id: str) -> AsyncIterator[str]:
    async with migrated_database(f"cloudnet_test_{run_id}") as url:
        yield url


@pytest.fixture
async def own_database(run_id: str) -> AsyncIterator[str]:
    """A database of the test's own: no relay or projector of the session applies its events."""
    async with migrated_database(f"cloudnet_test_{run_id}_{uuid.uuid4().hex[:6]}") as url:
        yield url


@pytest.fixture
async def own_store(own_database: str) -> AsyncIterator[EventStore]:
    store = await EventStore.connect(own_database, min_size=1, max_size=4)
    yield store
    await store.close()


@pytest.fixture(scope="session")
def settings(database_url: str, run_id: str) -> Settings:
    return Settings(
        DATABASE_URL=database_url,
        AMQP_URL=RABBITMQ,
        jwt_secret=JWT_SECRET,
        exchange=f"cloudnet-test-{run_id}",
        min_position_timeout_seconds=2.0,
        # As with any exporter: the apps make their server spans (test_tracing.py installs its
        # own tracer provider; nothing here calls `configure_tracing`).
        tracing="console",
    )


@pytest.fixture(scope="session")
async def store(database_url: str) -> AsyncIterator[EventStore]:
    store = await EventStore.connect(database_url, min_size=2, max_size=20)
    yield store
    await store.close()


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def token_for() -> Callable[..., str]:
    def make(tenant: str, scope: str = "cloud:read cloud:write") -> str:
        return issue_token(secret=JWT_SECRET, tenant=tenant, scopes=scope.split())

    return make


@contextlib.asynccontextmanager
async def asgi_client(app: FastAPI, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app` in this process (its real lifespan), over ASGI."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


@pytest.fixture(scope="session")
async def command_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The command service in-process (its real lifespan and event store), over ASGI."""
    async with asgi_client(create_command_app(settings), "http://command") as client:
        yield client


@pytest.fixture(scope="session")
async def command_service(settings: Settings) -> AsyncIterator[str]:
    """The command service listening on a port of its own (for callers that speak real HTTP,
    like the provisioner): its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_command_app(settings), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1000):  # up to 10 s
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "the command service did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture(scope="session")
async def query_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_query_app(settings), "http://query") as client:
        yield client


@pytest.fixture(scope="session")
async def mesh(settings: Settings, store: EventStore) -> AsyncIterator[ProjectionRunner]:
    """A relay and every live projection running in this process over the real broker, fed from
    one queue like the projector's; yields the networks projection's runner."""
    relay_broker = RabbitBroker(settings.amqp_url, log_level=30)
    projector_broker = RabbitBroker(settings.amqp_url, log_level=30)
    runners = [LiveProjection(store, factory) for factory in READ_MODELS.values()]
    for each in runners:
        await each.catch_up()
    group = ProjectionGroup(READ_MODELS_GROUP, runners)
    subscribe(projector_broker, settings.exchange, group)
    [runner] = [each for each in runners if each.name == "networks"]
    await relay_broker.start()
    publisher = RabbitBatchPublisher(relay_broker, settings.exchange)
    await publisher.declare()
    await projector_broker.start()
    relay = Relay(store, publisher, leader_dsn=settings.database_url, name=settings.exchange)
    task = asyncio.create_task(relay.run())
    yield runner
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await projector_broker.stop()
    await relay_broker.stop()
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue_name(settings.exchange, group.name))
        await channel.exchange_delete(settings.exchange)


async def network_and_subnet(
    client: httpx.AsyncClient, auth: dict[str, str], cidr: str = "10.0.0.0/24"
) -> tuple[str, str]:
    """A new network (10.0.0.0/16) with one subnet; their ids."""
    network = await client.post(
        "/v1/networks", json={"name": "n", "cidr": "10.0.0.0/16"}, headers=auth
    )
    subnet = await client.post(
        f"/v1/networks/{network.json()['id']}/subnets",
        json={"name": "s", "cidr": cidr},
        headers=auth,
    )
    assert subnet.status_code == 201, subnet.text
    return str(network.json()["id"]), str(subnet.json()["id"])
