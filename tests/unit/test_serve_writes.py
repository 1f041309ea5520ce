"""Every service answers through `infra.serve.HttpProtocol`: an answer's head and body go to
the socket in one write, not the two uvicorn makes (pure: a recording transport, no socket)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from uvicorn.config import Config
from uvicorn.server import ServerState

from infra.serve import CoalescedWrites, HttpProtocol


class Recording(asyncio.Transport):
    """What a protocol wrote, write by write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def settled() -> None:
    for _ in range(20):  # the app's task, then the flush the writes scheduled
        await asyncio.sleep(0)


async def test_an_answer_goes_out_in_one_write() -> None:
    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"hello": "world"}, status_code=201)

    config = Config(Starlette(routes=[Route("/", hello)]), http=HttpProtocol, lifespan="off")
    config.load()
    transport = Recording()
    protocol = HttpProtocol(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(transport)

    protocol.data_received(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    await settled()

    [answer] = transport.writes
    assert answer.startswith(b"HTTP/1.1 201 Created\r\n")
    assert answer.endswith(b'\r\n\r\n{"hello":"world"}')

    protocol.data_received(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    await settled()
    assert len(transport.writes) == 2  # the second answer, whole, then the close
    assert transport.writes[1].endswith(b'{"hello":"world"}')
    assert transport.closed


async def test_closing_sends_what_is_pending_first() -> None:
    transport = Recording()
    writes = CoalescedWrites(transport)
    writes.write(b"head ")
    writes.write(b"body")
    writes.close()
    assert transport.writes == [b"head body"]
    assert transport.closed
    await settled()  # the flush scheduled by the first write finds nothing left
    assert transport.writes == [b"head body"]


async def test_nothing_is_written_to_a_transport_closed_meanwhile() -> None:
    transport = Recording()
    writes = CoalescedWrites(transport)
    writes.write(b"late")
    transport.close()  # the peer went away before the turn ended
    await settled()
    assert transport.writes == []
    assert writes.is_closing()  # everything else is the transport's own
