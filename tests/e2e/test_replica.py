"""`cloudnet up --replica`: the query services read a streaming replica of the mesh's PostgreSQL,
and a read with X-Min-Position through the gateway still sees the write it names, every time."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from infra.launcher.supervisor import Supervisor
from tests.e2e.conftest import Mesh, running_mesh

pytestmark = pytest.mark.e2e

PROC = Path("/proc")


@pytest.fixture(scope="module")
def replicated() -> Iterator[Mesh]:
    with running_mesh("--replica") as mesh:
        assert mesh.read_database_url is not None, "mesh.env does not say where reads go"
        yield mesh


def replica_url(mesh: Mesh, database: str = "cloudnet") -> str:
    assert mesh.read_database_url is not None
    return mesh.read_database_url.rsplit("/", 1)[0] + f"/{database}"


async def fetch(url: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(query))
    finally:
        await connection.close()


def query_pids(mesh: Mesh) -> dict[str, int]:
    programs = Supervisor(mesh.state_dir / "supervisor.sock").programs()
    return {p.name: p.pid for p in programs if p.name.startswith("query-") and p.pid}


def environment(pid: int) -> dict[str, str]:
    entries = (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)


def local_ports_towards(pid: int, remote_port: int) -> set[int]:
    """The local ports of `pid`'s TCP connections to 127.0.0.1:`remote_port`."""
    inodes = {
        link.removeprefix("socket:[").removesuffix("]")
        for fd in (PROC / str(pid) / "fd").iterdir()
        if (link := os.readlink(fd)).startswith("socket:[")
    }
    ports = set()
    for line in (PROC / str(pid) / "net" / "tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if inode in inodes and int(remote.split(":")[1], 16) == remote_port:
            ports.add(int(local.split(":")[1], 16))
    return ports


def auth(mesh: Mesh, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mesh.token(tenant, 'cloud:read cloud:write')}"}


async def create_network(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, cidr: str
) -> dict[str, Any]:
    """The command's answer: the network's id and the position of its event."""
    created = await client.post("/v1/networks", json={"name": name, "cidr": cidr}, headers=headers)
    assert created.status_code == 201, created.text
    answer: dict[str, Any] = created.json()
    return answer


async def test_the_replica_streams_from_the_primary(replicated: Mesh) -> None:
    senders = await fetch(replicated.database_url, "SELECT state FROM pg_stat_replication")
    [recovery] = await fetch(replica_url(replicated), "SELECT pg_is_in_recovery() AS standby")

    assert [row["state"] for row in senders] == ["streaming"]
    assert recovery["standby"]


def test_status_shows_the_replica_healthy(replicated: Mesh) -> None:
    status = replicated.run("status", "--json")

    programs = {program["name"]: program for program in json.loads(status.stdout)}
    assert status.returncode == 0, status.stdout + status.stderr
    assert programs["postgres-replica"]["healthy"]


async def test_the_query_services_read_the_replica_and_not_the_primary(replicated: Mesh) -> None:
    replica_port = int(replica_url(replicated).rsplit(":", 1)[1].split("/")[0])
    primary_port = int(replicated.database_url.rsplit(":", 1)[1].split("/")[0])
    pids = query_pids(replicated)
    clients = "SELECT client_port FROM pg_stat_activity WHERE datname = 'cloudnet'"

    on_replica = {row["client_port"] for row in await fetch(replica_url(replicated), clients)}

    assert sorted(pids) == ["query-1", "query-2"]
    for name, pid in pids.items():
        assert environment(pid)["READ_DATABASE_URL"] == replicated.read_database_url, name
        to_replica = local_ports_towards(pid, replica_port)
        assert to_replica, f"{name} holds no connection to the replica"
        assert to_replica <= on_replica, f"{name}'s connections are not the replica's clients"
        assert not local_ports_towards(pid, primary_port), f"{name} reads the primary"
    assert on_replica, "nobody reads the replica"
    # Not compared with the primary's client ports: a local port may serve one connection to
    # the replica and another process's connection to the primary at once (the 4-tuples
    # differ); that the query processes hold no connection to the primary is checked above.


async def test_a_write_is_read_back_from_the_replica_at_once(replicated: Mesh) -> None:
    headers = auth(replicated, f"replica-{uuid.uuid4().hex[:8]}")
    async with httpx.AsyncClient(base_url=replicated.gateway_url, timeout=10) as client:
        created = await create_network(client, headers, "replicated", "10.1.0.0/16")
        read = await client.get(
            f"/v1/networks/{created['id']}",
            headers={**headers, "X-Min-Position": str(created["position"])},
        )

    assert read.status_code == 200, read.text
    assert (read.json()["name"], read.json()["cidr"]) == ("replicated", "10.1.0.0/16")


async def test_fifty_writes_each_read_back_at_once_are_never_stale(replicated: Mesh) -> None:
    headers = auth(replicated, f"replica-{uuid.uuid4().hex[:8]}")
    async with httpx.AsyncClient(base_url=replicated.gateway_url, timeout=10) as client:
        renamed = (await create_network(client, headers, "first", "10.2.0.0/16"))["id"]
        created = {renamed}
        for attempt in range(50):
            # A stale read shows up as the previous name or as a missing network.
            rename = await client.patch(
                f"/v1/networks/{renamed}", json={"name": f"name-{attempt}"}, headers=headers
            )
            assert rename.status_code == 200, rename.text
            create = await create_network(client, headers, f"net-{attempt}", "10.3.0.0/16")
            created.add(create["id"])
            position = max(rename.json()["position"], create["position"])
            fresh = {**headers, "X-Min-Position": str(position)}
            network = await client.get(f"/v1/networks/{renamed}", headers=fresh)
            listed = await client.get("/v1/networks", params={"limit": 100}, headers=fresh)

            assert network.status_code == 200, f"write {attempt}: {network.text}"
            assert network.json()["name"] == f"name-{attempt}"
            assert listed.status_code == 200, f"write {attempt}: {listed.text}"
            assert {item["id"] for item in listed.json()["items"]} == created, attempt
