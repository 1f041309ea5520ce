"""Pipeline throughput: append to the mesh's event store as fast as it takes for N seconds, and
measure how fast the relay and every projection follow, how far behind they are when the appends
stop, and how long they take to catch up.

Writers (`--writers`, each with its own pooled connection) append straight to the mesh's
PostgreSQL event store with `EventStore.append_many`, one transaction after the other, for
`--seconds`. Each transaction creates `--networks-per-txn` new networks, each one a new
`network-<uuid>` stream with a valid `NetworkCreated` (built from the event contracts, with the
metadata the command service writes: tenant, actor, correlation and causation ids), and with
`--subnets` (the default) also a `SubnetAttached` on that stream and a `SubnetCreated` on a new
`subnet-<uuid>` stream, as the command service appends a new subnet: 3 events per network, which
the networks and subnets read models apply (the instances model and the provisioner only move
their checkpoints past them). Tenants rotate over `--tenants`.

Meanwhile, every `--sample-every` seconds, one separate connection (autocommit: it never holds a
snapshot open, which would hold back every commit-order reader) reads the store's head
(`max(position)`), every live projection's checkpoint (`projection_checkpoints` rows that are the
live version of a read model in `projection_views`, plus the process managers' rows, such as the
provisioner's) and the relay's (`relay_checkpoints`). A checkpoint is (transaction id, position)
in commit order: the position alone is not commit order, so

- lag in events while running is head minus checkpoint position (positions are dense identities, so
  this is off by at most the events of the transactions in flight);
- the lag when the appends stop is exact: the events after the checkpoint in commit order
  (`count(*)` over the commit-order index);
- "caught up" means the checkpoint reached the commit-order head as it was when the appends
  stopped (the last committed event, ordered by transaction id and position);
- rates are position deltas over time: "while appending" from the start until the last writer
  returned; "until caught up" from the start until that stage caught up, the rate it sustained;
  "backlog drained at" is the lag at the stop over the time it took to catch up (with no
  writers competing for the CPU and the database any more).
  A stage that keeps up shows the append rate: its capacity is higher, and only a faster
  append (`--writers`, `--networks-per-txn`) would show it.

Before the run it waits until every stage has caught up with the existing head, so that a
backlog from earlier traffic is not counted. A projection halted at a dead letter would never
catch up; it is reported and left out of the waits.

Run: `.venv/bin/python -m benchmarks.pipeline --seconds 60` (`--help` for every option). It uses
the mesh that is up in CLOUDNET_STATE_DIR, else starts one and stops it at the end. The events it
appends stay in the store (it is an event store: nothing is ever deleted), and so do the read
models' rows for them (networks and subnets of tenants named `pipeline-<run>-<n>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import resource
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import typer
import uvloop
from rich import box
from rich.console import Console
from rich.table import Table

from benchmarks.figures import TAIL_PERCENTILES, finite, ms, percentile
from benchmarks.mesh import (
    DEFAULT_STATE_DIR,
    BasePort,
    GatewayPort,
    MeshOptions,
    PrometheusPort,
    StateDir,
    running_mesh,
)
from events import EventStore, ExpectedVersion, NewEvent
from events.contracts import NetworkCreated, SubnetAttached, SubnetCreated, to_new_event

#: How often the catch-up waits look at the checkpoints.
WAIT_POLL_SECONDS = 0.1

#: A checkpoint as (transaction id, position): tuples compare in commit order.
Position = tuple[int, int]

_HEAD = "SELECT coalesce(max(position), 0) FROM events"
_COMMIT_ORDER_HEAD = """
SELECT transaction_id::text::bigint AS transaction_id, position FROM events
ORDER BY transaction_id DESC, position DESC LIMIT 1
"""
_BEHIND = """
SELECT count(*) FROM events
WHERE (transaction_id, position) > ($1::bigint::text::xid8, $2::bigint)
"""
_PROJECTIONS = "SELECT projection, transaction_id, position, halted_at FROM projection_checkpoints"
_VIEWS = "SELECT name, projection FROM projection_views"
_RELAYS = "SELECT relay, transaction_id, position FROM relay_checkpoints"


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    seconds: float
    writers: int
    networks_per_txn: int
    subnets: bool
    tenants: int
    sample_every: float
    catch_up_timeout: float

    @property
    def events_per_txn(self) -> int:
        return self.networks_per_txn * (3 if self.subnets else 1)


# -- the stages' checkpoints --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The store's head and every stage's checkpoint at one moment."""

    at: float
    head: int
    stages: dict[str, Position]


