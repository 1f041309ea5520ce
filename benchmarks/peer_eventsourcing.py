"""cloudnet's event store next to a well-known peer, the `eventsourcing` library, in the same run.

What it measures, in events/s: appends of 1 event per transaction by 16 concurrent writers (by
default), each writer owning a disjoint share of the streams and appending single events
round-robin over its share: the first append to a stream creates it, every later one adds its
next version. Both sides write the same number of streams and events, and an event's payload is
the same ~200 bytes of JSON shaped like a network event (`benchmarks.eventstore.event_data`).

- cloudnet: `EventStore.connect(url, min_size=16, max_size=16)` and 16 asyncio tasks calling
  `store.append(stream_id, [NewEvent(...)], expected_version)` with the exact expected version,
  as `benchmarks/eventstore.py` does (its `CloudnetSide` and `writing` are reused here).
- the peer: `eventsourcing` 9.5.6 (PyPI `eventsourcing[postgres]`, psycopg 3) through its
  PostgreSQL recorder as its docs describe: `PostgresDatastore(dbname, host, port, user,
  password, pool_size=16)`, `PostgresApplicationRecorder(datastore)`, `create_table()`, then 16
  threads (the recorder is synchronous) each calling `insert_events([StoredEvent(originator_id,
  originator_version, topic, state)])`, one event and one transaction per call.
  `PostgresApplicationRecorder` is the recorder an `eventsourcing` application uses: like
  cloudnet's store it gives a total order that readers can follow (its notification ids).

The peer is never a dependency of this project. On first use the benchmark creates a separate
venv, `.tools/peer-eventsourcing`, with `.tools/bin/uv venv` from the interpreter cloudnet's venv
was made from, and installs `eventsourcing[postgres]==9.5.6` into it with `uv pip install --python
<venv>/bin/python`; later runs reuse it when it already holds that version on that interpreter.
The peer's side runs in that venv as a subprocess (`python -c PEER_SCRIPT`) that stays up for the
whole run, times each round itself and answers its figures as one JSON line on stdout.

Each side gets its own fresh database `cloudnet_bench_peer_<random>` on `--postgres` (cloudnet's
migrated, the peer's with the recorder's own table), dropped WITH (FORCE) at the end. Each side
is warmed up once (untimed), then the timed rounds alternate in ABBA order (cloudnet, peer, peer,
cloudnet, ...) so machine noise hits both; the figures are each round's rate and the medians.
The issue's target is cloudnet >= 8x the peer's events/s.

Run: `.venv/bin/python -m benchmarks.peer_eventsourcing --help`.
"""

from __future__ import annotations

import asyncio
import json
import platform
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import orjson
import typer
import uvloop
from rich import box
from rich.console import Console
from rich.table import Table

from benchmarks.eventstore import (
    METADATA,
    CloudnetSide,
    WriteScenario,
    event_data,
    machine_facts,
    scratch_database,
)
from benchmarks.eventstore import writing as cloudnet_writing
from events import EventStore

ROOT = Path(__file__).resolve().parents[1]
PEER_VENV = ROOT / ".tools" / "peer-eventsourcing"
UV = ROOT / ".tools" / "bin" / "uv"
#: The peer runs on the interpreter cloudnet's side runs on (the one this venv was made from).
PEER_PYTHON = sys.executable
PEER_VERSION = "9.5.6"
PEER_REQUIREMENT = f"eventsourcing[postgres]=={PEER_VERSION}"
PEER_LABEL = f"eventsourcing {PEER_VERSION} PostgresApplicationRecorder"
TARGET = 8.0
#: Seconds the peer may take to start (imports, pool, table) or to answer one round.
PEER_TIMEOUT = 600.0

