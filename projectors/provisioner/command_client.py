"""Calls the command service's internal endpoint: found through discovery, guarded by a
circuit breaker, retried with tenacity. Safe without an Idempotency-Key: marking a running
instance running again changes nothing and answers 200, and a boot that finds the instance
stopped or terminated meanwhile is refused (409), which ends the boot just the same. A key
would cost every boot a lookup and a transaction of its own (four round trips).

A tenant's boots asked for together go in one call (`POST /internal/instances/running`), each
with its own answer: a boot, as the provisioner does it, cost more CPU than the launch it follows,
most of it the request's own (docs/BENCHMARKS.md, eleventh session).

The HTTP client is aiohttp: measured here, an httpx request cost its caller 1.2-2.1 ms of CPU and
an aiohttp one 0.09-0.12 ms (docs/BENCHMARKS.md)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from infra.auth import WRITE_SCOPE, issue_token
from infra.breakers import Breakers
from infra.discovery import RoundRobin
from infra.telemetry import current_traceparent

COMMAND_SERVICE = "command_api"
#: Where a tenant's boots go, many in one call.
BOOTS_PATH = "/internal/instances/running"
#: The most boots one call carries (the command service takes up to 100).
BOOTS_PER_CALL = 100


#: The request did not get an answer: refused, reset, timed out.
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


def http_session(
    timeout_seconds: float = 5.0, connect_seconds: float = 1.0
) -> aiohttp.ClientSession:
    """The session the provisioner calls the command service with (keeps connections open)."""
    timeout = aiohttp.ClientTimeout(total=timeout_seconds, connect=connect_seconds)
    return aiohttp.ClientSession(timeout=timeout)


class TransientFailure(Exception):
    """The call went wrong (5xx, 429, refused as a whole, unreadable); worth another try."""


class PermanentFailure(Exception):
    """The command service refused this boot for good (its 4xx other than 429): stop trying."""


#: Failures worth another try.
RETRYABLE = (TransientFailure, *TRANSPORT_ERRORS)
#: The pause before each retry: 50 ms, then doubling up to 1 s, each with up to 1 s of jitter.
#: tenacity waits only between its own attempts, and its n-th attempt is the boot's (n+1)-th.
FIRST_RETRY_WAIT = wait_exponential_jitter(multiplier=0.05, max=1.0)
LATER_RETRY_WAIT = wait_exponential_jitter(multiplier=0.1, max=1.0)


async def _wait_before_first_retry(state: RetryCallState) -> None:
    if state.attempt_number == 1:
        await asyncio.sleep(FIRST_RETRY_WAIT(state))


class CommandServiceClient:
    #: A tenant's token is used again until half of its lifetime is gone: signing one cost the
    #: provisioner 89 µs and checking a new one cost the command service 172 µs, where a token
    #: it has seen costs 2 µs (measured here; a launch's boot is one call).
    TOKEN_TTL_SECONDS = 300

    def __init__(
        self,
        http: aiohttp.ClientSession,
        instances: RoundRobin,
        breakers: Breakers,
        jwt_secret: str,
        attempts: int = 4,
    ) -> None:
        self.http, self.instances, self.breakers = http, instances, breakers
        self.jwt_secret, self.attempts = jwt_secret, attempts
        self._tokens: dict[str, tuple[str, float]] = {}  # tenant -> token, when to sign anew
        self._waiting: dict[str, list[_Boot]] = {}  # tenant -> boots for its next call
        self._calls: set[asyncio.Task[None]] = set()  # calls on their way

    def token(self, tenant_id: str) -> str:
        """A write token for `tenant_id`, signed anew once half of its lifetime is gone."""
        now = time.monotonic()
        cached = self._tokens.get(tenant_id)
        if cached is not None and now < cached[1]:
            return cached[0]
        token = issue_token(
            secret=self.jwt_secret,
            tenant=tenant_id,
            scopes=[WRITE_SCOPE],
            subject="provisioner",
            ttl_seconds=self.TOKEN_TTL_SECONDS,
        )
        if len(self._tokens) >= 1024:  # only the tenants booted in the last half lifetime stay
            self._tokens = {t: kept for t, kept in self._tokens.items() if now < kept[1]}
        self._tokens[tenant_id] = (token, now + self.TOKEN_TTL_SECONDS / 2)
        return token

    async def mark_running(self, tenant_id: str, instance_id: uuid.UUID) -> None:
        """Mark the instance running: returns when the command service took it, raises
        `PermanentFailure` when it refused it for good, and the last failure worth another try
        when the attempts ran out."""
        # Almost every boot is one call that succeeds: tenacity's machinery cost each of them
        # about as much CPU as the HTTP call itself (docs/BENCHMARKS.md, eighth session), so it
        # takes over only after a first failure worth another try.
        try:
            await self._join(tenant_id, instance_id)
            return
        except RETRYABLE:
            if self.attempts == 1:
                raise
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=LATER_RETRY_WAIT,
            stop=stop_after_attempt(self.attempts - 1),
            before=_wait_before_first_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._join(tenant_id, instance_id)

    def _join(self, tenant_id: str, instance_id: uuid.UUID) -> asyncio.Future[None]:
        """The boot's answer, once the call it joins is answered: the call of the tenant's
        boots asked for before the event loop's next turn (the boot loop starts all it claimed
        in one turn)."""
        loop = asyncio.get_running_loop()
        traceparent = current_traceparent()  # each boot continues its launch's trace
        answer: asyncio.Future[None] = loop.create_future()
        waiting = self._waiting.get(tenant_id)
        if waiting is None:
            waiting = self._waiting[tenant_id] = []
            loop.call_soon(self._send_waiting, tenant_id)
        waiting.append(_Boot(instance_id, traceparent, answer))
        return answer

    def _send_waiting(self, tenant_id: str) -> None:
        waiting = self._waiting.pop(tenant_id)
        for start in range(0, len(waiting), BOOTS_PER_CALL):
            boots = waiting[start : start + BOOTS_PER_CALL]
            call = asyncio.create_task(self._send(tenant_id, boots))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _send(self, tenant_id: str, boots: list[_Boot]) -> None:
        try:
            answers = await self._call(tenant_id, boots)
        except Exception as error:  # the call's failure is every boot's in it
            for boot in boots:
                boot.settle(error)
            return
        except asyncio.CancelledError:
            for boot in boots:
                boot.answer.cancel()
            raise
        for boot in boots:
            answer = answers.get(str(boot.instance_id))
            status = 0 if answer is None else answer.get("status", 0)
            if 200 <= status < 300:
                boot.settle(None)
            elif 400 <= status < 500 and status != 429:
                boot.settle(PermanentFailure(f"{status}: {answer and answer.get('detail')}"))
            else:
                boot.settle(TransientFailure(f"no answer for {boot.instance_id}: {answer}"))

    async def _call(self, tenant_id: str, boots: list[_Boot]) -> dict[str, Any]:
        """One call for `boots`: each boot's answer by its instance's id."""
        headers = {
            "Authorization": f"Bearer {self.token(tenant_id)}",
            "Content-Type": "application/json",
        }
        if boots[0].traceparent:  # the call itself joins its first boot's trace
            headers["traceparent"] = boots[0].traceparent
        body = orjson.dumps(
            {"instances": [{"id": str(b.instance_id), "traceparent": b.traceparent} for b in boots]}
        )
        base = await self.instances.pick()
        async with (
            self.breakers.guard(COMMAND_SERVICE, exclude=[PermanentFailure]),
            self.http.post(base + BOOTS_PATH, data=body, headers=headers) as response,
        ):
            # Read to the end, whatever the status: aiohttp closes a connection whose body was
            # left unread instead of keeping it, and one boot in six or seven then paid for a
            # new connection on both sides (docs/BENCHMARKS.md, eighth session).
            raw = await response.read()
            if response.status >= 500 or response.status == 429:
                raise TransientFailure(f"{response.status} from {base}")
        # Refusals are per boot, in the answer's body. A call refused as a whole (a command
        # service without this endpoint yet, in a rolling upgrade; a token it does not take)
        # says nothing about the boots: they wait and are tried again, never dropped.
        if response.status >= 400:
            detail = raw[:200].decode(errors="replace")
            raise TransientFailure(f"{response.status} from {base}: {detail}")
        try:
            return {answer["id"]: answer for answer in orjson.loads(raw)["instances"]}
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            raise TransientFailure(f"unreadable answer from {base}: {error!r}") from None


@dataclass(slots=True)
class _Boot:
    """A boot waiting for its call's answer."""

    instance_id: uuid.UUID
    traceparent: str | None
    answer: asyncio.Future[None] = field(repr=False)

    def settle(self, outcome: Exception | None) -> None:
        if self.answer.done():  # its boot was cancelled meanwhile
            return
        if outcome is None:
            self.answer.set_result(None)
        else:
            self.answer.set_exception(outcome)
