"""The ServiceDiscovery port: one contract, run against every adapter (static, Consul), then what
only Consul does (health filtering, blocking refreshes, registration), against a stand-in agent
that answers in Consul's documented shapes (tests/integration/fake_consul.py)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from infra.consul import ConsulDiscovery, advertised_address, agent_url, register
from infra.consul.discovery import next_index
from infra.discovery import (
    NoInstances,
    RoundRobin,
    ServiceDiscovery,
    StaticDiscovery,
    discovery_from_settings,
)
from infra.settings import Settings
from infra.worker import create_worker_app
from tests.integration.fake_consul import FakeConsul, Instance, Request

T = TypeVar("T")
URLS = ["http://10.0.0.1:8001", "http://10.0.0.2:8002"]


async def eventually(
    probe: Callable[[], T | Awaitable[T]], accept: Callable[[T], bool], seconds: float = 5.0
) -> T:
    """The probe's value once `accept` holds, or its last value when the deadline passes."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        value = await value if inspect.isawaitable(value) else value
        if accept(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def consul() -> Iterator[FakeConsul]:
    fake = FakeConsul()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
async def discovery(consul: FakeConsul) -> AsyncIterator[ConsulDiscovery]:
    adapter = ConsulDiscovery(consul.address, wait_seconds=1.0, retry_seconds=0.1)
    yield adapter
    await adapter.aclose()


@dataclass
class Harness:
    """An adapter, and how to make `service` run exactly at `urls` behind it."""

    discovery: ServiceDiscovery
    publish: Callable[[str, list[str]], None]


@pytest.fixture(params=["static", "consul"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "static":
        static = StaticDiscovery({})
        yield Harness(static, lambda service, urls: static.services.update({service: urls}))
        await static.aclose()
        return
    consul = FakeConsul()
    adapter = ConsulDiscovery(consul.start(), wait_seconds=1.0, retry_seconds=0.1)
    yield Harness(adapter, consul.put)
    await adapter.aclose()
    consul.stop()


# The contract: every adapter.


async def test_lists_every_instance_of_a_service(harness: Harness) -> None:
    harness.publish("command_api", URLS)

    assert sorted(await harness.discovery.instances("command_api")) == URLS


async def test_a_service_nobody_runs_has_no_instances(harness: Harness) -> None:
    harness.publish("command_api", URLS)

    assert await harness.discovery.instances("query_api") == []
    with pytest.raises(NoInstances):
        await RoundRobin(harness.discovery, "query_api").pick()


async def test_round_robin_spreads_calls_over_every_instance(harness: Harness) -> None:
    harness.publish("command_api", URLS)
    balancer = RoundRobin(harness.discovery, "command_api")

    picks = [await balancer.pick() for _ in range(4)]

    assert Counter(picks) == {URLS[0]: 2, URLS[1]: 2}


async def test_instances_that_come_and_go_are_seen(harness: Harness) -> None:
    harness.publish("command_api", URLS)
    assert sorted(await harness.discovery.instances("command_api")) == URLS
    moved = [URLS[1], "http://10.0.0.3:8003"]

    harness.publish("command_api", moved)

    seen = await eventually(lambda: harness.discovery.instances("command_api"), moved.__eq__)
    assert seen == moved


async def test_the_answer_is_the_callers_to_change(harness: Harness) -> None:
    harness.publish("command_api", URLS)

    (await harness.discovery.instances("command_api")).clear()

    assert sorted(await harness.discovery.instances("command_api")) == URLS


# Consul only: what the health API and blocking queries add.


async def test_consul_lists_only_instances_whose_checks_pass(
    consul: FakeConsul, discovery: ConsulDiscovery
) -> None:
    consul.put("command_api", URLS)
    consul.set_status("command_api-1", "critical")

    assert await discovery.instances("command_api") == [URLS[0]]
    assert consul.queries("command_api")[0].query["passing"] == "true"

    consul.set_status("command_api-1", "passing")
    assert await eventually(lambda: discovery.instances("command_api"), URLS.__eq__) == URLS


async def test_consul_instance_without_an_address_is_reached_at_its_node(
    consul: FakeConsul, discovery: ConsulDiscovery
) -> None:
    registration = {"ID": "query-1", "Name": "query_api", "Address": "", "Port": 8000}
    consul.instances["query-1"] = Instance(registration, status="passing")

    assert await discovery.instances("query_api") == ["http://10.1.10.12:8000"]


async def test_consul_refreshes_by_blocking_queries_from_the_last_index(
    consul: FakeConsul, discovery: ConsulDiscovery
) -> None:
    consul.put("command_api", URLS)
    answered_index = str(consul.index)
    await discovery.instances("command_api")

    queries = await eventually(lambda: consul.queries("command_api"), lambda q: len(q) >= 2)

    assert "index" not in queries[0].query  # the first query answers at once
    assert queries[1].query["index"] == answered_index
    assert queries[1].query["wait"] == "1000ms"


async def test_consul_starts_over_when_the_index_goes_backwards(
    consul: FakeConsul, discovery: ConsulDiscovery
) -> None:
    consul.put("command_api", URLS)
    consul.touch(index=50)
    await discovery.instances("command_api")
    await eventually(
        lambda: [q.query.get("index") for q in consul.queries("command_api")],
        lambda indexes: "50" in indexes,
    )

    consul.touch(index=3)  # a server restored from a snapshot

    def after_50() -> list[str | None]:
        indexes = [q.query.get("index") for q in consul.queries("command_api")]
        return indexes[indexes.index("50") + 1 :]

    later = await eventually(after_50, lambda indexes: len(indexes) >= 2)
    assert later[:2] == [None, "3"]  # one query without an index, then blocking from 3
    assert sorted(await discovery.instances("command_api")) == URLS


async def test_consul_out_of_reach_means_no_instances_soon_not_a_hang() -> None:
    unreachable = ConsulDiscovery(f"127.0.0.1:{free_port()}", first_answer_seconds=2.0)
    try:
        started = time.monotonic()
        with pytest.raises(NoInstances):
            await RoundRobin(unreachable, "command_api").pick()
        assert time.monotonic() - started < 1.0
    finally:
        await unreachable.aclose()


async def test_consul_keeps_the_last_known_instances_while_the_agent_is_away(
    consul: FakeConsul, discovery: ConsulDiscovery, caplog: pytest.LogCaptureFixture
) -> None:
    consul.put("command_api", URLS)
    assert sorted(await discovery.instances("command_api")) == URLS

    consul.stop()

    with caplog.at_level(logging.WARNING, logger="infra.consul.discovery"):
        await eventually(lambda: caplog.records, bool)
    assert "did not answer" in caplog.records[0].getMessage()
    assert sorted(await discovery.instances("command_api")) == URLS


# Registration: every HTTP process while it serves.


def consul_settings(address: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "host": "0.0.0.0",
        "port": 8001,
        "instance": "command-1",
        "advertise_address": "command-1",
    }
    return Settings(CONSUL_HTTP_ADDR=address, **(values | overrides))


async def test_registration_sends_the_documented_payload_and_deregisters_on_exit(
    consul: FakeConsul,
) -> None:
    async with register(consul_settings(consul.address), "command_api", "api"):
        [registered] = [r for r in consul.requests if r.path == "/v1/agent/service/register"]
        assert registered.method == "PUT"
        assert registered.query == {"replace-existing-checks": "true"}
        assert registered.body == {
            "ID": "command_api-command-1",
            "Name": "command_api",
            "Address": "command-1",
            "Port": 8001,
            "Tags": ["metrics", "api"],
            "Meta": {"instance": "command-1"},
            "Check": {
                "Name": "command_api-command-1 /health",
                "HTTP": "http://command-1:8001/health",
                "Method": "GET",
                "Interval": "5s",
                "Timeout": "2s",
                "DeregisterCriticalServiceAfter": "1m",
            },
        }
        assert list(consul.instances) == ["command_api-command-1"]

    deregistered = Request("PUT", "/v1/agent/service/deregister/command_api-command-1", {})
    assert consul.requests[-1] == deregistered
    assert consul.instances == {}


async def test_a_registered_instance_is_discovered_once_its_check_passes(
    consul: FakeConsul, discovery: ConsulDiscovery
) -> None:
    settings = consul_settings(consul.address, advertise_address="10.0.0.7")
    async with register(settings, "command_api", "api") as registration:
        assert registration is not None
        assert await discovery.instances("command_api") == []  # its check starts critical

        consul.set_status(registration.service_id, "passing")
        expected = ["http://10.0.0.7:8001"]
        assert await eventually(lambda: discovery.instances("command_api"), expected.__eq__) == (
            expected
        )

    assert await eventually(lambda: discovery.instances("command_api"), [].__eq__) == []


async def test_a_worker_is_in_consul_while_it_serves(consul: FakeConsul) -> None:
    async def start() -> tuple[list[Coroutine[Any, Any, None]], Callable[[], Awaitable[None]]]:
        async def cleanup() -> None:
            return None

        return [], cleanup

    async def health() -> tuple[bool, dict[str, Any]]:
        return True, {}

    settings = consul_settings(consul.address, instance="relay-1", advertise_address="10.0.0.9")
    app = create_worker_app(service="relay", settings=settings, start=start, health=health)

    async with app.router.lifespan_context(app):
        [registered] = consul.instances.values()
        assert registered.registration["Name"] == "relay"
        assert registered.registration["Tags"] == ["metrics", "worker"]
    assert consul.instances == {}


async def test_a_service_that_crashes_still_deregisters(consul: FakeConsul) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with register(consul_settings(consul.address), "relay", "worker"):
            raise RuntimeError("boom")

    assert consul.instances == {}


async def test_an_agent_out_of_reach_fails_the_start_up() -> None:
    settings = consul_settings(f"127.0.0.1:{free_port()}")

    with pytest.raises(httpx.ConnectError):
        async with register(settings, "command_api", "api", deadline_seconds=0.3):
            pytest.fail("registered without an agent")


async def test_without_consul_nothing_registers(consul: FakeConsul) -> None:
    async with register(Settings(CONSUL_HTTP_ADDR=None), "command_api", "api") as registration:
        assert registration is None

    assert consul.requests == []


# Wiring and the rules the adapters follow.


async def test_settings_choose_consul_only_when_an_agent_is_configured() -> None:
    static = {"command_api": URLS}
    without = discovery_from_settings(Settings(CONSUL_HTTP_ADDR=None), static)
    with_consul = discovery_from_settings(Settings(CONSUL_HTTP_ADDR="consul:8500"), static)
    try:
        assert await without.instances("command_api") == URLS
        assert isinstance(with_consul, ConsulDiscovery)
    finally:
        await without.aclose()
        await with_consul.aclose()


def test_the_advertised_address_is_one_others_can_reach() -> None:
    assert advertised_address(Settings(host="127.0.0.1")) == "127.0.0.1"
    own_address = socket.gethostbyname(socket.gethostname())
    assert advertised_address(Settings(host="0.0.0.0")) == own_address
    assert advertised_address(Settings(host="0.0.0.0", advertise_address="query-2")) == "query-2"


@pytest.mark.parametrize(
    ("address", "url"),
    [("consul:8500", "http://consul:8500"), ("https://consul:8501", "https://consul:8501")],
)
def test_consul_http_addr_is_read_like_consuls_own_tools(address: str, url: str) -> None:
    assert agent_url(address) == url


@pytest.mark.parametrize(
    ("previous", "answered", "following"),
    [(0, 7, 7), (7, 9, 9), (9, 9, 9), (9, 4, 0), (0, 0, 1)],
)
def test_blocking_query_index_rules(previous: int, answered: int, following: int) -> None:
    assert next_index(previous, answered) == following