# Runs in the peer's venv, never imported here. argv[1] is a JSON config; then one JSON line per
# request on stdin ({"events": n} runs a round, {"quit": true} ends) and one JSON line per answer
# on stdout. Writer w owns aggregates[w::writers] and appends round-robin over them from the
# first one in every round, versions continuing across rounds: the same walk as
# `benchmarks.eventstore.write_share` on cloudnet's side.
PEER_SCRIPT = r"""
import json
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

config = json.loads(sys.argv[1])
writers = config["writers"]
TOPIC = "cloudnet_bench.networks:Network.Recorded"


def answer(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def state(originator_id, originator_version):
    # The same shape and size as benchmarks.eventstore.event_data on cloudnet's side.
    return json.dumps(
        {
            "network_id": f"network-{originator_id}",
            "name": f"net-{originator_version:05d}",
            "cidr": "10.20.0.0/16",
            "subnets": ["10.20.1.0/24", "10.20.2.0/24"],
            "description": "benchmark network",
        },
        separators=(",", ":"),
    ).encode()


datastore = PostgresDatastore(
    dbname=config["dbname"],
    host=config["host"],
    port=config["port"],
    user=config["user"],
    password=config["password"],
    pool_size=writers,
    max_overflow=0,
)
recorder = PostgresApplicationRecorder(datastore)
recorder.create_table()

aggregates = [uuid.uuid4() for _ in range(config["streams"])]
shares = [aggregates[writer::writers] for writer in range(writers)]
versions = [dict.fromkeys(share, 0) for share in shares]


def write_share(writer, count):
    share, share_versions = shares[writer], versions[writer]
    for index in range(count):
        originator_id = share[index % len(share)]
        originator_version = share_versions[originator_id] + 1
        event = StoredEvent(
            originator_id=originator_id,
            originator_version=originator_version,
            topic=TOPIC,
            state=state(originator_id, originator_version),
        )
        recorder.insert_events([event])
        share_versions[originator_id] = originator_version


answer(
    {
        "ready": True,
        "version": version("eventsourcing"),
        "psycopg": version("psycopg"),
        "state_bytes": len(state(aggregates[0], 1)),
    }
)
with ThreadPoolExecutor(max_workers=writers) as executor:
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        events = request["events"]
        counts = [events // writers + (w < events % writers) for w in range(writers)]
        started = time.perf_counter()
        list(executor.map(write_share, range(writers), counts))
        seconds = time.perf_counter() - started
        answer({"events": events, "seconds": seconds, "per_second": events / seconds})
datastore.close()
"""


def ensure_peer_venv(venv: Path, uv: Path, console: Console) -> Path:
    """The peer's venv with `eventsourcing[postgres]` at PEER_VERSION; created once, cached."""
    python = venv / "bin" / "python"
    probe = "import sys; from importlib.metadata import version as v; print(v('eventsourcing'))"
    probe += "; print(sys.version)"
    if python.exists():
        found = subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, check=False
        )
        if found.returncode == 0 and found.stdout.splitlines() == [PEER_VERSION, sys.version]:
            return python
    console.print(f"installing {PEER_REQUIREMENT} into {venv} (once)", markup=False)
    subprocess.run(
        [str(uv), "venv", "--clear", "--quiet", "--python", PEER_PYTHON, str(venv)], check=True
    )
    subprocess.run(
        [str(uv), "pip", "install", "--quiet", "--python", str(python), PEER_REQUIREMENT],
        check=True,
    )
    return python


def peer_config(url: str, writers: int, streams: int) -> dict[str, Any]:
    """The peer's connection settings, taken from the same URL cloudnet connects to."""
    parts = urlsplit(url)
    return {
        "dbname": parts.path.lstrip("/"),
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
        "writers": writers,
        "streams": streams,
    }


