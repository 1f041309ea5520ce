"""The provisioner's write tokens: one per tenant, signed anew when half its lifetime is gone."""

from __future__ import annotations

from typing import Any

import pytest

from infra.auth import WRITE_SCOPE, TokenVerifier
from infra.breakers import Breakers
from infra.discovery import RoundRobin, StaticDiscovery
from projectors.provisioner import command_client
from projectors.provisioner.command_client import COMMAND_SERVICE, CommandServiceClient

SECRET = "provisioner-token-test-secret-0123456789"


@pytest.fixture
def client() -> CommandServiceClient:
    discovery = StaticDiscovery({COMMAND_SERVICE: ["http://127.0.0.1:9"]})
    http: Any = None  # never called: the tokens need no connection
    return CommandServiceClient(http, RoundRobin(discovery, COMMAND_SERVICE), Breakers(), SECRET)


def test_a_tenant_token_is_used_again_and_names_that_tenant(client: CommandServiceClient) -> None:
    first, again, other = client.token("acme"), client.token("acme"), client.token("globex")
    assert first == again
    verify = TokenVerifier(secret=SECRET, audience="cloudnet")
    assert verify(f"Bearer {first}").tenant == "acme"
    assert verify(f"Bearer {other}").tenant == "globex"
    assert WRITE_SCOPE in verify(f"Bearer {first}").scopes


def test_a_token_past_half_its_lifetime_is_signed_anew(
    client: CommandServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(command_client.time, "monotonic", lambda: now[0])
    first = client.token("acme")
    now[0] += CommandServiceClient.TOKEN_TTL_SECONDS / 2 - 1
    assert client.token("acme") == first
    now[0] += 2
    assert client.token("acme") != first


def test_tokens_past_their_time_are_dropped_once_many_tenants_were_seen(
    client: CommandServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(command_client.time, "monotonic", lambda: now[0])
    for n in range(1024):
        client.token(f"old-{n}")
    now[0] += CommandServiceClient.TOKEN_TTL_SECONDS  # every one of them is past its time
    client.token("new")
    assert list(client._tokens) == ["new"]
