"""10,000 concurrent connections at the gateway (issues 8 and 10): wrk holds `--connections`
keep-alive connections to GET /v1/instances/{id} (rotating over tenants' instances) for
`--seconds`, against the mesh's gateway and then against the baseline app behind an nginx
rendered from the same template.

Printed per side: answers/s, latency percentiles of the answered requests, wrk's socket errors
(connect, read, write, timeout: no answer within `--timeout`), answers by status, the most
connections nginx held at once (stub_status), the kernel's listen-queue overflows during the run,
and what nginx wrote to its error log, grouped by message.

With N connections and one request in flight on each, latency is N / throughput (Little's law):
at 10,000 connections and ~1,000 answers/s a request waits ~10 s, so `--timeout` (wrk's, default
here 20 s: under nginx's 30 s proxy_read_timeout) decides whether slow answers count as errors.

Run: `make bench-connections` (it raises `ulimit -n`), or
`.venv/bin/python -m benchmarks.connections --help`.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from benchmarks.baseline_stack import BaselinePorts, baseline_stack
from benchmarks.figures import ms
from benchmarks.mesh import (
    DEFAULT_STATE_DIR,
    BasePort,
    GatewayPort,
    MeshOptions,
    PrometheusPort,
    StateDir,
    running_mesh,
)
from benchmarks.seeding import seed, write_lines
from benchmarks.wrk_driver import WrkResult, raise_open_files_limit, run_wrk

NETSTAT = Path("/proc/net/netstat")
#: An nginx error-log line: "2026/01/01 00:00:00 [error] 12#12: *345 <message>, client: ..."
_LOG_LINE = re.compile(r"\[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*?)(?:, client: .*)?$")


def listen_counters() -> Counter[str]:
    """The kernel's TcpExt ListenOverflows and ListenDrops (machine-wide)."""
    lines = NETSTAT.read_text().splitlines()
    counters: Counter[str] = Counter()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            pairs = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            for key in ("ListenOverflows", "ListenDrops"):
                counters[key] = int(pairs.get(key, 0))
    return counters


class ActiveConnections:
    """The peak of nginx's `Active connections` (stub_status) while the block runs."""

    def __init__(self, status_url: str) -> None:
        self.status_url, self.peak = status_url, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self.stop.wait(0.5):
                try:
                    text = client.get(self.status_url).text
                except httpx.HTTPError:
                    continue
                found = re.search(r"Active connections:\s*(\d+)", text)
                if found:
                    self.peak = max(self.peak, int(found.group(1)))

    def __enter__(self) -> ActiveConnections:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def new_log_lines(path: Path, offset: int) -> Counter[str]:
    """What nginx logged after `offset`, as "[level] message" (ids and client details cut)."""
    grouped: Counter[str] = Counter()
    if not path.exists():
        return grouped
    with path.open("rb") as log:
        # supervisord rotates the log at 50 MB: a shorter file is a new one, read from its start.
        log.seek(offset if path.stat().st_size >= offset else 0)
        for raw in log:
            match = _LOG_LINE.search(raw.decode(errors="replace").strip())
            if match:
                message = re.sub(r"\d+\.\d+\.\d+\.\d+:\d+", "<addr>", match.group(2))
                grouped[f"[{match.group(1)}] {message[:120]}"] += 1
    return grouped


@dataclass(frozen=True, slots=True)
class SideFigures:
    result: WrkResult
    peak_connections: int
    listen: Counter[str]
    log: Counter[str]


def run_side(
    url: str,
    status_url: str,
    log: Path,
    data: Path,
    connections: int,
    seconds: float,
    timeout: float,
) -> SideFigures:
    offset = log.stat().st_size if log.exists() else 0
    before = listen_counters()
    with ActiveConnections(status_url) as active:
        result = run_wrk(
            url,
            "get_instance",
            data,
            connections=connections,
            seconds=seconds,
            timeout_seconds=timeout,
        )
    listen = listen_counters()
    listen.subtract(before)
    return SideFigures(result, active.peak, listen, new_log_lines(log, offset))


