"""Through the gateway (issue 10): wrk with 64 connections against four endpoints of a mesh, each
next to the same endpoint of a minimal FastAPI app (benchmarks/baseline_app.py, one INSERT per
POST, one SELECT per GET) behind an nginx rendered from the same template, in the same run.

Scenarios: POST /v1/networks, POST /v1/instances (rotating over each tenant's /16 subnets so
launches neither exhaust a subnet nor all race on one), GET /v1/instances/{id}, GET
/v1/instances?limit=50. Each scenario runs in rounds, the sides alternating in ABBA order within it
and from one scenario to the next: this machine's speed drifts within a minute, and one pair of
runs per scenario gave creates 0.49x and then 0.65x on the same code in two `make bench` runs half
an hour apart (docs/BENCHMARKS.md, eleventh session). The figures are each side's rounds pooled,
with the per-round ratios' median and range beside them.
After each cloudnet write round the run waits until the read models and the provisioner caught
up (the time is printed) so the backlog does not slow the next measurement. Memory (RSS and PSS,
from /proc) of every process is taken idle and at its peak under load.

Run: `make bench-gateway`, or `.venv/bin/python -m benchmarks.gateway --help`.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from benchmarks.baseline_stack import BaselinePorts, BaselineStack, baseline_stack
from benchmarks.figures import mib, ms, ratio
from benchmarks.memory import MemorySampler
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
from benchmarks.seeding import Seeded, catch_up, seed, write_lines
from benchmarks.wrk_driver import WrkResult, raise_open_files_limit, run_wrk

#: supervisord programs that are part of the service path (exporters and Prometheus are not).
MESH_PROGRAMS = ("command", "query", "relay", "projector", "provisioner", "nginx", "postgres")
MESH_PROGRAMS_EXTRA = ("rabbitmq",)


@dataclass(frozen=True, slots=True)
class Scenario:
    title: str
    script: str
    #: Which ids the cloudnet lines carry: instances, subnets, or none.
    ids: str
    writes: bool


SCENARIOS = (
    Scenario("POST /v1/networks", "post_networks", "none", writes=True),
    Scenario("POST /v1/instances", "post_instances", "subnets", writes=True),
    Scenario("GET /v1/instances/{id}", "get_instance", "instances", writes=False),
    Scenario("GET /v1/instances?limit=50", "list_instances", "none", writes=False),
)


def pooled(rounds: list[WrkResult]) -> WrkResult:
    """One side's rounds as one run: their answers over their seconds; the latency percentiles
    are the median round's (wrk reports percentiles, which do not add up)."""
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    for result in rounds:
        statuses.update(result.statuses)
        errors.update(result.errors)
    return WrkResult(
        seconds=sum(result.seconds for result in rounds),
        requests=sum(result.requests for result in rounds),
        latency={
            key: statistics.median(result.latency[key] for result in rounds)
            for key in rounds[0].latency
        },
        statuses=dict(statuses),
        errors=dict(errors),
    )


@dataclass
class Sides:
    """Per scenario and side, the wrk figures of each round; and how long the write backlogs
    took to drain, all rounds together."""

    rounds: dict[tuple[str, str], list[WrkResult]] = field(default_factory=dict)
    drained: dict[str, float] = field(default_factory=dict)

    def add(self, title: str, side: str, result: WrkResult) -> None:
        self.rounds.setdefault((title, side), []).append(result)

    def result(self, title: str, side: str) -> WrkResult:
        return pooled(self.rounds[(title, side)])

    def round_ratios(self, title: str) -> list[float]:
        """cloudnet's 2xx rate over the baseline's, round by round (rounds where the baseline
        answered no 2xx at all are left out: they have no ratio)."""
        pairs = zip(self.rounds[(title, "cloudnet")], self.rounds[(title, "baseline")], strict=True)
        return [
            ours.ok_per_second / base.ok_per_second for ours, base in pairs if base.ok_per_second
        ]

    def until_done(self, title: str) -> float:
        """cloudnet's 2xx answers per second of its runs and of their backlogs' drains."""
        result = self.result(title, "cloudnet")
        return result.ok_per_second * result.seconds / (result.seconds + self.drained[title])


class DataFiles:
    """The token<TAB>id files wrk reads, per side and scenario."""

    def __init__(self, directory: Path, seeded: Seeded, baseline: BaselineStack) -> None:
        self.directory, self.seeded, self.baseline = directory, seeded, baseline

    def path(self, side: str, scenario: Scenario) -> Path:
        tokens = self.seeded.tokens
        if scenario.ids == "none":
            lines = [(token, "") for token in tokens]
        elif side == "cloudnet":
            lines = self.seeded.lines(scenario.ids)
        elif scenario.ids == "instances":
            ids = self.baseline.instance_ids
            lines = [(tokens[n % len(tokens)], i) for n, i in enumerate(ids)]
        else:  # the baseline keeps no subnets: any id will do
            count = len(self.seeded.lines("subnets"))
            lines = [(tokens[n % len(tokens)], str(uuid.uuid4())) for n in range(count)]
        return write_lines(self.directory / f"{side}-{scenario.script}.tsv", lines)


