"""The mesh `cloudnet up` starts, as a user sees it: every program healthy, the gateway's own
answers (401, /internal/, 413, request ids), Prometheus scraping everything, `up` idempotent.
That `cloudnet down` leaves no process and no port is asserted by the `mesh` fixture's teardown."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from infra.launcher.leftovers import children_by_parent, descendants, stat_fields
from infra.launcher.programs import PIPELINE_NICE, may_raise_priority

if TYPE_CHECKING:
    from tests.e2e.conftest import Mesh

pytestmark = pytest.mark.e2e

SERVICES = {
    *(f"{role}-{n}" for role in ("command", "query", "relay", "projector") for n in (1, 2)),
    "provisioner-1",
}
INFRASTRUCTURE = {
    "postgres",
    "rabbitmq",
    "nginx",
    "prometheus",
    "node-exporter",
    "postgres-exporter",
    "nginx-exporter",
}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"]
    assert body["title"]
    return body


def test_status_lists_every_program_running_and_healthy(mesh: Mesh) -> None:
    result = mesh.run("status", "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    programs = {program["name"]: program for program in json.loads(result.stdout)}
    assert set(programs) == SERVICES | INFRASTRUCTURE
    for name, program in programs.items():
        assert program["state"] == "RUNNING", name
        assert program["healthy"], program
        assert program["pid"], name
    for name in SERVICES:
        assert programs[name]["health"] == {"ok": True, "detail": "200"}


def test_the_event_pipeline_runs_ahead_of_the_request_handlers(mesh: Mesh) -> None:
    """The relays, the broker and the projectors (every process of each) run at PIPELINE_NICE
    where the launcher may raise priorities, as here in CI; the rest at the launcher's own."""
    pipeline = PIPELINE_NICE if may_raise_priority() else 0
    own = os.getpriority(os.PRIO_PROCESS, 0)
    expected = dict.fromkeys(SERVICES | INFRASTRUCTURE, own)
    expected |= dict.fromkeys(
        ("relay-1", "relay-2", "projector-1", "projector-2", "rabbitmq"), own + pipeline
    )

    children = children_by_parent()  # one pass over /proc for every program's tree
    seen = {
        name: {
            nice for pid in (pid, *descendants(pid, children)) if (nice := _nice(pid)) is not None
        }
        for name, pid in mesh.pids("").items()
    }
    assert seen == {name: {value} for name, value in expected.items()}


def _nice(pid: int) -> int | None:
    """The process's nice value (field 19 of its stat), None if it has gone meanwhile."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[16])


def test_status_as_a_table_names_every_program(mesh: Mesh) -> None:
    result = mesh.run("status")

    assert result.returncode == 0, result.stderr
    for name in SERVICES | INFRASTRUCTURE:
        assert name in result.stderr


def test_up_on_a_running_mesh_says_so_and_succeeds(mesh: Mesh) -> None:
    result = mesh.run("up")

    assert result.returncode == 0, result.stderr
    assert "already up" in result.stderr


async def test_a_read_without_token_reaches_a_query_service_and_gets_401(mesh: Mesh) -> None:
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=10) as client:
        response = await client.get("/v1/networks")

    assert_problem(response, 401)
    assert response.headers["x-request-id"]


async def test_a_token_printed_by_the_cli_is_accepted(mesh: Mesh) -> None:
    result = mesh.run("token", "--tenant", "e2e-cli", "--scope", "cloud:read")
    assert result.returncode == 0, result.stderr

    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=10) as client:
        response = await client.get(
            "/v1/networks", headers={"Authorization": f"Bearer {result.stdout.strip()}"}
        )

    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize(
    "path", ["/internal/instances/x/running", "/%69nternal/x", "/v1/../internal/x", "//internal/x"]
)
async def test_internal_endpoints_are_not_reachable_through_the_gateway(
    mesh: Mesh, method: str, path: str
) -> None:
    token = mesh.token("e2e-internal", "cloud:read cloud:write")
    url = httpx.URL(mesh.gateway_url).copy_with(raw_path=path.encode())
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.request(
            method, url, headers={"Authorization": f"Bearer {token}"}, json={}
        )

    assert_problem(response, 404)


async def test_a_body_over_64_kib_is_refused_with_413(mesh: Mesh) -> None:
    token = mesh.token("e2e-big", "cloud:read cloud:write")
    body = b'{"name": "' + b"x" * (64 * 1024) + b'", "cidr": "10.0.0.0/16"}'
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=10) as client:
        response = await client.post(
            "/v1/networks",
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )

    assert_problem(response, 413)


async def test_a_client_request_id_is_passed_through(mesh: Mesh) -> None:
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=10) as client:
        response = await client.get("/v1/networks", headers={"X-Request-Id": "e2e-trace-42"})

    assert response.headers["x-request-id"] == "e2e-trace-42"


async def test_prometheus_scrapes_every_program_that_has_metrics(mesh: Mesh) -> None:
    deadline = time.monotonic() + 30  # a few scrape intervals (5 s)
    async with httpx.AsyncClient(base_url=mesh.prometheus_url, timeout=10) as client:
        while True:
            response = await client.get("/api/v1/targets")
            targets = response.json()["data"]["activeTargets"]
            down = {t["labels"]["instance"]: t["lastError"] for t in targets if t["health"] != "up"}
            instances = {t["labels"]["instance"] for t in targets}
            if not down and instances >= SERVICES | {"rabbitmq", "prometheus"}:
                break
            assert time.monotonic() < deadline, f"targets not up: {down or instances}"
            await asyncio.sleep(1)
    jobs = {t["labels"]["job"] for t in targets}
    assert {"command_api", "query_api", "relay", "projector", "provisioner", "nginx"} <= jobs
    assert {"postgres", "node", "rabbitmq", "prometheus"} <= jobs