class PeerProcess:
    """The peer's side: a subprocess in the peer's venv, driven one JSON line at a time."""

    def __init__(self, process: asyncio.subprocess.Process, hello: dict[str, Any]) -> None:
        self.process = process
        self.hello = hello

    @classmethod
    async def start(cls, python: Path, config: dict[str, Any]) -> PeerProcess:
        process = await asyncio.create_subprocess_exec(
            str(python),
            "-c",
            PEER_SCRIPT,
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        peer = cls(process, {})
        try:
            peer.hello = await peer.receive()
        except BaseException:
            await peer.close()
            raise
        return peer

    async def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), PEER_TIMEOUT)
        if not line:
            code = await self.process.wait()
            raise RuntimeError(f"the peer's process ended (exit {code}); see its stderr above")
        message: dict[str, Any] = json.loads(line)
        return message

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        await self.process.stdin.drain()

    async def write(self, events: int) -> tuple[int, float]:
        """One round of `events` appends; answers the events done and the peer's own timing."""
        await self.send({"events": events})
        answer = await self.receive()
        return int(answer["events"]), float(answer["seconds"])

    async def close(self) -> None:
        if self.process.returncode is not None:
            return
        try:
            await self.send({"quit": True})
            await asyncio.wait_for(self.process.wait(), 30)
        except (OSError, TimeoutError):
            self.process.kill()
            await self.process.wait()


@dataclass(slots=True)
class Rates:
    """One side's events/s in each timed round."""

    rounds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)


@dataclass(frozen=True, slots=True)
class Result:
    facts: str
    describe: str
    peer_versions: str
    cloudnet: Rates
    peer: Rates

    @property
    def ratio(self) -> float:
        return self.cloudnet.median / self.peer.median

    @property
    def round_ratios(self) -> list[float]:
        pairs = zip(self.cloudnet.rounds, self.peer.rounds, strict=True)
        return [cloudnet / peer for cloudnet, peer in pairs]


@dataclass(frozen=True, slots=True)
class Options:
    postgres: str
    events: int
    writers: int
    streams: int
    warmup: int
    rounds: int

    @property
    def per_round(self) -> int:
        return self.events // self.rounds

    def describe(self, peer_state_bytes: int) -> str:
        cloudnet_data = len(orjson.dumps(event_data(f"network-{uuid.uuid4()}", 1)))
        return (
            f"1 event/txn, {self.writers} concurrent writers, {self.streams:,} streams per side; "
            f"{self.per_round:,} events per side per round after {self.warmup:,} untimed; "
            f"{self.rounds} rounds per side in ABBA order; pools of {self.writers} connections. "
            f"Payload: cloudnet data {cloudnet_data} B (+ metadata "
            f"{len(orjson.dumps(METADATA))} B), peer state {peer_state_bytes} B"
        )


async def bench(options: Options, peer_python: Path) -> Result:
    scenario = WriteScenario("append 1 event/txn", options.writers, 1, options.per_round, None)
    streams = [f"network-{uuid.uuid4()}" for _ in range(options.streams)]
    trial = cloudnet_writing(scenario, streams)
    async with (
        scratch_database(options.postgres, "cloudnet_bench_peer") as cloudnet_url,
        scratch_database(options.postgres, "cloudnet_bench_peer", migrated=False) as peer_url,
    ):
        facts = await machine_facts(cloudnet_url)
        size = options.writers
        store = await EventStore.connect(cloudnet_url, min_size=size, max_size=size)
        peer: PeerProcess | None = None
        try:
            config = peer_config(peer_url, options.writers, options.streams)
            peer = await PeerProcess.start(peer_python, config)
            cloudnet_side = CloudnetSide(store)

            async def run_cloudnet(events: int) -> float:
                started = time.perf_counter()
                done = await trial(cloudnet_side, events)
                return done / (time.perf_counter() - started)

            async def run_peer(events: int) -> float:
                assert peer is not None
                done, seconds = await peer.write(events)
                return done / seconds

            if options.warmup:
                await run_cloudnet(options.warmup)
                await run_peer(options.warmup)
            cloudnet, peer_rates = Rates(), Rates()
            for round_number in range(options.rounds):
                if round_number % 2 == 0:
                    cloudnet.rounds.append(await run_cloudnet(options.per_round))
                    peer_rates.rounds.append(await run_peer(options.per_round))
                else:
                    peer_rates.rounds.append(await run_peer(options.per_round))
                    cloudnet.rounds.append(await run_cloudnet(options.per_round))
            hello = peer.hello
        finally:
            if peer is not None:
                await peer.close()
            await store.close()
    return Result(
        facts=facts,
        describe=options.describe(int(hello["state_bytes"])),
        peer_versions=f"eventsourcing {hello['version']}, psycopg {hello['psycopg']}",
        cloudnet=cloudnet,
        peer=peer_rates,
    )