def table(figures: dict[str, SideFigures], connections: int) -> Table:
    out = Table(
        box=box.SIMPLE_HEAD,
        title=f"{connections:,} connections, GET /v1/instances/{{id}} (latency in ms)",
    )
    for column in (
        "side",
        "answers/s",
        "p50",
        "p90",
        "p99",
        "max",
        "connect",
        "read",
        "write",
        "timeout",
        "non-2xx",
        "nginx active peak",
        "listen overflows",
    ):
        out.add_column(column, justify="left" if column == "side" else "right")
    for side, f in figures.items():
        r = f.result
        out.add_row(
            side,
            f"{r.ok_per_second:,.0f}",
            *(ms(r.latency[p]) for p in ("p50", "p90", "p99", "max")),
            *(f"{r.errors[k]:,}" for k in ("connect", "read", "write", "timeout")),
            " ".join(f"{s}: {n:,}" for s, n in r.unexpected.items()) or "0",
            f"{f.peak_connections:,}",
            f"{f.listen['ListenOverflows']:,}",
        )
    return out


def main(
    connections: Annotated[int, typer.Option(help="Concurrent wrk connections")] = 10_000,
    seconds: Annotated[float, typer.Option(help="Seconds per side")] = 15,
    timeout: Annotated[float, typer.Option(help="wrk's per-request timeout (s)")] = 20,
    tenants: Annotated[int, typer.Option(help="Tenants the requests rotate over")] = 4,
    instances: Annotated[int, typer.Option(help="Instances per tenant")] = 50,
    baseline: Annotated[bool, typer.Option(help="Also run the baseline app")] = True,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    base_port: BasePort = 24000,
    gateway_port: GatewayPort = 24126,
    prometheus_port: PrometheusPort = 24127,
    baseline_port: Annotated[int, typer.Option(help="Baseline nginx; +4: the app")] = 24220,
    json_out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON")] = None,
) -> None:
    """Hold many connections open at the gateway and report what broke."""
    console = Console(width=170)
    open_files = raise_open_files_limit()
    if open_files < connections + 1024:
        console.print(f"[yellow]open-file limit {open_files} is low for {connections} connections")
    ports = BaselinePorts(gateway=baseline_port, app=baseline_port + 4, base=baseline_port + 4)
    figures: dict[str, SideFigures] = {}
    with (
        running_mesh(MeshOptions(state_dir, base_port, gateway_port, prometheus_port)) as mesh,
        tempfile.TemporaryDirectory(prefix="cloudnet-bench-conn-") as scratch,
    ):
        seeded = asyncio.run(seed(mesh, tenants, 1, instances))
        data = write_lines(Path(scratch) / "cloudnet.tsv", seeded.lines("instances"))
        console.print(f"cloudnet gateway {mesh.gateway_url}: {connections:,} connections ...")
        figures["cloudnet"] = run_side(
            mesh.gateway_url,
            f"http://127.0.0.1:{mesh.layout.ports.nginx_status}/stub_status",
            mesh.layout.paths.log("nginx"),
            data,
            connections,
            seconds,
            timeout,
        )
        if baseline:
            with baseline_stack(mesh.database_url, ports, mesh.rate_limit, 4 * instances) as stack:
                tokens = seeded.tokens
                lines = [(tokens[n % len(tokens)], i) for n, i in enumerate(stack.instance_ids)]
                base_data = write_lines(Path(scratch) / "baseline.tsv", lines)
                console.print(f"baseline {stack.url}: {connections:,} connections ...")
                figures["baseline"] = run_side(
                    stack.url,
                    stack.status_url,
                    stack.nginx_log,
                    base_data,
                    connections,
                    seconds,
                    timeout,
                )
    console.print(
        f"wrk: 2 threads, --timeout {timeout:g}s, open files {open_files}; gateway limit "
        f"{mesh.rate_limit:,} r/s per client"
    )
    console.print(table(figures, connections))
    for side, f in figures.items():
        console.print(f"nginx error log during the {side} run ({sum(f.log.values()):,} lines):")
        for message, count in f.log.most_common(8):
            console.print(f"  {count:>7,}  {message}")
    if json_out is not None:
        sides = {side: f.result.as_dict() for side, f in figures.items()}
        json_out.write_text(json.dumps({"connections": connections, "sides": sides}, indent=2))


if __name__ == "__main__":
    typer.run(main)
