"""A dead database opens the service's circuit breaker: answers turn 503 problem+json with
Retry-After fast, nothing hangs, and the service recovers by itself when the database returns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from command_api.app import create_app as create_command_app
from infra.breakers import BREAKER_STATE
from infra.settings import Settings
from query_api.app import create_app as create_query_app
from tests.integration.tcp_proxy import TcpProxy


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    yield proxy
    await proxy.cut()


def through(settings: Settings, proxy: TcpProxy) -> Settings:
    url = settings.database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    return settings.model_copy(
        update={"database_url": url, "breaker_threshold": 3, "breaker_ttl_seconds": 1.0}
    )


@pytest.mark.parametrize(
    ("factory", "dependency", "method", "path", "body"),
    [
        (
            create_command_app,
            "event_store",
            "POST",
            "/v1/networks",
            {"name": "n", "cidr": "10.0.0.0/16"},
        ),
        (create_query_app, "read_models", "GET", "/v1/networks", None),
    ],
    ids=["command-event-store", "query-read-models"],
)
async def test_a_dead_database_opens_the_breaker_then_recovers(
    settings: Settings,
    proxy: TcpProxy,
    tenant: str,
    token_for: Callable[..., str],
    factory: Callable[[Settings], object],
    dependency: str,
    method: str,
    path: str,
    body: object,
) -> None:
    app = factory(through(settings, proxy))
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:

            async def call() -> tuple[httpx.Response, float]:
                started = time.perf_counter()
                response = await client.request(method, path, json=body, headers=auth)
                return response, time.perf_counter() - started

            assert (await call())[0].status_code < 300
            await proxy.cut()
            answers = [await call() for _ in range(6)]
            for response, seconds in answers:
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == "application/problem+json"
                assert int(response.headers["Retry-After"]) >= 1
                assert seconds < 5  # bounded by the connect timeout, never hanging
            assert BREAKER_STATE.labels(dependency)._value.get() == 2  # open
            assert all(seconds < 0.1 for _, seconds in answers[-2:])  # open: fails at once
            await proxy.start()  # the database is back
            deadline = time.monotonic() + 15
            ok = 201 if method == "POST" else 200
            while (response := (await call())[0]).status_code != ok:
                assert time.monotonic() < deadline, response.text
                await asyncio.sleep(0.2)
            assert BREAKER_STATE.labels(dependency)._value.get() == 0
