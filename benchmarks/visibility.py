"""Visibility lag: how long after a command's 201 a plain read of the new resource answers 200.

Commands go through the gateway of the mesh (benchmarks/mesh.py) at a steady, open-loop rate:
command i is sent at start + i/rate whether or not earlier ones were answered (each is its own
asyncio task), over several tenants. Most are POST /v1/networks; a share (`--subnet-share`)
are POST /v1/networks/{id}/subnets on networks this run created before (spread round-robin
over them, so two subnets rarely race on one network stream). For every 201 a poller task sends
plain GETs of the new resource (GET /v1/networks/{id} or /v1/subnets/{id}, no `X-Min-Position`)
every `--poll-ms` until one answers 200; the lag is from receiving the 201 to receiving that 200,
so it includes one GET round trip (and reads high by about one GET latency under saturation).
A resource not seen within `--give-up` seconds counts as never visible. At most `--pollers`
pollers run at once; a 201 that arrives while all are busy is not probed, and the count of
those is printed (the lag figures then under-represent the moments the mesh was furthest
behind).

Command latency is measured from the moment the command was *scheduled*, not when the client got
round to sending it, so a generator that falls behind shows up as latency (no coordinated
omission); the send delay (actual minus scheduled) is printed separately.

Server side, from each service's Prometheus /metrics (scraped directly on the programs' ports
before and after the run; their deltas are the run's): the HTTP duration histograms of the
routes used, the relay's publish-latency histogram and the projections' own lag histogram
(`cloudnet_projection_apply_lag_seconds`: per batch applied, the age of its oldest event), as
quantiles of the bucket deltas (the bucket's upper bound: "≤ 25 ms"), and the projections' events
applied. Nothing is scraped while the commands run: sampling the lag gauge of every consumer twice
a second, as this benchmark did before the runtime had the histogram, loaded the machine it
measured.

Run: `.venv/bin/python -m benchmarks.visibility --rate 200 --seconds 60` (`--help` for every
option). It uses the mesh that is up in CLOUDNET_STATE_DIR, else starts one and stops it at the
end. The networks and subnets it creates stay in the mesh (events and read-model rows of tenants
named `vis-<run>-<n>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import resource
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import httpx
import orjson
import typer
import uvloop
from prometheus_client.parser import text_string_to_metric_families
from rich import box
from rich.console import Console
from rich.table import Table

from benchmarks.figures import TAIL_PERCENTILES, finite, ms, percentile
from benchmarks.mesh import (
    DEFAULT_STATE_DIR,
    BasePort,
    GatewayPort,
    Mesh,
    MeshOptions,
    PrometheusPort,
    StateDir,
    running_mesh,
)
from infra.launcher.services import service_specs

#: Subnets are /24s carved in order from a run's /16 networks.
SUBNETS_PER_NETWORK = 256
#: Past these the generator's own queueing shows in its figures, and the run says so.
LATE_SEND_MS, BUSY_GENERATOR = 20.0, 0.8
#: aiohttp's exceptions for a request that got no answer.
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)
#: Metric families read from the services' /metrics.
HTTP_DURATION = "cloudnet_http_request_duration_seconds"
RELAY_PUBLISH = "cloudnet_relay_publish_seconds"
PROJECTION_LAG = "cloudnet_projection_apply_lag_seconds"
PROJECTION_APPLIED = "cloudnet_projection_events_applied_total"
#: What is read before and after the run.
SERVER_FAMILIES = (HTTP_DURATION, RELAY_PUBLISH, PROJECTION_LAG, PROJECTION_APPLIED)
#: The routes this benchmark calls (route templates, as the services label them).
ROUTES_USED = (
    ("POST", "/v1/networks"),
    ("POST", "/v1/networks/{network_id}/subnets"),
    ("GET", "/v1/networks/{network_id}"),
    ("GET", "/v1/subnets/{subnet_id}"),
)


# -- Prometheus text format -------------------------------------------------------------------

#: One sample: metric name (with _bucket/_count suffix) and its labels, sorted.
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def parse_metrics(text: str, families: tuple[str, ...] | None = None) -> dict[SampleKey, float]:
    """The samples of a /metrics page by name and labels: every one, or those of `families`
    (parsing only their lines: the whole page costs ~10 ms of CPU)."""
    if families is not None:
        text = "\n".join(line for line in text.splitlines() if line.startswith(families))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def add_samples(pages: Iterable[Mapping[SampleKey, float]]) -> dict[SampleKey, float]:
    """Samples summed over processes (right for counters and histogram buckets)."""
    total: defaultdict[SampleKey, float] = defaultdict(float)
    for page in pages:
        for key, value in page.items():
            total[key] += value
    return dict(total)


@dataclass(frozen=True, slots=True)
class HistogramDelta:
    """A histogram's observations between two scrapes: cumulative counts by upper bound."""

    labels: dict[str, str]
    buckets: list[tuple[float, float]]

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket the q-quantile falls in (inf: above the last bound,
        NaN: no observations)."""
        if self.count <= 0:
            return math.nan
        target = q * self.count
        for bound, cumulative in self.buckets:
            if cumulative >= target:
                return bound
        return math.inf


def histogram_deltas(
    before: Mapping[SampleKey, float], after: Mapping[SampleKey, float], family: str
) -> list[HistogramDelta]:
    """`family`'s histograms (one per label set but `le`), as after minus before."""
    series: defaultdict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = defaultdict(list)
    for (name, labels), value in after.items():
        if name != f"{family}_bucket":
            continue
        bound = dict(labels)["le"]
        rest = tuple((k, v) for k, v in labels if k != "le")
        series[rest].append((float(bound), value - before.get((name, labels), 0.0)))
    return [
        HistogramDelta(dict(labels), sorted(buckets)) for labels, buckets in sorted(series.items())
    ]