def mesh_pids(mesh: Mesh) -> dict[str, int]:
    wanted = MESH_PROGRAMS + MESH_PROGRAMS_EXTRA
    return {
        name: pid
        for name, pid in mesh.program_pids().items()
        if name.rstrip("-0123456789") in wanted
    }


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    seconds: float
    rounds: int
    warmup: float
    connections: int
    tenants: int
    subnets: int
    instances: int


def measure(
    mesh: Mesh, options: GatewayOptions, ports: BaselinePorts, console: Console
) -> tuple[Sides, MemorySampler, MemorySampler]:
    console.print("seeding tenants, subnets and instances through the gateway ...")
    seeded = asyncio.run(seed(mesh, options.tenants, options.subnets, options.instances))
    sides = Sides()
    total_instances = options.tenants * options.instances
    with (
        baseline_stack(mesh.database_url, ports, mesh.rate_limit, total_instances) as baseline,
        tempfile.TemporaryDirectory(prefix="cloudnet-bench-wrk-") as scratch,
    ):
        files = DataFiles(Path(scratch), seeded, baseline)
        samplers = {
            "cloudnet": MemorySampler(lambda: mesh_pids(mesh)),
            "baseline": MemorySampler(baseline.program_pids),
        }
        urls = {"cloudnet": mesh.gateway_url, "baseline": baseline.url}
        for sampler in samplers.values():
            sampler.measure_idle()
        for number, scenario in enumerate(SCENARIOS):
            data = {side: files.path(side, scenario) for side in urls}
            for side in urls:
                if options.warmup:
                    run_wrk(
                        urls[side],
                        scenario.script,
                        data[side],
                        connections=options.connections,
                        seconds=options.warmup,
                    )
                    if side == "cloudnet" and scenario.writes:  # no backlog into a timed round
                        asyncio.run(catch_up(mesh, seeded.tokens))
            for round_number in range(options.rounds):
                # ABBA: each side goes first in every other round, and the next scenario
                # starts with the side this one ended with.
                first_is_baseline = (number + round_number) % 2 == 0
                order = ("baseline", "cloudnet") if first_is_baseline else ("cloudnet", "baseline")
                for side in order:
                    with samplers[side].sampling():
                        result = run_wrk(
                            urls[side],
                            scenario.script,
                            data[side],
                            connections=options.connections,
                            seconds=options.seconds,
                        )
                    sides.add(scenario.title, side, result)
                    console.print(
                        f"  {scenario.title:<28} {side:<8} round {round_number + 1} "
                        f"{result.ok_per_second:8,.0f} ok/s  p99 {ms(result.latency['p99'])} ms  "
                        f"non-2xx {result.unexpected or 0}  socket errors {result.socket_errors}"
                    )
                    if side == "cloudnet" and scenario.writes:
                        drained = asyncio.run(catch_up(mesh, seeded.tokens))
                        sides.drained[scenario.title] = (
                            sides.drained.get(scenario.title, 0.0) + drained
                        )
                        console.print(f"  (cloudnet backlog drained {drained:.1f} s after it)")
            if scenario.writes:
                # What the runs asked for is done only when their backlog is: a launch's boot
                # comes after it, and a provisioner that falls behind during a run defers
                # work past it rather than saving any.
                console.print(
                    f"  {scenario.title}: cloudnet {sides.until_done(scenario.title):,.0f} "
                    "ok/s until all was done"
                )
    return sides, samplers["cloudnet"], samplers["baseline"]


#: The columns whose cells must stay on one line.
UNWRAPPED = ("scenario", "rounds: median, range")


