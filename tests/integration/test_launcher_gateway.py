"""The gateway config rendered by the launcher, run by the real nginx in front of stand-in
instances: reads and writes reach their own upstream, a read survives a dead instance, and the
errors nginx answers itself (429, 502) are problem+json."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from infra.launcher.gateway import nginx_command, write_nginx_conf
from infra.launcher.layout import MeshLayout
from infra.launcher.leftovers import ports_in_use
from infra.launcher.services import service_specs
from infra.settings import Settings

RATE_LIMIT = 20  # requests/s per client, burst 40


class Instance(BaseHTTPRequestHandler):
    """Answers with the upstream and the program it stands in for, so a test sees where nginx
    sent the request."""

    protocol_version = "HTTP/1.1"

    def answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server: StandIn = self.server  # type: ignore[assignment]
        if server.stopped:  # a connection nginx kept open: it dies with the instance
            self.close_connection = True
            return
        body = json.dumps({"upstream": server.upstream, "program": server.program}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def answer_head(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    # http.server's names for the per-method handlers.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer  # noqa: N815
    do_HEAD = answer_head  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


class StandIn(ThreadingHTTPServer):
    # The default backlog (5) refuses connections when the gateway opens dozens at once.
    request_queue_size = 512
    upstream = program = ""
    stopped = False


def serve(port: int, upstream: str, program: str) -> ThreadingHTTPServer:
    server = StandIn(("127.0.0.1", port), Instance)
    server.upstream, server.program = upstream, program
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server: ThreadingHTTPServer) -> None:
    server.stopped = True  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


@dataclass
class Gateway:
    url: str
    #: The stand-in instances that are up, by program name (query-2 never is).
    instances: dict[str, ThreadingHTTPServer]
    ports: dict[str, int]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    blocks = random.sample(range(20000, 32000, 100), 100)
    base = next(b for b in blocks if not ports_in_use(range(b, b + 30)))
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("gateway"),
        base_port=base,
        gateway_port=base + 25,
        gateway_rate_limit=RATE_LIMIT,
    )
    layout = MeshLayout.from_settings(settings, own_postgres=False, own_rabbitmq=False)
    specs = [spec for spec in service_specs(layout) if spec.upstream is not None]
    running = Gateway(
        url=layout.gateway_url,
        instances={
            spec.name: serve(spec.ports[0], str(spec.upstream), spec.name)
            for spec in specs
            if spec.name != "query-2"
        },
        ports={spec.name: spec.ports[0] for spec in specs},
    )
    layout.paths.logs.mkdir(parents=True)
    nginx = subprocess.Popen(nginx_command(write_nginx_conf(layout, specs)))
    deadline = time.monotonic() + 10
    while not ports_in_use([layout.ports.gateway]):
        assert nginx.poll() is None, "nginx exited"
        assert time.monotonic() < deadline, "nginx did not listen"
        time.sleep(0.05)
    try:
        yield running
    finally:
        nginx.terminate()
        nginx.wait(10)
        for server in running.instances.values():
            server.shutdown()
            server.server_close()


def problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


# The tests share one client address and so one rate-limit bucket (burst 40): the 429 test,
# which empties it, comes last.


@pytest.mark.parametrize(
    ("method", "upstream"),
    [
        ("GET", "query_api"),
        ("HEAD", "query_api"),
        ("POST", "command_api"),
        ("PUT", "command_api"),
        ("PATCH", "command_api"),
        ("DELETE", "command_api"),
    ],
)
def test_reads_go_to_queries_and_everything_else_to_commands(
    gateway: Gateway, method: str, upstream: str
) -> None:
    for _ in range(3):  # both query instances get their turn, and one of them is down
        response = httpx.request(method, f"{gateway.url}/v1/networks/n-1", timeout=5)
        assert response.status_code == 200
        if method != "HEAD":
            assert response.json()["upstream"] == upstream


def test_internal_paths_are_a_404_problem_for_any_method(gateway: Gateway) -> None:
    for method in ("GET", "POST"):
        problem(httpx.request(method, f"{gateway.url}/internal/x", timeout=5), 404)


def test_a_clients_writes_go_to_one_command_instance_and_on_when_it_is_down(
    gateway: Gateway,
) -> None:
    """By token: one writer per tenant's aggregates (no two instances racing on a subnet). A
    client of its own address, so the other tests keep their rate-limit bucket."""
    client = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=5)

    def writer(token: str) -> str:
        response = client.post(
            f"{gateway.url}/v1/networks", json={}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["program"])

    with client:
        writers = {token: {writer(token), writer(token)} for token in map(str, range(8))}
        assert all(len(programs) == 1 for programs in writers.values()), writers
        assert set.union(*writers.values()) == {"command-1", "command-2"}
        token, (program,) = next(iter(writers.items()))
        stop(gateway.instances.pop(program))
        try:
            # Writes are never sent again (they may have been applied): the dead instance
            # answers them with 502 until nginx counts it down (max_fails=2).
            statuses: list[int] = []
            while len(statuses) < 10 and 200 not in statuses:
                answer = client.post(
                    f"{gateway.url}/v1/networks",
                    json={},
                    headers={"Authorization": f"Bearer {token}"},
                )
                statuses.append(answer.status_code)
            assert statuses[:-1] == [502] * (len(statuses) - 1), statuses
            assert len(statuses) <= 3, statuses  # at most two 502s: max_fails=2
            assert answer.status_code == 200, statuses
            assert answer.json()["program"] != program
        finally:
            gateway.instances[program] = serve(gateway.ports[program], "command_api", program)


def test_writes_with_no_live_command_instance_are_a_502_problem(gateway: Gateway) -> None:
    for name in ("command-1", "command-2"):
        stop(gateway.instances.pop(name))
    try:
        problem(httpx.post(f"{gateway.url}/v1/networks", json={}, timeout=5), 502)
        assert httpx.get(f"{gateway.url}/v1/networks", timeout=5).status_code == 200
    finally:
        for name in ("command-1", "command-2"):
            gateway.instances[name] = serve(gateway.ports[name], "command_api", name)


async def test_a_client_over_the_rate_limit_gets_429_problems(gateway: Gateway) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        # Far more at once than the burst allows, so the bucket cannot refill in between.
        responses = await asyncio.gather(
            *(client.get(f"{gateway.url}/v1/networks") for _ in range(4 * RATE_LIMIT))
        )

    statuses = [response.status_code for response in responses]
    assert set(statuses) == {200, 429}
    refused = next(response for response in responses if response.status_code == 429)
    problem(refused, 429)
    assert refused.headers["retry-after"] == "1"
