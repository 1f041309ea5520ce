"""Load generator (issue 8): tenants' virtual users drive a realistic mix of API calls through the
gateway for a fixed time, and the run prints throughput, latency percentiles per operation, every
non-2xx answer by status, and projection lag.

Each virtual user belongs to a tenant and owns its networks, subnets and instances, so its
commands do not race another user's (a race would be a 409 the mix did not ask for). Its loop
picks a weighted operation: launch an instance, read one back with `X-Min-Position` (read your
writes), walk instance lists (filters, next pages), read networks/subnets/activity, move an
instance through its lifecycle (stop, start, terminate: the state comes from a fresh read, since
the provisioner marks instances running by itself), and now and then create a subnet or a
network. A user keeps at most `--live-instances` instances; past that it terminates its oldest.

Projection lag is sampled on a share of the 201 answers: from the 201 until a plain GET (no
`X-Min-Position`) of the new resource first answers 200, polled every `--lag-poll-ms`.

Run: `make bench-load` (300 s), or `.venv/bin/python -m benchmarks.load --seconds 60`. It uses
the mesh that is up in CLOUDNET_STATE_DIR, else starts one (see benchmarks/mesh.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import resource
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import uvloop
from rich import box
from rich.console import Console
from rich.table import Table

from benchmarks.figures import PERCENTILES, ms, percentile
from benchmarks.mesh import (
    DEFAULT_STATE_DIR,
    BasePort,
    GatewayPort,
    MeshOptions,
    PrometheusPort,
    StateDir,
    running_mesh,
)

#: Relative weights of the operations a virtual user picks from.
MIX: dict[str, int] = {
    "launch instance": 16,
    "get instance (X-Min-Position)": 12,
    "get instance": 8,
    "list instances": 16,
    "lifecycle": 14,
    "get network": 6,
    "get subnet": 6,
    "list networks": 6,
    "activity": 4,
    "create subnet": 2,
    "create network": 1,
}
SIZES = ("small", "medium", "large")
#: Subnets are /22 (1,019 usable addresses) carved from the user's /16 networks in order.
SUBNET_PREFIX, SUBNETS_PER_NETWORK = 22, 64
#: The longest a lag probe polls before it counts the resource as never shown.
LAG_GIVE_UP_SECONDS = 10.0


@dataclass
class Recorder:
    """Every answer the virtual users got, by operation."""

    latencies: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    transport_errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    lags: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    lags_not_seen: Counter[str] = field(default_factory=Counter)
    lag_probe_requests: int = 0

    def answered(self, op: str, response: httpx.Response, seconds: float) -> None:
        self.latencies[op].append(seconds)
        self.statuses[op][response.status_code] += 1
        if response.status_code >= 500 and len(self.server_errors) < 50:
            self.server_errors.append(
                {
                    "op": op,
                    "status": response.status_code,
                    "request_id": response.headers.get("x-request-id"),
                    "body": response.text[:300],
                }
            )

    def failed(self, op: str, error: Exception) -> None:
        self.transport_errors[(op, type(error).__name__)] += 1


@dataclass
class Owned:
    """What one virtual user created and may act on."""

    #: network id -> its CIDR
    networks: dict[str, str] = field(default_factory=dict)
    #: subnet id -> network id
    subnets: dict[str, str] = field(default_factory=dict)
    #: instance id -> last known position of its stream (for X-Min-Position)
    instances: dict[str, int] = field(default_factory=dict)
    next_subnet: Counter[str] = field(default_factory=Counter)
    last_position: int = 0


class LagProbes:
    """Samples projection lag: polls a new resource with plain GETs until it shows up."""

    def __init__(
        self, client: httpx.AsyncClient, recorder: Recorder, share: float, poll: float, limit: int
    ) -> None:
        self.client, self.recorder, self.share, self.poll = client, recorder, share, poll
        self.slots = asyncio.Semaphore(limit)
        self.tasks: set[asyncio.Task[None]] = set()

    def maybe_probe(
        self, kind: str, path: str, headers: dict[str, str], rng: random.Random
    ) -> None:
        if rng.random() >= self.share or self.slots.locked():
            return
        task = asyncio.create_task(self._probe(kind, path, headers, time.perf_counter()))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _probe(self, kind: str, path: str, headers: dict[str, str], created: float) -> None:
        async with self.slots:
            while time.perf_counter() - created < LAG_GIVE_UP_SECONDS:
                self.recorder.lag_probe_requests += 1
                try:
                    response = await self.client.get(path, headers=headers)
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code == 200:
                    self.recorder.lags[kind].append(time.perf_counter() - created)
                    return
                await asyncio.sleep(self.poll)
            self.recorder.lags_not_seen[kind] += 1

    async def drain(self) -> None:
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=LAG_GIVE_UP_SECONDS + 1)


class VirtualUser:
    """One tenant's client: a loop of weighted operations on what it owns."""

    def __init__(
        self,
        number: int,
        token: str,
        client: httpx.AsyncClient,
        recorder: Recorder,
        probes: LagProbes,
        live_instances: int,
    ) -> None:
        self.number = number
        self.headers = {"Authorization": f"Bearer {token}"}
        self.client, self.recorder, self.probes = client, recorder, probes
        self.live_instances = live_instances
        self.rng = random.Random(number)
        self.owned = Owned()
        self.operations = {
            "launch instance": self.launch_instance,
            "get instance (X-Min-Position)": self.get_instance_fresh,
            "get instance": self.get_instance,
            "list instances": self.list_instances,
            "lifecycle": self.lifecycle,
            "get network": self.get_network,
            "get subnet": self.get_subnet,
            "list networks": self.list_networks,
            "activity": self.activity,
            "create subnet": self.create_subnet,
            "create network": self.create_network,
        }

    async def run(self, deadline: float, interval: float) -> None:
        await self.create_network()
        names, weights = list(MIX), list(MIX.values())
        next_at = time.perf_counter()
        while (now := time.perf_counter()) < deadline:
            if interval:
                next_at += interval
                if next_at > now:
                    await asyncio.sleep(next_at - now)
            [name] = self.rng.choices(names, weights)
            await self.operations[name]()

    # -- the HTTP call every operation goes through --------------------------------------------

    async def call(
        self,
        op: str,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        min_position: int | None = None,
    ) -> httpx.Response | None:
        headers = self.headers
        if min_position is not None:
            headers = {**headers, "X-Min-Position": str(min_position)}
        started = time.perf_counter()
        try:
            response = await self.client.request(
                method, path, json=body, params=params, headers=headers
            )
        except httpx.HTTPError as error:
            self.recorder.failed(op, error)
            return None
        self.recorder.answered(op, response, time.perf_counter() - started)
        if response.is_success and method != "GET":
            self.owned.last_position = max(self.owned.last_position, response.json()["position"])
        return response

    def created(self, kind: str, response: httpx.Response | None) -> str | None:
        if response is None or response.status_code != 201:
            return None
        new_id: str = response.json()["id"]
        self.probes.maybe_probe(kind, f"/v1/{kind}/{new_id}", self.headers, self.rng)
        return new_id

    # -- writes ---------------------------------------------------------------------------------

    async def create_network(self) -> None:
        cidr = f"10.{self.rng.randrange(256)}.0.0/16"
        name = f"vu{self.number}-net{len(self.owned.networks)}"
        response = await self.call(
            "create network", "POST", "/v1/networks", body={"name": name, "cidr": cidr}
        )
        network_id = self.created("networks", response)
        if network_id is not None:
            self.owned.networks[network_id] = cidr
            await self.create_subnet(network_id)

    async def create_subnet(self, network_id: str | None = None) -> None:
        if network_id is None:
            room = [
                n for n in self.owned.networks if self.owned.next_subnet[n] < SUBNETS_PER_NETWORK
            ]
            if not room:
                await self.create_network()
                return
            network_id = self.rng.choice(room)
        index = self.owned.next_subnet[network_id]
        self.owned.next_subnet[network_id] += 1
        second_octets = self.owned.networks[network_id].split(".")[:2]
        third = index * 2 ** (24 - SUBNET_PREFIX)
        subnet_cidr = ".".join([*second_octets, str(third), "0"]) + f"/{SUBNET_PREFIX}"
        response = await self.call(
            "create subnet",
            "POST",
            f"/v1/networks/{network_id}/subnets",
            body={"name": f"vu{self.number}-sub{index}", "cidr": subnet_cidr},
        )
        subnet_id = self.created("subnets", response)
        if subnet_id is not None:
            self.owned.subnets[subnet_id] = network_id

    async def launch_instance(self) -> None:
        if not self.owned.subnets:
            await self.create_network()
            return
        if len(self.owned.instances) >= self.live_instances:
            await self.terminate(next(iter(self.owned.instances)))
            return
        subnet_id = self.rng.choice(list(self.owned.subnets))
        body = {
            "name": f"vu{self.number}-{uuid.uuid4().hex[:8]}",
            "subnet_id": subnet_id,
            "size": self.rng.choice(SIZES),
        }
        response = await self.call("launch instance", "POST", "/v1/instances", body=body)
        instance_id = self.created("instances", response)
        if instance_id is not None and response is not None:
            self.owned.instances[instance_id] = response.json()["position"]

    async def lifecycle(self) -> None:
        """Read an instance with read-your-writes, then move it on from the state it is in."""
        instance_id = self._some_instance()
        if instance_id is None:
            await self.launch_instance()
            return
        state = await self._fresh_state(instance_id)
        if state == "running":
            await self._transition("stop instance", instance_id, "stop")
        elif state == "stopped":
            if self.rng.random() < 0.7:
                await self._transition("start instance", instance_id, "start")
            else:
                await self.terminate(instance_id)

    async def terminate(self, instance_id: str) -> None:
        response = await self.call("terminate instance", "DELETE", f"/v1/instances/{instance_id}")
        if response is not None and response.status_code in (200, 404):
            self.owned.instances.pop(instance_id, None)

    async def _transition(self, op: str, instance_id: str, action: str) -> None:
        response = await self.call(op, "POST", f"/v1/instances/{instance_id}/{action}")
        if response is not None and response.status_code == 200:
            self.owned.instances[instance_id] = response.json()["position"]

    # -- reads ----------------------------------------------------------------------------------

    async def get_instance_fresh(self) -> None:
        instance_id = self._some_instance()
        if instance_id is not None:
            await self._fresh_state(instance_id)

    async def _fresh_state(self, instance_id: str) -> str | None:
        response = await self.call(
            "get instance (X-Min-Position)",
            "GET",
            f"/v1/instances/{instance_id}",
            min_position=self.owned.instances[instance_id],
        )
        if response is None or response.status_code != 200:
            return None
        state: str = response.json()["state"]
        return state

    async def get_instance(self) -> None:
        instance_id = self._some_instance()
        if instance_id is not None:
            await self.call("get instance", "GET", f"/v1/instances/{instance_id}")

    async def list_instances(self) -> None:
        params: dict[str, str] = {"limit": str(self.rng.choice((10, 20, 50)))}
        pick = self.rng.random()
        if pick < 0.3 and self.owned.subnets:
            params["subnet_id"] = self.rng.choice(list(self.owned.subnets))
        elif pick < 0.5:
            params["state"] = self.rng.choice(("running", "stopped", "pending"))
        response = await self.call("list instances", "GET", "/v1/instances", params=params)
        cursor = _next_cursor(response)
        if cursor is not None and self.rng.random() < 0.5:
            await self.call(
                "list instances", "GET", "/v1/instances", params={**params, "cursor": cursor}
            )

    async def get_network(self) -> None:
        if self.owned.networks:
            network_id = self.rng.choice(list(self.owned.networks))
            await self.call("get network", "GET", f"/v1/networks/{network_id}")

    async def get_subnet(self) -> None:
        if self.owned.subnets:
            subnet_id = self.rng.choice(list(self.owned.subnets))
            await self.call("get subnet", "GET", f"/v1/subnets/{subnet_id}")

    async def list_networks(self) -> None:
        await self.call("list networks", "GET", "/v1/networks", params={"limit": "50"})

    async def activity(self) -> None:
        await self.call("activity", "GET", "/v1/activity", params={"limit": "20"})

    def _some_instance(self) -> str | None:
        return self.rng.choice(list(self.owned.instances)) if self.owned.instances else None


