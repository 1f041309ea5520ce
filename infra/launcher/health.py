"""Readiness probes of mesh programs (HTTP /health, PostgreSQL, AMQP) and deadlines to wait with."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

#: How long one probe may take; a program slower than this to answer counts as not ready.
PROBE_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class HttpProbe:
    """Ready when GET `url` answers with a status in `accept` (a service's /health: 200)."""

    url: str
    accept: range = range(200, 300)


@dataclass(frozen=True, slots=True)
class PostgresProbe:
    """Ready when PostgreSQL accepts a connection and runs a query."""

    dsn: str


@dataclass(frozen=True, slots=True)
class AmqpProbe:
    """Ready when the broker completes an AMQP handshake (its port opens earlier than that)."""

    url: str


Probe = HttpProbe | PostgresProbe | AmqpProbe


@dataclass(frozen=True, slots=True)
class Health:
    """The outcome of one probe; `detail` is what a person needs to see when it failed."""

    ok: bool
    detail: str


class Deadline:
    """A point in monotonic time that several waits share, so a whole `up` has one budget."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() == 0.0


async def check(probe: Probe, client: httpx.AsyncClient) -> Health:
    """Run one probe; never raises for a program that is down, it reports why."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            if isinstance(probe, HttpProbe):
                return await _check_http(probe, client)
            if isinstance(probe, PostgresProbe):
                return await _check_postgres(probe)
            return await _check_amqp(probe)
    except TimeoutError:
        return Health(False, f"no answer within {PROBE_TIMEOUT_SECONDS:g} s")
    except Exception as error:  # a probe's job is to turn any failure into a report
        return Health(False, f"{type(error).__name__}: {error}".strip().rstrip(":"))


async def _check_http(probe: HttpProbe, client: httpx.AsyncClient) -> Health:
    response = await client.get(probe.url)
    if response.status_code in probe.accept:
        return Health(True, str(response.status_code))
    return Health(False, f"{response.status_code} {response.text[:300]}".strip())


async def _check_postgres(probe: PostgresProbe) -> Health:
    import asyncpg  # lazily: only `up` and `status` of an own PostgreSQL need the driver

    connection = await asyncpg.connect(probe.dsn)
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close()
    return Health(True, "accepts connections")


async def _check_amqp(probe: AmqpProbe) -> Health:
    # The AMQP 0-9-1 handshake's first step: send the protocol header, expect the broker's
    # Connection.Start (a method frame on channel 0, class 10, method 10). The port opens before
    # the broker is ready to answer, so a bare TCP connect would not do.
    url = urlsplit(probe.url)
    tls = url.scheme == "amqps"
    reader, writer = await asyncio.open_connection(
        url.hostname or "localhost", url.port or (5671 if tls else 5672), ssl=tls or None
    )
    try:
        writer.write(b"AMQP\x00\x00\x09\x01")
        frame = await reader.readexactly(11)
    finally:
        writer.close()
    if frame[0] != 1 or frame[7:11] != b"\x00\x0a\x00\x0a":
        return Health(False, f"not an AMQP 0-9-1 broker (answered {frame!r})")
    return Health(True, "accepts AMQP connections")
