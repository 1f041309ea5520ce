"""Calls the command service's internal endpoint: found through discovery, guarded by a
circuit breaker, retried with tenacity. Safe without an Idempotency-Key: marking a running
instance running again changes nothing and answers 200, and a boot that finds the instance
stopped or terminated meanwhile is refused (409), which ends the boot just the same. A key
would cost every boot a lookup and a transaction of its own (four round trips).

The HTTP client is aiohttp: measured here, an httpx request cost its caller 1.2-2.1 ms of CPU and
an aiohttp one 0.09-0.12 ms, and a launch costs one such call (docs/BENCHMARKS.md)."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
from opentelemetry import propagate
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

COMMAND_SERVICE = "command_api"


#: The request did not get an answer: refused, reset, timed out.
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


def http_session(
    timeout_seconds: float = 5.0, connect_seconds: float = 1.0
) -> aiohttp.ClientSession:
    """The session the provisioner calls the command service with (keeps connections open)."""
    timeout = aiohttp.ClientTimeout(total=timeout_seconds, connect=connect_seconds)
    return aiohttp.ClientSession(timeout=timeout)


class TransientFailure(Exception):
    """The command service answered 5xx or 429; worth another try."""


class PermanentFailure(Exception):
    """The command service refused for good (4xx other than 429): stop trying this boot."""


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
        headers = {"Authorization": f"Bearer {self.token(tenant_id)}"}
        propagate.inject(headers)  # the command service continues this trace
        path = f"/internal/instances/{instance_id}/running"
        # Almost every boot is one call that succeeds: tenacity's machinery cost each of them
        # about as much CPU as the HTTP call itself (docs/BENCHMARKS.md, eighth session), so it
        # takes over only after a first failure worth another try.
        try:
            await self._call(path, headers)
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
                await self._call(path, headers)

    async def _call(self, path: str, headers: dict[str, str]) -> None:
        base = await self.instances.pick()
        async with (
            self.breakers.guard(COMMAND_SERVICE, exclude=[PermanentFailure]),
            self.http.post(base + path, headers=headers) as response,
        ):
            # Read to the end, whatever the status: aiohttp closes a connection whose body was
            # left unread instead of keeping it, and one boot in six or seven then paid for a
            # new connection on both sides (docs/BENCHMARKS.md, eighth session).
            body = await response.read()
            if response.status >= 500 or response.status == 429:
                raise TransientFailure(f"{response.status} from {base}")
        if response.status >= 400:
            raise PermanentFailure(f"{response.status}: {body[:200].decode(errors='replace')}")