def _next_cursor(response: httpx.Response | None) -> str | None:
    if response is None or response.status_code != 200:
        return None
    cursor: str | None = response.json().get("next_cursor")
    return cursor


@dataclass(frozen=True, slots=True)
class LoadOptions:
    seconds: float
    users: int
    tenants: int
    rate: float
    live_instances: int
    lag_share: float
    lag_poll: float
    lag_probes: int


async def generate(gateway_url: str, tokens: list[str], options: LoadOptions) -> Recorder:
    """Run the virtual users against the gateway until `options.seconds` have passed."""
    recorder = Recorder()
    limits = httpx.Limits(
        max_connections=options.users + options.lag_probes + 4, max_keepalive_connections=None
    )
    timeout = httpx.Timeout(30.0)
    async with httpx.AsyncClient(base_url=gateway_url, limits=limits, timeout=timeout) as client:
        probes = LagProbes(
            client, recorder, options.lag_share, options.lag_poll, options.lag_probes
        )
        users = [
            VirtualUser(
                n, tokens[n % len(tokens)], client, recorder, probes, options.live_instances
            )
            for n in range(options.users)
        ]
        # Each user paces itself to its share of --rate; 0 means as fast as answers come.
        interval = options.users / options.rate if options.rate > 0 else 0.0
        deadline = time.perf_counter() + options.seconds
        await asyncio.gather(*(user.run(deadline, interval) for user in users))
        await probes.drain()
    return recorder


