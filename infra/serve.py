"""Runs an ASGI app under uvicorn (uvloop + httptools), the way every cloudnet service does."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from infra.logs import configure_logging
from infra.settings import Settings
from infra.telemetry import configure_tracing


class CoalescedWrites:
    """A transport that sends what is written to it in one turn of the event loop as one write.

    uvicorn writes an answer's status line and headers when the app sends
    `http.response.start`, and its body when it sends `http.response.body`: two writes, so two
    `send` system calls and two segments for nginx to read, for every answer. Here they go out
    together at the end of the turn (docs/BENCHMARKS.md, thirteenth session). Everything else is
    the transport's own; closing (or ending the writes) sends what is pending first.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] | None = None
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def writelines(self, data: Any) -> None:
        self.write(b"".join(data))

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through `CoalescedWrites`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescedWrites(transport))  # type: ignore[arg-type]


def serve(app: Any, settings: Settings, service: str) -> None:
    configure_logging(service, settings.instance, settings.log_level)
    configure_tracing(service, settings.tracing, settings.otlp_endpoint)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=HttpProtocol,
        access_log=False,  # the gateway writes the access log
        # Nothing reads the client's address (the gateway logs it): uvicorn's X-Forwarded-For
        # middleware cost the command services 4 % of their CPU per create (docs/BENCHMARKS.md).
        proxy_headers=False,
        # nginx drops an upstream's Date and Server headers: not worth writing on every answer.
        server_header=False,
        date_header=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
