"""How the provisioner's client calls and retries boots, against a real HTTP server on 127.0.0.1
that answers what each test scripts: one call when it succeeds, spaced retries after a failure
worth another try, none after a refusal; a tenant's boots asked for together go in one call, each
with its own answer."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web

from infra.breakers import Breakers
from infra.discovery import RoundRobin, StaticDiscovery
from projectors.provisioner.command_client import (
    BOOTS_PATH,
    COMMAND_SERVICE,
    CommandServiceClient,
    PermanentFailure,
    TransientFailure,
    http_session,
)
from tests.integration.conftest import JWT_SECRET


class ScriptedService:
    """Answers each call with the next status of its script (the last one repeats); a 200
    answers each boot of the call, 409 for those in `refused` and none for those in `skipped`.
    Like uvicorn, it sends the head and the body of an answer apart."""

    def __init__(self) -> None:
        self.script: list[int] = [200]
        self.calls: list[float] = []
        self.client_ports: set[int] = set()
        self.refused: set[str] = set()
        self.skipped: set[str] = set()
        self.unreadable = False
        #: Each call's tenant (from its token) and the instances it carried.
        self.carried: list[tuple[str, list[str]]] = []

    async def running(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(time.monotonic())
        assert request.transport is not None
        self.client_ports.add(request.transport.get_extra_info("peername")[1])
        status = self.script[min(len(self.calls), len(self.script)) - 1]
        ids = [boot["id"] for boot in (await request.json())["instances"]]
        token = request.headers["Authorization"].removeprefix("Bearer ")
        self.carried.append((jwt.decode(token, options={"verify_signature": False})["tenant"], ids))
        answers: list[dict[str, Any]] = [
            {"id": i, "status": 409 if i in self.refused else 200, "state": "running"}
            for i in ids
            if i not in self.skipped
        ]
        body = json.dumps({"instances": answers}).encode() if status == 200 else b"{}"
        if self.unreadable:
            body = b'{"instances": "not a list of answers"}'
        answer = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        answer.content_length = len(body)
        await answer.prepare(request)
        await asyncio.sleep(0.005)
        await answer.write(body)
        await answer.write_eof()
        return answer


@pytest.fixture
async def service() -> AsyncIterator[tuple[ScriptedService, str]]:
    scripted = ScriptedService()
    app = web.Application()
    app.router.add_post(BOOTS_PATH, scripted.running)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield scripted, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def client_for(http: aiohttp.ClientSession, url: str, attempts: int) -> CommandServiceClient:
    return CommandServiceClient(
        http,
        RoundRobin(StaticDiscovery({COMMAND_SERVICE: [url]}), COMMAND_SERVICE),
        Breakers(threshold=100),
        JWT_SECRET,
        attempts=attempts,
    )


async def mark_running(url: str, attempts: int, boots: int = 1) -> None:
    async with http_session() as http:
        client = client_for(http, url, attempts)
        for _ in range(boots):
            await client.mark_running("tenant-a", uuid.uuid4())


async def test_a_boot_that_succeeds_is_one_call(service: tuple[ScriptedService, str]) -> None:
    scripted, url = service
    await mark_running(url, attempts=4)
    assert len(scripted.calls) == 1


async def test_boots_one_after_another_keep_one_connection(
    service: tuple[ScriptedService, str],
) -> None:
    scripted, url = service
    await mark_running(url, attempts=4, boots=5)
    assert len(scripted.calls) == 5
    assert len(scripted.client_ports) == 1  # each answer read to its end, the connection kept


async def test_a_failed_call_is_tried_again_after_a_growing_pause(
    service: tuple[ScriptedService, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted, url = service
    scripted.script = [503, 429, 200]
    monkeypatch.setattr(random, "uniform", lambda low, high: low)  # no jitter: exact steps
    await mark_running(url, attempts=4)
    assert len(scripted.calls) == 3
    first, second, third = scripted.calls
    assert 0.05 <= second - first < 0.1  # the backoff's first step, never at once
    assert 0.1 <= third - second < 0.2  # ...and then twice that


async def test_retries_stop_after_the_attempts_allowed(
    service: tuple[ScriptedService, str],
) -> None:
    scripted, url = service
    scripted.script = [503]
    with pytest.raises(TransientFailure):
        await mark_running(url, attempts=3)
    assert len(scripted.calls) == 3


async def test_a_boot_refused_is_not_tried_again(service: tuple[ScriptedService, str]) -> None:
    scripted, url = service
    refused = uuid.uuid4()
    scripted.refused.add(str(refused))
    async with http_session() as http:
        with pytest.raises(PermanentFailure):
            await client_for(http, url, attempts=4).mark_running("tenant-a", refused)
    assert len(scripted.calls) == 1


@pytest.mark.parametrize("status", [404, 401, 422])
async def test_a_call_refused_as_a_whole_is_tried_again(
    service: tuple[ScriptedService, str], status: int
) -> None:
    # A command service without the endpoint yet (a rolling upgrade), a token it does not take:
    # nothing about the boots themselves, which must not be dropped.
    scripted, url = service
    scripted.script = [status, 200]
    await mark_running(url, attempts=4)
    assert len(scripted.calls) == 2


async def test_a_tenants_boots_asked_for_together_are_one_call_each_with_its_own_answer(
    service: tuple[ScriptedService, str],
) -> None:
    scripted, url = service
    booted, refused, unanswered, other = (uuid.uuid4() for _ in range(4))
    scripted.refused.add(str(refused))
    scripted.skipped.add(str(unanswered))
    async with http_session() as http:
        client = client_for(http, url, attempts=2)
        outcomes = await asyncio.gather(
            client.mark_running("tenant-a", booted),
            client.mark_running("tenant-a", refused),
            client.mark_running("tenant-a", unanswered),
            client.mark_running("tenant-b", other),
            return_exceptions=True,
        )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], PermanentFailure)
    assert isinstance(outcomes[2], TransientFailure)  # tried again, then given up
    assert outcomes[3] is None
    *first_calls, retry = scripted.carried  # the two first calls arrive in either order
    assert sorted(first_calls) == [
        ("tenant-a", [str(booted), str(refused), str(unanswered)]),
        ("tenant-b", [str(other)]),
    ]
    assert retry == ("tenant-a", [str(unanswered)])  # only the boot left without an answer


async def test_an_answer_it_cannot_read_is_tried_again(
    service: tuple[ScriptedService, str],
) -> None:
    scripted, url = service
    scripted.unreadable = True
    with pytest.raises(TransientFailure):
        await mark_running(url, attempts=2)
    assert len(scripted.calls) == 2