@dataclass(frozen=True, slots=True)
class Report:
    recorder: Recorder
    seconds: float
    cpu_seconds: float

    def operations_table(self) -> Table:
        table = Table(box=box.SIMPLE_HEAD, title="Operations (latency in ms)")
        for column in ("operation", "count", "per s", "p50", "p90", "p99", "max", "non-2xx"):
            table.add_column(column, justify="left" if column == "operation" else "right")
        latencies, statuses = self.recorder.latencies, self.recorder.statuses
        rows = [*sorted(latencies), "all"]
        everything = [s for samples in latencies.values() for s in samples]
        for op in rows:
            samples = everything if op == "all" else latencies[op]
            counts = sum(statuses.values(), Counter()) if op == "all" else statuses[op]
            bad = sum(n for status, n in counts.items() if not 200 <= status < 300)
            table.add_row(
                op,
                f"{len(samples):,}",
                f"{len(samples) / self.seconds:,.1f}",
                *(ms(percentile(samples, p)) for p in PERCENTILES),
                ms(max(samples, default=math.nan)),
                f"{bad:,}",
                end_section=op == rows[-2],
            )
        return table

    def errors_table(self) -> Table:
        table = Table(box=box.SIMPLE_HEAD, title="Answers other than 2xx, and transport errors")
        for column in ("operation", "status / error", "count"):
            table.add_column(column, justify="right" if column == "count" else "left")
        for op, counts in sorted(self.recorder.statuses.items()):
            for status, count in sorted(counts.items()):
                if not 200 <= status < 300:
                    table.add_row(op, str(status), f"{count:,}")
        for (op, error), count in sorted(self.recorder.transport_errors.items()):
            table.add_row(op, error, f"{count:,}")
        return table

    def lag_table(self) -> Table:
        table = Table(box=box.SIMPLE_HEAD, title="Projection lag: 201 → first plain GET 200 (ms)")
        for column in ("resource", "samples", "p50", "p90", "p99", "max", "not seen in 10 s"):
            table.add_column(column, justify="left" if column == "resource" else "right")
        lags = self.recorder.lags
        for kind in sorted(lags.keys() | self.recorder.lags_not_seen.keys()):
            samples = lags[kind]
            table.add_row(
                kind,
                f"{len(samples):,}",
                *(ms(percentile(samples, p)) for p in PERCENTILES),
                ms(max(samples, default=math.nan)),
                str(self.recorder.lags_not_seen[kind]),
            )
        return table

    def summary(self) -> dict[str, Any]:
        recorder = self.recorder
        everything = [s for samples in recorder.latencies.values() for s in samples]
        statuses = sum(recorder.statuses.values(), Counter())
        return {
            "seconds": self.seconds,
            "requests": len(everything),
            "requests_per_second": len(everything) / self.seconds,
            "lag_probe_requests": recorder.lag_probe_requests,
            "load_generator_cpu_share": self.cpu_seconds / self.seconds,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "server_errors": recorder.server_errors,
            "transport_errors": {
                f"{op}: {error}": n for (op, error), n in recorder.transport_errors.items()
            },
            "operations": {
                op: {
                    "count": len(samples),
                    **{f"p{p}_ms": percentile(samples, p) * 1000 for p in PERCENTILES},
                }
                for op, samples in sorted(recorder.latencies.items())
            },
            "projection_lag": {
                kind: {
                    "samples": len(samples),
                    **{f"p{p}_ms": percentile(samples, p) * 1000 for p in PERCENTILES},
                    "not_seen": recorder.lags_not_seen[kind],
                }
                for kind, samples in sorted(recorder.lags.items())
            },
        }