def render(result: Result) -> Table:
    rounds = len(result.cloudnet.rounds)
    table = Table(box=box.MARKDOWN)
    table.add_column("side")
    for number in range(1, rounds + 1):
        table.add_column(f"round {number} ev/s", justify="right")
    table.add_column("median ev/s", justify="right")
    table.add_column("target")
    table.add_row(
        "cloudnet EventStore",
        *(f"{rate:,.0f}" for rate in result.cloudnet.rounds),
        f"{result.cloudnet.median:,.0f}",
        "",
    )
    table.add_row(
        PEER_LABEL,
        *(f"{rate:,.0f}" for rate in result.peer.rounds),
        f"{result.peer.median:,.0f}",
        "",
    )
    verdict = "met" if result.ratio >= TARGET else "MISSED"
    table.add_row(
        "ratio cloudnet/peer",
        *(f"{ratio:.1f}x" for ratio in result.round_ratios),
        f"{result.ratio:.1f}x",
        f">= {TARGET:.0f}x {verdict}",
    )
    return table


def summary(result: Result) -> dict[str, Any]:
    rounds = zip(result.cloudnet.rounds, result.peer.rounds, result.round_ratios, strict=True)
    return {
        "cloudnet_per_second": result.cloudnet.median,
        "peer_per_second": result.peer.median,
        "ratio": result.ratio,
        "target": TARGET,
        "target_met": result.ratio >= TARGET,
        "rounds": [
            {
                "round": number,
                "cloudnet_per_second": cloudnet,
                "peer_per_second": peer,
                "ratio": ratio,
            }
            for number, (cloudnet, peer, ratio) in enumerate(rounds, start=1)
        ],
        "peer": PEER_LABEL,
        "peer_versions": result.peer_versions,
        "facts": result.facts,
        "setup": result.describe,
    }


def main(
    events: Annotated[
        int, typer.Option(help="Timed events per side, shared out over the rounds")
    ] = 20_000,
    writers: Annotated[
        int, typer.Option(help="Concurrent writers per side (and pool connections)")
    ] = 16,
    streams: Annotated[
        int, typer.Option(help="Streams (aggregates) per side, shared out among the writers")
    ] = 1000,
    warmup: Annotated[int, typer.Option(help="Untimed events per side before the rounds")] = 500,
    rounds: Annotated[int, typer.Option(help="Timed rounds per side, in ABBA order")] = 4,
    postgres: Annotated[str, typer.Option(help="Server URL, without a database")] = (
        "postgresql://postgres@127.0.0.1:5432"
    ),
    peer_venv: Annotated[
        Path, typer.Option(help="The peer's own venv, created and filled once with uv")
    ] = PEER_VENV,
    uv: Annotated[Path, typer.Option(help="The uv binary that builds the peer's venv")] = UV,
    json_out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON")] = None,
) -> None:
    """Print cloudnet's append throughput next to the eventsourcing library's PostgreSQL
    recorder, 1 event per transaction with concurrent writers, measured in the same run."""
    if min(events, writers, streams, rounds) < 1 or warmup < 0:
        raise typer.BadParameter("counts must be positive (warm-up may be 0)")
    if events // rounds < writers or streams < writers:
        raise typer.BadParameter("need at least one stream and one event per writer per round")
    console = Console(width=160)
    python = ensure_peer_venv(peer_venv, uv, console)
    options = Options(postgres, events, writers, streams, warmup, rounds)
    result = uvloop.run(bench(options, python))
    console.print(
        result.facts,
        f"peer: {PEER_LABEL} ({result.peer_versions}, python {platform.python_version()}, "
        f"{python}; cloudnet's side on the same interpreter)",
        result.describe,
        sep="\n",
        soft_wrap=True,
    )
    console.print(render(result))
    if json_out is not None:
        json_out.write_text(json.dumps(summary(result), indent=2))


if __name__ == "__main__":
    typer.run(main)