def at(snapshot: Snapshot, stage: str) -> Position:
    """A stage's checkpoint in a snapshot; (0, 0) before a relay first saved one."""
    return snapshot.stages.get(stage, (0, 0))


class Checkpoints:
    """Reads the head and the checkpoints of the stages that follow the store."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        #: Stage names: "relay <name>" and the projections' checkpoint keys.
        self.stages: list[str] = []
        self.halted: list[str] = []

    async def discover(self) -> None:
        """The relays, the live version of each read model and the process managers."""
        views = {row["name"]: row["projection"] for row in await self.connection.fetch(_VIEWS)}
        relays = [f"relay {row['relay']}" for row in await self.connection.fetch(_RELAYS)]
        projections = []
        for row in await self.connection.fetch(_PROJECTIONS):
            key = str(row["projection"])
            live = key in views.values() or key.rsplit("_v", 1)[0] not in views
            if not live:
                continue
            if row["halted_at"] is not None:
                self.halted.append(key)
            else:
                projections.append(key)
        self.stages = sorted(relays) + sorted(projections)

    async def snapshot(self) -> Snapshot:
        connection = self.connection
        head = int(await connection.fetchval(_HEAD))
        positions: dict[str, Position] = {}
        for row in await connection.fetch(_RELAYS):
            positions[f"relay {row['relay']}"] = (row["transaction_id"], row["position"])
            if f"relay {row['relay']}" not in self.stages:  # its first publish since migration
                self.stages.insert(0, f"relay {row['relay']}")
        for row in await connection.fetch(_PROJECTIONS):
            positions[str(row["projection"])] = (row["transaction_id"], row["position"])
        stages = {stage: positions.get(stage, (0, 0)) for stage in self.stages}
        return Snapshot(time.perf_counter(), head, stages)

    async def commit_order_head(self) -> Position:
        row = await self.connection.fetchrow(_COMMIT_ORDER_HEAD)
        return (0, 0) if row is None else (int(row["transaction_id"]), int(row["position"]))

    async def behind(self, checkpoint: Position) -> int:
        """Events after `checkpoint` in commit order."""
        return int(await self.connection.fetchval(_BEHIND, *checkpoint))

    async def wait_caught_up(
        self, target: Position, limit: float, samples: list[Snapshot] | None = None
    ) -> dict[str, float | None]:
        """Seconds until each stage's checkpoint reached `target` (None: not within `limit` s),
        appending the snapshots taken meanwhile to `samples`."""
        started = time.perf_counter()
        caught: dict[str, float | None] = {}
        while True:
            snapshot = await self.snapshot()
            if samples is not None:
                samples.append(snapshot)
            for stage, checkpoint in snapshot.stages.items():
                if stage not in caught and checkpoint >= target:
                    caught[stage] = snapshot.at - started
            if len(caught) == len(self.stages) or snapshot.at - started > limit:
                return {stage: caught.get(stage) for stage in self.stages}
            await asyncio.sleep(WAIT_POLL_SECONDS)


async def sample(
    checkpoints: Checkpoints, samples: list[Snapshot], every: float, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        samples.append(await checkpoints.snapshot())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


# -- the writers ----------------------------------------------------------------------------------


@dataclass
class Appended:
    events: int = 0
    transactions: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def transaction(
    tenant: str, serial: int, networks: int, subnets: bool
) -> list[tuple[str, list[NewEvent], ExpectedVersion | int]]:
    """New networks (and a subnet in each), as the command service would append them."""
    appends: list[tuple[str, list[NewEvent], ExpectedVersion | int]] = []
    for index in range(networks):
        correlation = str(uuid.uuid4())
        metadata = {
            "tenant_id": tenant,
            "actor": "benchmark",
            "correlation_id": correlation,
            "causation_id": correlation,
        }
        number = serial * networks + index
        network_id, octet = uuid.uuid4(), number % 256
        cidr = f"10.{octet}.0.0/16"
        network = [NetworkCreated(network_id=network_id, name=f"pipe-{number}", cidr=cidr)]
        if not subnets:
            appends.append(
                (
                    f"network-{network_id}",
                    [to_new_event(e, metadata) for e in network],
                    ExpectedVersion.NO_STREAM,
                )
            )
            continue
        subnet_id, subnet_cidr = uuid.uuid4(), f"10.{octet}.0.0/24"
        attached = SubnetAttached(network_id=network_id, subnet_id=subnet_id, cidr=subnet_cidr)
        created = SubnetCreated(
            subnet_id=subnet_id, network_id=network_id, name=f"pipe-{number}", cidr=subnet_cidr
        )
        appends.append(
            (
                f"network-{network_id}",
                [to_new_event(e, metadata) for e in (*network, attached)],
                ExpectedVersion.NO_STREAM,
            )
        )
        appends.append(
            (f"subnet-{subnet_id}", [to_new_event(created, metadata)], ExpectedVersion.NO_STREAM)
        )
    return appends


async def write(
    store: EventStore,
    writer: int,
    tenants: list[str],
    options: PipelineOptions,
    deadline: float,
    appended: Appended,
) -> None:
    """Append transaction after transaction until `deadline`."""
    serial = writer
    while time.perf_counter() < deadline:
        appends = transaction(
            tenants[serial % len(tenants)], serial, options.networks_per_txn, options.subnets
        )
        serial += options.writers
        started = time.perf_counter()
        try:
            await store.append_many(appends)
        except (asyncpg.PostgresError, OSError, TimeoutError) as error:
            appended.errors[type(error).__name__] += 1
            await asyncio.sleep(0.1)
            continue
        appended.latencies.append(time.perf_counter() - started)
        appended.transactions += 1
        appended.events += sum(len(events) for _, events, _ in appends)


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Run:
    stages: list[str]
    halted: list[str]
    settled_seconds: float
    #: Stages still behind the earlier head when the run started anyway.
    unsettled: list[str]
    start: Snapshot
    stop: Snapshot
    target: Position
    behind_at_stop: dict[str, int]
    caught_up: dict[str, float | None]
    samples: list[Snapshot]
    appended: Appended
    #: The last snapshot of each stage at or past the target (for its sustained rate).
    caught_at: dict[str, Snapshot]

    @property
    def append_seconds(self) -> float:
        return self.stop.at - self.start.at


async def pipeline(database_url: str, tenants: list[str], options: PipelineOptions) -> Run:
    connection = await asyncpg.connect(database_url)
    store = await EventStore.connect(
        database_url, min_size=options.writers, max_size=options.writers
    )
    try:
        checkpoints = Checkpoints(connection)
        await checkpoints.discover()
        settle_started = time.perf_counter()
        settling = await checkpoints.wait_caught_up(
            await checkpoints.commit_order_head(), options.catch_up_timeout
        )
        settled = time.perf_counter() - settle_started
        unsettled = [stage for stage, seconds in settling.items() if seconds is None]

        samples: list[Snapshot] = []
        start = await checkpoints.snapshot()
        samples.append(start)
        appended = Appended()
        stop_sampling = asyncio.Event()
        sampler = asyncio.create_task(
            sample(checkpoints, samples, options.sample_every, stop_sampling)
        )
        deadline = start.at + options.seconds
        try:
            await asyncio.gather(
                *(
                    write(store, writer, tenants, options, deadline, appended)
                    for writer in range(options.writers)
                )
            )
        finally:
            stop_sampling.set()
            await sampler
        stop = await checkpoints.snapshot()
        target = await checkpoints.commit_order_head()
        behind = {
            stage: await checkpoints.behind(checkpoint) for stage, checkpoint in stop.stages.items()
        }
        samples.append(stop)
        caught_up = await checkpoints.wait_caught_up(target, options.catch_up_timeout, samples)
    finally:
        await store.close()
        await connection.close()
    caught_at = {
        stage: next(s for s in samples if at(s, stage) >= target)
        for stage in checkpoints.stages
        if caught_up.get(stage) is not None
    }
    return Run(
        checkpoints.stages,
        checkpoints.halted,
        settled,
        unsettled,
        start,
        stop,
        target,
        behind,
        caught_up,
        samples,
        appended,
        caught_at,
    )


# -- the report -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageFigures:
    """What one stage (the relay or a projection) did over the run."""

    applied_while_appending: int
    rate_while_appending: float
    behind_at_stop: int
    caught_up_seconds: float | None
    sustained_rate: float | None
    max_lag: int

    @property
    def drain_rate(self) -> float | None:
        """How fast the backlog at the stop went, in events/s."""
        if not self.caught_up_seconds or not self.behind_at_stop:
            return None
        return self.behind_at_stop / self.caught_up_seconds


@dataclass(frozen=True, slots=True)
class Report:
    run: Run
    options: PipelineOptions
    cpu_seconds: float

    def stage(self, name: str) -> StageFigures:
        run = self.run
        first, last = at(run.start, name)[1], at(run.stop, name)[1]
        caught = run.caught_at.get(name)
        sustained = None
        if caught is not None:
            # Positions up to the head at the stop, from the start until it got there.
            sustained = (run.stop.head - first) / (caught.at - run.start.at)
        return StageFigures(
            applied_while_appending=last - first,
            rate_while_appending=(last - first) / run.append_seconds,
            behind_at_stop=run.behind_at_stop.get(name, run.stop.head),
            caught_up_seconds=run.caught_up.get(name),
            sustained_rate=sustained,
            max_lag=max(max(0, s.head - at(s, name)[1]) for s in run.samples),
        )

    def append_table(self) -> Table:
        appended, seconds = self.run.appended, self.run.append_seconds
        table = Table(box=box.SIMPLE_HEAD, title="Appends")
        for column in ("events", "transactions", "events/s", "transactions/s"):
            table.add_column(column, justify="right")
        for p in TAIL_PERCENTILES:
            table.add_column(f"txn p{p} ms", justify="right")
        table.add_column("errors", justify="right")
        table.add_row(
            f"{appended.events:,}",
            f"{appended.transactions:,}",
            f"{appended.events / seconds:,.0f}",
            f"{appended.transactions / seconds:,.0f}",
            *(ms(percentile(appended.latencies, p)) for p in TAIL_PERCENTILES),
            ", ".join(f"{n} x {e}" for e, n in appended.errors.items()) or "0",
        )
        return table

    def stages_table(self) -> Table:
        table = Table(
            box=box.SIMPLE_HEAD,
            title=(
                "Stages following the store (rates in events/s; lag in events, exact at the "
                "stop, from positions while running)"
            ),
        )
        columns = (
            "stage",
            "applied while appending",
            "rate while appending",
            "max lag while running",
            "lag when appends stopped",
            "caught up after (s)",
            "backlog drained at",
            "rate until caught up",
        )
        for column in columns:
            table.add_column(column, justify="left" if column == "stage" else "right")
        for name in self.run.stages:
            figures = self.stage(name)
            table.add_row(
                name,
                f"{figures.applied_while_appending:,}",
                f"{figures.rate_while_appending:,.0f}",
                f"{figures.max_lag:,}",
                f"{figures.behind_at_stop:,}",
                _seconds(figures.caught_up_seconds, self.options.catch_up_timeout),
                _rate(figures.drain_rate),
                _rate(figures.sustained_rate),
            )
        return table

    def timeline_table(self, rows: int = 14) -> Table:
        run = self.run
        table = Table(
            box=box.SIMPLE_HEAD,
            title="Timeline: head and each stage's lag (events; the line: appends stopped)",
        )
        table.add_column("t (s)", justify="right")
        table.add_column("head", justify="right")
        for name in run.stages:
            table.add_column(name, justify="right")
        step = max(1, math.ceil(len(run.samples) / rows))
        chosen = {id(s): s for s in [*run.samples[::step], run.stop, run.samples[-1]]}
        for snapshot in sorted(chosen.values(), key=lambda s: s.at):
            table.add_row(
                f"{snapshot.at - run.start.at:.1f}",
                f"{snapshot.head:,}",
                *(f"{max(0, snapshot.head - at(snapshot, n)[1]):,}" for n in run.stages),
                end_section=snapshot is run.stop,
            )
        return table

    def summary(self) -> dict[str, Any]:
        run, appended = self.run, self.run.appended
        seconds = run.append_seconds
        stages = {}
        for name in run.stages:
            figures = self.stage(name)
            stages[name] = {
                "applied_while_appending": figures.applied_while_appending,
                "rate_while_appending": figures.rate_while_appending,
                "max_lag_events": figures.max_lag,
                "lag_events_at_stop": figures.behind_at_stop,
                "caught_up_seconds": figures.caught_up_seconds,
                "backlog_drain_rate": figures.drain_rate,
                "rate_until_caught_up": figures.sustained_rate,
            }
        relays = [name for name in run.stages if name.startswith("relay ")]
        return {
            "seconds": seconds,
            "writers": self.options.writers,
            "events_per_transaction": self.options.events_per_txn,
            "events": appended.events,
            "transactions": appended.transactions,
            "append_rate": appended.events / seconds,
            "transaction_ms": {
                f"p{p}": percentile(appended.latencies, p) * 1000 for p in TAIL_PERCENTILES
            },
            "append_errors": dict(appended.errors),
            "settled_seconds_before": run.settled_seconds,
            "unsettled_before": run.unsettled,
            "relay_publish_rate": (
                stages[relays[0]]["rate_while_appending"] if relays else math.nan
            ),
            "stages": stages,
            "halted_projections": run.halted,
            "load_generator_cpu_share": self.cpu_seconds / seconds,
        }


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _seconds(value: float | None, timeout: float) -> str:
    return f"not in {timeout:g}" if value is None else f"{value:.1f}"


def main(
    seconds: Annotated[float, typer.Option(help="How long the writers append")] = 60,
    writers: Annotated[int, typer.Option(help="Concurrent writers (one connection each)")] = 8,
    networks_per_txn: Annotated[
        int, typer.Option(help="New networks per transaction (1 or 3 events each)")
    ] = 2,
    subnets: Annotated[
        bool, typer.Option(help="A subnet in each network (3 events), or NetworkCreated only")
    ] = True,
    tenants: Annotated[int, typer.Option(help="Tenants the networks are spread over")] = 8,
    sample_every: Annotated[float, typer.Option(help="Seconds between checkpoint samples")] = 0.5,
    catch_up_timeout: Annotated[
        float, typer.Option(help="Seconds a stage may take to catch up, before and after")
    ] = 120,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    base_port: BasePort = 24000,
    gateway_port: GatewayPort = 24126,
    prometheus_port: PrometheusPort = 24127,
    json_out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON")] = None,
) -> None:
    """Append at the store's full rate and print how fast the relay and projections follow."""
    if seconds <= 0 or writers <= 0 or networks_per_txn <= 0:
        raise typer.BadParameter("--seconds, --writers and --networks-per-txn must be positive")
    console = Console(width=160)
    options = PipelineOptions(
        seconds, writers, networks_per_txn, subnets, tenants, sample_every, catch_up_timeout
    )
    mesh_options = MeshOptions(state_dir, base_port, gateway_port, prometheus_port)
    with running_mesh(mesh_options, console.print) as mesh:
        run_id = uuid.uuid4().hex[:8]
        tenant_ids = [f"pipeline-{run_id}-{n}" for n in range(tenants)]
        console.print(
            f"{writers} writers, {options.events_per_txn} events per transaction "
            f"({networks_per_txn} networks{' with a subnet each' if subnets else ''}), "
            f"for {seconds:g} s into {mesh.database_url}"
        )
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        run = uvloop.run(pipeline(mesh.database_url, tenant_ids, options))
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    report = Report(run, options, cpu)
    if run.settled_seconds > 1:
        console.print(f"waited {run.settled_seconds:.1f} s for earlier backlog first")
    if run.unsettled:
        console.print(
            f"[yellow]still behind the earlier head after {catch_up_timeout:g} s, started "
            f"anyway: {', '.join(run.unsettled)} (their figures include that backlog)"
        )
    console.print(report.append_table(), report.stages_table(), report.timeline_table())
    summary = report.summary()
    slowest = [
        (name, figures["rate_until_caught_up"])
        for name, figures in summary["stages"].items()
        if figures["rate_until_caught_up"] is not None
    ]
    console.print(
        f"{summary['events']:,} events in {summary['seconds']:.1f} s = "
        f"{summary['append_rate']:,.0f} events/s appended; relay published "
        f"{summary['relay_publish_rate']:,.0f}/s while appending; slowest stage until caught up: "
        + (
            "{} at {:,.0f} events/s".format(*min(slowest, key=lambda item: item[1]))
            if slowest
            else "none caught up"
        )
        + f"; load generator used {summary['load_generator_cpu_share']:.0%} of a core"
    )
    for key in run.halted:
        console.print(f"[yellow]projection {key} is halted at a dead letter: left out")
    if json_out is not None:
        json_out.write_text(json.dumps(finite(summary), indent=2))


if __name__ == "__main__":
    typer.run(main)