def bound_text(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if math.isinf(seconds):
        return "> last"
    return f"≤ {ms(seconds)}"


class MetricsReader:
    """Reads the /metrics pages of the mesh's programs on their own ports."""

    def __init__(self, mesh: Mesh, client: httpx.AsyncClient) -> None:
        self.client = client
        self.ports = {
            spec.name: spec.metrics.port
            for spec in service_specs(mesh.layout)
            if spec.metrics is not None
        }

    def programs(self, *prefixes: str) -> list[str]:
        return sorted(name for name in self.ports if name.startswith(prefixes))

    async def read(
        self, programs: Iterable[str], families: tuple[str, ...]
    ) -> dict[str, dict[SampleKey, float]]:
        """Each program's samples of `families`; a program that does not answer is left out."""
        names = list(programs)
        pages = await asyncio.gather(*(self._page(name, families) for name in names))
        return {name: page for name, page in zip(names, pages, strict=True) if page is not None}

    async def _page(self, program: str, families: tuple[str, ...]) -> dict[SampleKey, float] | None:
        try:
            response = await self.client.get(f"http://127.0.0.1:{self.ports[program]}/metrics")
            response.raise_for_status()
        except httpx.HTTPError:
            return None
        return parse_metrics(response.text, families)


# -- the load ---------------------------------------------------------------------------------


@dataclass
class Recorder:
    """What the commands and the pollers saw, by resource kind ("networks", "subnets")."""

    sent: Counter[str] = field(default_factory=Counter)
    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    transport_errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    send_delays: list[float] = field(default_factory=list)
    lags: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    never_visible: Counter[str] = field(default_factory=Counter)
    #: Round trip of the GET that answered 200 (the part of the lag that is the read itself).
    final_gets: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    #: Probes whose first GET already answered 200 (their lag is one GET round trip).
    first_get_hits: Counter[str] = field(default_factory=Counter)
    not_probed: Counter[str] = field(default_factory=Counter)
    polls: int = 0
    poll_answers: Counter[str] = field(default_factory=Counter)
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    last_send: float = 0.0
    last_answer: float = 0.0


@dataclass(frozen=True, slots=True)
class VisibilityOptions:
    rate: float
    seconds: float
    tenants: int
    subnet_share: float
    poll: float
    give_up: float
    pollers: int
    connections: int


@dataclass
class Network:
    """A network this run created: its second octet and the next /24 to carve."""

    network_id: str
    octet: int
    next_subnet: int = 0


class Visibility:
    """Sends the commands on schedule and probes every 201 until it is readable."""

    def __init__(
        self,
        commands: aiohttp.ClientSession,
        pollers: aiohttp.ClientSession,
        tokens: list[str],
        options: VisibilityOptions,
    ) -> None:
        self.commands, self.pollers, self.options = commands, pollers, options
        self.headers = [
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            for token in tokens
        ]
        self.recorder = Recorder()
        self.slots = asyncio.Semaphore(options.pollers)
        self.networks: list[list[Network]] = [[] for _ in tokens]
        self.subnet_turn = [0 for _ in tokens]
        self.rng = random.Random(1)
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> float:
        """Send every command on schedule; answers when the last command was sent."""
        options = self.options
        total = round(options.rate * options.seconds)
        started = time.perf_counter()
        for number in range(total):
            scheduled = started + number / options.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.recorder.send_delays.append(time.perf_counter() - scheduled)
            self._spawn(self._command(number, scheduled))
        self.recorder.last_send = time.perf_counter()
        return started

    async def drain(self) -> None:
        """Wait for outstanding commands, then for their pollers."""
        timeout = 60 + self.options.give_up
        while self.tasks:
            done, _ = await asyncio.wait(set(self.tasks), timeout=timeout)
            if not done:
                break

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _plan(self, number: int) -> tuple[str, str, dict[str, str], int]:
        """(kind, path, body, tenant index) of command `number`."""
        tenant = number % len(self.headers)
        networks = self.networks[tenant]
        if networks and self.rng.random() < self.options.subnet_share:
            for _ in range(len(networks)):
                turn = self.subnet_turn[tenant] % len(networks)
                self.subnet_turn[tenant] += 1
                network = networks[turn]
                if network.next_subnet < SUBNETS_PER_NETWORK:
                    index = network.next_subnet
                    network.next_subnet += 1
                    body = {
                        "name": f"vis-sub-{number}",
                        "cidr": f"10.{network.octet}.{index}.0/24",
                    }
                    path = f"/v1/networks/{network.network_id}/subnets"
                    return "subnets", path, body, tenant
        body = {"name": f"vis-net-{number}", "cidr": f"10.{number % 256}.0.0/16"}
        return "networks", "/v1/networks", body, tenant

    async def _command(self, number: int, scheduled: float) -> None:
        kind, path, body, tenant = self._plan(number)
        recorder, headers = self.recorder, self.headers[tenant]
        recorder.sent[kind] += 1
        try:
            async with self.commands.post(path, data=orjson.dumps(body), headers=headers) as answer:
                status, content = answer.status, await answer.read()
                request_id = answer.headers.get("x-request-id")
        except TRANSPORT_ERRORS as error:
            recorder.transport_errors[(kind, type(error).__name__)] += 1
            return
        answered = time.perf_counter()
        recorder.last_answer = max(recorder.last_answer, answered)
        recorder.latencies[kind].append(answered - scheduled)
        recorder.statuses[kind][status] += 1
        if status >= 500 and len(recorder.server_errors) < 50:
            recorder.server_errors.append(
                {
                    "kind": kind,
                    "status": status,
                    "request_id": request_id,
                    "body": content[:300].decode(errors="replace"),
                }
            )
        if status != 201:
            return
        new_id = str(orjson.loads(content)["id"])
        if kind == "networks":
            self.networks[tenant].append(Network(new_id, int(body["cidr"].split(".")[1])))
        if self.slots.locked():
            recorder.not_probed[kind] += 1
            return
        self._spawn(self._probe(kind, f"/v1/{kind}/{new_id}", headers, answered))

    async def _probe(self, kind: str, path: str, headers: dict[str, str], answered: float) -> None:
        recorder, poll = self.recorder, self.options.poll
        async with self.slots:
            deadline = answered + self.options.give_up
            for attempt in itertools.count():
                recorder.polls += 1
                sent = time.perf_counter()
                try:
                    async with self.pollers.get(path, headers=headers) as answer:
                        await answer.read()
                        outcome = str(answer.status)
                except TRANSPORT_ERRORS as error:
                    outcome = type(error).__name__
                seen = time.perf_counter()
                recorder.poll_answers[outcome] += 1
                if outcome == "200":
                    recorder.lags[kind].append(seen - answered)
                    recorder.final_gets[kind].append(seen - sent)
                    if attempt == 0:
                        recorder.first_get_hits[kind] += 1
                    return
                if seen >= deadline:
                    recorder.never_visible[kind] += 1
                    return
                await asyncio.sleep(poll)


@dataclass
class Outcome:
    recorder: Recorder
    started: float
    before: dict[str, dict[SampleKey, float]]
    after: dict[str, dict[SampleKey, float]]
    #: The two scrapes summed over the programs, which every server-side figure is read from.
    before_total: dict[SampleKey, float] = field(init=False)
    after_total: dict[SampleKey, float] = field(init=False)

    def __post_init__(self) -> None:
        self.before_total = add_samples(self.before.values())
        self.after_total = add_samples(self.after.values())


async def measure(mesh: Mesh, tokens: list[str], options: VisibilityOptions) -> Outcome:
    """Scrape, run the commands and their pollers, scrape again."""
    async with contextlib.AsyncExitStack() as stack:
        commands = await _open(stack, mesh.gateway_url, options.connections)
        pollers = await _open(stack, mesh.gateway_url, options.pollers)
        scraper = await stack.enter_async_context(httpx.AsyncClient(timeout=10.0))
        reader = MetricsReader(mesh, scraper)
        everything = reader.programs("command-", "query-", "relay-", "projector-", "provisioner-")
        before = await reader.read(everything, SERVER_FAMILIES)
        visibility = Visibility(commands, pollers, tokens, options)
        started = await visibility.run()
        await visibility.drain()
        after = await reader.read(everything, SERVER_FAMILIES)
    return Outcome(visibility.recorder, started, before, after)


async def _open(
    stack: contextlib.AsyncExitStack, base_url: str, connections: int
) -> aiohttp.ClientSession:
    """One aiohttp session of at most `connections` keep-alive connections. aiohttp costs the
    generator about a third of httpx's CPU per request: with httpx the generator, not the mesh,
    fell behind at 200 commands/s and its queueing showed as lag."""
    return await stack.enter_async_context(
        aiohttp.ClientSession(
            base_url=base_url,
            connector=aiohttp.TCPConnector(limit=connections, ttl_dns_cache=None),
            timeout=aiohttp.ClientTimeout(total=30.0),
        )
    )


# -- the report -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    outcome: Outcome
    options: VisibilityOptions
    cpu_seconds: float

    @property
    def recorder(self) -> Recorder:
        return self.outcome.recorder

    @property
    def send_seconds(self) -> float:
        """From the first send to the last, plus one interval: the window the rate is over."""
        return self.recorder.last_send - self.outcome.started + 1 / self.options.rate

    def kinds(self) -> list[str]:
        recorder = self.recorder
        return sorted(recorder.sent.keys() | recorder.lags.keys() | recorder.never_visible.keys())

    def commands_table(self) -> Table:
        table = Table(box=box.SIMPLE_HEAD, title="Commands (latency from the scheduled send, ms)")
        columns = ("resource", "sent", "201", "other answers", "transport errors")
        for column in (*columns, *(f"p{p}" for p in TAIL_PERCENTILES), "max"):
            table.add_column(column, justify="left" if column == "resource" else "right")
        recorder = self.recorder
        for kind in self.kinds():
            samples = recorder.latencies[kind]
            table.add_row(
                kind,
                f"{recorder.sent[kind]:,}",
                f"{recorder.statuses[kind][201]:,}",
                _others(recorder.statuses[kind]),
                f"{sum(n for (k, _), n in recorder.transport_errors.items() if k == kind):,}",
                *(ms(percentile(samples, p)) for p in TAIL_PERCENTILES),
                ms(max(samples, default=math.nan)),
            )
        return table

    def lag_table(self) -> Table:
        table = Table(
            box=box.SIMPLE_HEAD,
            title="Visibility lag: 201 received → first plain GET 200 (ms, includes one GET)",
        )
        columns = (
            "resource",
            "samples",
            *(f"p{p}" for p in TAIL_PERCENTILES),
            "max",
            f"never in {self.options.give_up:g} s",
            "not probed",
            "200 at 1st GET",
            "that GET p50",
        )
        for column in columns:
            table.add_column(column, justify="left" if column == "resource" else "right")
        recorder = self.recorder
        for kind in self.kinds():
            samples = recorder.lags[kind]
            table.add_row(
                kind,
                f"{len(samples):,}",
                *(ms(percentile(samples, p)) for p in TAIL_PERCENTILES),
                ms(max(samples, default=math.nan)),
                f"{recorder.never_visible[kind]:,}",
                f"{recorder.not_probed[kind]:,}",
                _share(recorder.first_get_hits[kind], len(samples)),
                ms(percentile(recorder.final_gets[kind], 50)),
            )
        return table

    def server_histograms(self) -> list[tuple[str, HistogramDelta]]:
        before, after = self.outcome.before_total, self.outcome.after_total
        rows: list[tuple[str, HistogramDelta]] = []
        for delta in histogram_deltas(before, after, HTTP_DURATION):
            route = (delta.labels.get("method", ""), delta.labels.get("route", ""))
            if route in ROUTES_USED and delta.count > 0:
                rows.append((f"{route[0]} {route[1]} ({delta.labels.get('service')})", delta))
        for delta in histogram_deltas(before, after, RELAY_PUBLISH):
            rows.append(("relay: publish one batch until confirmed", delta))
        return rows

    def server_table(self) -> Table:
        table = Table(
            box=box.SIMPLE_HEAD,
            title="Server side over the run, from /metrics histogram deltas (bucket bound, ms)",
        )
        for column in ("histogram", "count", *(f"p{p}" for p in TAIL_PERCENTILES)):
            table.add_column(column, justify="left" if column == "histogram" else "right")
        for label, delta in self.server_histograms():
            table.add_row(
                label,
                f"{delta.count:,.0f}",
                *(bound_text(delta.quantile(p / 100)) for p in TAIL_PERCENTILES),
            )
        return table

    def applied(self) -> dict[str, float]:
        """Events each projection applied during the run (summed over its projectors)."""
        before, after = self.outcome.before_total, self.outcome.after_total
        return {
            dict(labels)["projection"]: value - before.get((name, labels), 0.0)
            for (name, labels), value in sorted(after.items())
            if name == PROJECTION_APPLIED
        }

    def projection_lags(self) -> dict[str, HistogramDelta]:
        """Per projection, its lag histogram over the run (summed over its projectors)."""
        before, after = self.outcome.before_total, self.outcome.after_total
        return {
            delta.labels["projection"]: delta
            for delta in histogram_deltas(before, after, PROJECTION_LAG)
            if delta.count > 0
        }

    def projections_table(self) -> Table:
        table = Table(
            box=box.SIMPLE_HEAD,
            title=(
                f"Projections: events applied, and {PROJECTION_LAG} over the run (per batch, "
                "the age of its oldest event when applied; bucket bound, ms)"
            ),
        )
        columns = ("projection", "applied", "batches", *(f"p{p}" for p in TAIL_PERCENTILES))
        for column in columns:
            table.add_column(column, justify="left" if column == "projection" else "right")
        applied, lags = self.applied(), self.projection_lags()
        for projection in sorted(applied.keys() | lags.keys()):
            lag = lags.get(projection)
            table.add_row(
                projection,
                f"{applied.get(projection, 0):,.0f}",
                f"{lag.count:,.0f}" if lag else "0",
                *(bound_text(lag.quantile(p / 100) if lag else math.nan) for p in TAIL_PERCENTILES),
            )
        return table

    def summary(self) -> dict[str, Any]:
        recorder = self.recorder
        statuses = sum(recorder.statuses.values(), Counter())
        answered = recorder.last_answer - self.outcome.started
        every_lag = [s for samples in recorder.lags.values() for s in samples]
        every_latency = [s for samples in recorder.latencies.values() for s in samples]
        projection_lags = self.projection_lags()
        return {
            "target_rate": self.options.rate,
            "seconds": self.options.seconds,
            "tenants": self.options.tenants,
            "sent": sum(recorder.sent.values()),
            "achieved_send_rate": sum(recorder.sent.values()) / self.send_seconds,
            "created_per_second": statuses[201] / answered if answered > 0 else math.nan,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "non_2xx": {str(k): v for k, v in sorted(statuses.items()) if not 200 <= k < 300},
            "transport_errors": {
                f"{kind}: {error}": n for (kind, error), n in recorder.transport_errors.items()
            },
            "server_errors": recorder.server_errors,
            "send_delay_ms": {
                "p99": percentile(recorder.send_delays, 99) * 1000,
                "max": max(recorder.send_delays, default=math.nan) * 1000,
            },
            "command_latency_ms": _quantiles(every_latency),
            "visibility_lag_ms": _quantiles(every_lag),
            "never_visible": sum(recorder.never_visible.values()),
            "not_probed": sum(recorder.not_probed.values()),
            "by_resource": {
                kind: {
                    "sent": recorder.sent[kind],
                    "created": recorder.statuses[kind][201],
                    "command_latency_ms": _quantiles(recorder.latencies[kind]),
                    "visibility_lag_ms": _quantiles(recorder.lags[kind]),
                    "never_visible": recorder.never_visible[kind],
                    "not_probed": recorder.not_probed[kind],
                    "visible_at_first_get": recorder.first_get_hits[kind],
                    "final_get_ms": _quantiles(recorder.final_gets[kind]),
                }
                for kind in self.kinds()
            },
            "poll_requests": recorder.polls,
            "poll_answers": dict(sorted(recorder.poll_answers.items())),
            "server_histograms_ms": {
                label: _histogram_quantiles(delta) for label, delta in self.server_histograms()
            },
            "projections": {
                projection: {
                    "applied": applied,
                    **_histogram_quantiles(projection_lags.get(projection)),
                }
                for projection, applied in self.applied().items()
            },
            "load_generator_cpu_share": self.cpu_seconds / self.send_seconds,
        }


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "-"


def _others(statuses: Counter[int]) -> str:
    others = [f"{n:,} x {status}" for status, n in sorted(statuses.items()) if status != 201]
    return ", ".join(others) or "0"


def _histogram_quantiles(delta: HistogramDelta | None) -> dict[str, float]:
    """A histogram's count and quantiles (bucket upper bounds, ms) for the JSON figures."""
    if delta is None:
        return {"count": 0}
    return {
        "count": delta.count,
        **{f"p{p}_le": delta.quantile(p / 100) * 1000 for p in TAIL_PERCENTILES},
    }


def _quantiles(samples: list[float]) -> dict[str, float]:
    return {
        **{f"p{p}": percentile(samples, p) * 1000 for p in TAIL_PERCENTILES},
        "max": max(samples, default=math.nan) * 1000,
    }


def main(
    rate: Annotated[float, typer.Option(help="Commands per second, open loop")] = 200,
    seconds: Annotated[float, typer.Option(help="How long commands are sent")] = 60,
    tenants: Annotated[int, typer.Option(help="Tenants the commands are spread over")] = 8,
    subnet_share: Annotated[
        float, typer.Option(help="Share of commands that create a subnet instead of a network")
    ] = 0.2,
    poll_ms: Annotated[float, typer.Option(help="Pause between a poller's GETs")] = 3,
    give_up: Annotated[
        float, typer.Option(help="Seconds after which a resource counts as never visible")
    ] = 10,
    pollers: Annotated[int, typer.Option(help="Pollers (and their connections) at once")] = 128,
    connections: Annotated[int, typer.Option(help="Connections for the commands at most")] = 256,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    base_port: BasePort = 24000,
    gateway_port: GatewayPort = 24126,
    prometheus_port: PrometheusPort = 24127,
    json_out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON")] = None,
) -> None:
    """Send commands at a steady rate and measure how long each takes to become readable."""
    if rate <= 0 or seconds <= 0:
        raise typer.BadParameter("--rate and --seconds must be positive")
    console = Console(width=140)
    options = VisibilityOptions(
        rate, seconds, tenants, subnet_share, poll_ms / 1000, give_up, pollers, connections
    )
    mesh_options = MeshOptions(state_dir, base_port, gateway_port, prometheus_port)
    with running_mesh(mesh_options, console.print) as mesh:
        run = uuid.uuid4().hex[:8]
        tokens = [mesh.token(f"vis-{run}-{n}") for n in range(tenants)]
        console.print(
            f"{rate:g} commands/s for {seconds:g} s over {tenants} tenants against "
            f"{mesh.gateway_url} (gateway limit {mesh.rate_limit:,} r/s per client); "
            f"{subnet_share:.0%} subnets; polls every {poll_ms:g} ms, {pollers} pollers at most"
        )
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        outcome = uvloop.run(measure(mesh, tokens, options))
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    report = Report(outcome, options, cpu)
    console.print(
        report.commands_table(),
        report.lag_table(),
        report.server_table(),
        report.projections_table(),
    )
    summary = report.summary()
    lag, latency = summary["visibility_lag_ms"], summary["command_latency_ms"]
    console.print(
        f"{summary['sent']:,} commands sent at {summary['achieved_send_rate']:,.1f}/s "
        f"(target {rate:g}/s; send delay p99 {summary['send_delay_ms']['p99']:.1f} ms), "
        f"{summary['statuses'].get('201', 0):,} x 201 = {summary['created_per_second']:,.1f}/s, "
        f"non-2xx {summary['non_2xx'] or 0}, transport errors "
        f"{sum(summary['transport_errors'].values())}; command latency p50/p95/p99 "
        f"{latency['p50']:,.0f}/{latency['p95']:,.0f}/{latency['p99']:,.0f} ms; visibility lag "
        f"p50/p95/p99/max {lag['p50']:,.0f}/{lag['p95']:,.0f}/{lag['p99']:,.0f}/"
        f"{lag['max']:,.0f} ms; never visible in {give_up:g} s: {summary['never_visible']}, "
        f"not probed: {summary['not_probed']}; {summary['poll_requests']:,} poll GETs; "
        f"load generator used {summary['load_generator_cpu_share']:.0%} of a core"
    )
    late = summary["send_delay_ms"]["p99"]
    if late > LATE_SEND_MS or summary["load_generator_cpu_share"] > BUSY_GENERATOR:
        console.print(
            f"[yellow]the load generator was behind its schedule (send delay p99 {late:,.0f} ms, "
            f"{summary['load_generator_cpu_share']:.0%} of a core): the client-side latencies and "
            "lags include its own queueing; compare them with the server-side histograms"
        )
    if summary["not_probed"]:
        console.print(
            f"[yellow]{summary['not_probed']:,} 201s came while all {pollers} pollers were busy "
            "and were not probed: the lag figures leave those moments out (raise --pollers)"
        )
    for error in report.recorder.server_errors[:10]:
        console.print(
            f"  5xx {error['kind']}: {error['status']} {error['request_id']} {error['body']}"
        )
    if json_out is not None:
        json_out.write_text(json.dumps(finite(summary), indent=2))


if __name__ == "__main__":
    typer.run(main)
