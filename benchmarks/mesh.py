"""The mesh a gateway benchmark runs against: the one already up in the state directory, else one
started here with `cloudnet up` (and stopped with `cloudnet down` when the benchmark ends).

A mesh started here gets a gateway rate limit high enough that the benchmark measures the
services, not nginx's `limit_req` (DESIGN §4's 429 is per client address, and every benchmark
client is 127.0.0.1); an existing mesh keeps its own limit, and the figures report it.

A mesh started here also starts empty: `cloudnet down` keeps a mesh's data, and a state
directory a benchmark made (it holds `MARKER`) is removed before the next one starts there, so
one run's millions of events are not the next run's database (one bench directory had grown to
4.2 GB). A directory a benchmark did not make is used as it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from infra.auth import issue_token
from infra.launcher.layout import MeshLayout
from infra.launcher.state import load_settings
from infra.launcher.supervisor import Supervisor

CLOUDNET = str(Path(sys.executable).parent / "cloudnet")
#: What a mesh started by a benchmark lets one client address do per second (see above).
BENCHMARK_RATE_LIMIT = 1_000_000
SCOPES = ["cloud:read", "cloud:write"]

# The command-line options every gateway benchmark takes to find or start its mesh.
StateDir = Annotated[Path, typer.Option(help="State directory of the mesh to use or start")]
BasePort = Annotated[int, typer.Option(help="Private ports of a mesh started here")]
GatewayPort = Annotated[int, typer.Option(help="Gateway port of a mesh started here")]
PrometheusPort = Annotated[int, typer.Option(help="Prometheus port of a mesh started here")]
DEFAULT_STATE_DIR = Path("/tmp/cloudnet-bench-mesh")
#: The file that says a benchmark made this state directory (and may remove it).
MARKER = ".made-by-a-benchmark"


@dataclass(frozen=True, slots=True)
class Mesh:
    """A running mesh: where its gateway is and how to sign tokens for it."""

    layout: MeshLayout
    started_here: bool

    @property
    def gateway_url(self) -> str:
        return self.layout.gateway_url

    @property
    def database_url(self) -> str:
        return self.layout.database_url

    @property
    def rate_limit(self) -> int:
        return self.layout.rate_limit

    def token(self, tenant: str, ttl_seconds: int = 4 * 3600) -> str:
        return issue_token(
            secret=self.layout.jwt_secret,
            tenant=tenant,
            scopes=SCOPES,
            subject="benchmark",
            ttl_seconds=ttl_seconds,
        )

    def program_pids(self) -> dict[str, int]:
        """supervisord's programs that run now, by name (`command-1`, `nginx`, ...)."""
        supervisor = Supervisor(self.layout.paths.supervisor_socket)
        return {p.name: p.pid for p in supervisor.programs() if p.pid}


@dataclass(frozen=True, slots=True)
class MeshOptions:
    """Where to find a running mesh, or where to start one: CLOUDNET_STATE_DIR and the ports
    from the environment win, as for every `cloudnet` command."""

    state_dir: Path
    base_port: int
    gateway_port: int
    prometheus_port: int

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("CLOUDNET_STATE_DIR", str(self.state_dir))
        env.setdefault("CLOUDNET_BASE_PORT", str(self.base_port))
        env.setdefault("CLOUDNET_GATEWAY_PORT", str(self.gateway_port))
        env.setdefault("CLOUDNET_PROMETHEUS_PORT", str(self.prometheus_port))
        env.setdefault("CLOUDNET_GATEWAY_RATE_LIMIT", str(BENCHMARK_RATE_LIMIT))
        return env


@contextmanager
def running_mesh(options: MeshOptions, say: Callable[[str], None] = print) -> Iterator[Mesh]:
    env = options.environment()
    state_dir = Path(env["CLOUDNET_STATE_DIR"])
    started = not _is_up(state_dir)
    if started:
        if clear_state_dir(state_dir):
            say(f"removed the data of the last benchmark mesh in {state_dir}")
        if not state_dir.exists():  # made here, marked before `up` so a failed start is too
            state_dir.mkdir(parents=True)
            (state_dir / MARKER).touch()
        say(f"starting a mesh in {state_dir} (gateway :{env['CLOUDNET_GATEWAY_PORT']}) ...")
        subprocess.run([CLOUDNET, "up"], env=env, check=True, capture_output=True, timeout=300)
    try:
        yield Mesh(_layout(state_dir), started_here=started)
    finally:
        if started:
            say("stopping the mesh started for this benchmark ...")
            subprocess.run([CLOUDNET, "down"], env=env, check=False, timeout=300)


def clear_state_dir(state_dir: Path) -> bool:
    """Remove a stopped mesh's state directory if a benchmark made it; True if it did."""
    if not (state_dir / MARKER).is_file():
        return False
    shutil.rmtree(state_dir)
    return True


def _is_up(state_dir: Path) -> bool:
    return Supervisor(state_dir / "supervisor.sock").is_running()


def _layout(state_dir: Path) -> MeshLayout:
    """The layout `cloudnet up` wrote to the mesh's mesh.env (ports, database, JWT secret)."""
    mesh = load_settings(state_dir)
    return MeshLayout.from_settings(
        mesh.settings, own_postgres=mesh.own_postgres, own_rabbitmq=mesh.own_rabbitmq
    )
