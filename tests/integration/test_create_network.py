"""POST /v1/networks against the real event store: the answer, and bad input leaving no trace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from command_api.app import create_app as create_command_app
from events import EventStore
from infra.settings import Settings
from tests.integration.conftest import JWT_SECRET, asgi_client

VALID = {"name": "prod", "cidr": "10.0.0.0/16"}


async def event_count(store: EventStore) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM events"))


def signed(tenant: str, secret: str = JWT_SECRET, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "sub": "t",
        "tenant": tenant,
        "scope": "cloud:read cloud:write",
        "aud": "cloudnet",
        "exp": now + 60,
        **overrides,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_create_answers_id_position_and_version_and_stores_the_event(
    command_client: httpx.AsyncClient, store: EventStore, tenant: str, token_for: Callable[..., str]
) -> None:
    response = await command_client.post(
        "/v1/networks", json=VALID, headers={"Authorization": f"Bearer {token_for(tenant)}"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "position", "stream_version"}
    assert body["stream_version"] == 1
    assert response.headers["X-Event-Position"] == str(body["position"])
    [stored] = [e async for e in store.read_stream(f"network-{body['id']}")]
    assert (stored.type, stored.position, stored.tenant_id) == (
        "NetworkCreated",
        body["position"],
        tenant,
    )
    assert stored.data == {"network_id": body["id"], **VALID}
    assert stored.metadata["actor"] == "cli"  # the subject of token_for's tokens


BAD_REQUESTS = [
    # (id, content, content type, token kind, expected status, expected problem type suffix)
    ("malformed-json", b'{"name": "x", "cidr":', "application/json", "good", 400, "malformed-json"),
    (
        "bad-cidr",
        b'{"name": "x", "cidr": "10.0.0/16"}',
        "application/json",
        "good",
        422,
        "invalid-cidr",
    ),
    (
        "public-cidr",
        b'{"name": "x", "cidr": "8.8.8.0/24"}',
        "application/json",
        "good",
        422,
        "invalid-cidr",
    ),
    (
        "slash-8",
        b'{"name": "x", "cidr": "10.0.0.0/8"}',
        "application/json",
        "good",
        422,
        "invalid-cidr",
    ),
    (
        "bad-name",
        b'{"name": "Bad Name", "cidr": "10.0.0.0/16"}',
        "application/json",
        "good",
        422,
        "invalid-name",
    ),
    (
        "extra-field",
        b'{"name": "x", "cidr": "10.0.0.0/16", "x": 1}',
        "application/json",
        "good",
        422,
        "validation-failed",
    ),
    (
        "wrong-type",
        b'{"name": 5, "cidr": "10.0.0.0/16"}',
        "application/json",
        "good",
        422,
        "validation-failed",
    ),
    (
        "form-body",
        b"name=x&cidr=10.0.0.0%2F16",
        "application/x-www-form-urlencoded",
        "good",
        415,
        "unsupported-media-type",
    ),
    (
        "too-large",
        b'{"name": "' + b"x" * 70_000 + b'"}',
        "application/json",
        "good",
        413,
        "payload-too-large",
    ),
    (
        "no-token",
        b'{"name": "x", "cidr": "10.0.0.0/16"}',
        "application/json",
        "none",
        401,
        "unauthorized",
    ),
    (
        "wrong-secret",
        b'{"name": "x", "cidr": "10.0.0.0/16"}',
        "application/json",
        "wrong-secret",
        401,
        "unauthorized",
    ),
    (
        "expired",
        b'{"name": "x", "cidr": "10.0.0.0/16"}',
        "application/json",
        "expired",
        401,
        "unauthorized",
    ),
    (
        "alg-none",
        b'{"name": "x", "cidr": "10.0.0.0/16"}',
        "application/json",
        "alg-none",
        401,
        "unauthorized",
    ),
    (
        "read-scope-only",
        b'{"name": "x", "cidr": "10.0.0.0/16"}',
        "application/json",
        "read-only",
        403,
        "missing-scope",
    ),
]


def authorization(kind: str, tenant: str) -> dict[str, str]:
    tokens = {
        "good": signed(tenant),
        "wrong-secret": signed(tenant, secret="not-the-secret-but-long-enough-for-hs256"),
        "expired": signed(tenant, exp=int(time.time()) - 5),
        "alg-none": jwt.encode(
            {
                "sub": "t",
                "tenant": tenant,
                "scope": "cloud:write",
                "aud": "cloudnet",
                "exp": int(time.time()) + 60,
            },
            None,
            algorithm="none",
        ),
        "read-only": signed(tenant, scope="cloud:read"),
    }
    return {} if kind == "none" else {"Authorization": f"Bearer {tokens[kind]}"}


@pytest.mark.parametrize(
    ("content", "content_type", "token", "status", "problem"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
async def test_bad_input_gets_a_problem_and_writes_no_event(
    command_client: httpx.AsyncClient,
    store: EventStore,
    tenant: str,
    content: bytes,
    content_type: str,
    token: str,
    status: int,
    problem: str,
) -> None:
    before = await event_count(store)
    response = await command_client.post(
        "/v1/networks",
        content=content,
        headers={"Content-Type": content_type, **authorization(token, tenant)},
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["type"].endswith("/" + problem)
    assert body["title"]
    assert body["detail"]
    if status == 422:
        assert body["errors"]
        assert all({"field", "message"} <= set(e) for e in body["errors"])
    assert await event_count(store) == before


async def test_concurrent_creates_share_the_command_services_few_connections(
    settings: Settings, store: EventStore, tenant: str, token_for: Callable[..., str]
) -> None:
    """The command service's own small pool (`command_db_pool`): while both connections are
    busy, the creates that wait commit together (events/groups.py)."""
    app = create_command_app(settings)
    headers = {"Authorization": f"Bearer {token_for(tenant)}"}
    async with asgi_client(app, "http://command") as client:
        assert app.state.store.pool.get_max_size() == settings.command_db_pool == 2
        answers = await asyncio.gather(
            *(client.post("/v1/networks", json=VALID, headers=headers) for _ in range(24))
        )

    assert [answer.status_code for answer in answers] == [201] * 24
    streams = [f"network-{answer.json()['id']}" for answer in answers]
    transactions = await store.pool.fetchval(
        "SELECT count(DISTINCT transaction_id) FROM events WHERE stream_id = ANY($1)", streams
    )
    assert transactions < 24
