"""One POST, one trace: the command request, the append, the relay's publish, the projectors
and the provisioner's call back into the command service share a trace id (in-memory exporter;
real PostgreSQL and RabbitMQ)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from command_api.app import create_app as create_command_app
from events import EventStore
from infra.breakers import Breakers
from infra.discovery import RoundRobin, StaticDiscovery
from infra.settings import Settings
from projectors.provisioner.boots import PendingBoots
from projectors.provisioner.command_client import (
    COMMAND_SERVICE,
    CommandServiceClient,
    http_session,
)
from projectors.provisioner.loop import BootLoop
from projectors.runtime import ProjectionRunner
from tests.integration.conftest import JWT_SECRET, asgi_client, network_and_subnet


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per process; the code's tracers are proxies
    return exporter


async def test_one_launch_is_one_trace_across_every_component(
    spans: InMemorySpanExporter,
    mesh: ProjectionRunner,
    store: EventStore,
    command_client: httpx.AsyncClient,
    command_service: str,
    query_client: httpx.AsyncClient,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    _, subnet_id = await network_and_subnet(command_client, auth)
    subnet = {"id": subnet_id}
    spans.clear()
    launched = await command_client.post(
        "/v1/instances",
        json={"name": "vm", "subnet_id": subnet["id"], "size": "small"},
        headers=auth,
    )
    assert launched.status_code == 201
    instance_id = launched.json()["id"]
    read = await query_client.get(
        f"/v1/instances/{instance_id}",
        headers={**auth, "X-Min-Position": str(launched.json()["position"])},
    )
    assert read.status_code == 200
    boots = ProjectionRunner(store, PendingBoots(boot_delay_seconds=0.0))
    await boots.catch_up()
    async with http_session() as http:
        client = CommandServiceClient(
            http,
            RoundRobin(StaticDiscovery({COMMAND_SERVICE: [command_service]}), COMMAND_SERVICE),
            Breakers(),
            JWT_SECRET,
        )
        loop = BootLoop(store.pool, boots.projection, client, batch=200)  # type: ignore[arg-type]
        while await loop.boot_due():  # other tests' launches may be due too: drain them all
            pass

    [request] = [s for s in spans.get_finished_spans() if s.name == "POST /v1/instances"]
    trace_id = request.context.trace_id
    deadline = time.monotonic() + 5
    expected = {
        "POST /v1/instances",
        "append",
        "publish InstanceLaunched",
        "publish IpAllocated",
        "project instances InstanceLaunched",
        "project subnets IpAllocated",
        "provisioner.boot",
        "POST /internal/instances/running",
        "mark running",
        "publish InstanceStarted",
    }
    while True:  # the relay publishes InstanceStarted asynchronously
        names = {s.name for s in spans.get_finished_spans() if s.context.trace_id == trace_id}
        if expected <= names or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert expected <= names, sorted(names)
    history = [e async for e in store.read_stream(f"instance-{instance_id}")]
    [started] = history[1:]
    assert started.type == "InstanceStarted"
    assert started.metadata["traceparent"].split("-")[1] == f"{trace_id:032x}"


async def test_without_tracing_a_requests_traceparent_still_reaches_its_events(
    spans: InMemorySpanExporter,
    settings: Settings,
    store: EventStore,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    """A process that exports no traces makes no server spans (they cost a create about 5 % of its
    CPU), and the trace a caller started still continues through the events it caused."""
    untraced = create_command_app(settings.model_copy(update={"tracing": "none"}))
    trace_id, parent = f"{uuid.uuid4().int:032x}", f"{uuid.uuid4().int >> 64:016x}"
    spans.clear()
    async with asgi_client(untraced, "http://command") as client:
        created = await client.post(
            "/v1/networks",
            json={"name": "traced", "cidr": "10.1.0.0/16"},
            headers={
                "Authorization": f"Bearer {token_for(tenant)}",
                "traceparent": f"00-{trace_id}-{parent}-01",
            },
        )
    assert created.status_code == 201
    [event] = [e async for e in store.read_stream(f"network-{created.json()['id']}")]
    assert event.metadata["traceparent"].split("-")[1] == trace_id
    assert not [s for s in spans.get_finished_spans() if s.name == "POST /v1/networks"]