def main(
    seconds: Annotated[float, typer.Option(help="How long the load runs")] = 300,
    users: Annotated[int, typer.Option(help="Concurrent virtual users")] = 32,
    tenants: Annotated[int, typer.Option(help="Tenants the users are spread over")] = 8,
    rate: Annotated[
        float, typer.Option(help="Target operations/s over all users; 0: as fast as answered")
    ] = 0,
    live_instances: Annotated[int, typer.Option(help="Instances a user keeps at most")] = 30,
    lag_share: Annotated[float, typer.Option(help="Share of 201s whose lag is sampled")] = 0.2,
    lag_poll_ms: Annotated[float, typer.Option(help="Poll interval of a lag probe")] = 5,
    lag_probes: Annotated[int, typer.Option(help="Lag probes at once at most")] = 8,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    base_port: BasePort = 24000,
    gateway_port: GatewayPort = 24126,
    prometheus_port: PrometheusPort = 24127,
    json_out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON")] = None,
) -> None:
    """Drive a realistic mix through the gateway and print what it answered."""
    console = Console(width=140)
    options = LoadOptions(
        seconds, users, tenants, rate, live_instances, lag_share, lag_poll_ms / 1000, lag_probes
    )
    mesh_options = MeshOptions(state_dir, base_port, gateway_port, prometheus_port)
    with running_mesh(mesh_options, console.print) as mesh:
        tokens = [mesh.token(f"load-{uuid.uuid4().hex[:8]}-{n}") for n in range(tenants)]
        console.print(
            f"{users} users over {tenants} tenants for {seconds:g} s against {mesh.gateway_url} "
            f"(gateway limit {mesh.rate_limit:,} r/s per client), "
            f"{'closed loop' if rate <= 0 else f'{rate:g} ops/s'}"
        )
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        recorder = uvloop.run(generate(mesh.gateway_url, tokens, options))
        elapsed = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    report = Report(recorder, min(elapsed, seconds), cpu)
    console.print(report.operations_table(), report.errors_table(), report.lag_table())
    summary = report.summary()
    five_xx = sum(v for k, v in summary["statuses"].items() if k.startswith("5"))
    console.print(
        f"{summary['requests']:,} requests in {report.seconds:.0f} s = "
        f"{summary['requests_per_second']:,.1f}/s (+ {recorder.lag_probe_requests:,} lag-probe "
        f"GETs); load generator used {summary['load_generator_cpu_share']:.0%} of a core; "
        f"5xx: {five_xx}"
    )
    for error in recorder.server_errors[:10]:
        console.print(
            f"  5xx {error['op']}: {error['status']} {error['request_id']} {error['body']}"
        )
    if json_out is not None:
        json_out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    typer.run(main)