def throughput_table(sides: Sides, options: GatewayOptions) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"Through the gateway: wrk, {options.connections} connections, {options.rounds} "
        f"rounds of {options.seconds:g} s per side (rates: the rounds pooled; latency in ms: the "
        "median round's)",
    )
    columns = (
        "scenario",
        "cloudnet/s",
        "baseline/s",
        "ratio",
        "rounds: median, range",
        "cloudnet p50",
        "p99",
        "baseline p50",
        "p99",
        "p99 ratio",
        "cloudnet non-2xx",
        "baseline non-2xx",
    )
    for column in columns:
        table.add_column(
            column, justify="left" if column == "scenario" else "right", no_wrap=column in UNWRAPPED
        )
    for scenario in SCENARIOS:
        ours = sides.result(scenario.title, "cloudnet")
        base = sides.result(scenario.title, "baseline")
        per_round = sides.round_ratios(scenario.title)
        table.add_row(
            scenario.title,
            f"{ours.ok_per_second:,.0f}",
            f"{base.ok_per_second:,.0f}",
            ratio(ours.ok_per_second, base.ok_per_second),
            _median_and_range(per_round),
            ms(ours.latency["p50"]),
            ms(ours.latency["p99"]),
            ms(base.latency["p50"]),
            ms(base.latency["p99"]),
            ratio(ours.latency["p99"], base.latency["p99"]),
            _bad(ours),
            _bad(base),
        )
    return table


def _median_and_range(ratios: list[float]) -> str:
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f}, {min(ratios):.2f}-{max(ratios):.2f}"


def _bad(result: WrkResult) -> str:
    parts = [f"{status}: {n}" for status, n in result.unexpected.items()]
    if result.socket_errors:
        parts.append(f"socket: {result.socket_errors}")
    return " ".join(parts) or "0"


def memory_table(cloudnet: MemorySampler, baseline: MemorySampler) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Memory per program (MiB; trees: master + workers)")
    for column in ("program", "RSS idle", "RSS under load", "PSS idle", "PSS under load"):
        table.add_column(column, justify="left" if column == "program" else "right")
    for sampler in (cloudnet, baseline):
        footprint = sampler.footprint
        for name in sorted(footprint.idle):
            idle, peak = footprint.idle[name], footprint.peak.get(name, footprint.idle[name])
            table.add_row(name, mib(idle.rss), mib(peak.rss), mib(idle.pss), mib(peak.pss))
        table.add_section()
    return table


def as_json(sides: Sides, cloudnet: MemorySampler, baseline: MemorySampler) -> dict[str, Any]:
    return {
        "scenarios": {
            f"{title} ({side})": {
                **sides.result(title, side).as_dict(),
                "rounds": [result.as_dict() for result in rounds],
            }
            for (title, side), rounds in sides.rounds.items()
        },
        "round_ratios": {
            title: sides.round_ratios(title)
            for title in dict.fromkeys(title for title, _ in sides.rounds)
        },
        "backlog_drained_seconds": sides.drained,
        "ok_per_second_until_done": {title: sides.until_done(title) for title in sides.drained},
        "memory_mib": {
            name: {
                "idle_rss": idle.rss / 2**20,
                "load_rss": sampler.footprint.peak.get(name, idle).rss / 2**20,
            }
            for sampler in (cloudnet, baseline)
            for name, idle in sampler.footprint.idle.items()
        },
    }


def main(
    seconds: Annotated[float, typer.Option(help="Timed seconds per round, scenario and side")] = 10,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds per scenario (ABBA order)")] = 3,
    warmup: Annotated[
        float, typer.Option(help="Untimed seconds per scenario and side, before its rounds")
    ] = 2,
    connections: Annotated[int, typer.Option(help="wrk connections")] = 64,
    tenants: Annotated[int, typer.Option(help="Tenants the requests rotate over")] = 8,
    subnets: Annotated[int, typer.Option(help="/16 subnets per tenant (for launches)")] = 8,
    instances: Annotated[int, typer.Option(help="Instances per tenant to read back")] = 100,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    base_port: BasePort = 24000,
    gateway_port: GatewayPort = 24126,
    prometheus_port: PrometheusPort = 24127,
    baseline_port: Annotated[
        int, typer.Option(help="Baseline nginx; +4: the app; +8 status")
    ] = 24220,
    json_out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON")] = None,
) -> None:
    """cloudnet's gateway next to a minimal FastAPI app behind the same nginx, same run."""
    console = Console(width=170)
    open_files = raise_open_files_limit()
    options = GatewayOptions(seconds, rounds, warmup, connections, tenants, subnets, instances)
    ports = BaselinePorts(gateway=baseline_port, app=baseline_port + 4, base=baseline_port + 4)
    mesh_options = MeshOptions(state_dir, base_port, gateway_port, prometheus_port)
    with running_mesh(mesh_options, console.print) as mesh:
        console.print(
            f"gateway {mesh.gateway_url} (limit {mesh.rate_limit:,} r/s per client), baseline "
            f"http://127.0.0.1:{baseline_port}; open files {open_files}"
        )
        sides, ours, base = measure(mesh, options, ports, console)
    console.print(throughput_table(sides, options), memory_table(ours, base))
    if json_out is not None:
        json_out.write_text(json.dumps(as_json(sides, ours, base), indent=2))


if __name__ == "__main__":
    typer.run(main)
