"""A read whose database connection broke is tried again on another connection; a timeout and a
database that stays down are not hidden (a query service of its own, so its breaker is too)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from infra.settings import Settings
from query_api import read_models
from query_api.app import create_app as create_query_app
from query_api.routes import READ_ATTEMPTS
from tests.integration.conftest import asgi_client

GetNetwork = Callable[[list[Exception]], Awaitable[tuple[httpx.Response, int]]]


@pytest.fixture
async def get_network_failing(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tenant: str,
    token_for: Callable[..., str],
) -> AsyncIterator[GetNetwork]:
    """GETs a network from a query service of its own while the read raises the failures
    given, one after the other; the answer and how many times the read ran."""
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    async with asgi_client(create_query_app(settings), "http://query-own") as query:

        async def get(failures: list[Exception]) -> tuple[httpx.Response, int]:
            calls = 0

            async def get_network(*_: object) -> None:
                nonlocal calls
                calls += 1
                if calls <= len(failures):
                    raise failures[calls - 1]

            monkeypatch.setattr(read_models, "get_network", get_network)
            response = await query.get(f"/v1/networks/{uuid.uuid4()}", headers=auth)
            return response, calls

        yield get


async def test_a_read_whose_connection_broke_is_tried_again(
    get_network_failing: GetNetwork,
) -> None:
    broken = [ConnectionResetError("reset by peer"), OSError("Name or service not known")]
    response, calls = await get_network_failing(broken)
    assert (response.status_code, calls) == (404, 3)  # the third try read: no such network


async def test_a_database_that_stays_down_answers_503_after_every_try(
    get_network_failing: GetNetwork,
) -> None:
    refused = [ConnectionRefusedError("refused")] * (READ_ATTEMPTS + 1)
    response, calls = await get_network_failing(refused)
    assert (response.status_code, calls) == (503, READ_ATTEMPTS)
    assert response.headers["Retry-After"] == "1"


async def test_a_timeout_is_not_tried_again(get_network_failing: GetNetwork) -> None:
    response, calls = await get_network_failing([TimeoutError()])
    assert (response.status_code, calls) == (503, 1)
