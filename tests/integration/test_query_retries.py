"""A read whose database connection broke is tried again on another connection; a timeout and a
database that stays down are not hidden (a query service of its own, so its breaker is too)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from infra.settings import Settings
from query_api import read_models
from query_api.app import create_app as create_query_app
from query_api.routes import READ_ATTEMPTS
from tests.integration.conftest import asgi_client


@pytest.fixture
async def query(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_query_app(settings), "http://query-own") as client:
        yield client


async def get_network_failing(
    query: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    auth: dict[str, str],
    failures: list[Exception],
) -> tuple[httpx.Response, int]:
    """GET a network while its read raises `failures` one after the other; the answer and how
    many times the read ran."""
    calls = 0

    async def get_network(*_: object) -> None:
        nonlocal calls
        calls += 1
        if calls <= len(failures):
            raise failures[calls - 1]

    monkeypatch.setattr(read_models, "get_network", get_network)
    response = await query.get(f"/v1/networks/{uuid.uuid4()}", headers=auth)
    return response, calls


async def test_a_read_whose_connection_broke_is_tried_again(
    query: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    broken = [ConnectionResetError("reset by peer"), OSError("Name or service not known")]
    response, calls = await get_network_failing(query, monkeypatch, auth, broken)
    assert (response.status_code, calls) == (404, 3)  # the third try read: no such network


async def test_a_database_that_stays_down_answers_503_after_every_try(
    query: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    refused = [ConnectionRefusedError("refused")] * (READ_ATTEMPTS + 1)
    response, calls = await get_network_failing(query, monkeypatch, auth, refused)
    assert (response.status_code, calls) == (503, READ_ATTEMPTS)
    assert response.headers["Retry-After"] == "1"


async def test_a_timeout_is_not_tried_again(
    query: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    tenant: str,
    token_for: Callable[..., str],
) -> None:
    auth = {"Authorization": f"Bearer {token_for(tenant)}"}
    response, calls = await get_network_failing(query, monkeypatch, auth, [TimeoutError()])
    assert (response.status_code, calls) == (503, 1)
