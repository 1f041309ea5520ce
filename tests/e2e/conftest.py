"""The `mesh` fixture: one whole mesh per test session, started by `cloudnet up` in a fresh state
directory on free ports with its own PostgreSQL and RabbitMQ, beside any developer's mesh, and
stopped by `cloudnet down`, which must leave no process and no bound port behind."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dotenv import dotenv_values

from infra.auth import issue_token
from infra.launcher.layout import MeshLayout
from infra.launcher.leftovers import descendants, is_alive, ports_in_use
from infra.launcher.mesh import mesh_specs
from infra.launcher.supervisor import Supervisor
from infra.settings import Settings

CLOUDNET = str(Path(sys.executable).parent / "cloudnet")
#: Ports a mesh may use from its base: infrastructure, services, room for more services.
PORT_BLOCK = 128
#: Below the kernel's ephemeral range (32768+), where outgoing connections take their ports.
PORT_RANGE = range(20000, 32000 - PORT_BLOCK, PORT_BLOCK)
#: `cloudnet up` has 90 s for the whole mesh; this is how long the test waits for the CLI.
UP_TIMEOUT_SECONDS = 150


@dataclass
class Mesh:
    """A running mesh and what tests need to talk to it."""

    state_dir: Path
    gateway_url: str
    prometheus_url: str
    database_url: str
    amqp_url: str
    jwt_secret: str
    #: Where the query services read, when the mesh runs its own replica (`up --replica`).
    read_database_url: str | None
    #: The environment for further `cloudnet` subprocesses: it selects this mesh.
    env: dict[str, str]
    ports: list[int]
    cloudnet: str = CLOUDNET
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `cloudnet <args>` against this mesh (never raises on a non-zero exit)."""
        return subprocess.run(
            [self.cloudnet, *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def supervisor(self) -> Supervisor:
        """The mesh's supervisord, to stop, start and list its programs."""
        return Supervisor(self.state_dir / "supervisor.sock")

    def pids(self, prefix: str) -> dict[str, int]:
        """The pids of the programs whose names start with `prefix`."""
        return {p.name: p.pid for p in self.supervisor().programs() if p.name.startswith(prefix)}

    def port_of(self, program: str) -> int:
        """The HTTP port of one program of the mesh (its /health, /metrics, API docs)."""
        settings = Settings(
            state_dir=self.state_dir,
            base_port=int(self.env["CLOUDNET_BASE_PORT"]),
            gateway_port=int(self.env["CLOUDNET_GATEWAY_PORT"]),
            prometheus_port=int(self.env["CLOUDNET_PROMETHEUS_PORT"]),
        )
        layout = MeshLayout.from_settings(settings, own_postgres=True, own_rabbitmq=True)
        [spec] = [spec for spec in mesh_specs(layout) if spec.name == program]
        return spec.ports[0]

    def token(self, tenant: str, scope: str) -> str:
        """A bearer token for `tenant` with the space-separated `scope`, signed for this mesh."""
        key = (tenant, scope)
        if key not in self._tokens:
            self._tokens[key] = issue_token(
                secret=self.jwt_secret, tenant=tenant, scopes=scope.split(), subject="e2e"
            )
        return self._tokens[key]


def free_port_block() -> int:
    """The first port of a block of PORT_BLOCK free ports (started at random, so two sessions
    at once are unlikely to race for the same block)."""
    candidates = list(PORT_RANGE)
    random.shuffle(candidates)
    for base in candidates:
        if not ports_in_use(range(base, base + PORT_BLOCK)):
            return base
    raise RuntimeError("no block of free ports for an e2e mesh")


def mesh_environment(state_dir: Path, base: int) -> dict[str, str]:
    # Nothing of a developer's configuration leaks in: the mesh must run its own PostgreSQL and
    # RabbitMQ, in its own state directory, on its own ports.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CLOUDNET_") and name not in {"DATABASE_URL", "AMQP_URL"}
    }
    env.update(
        CLOUDNET_STATE_DIR=str(state_dir),
        CLOUDNET_BASE_PORT=str(base),
        CLOUDNET_GATEWAY_PORT=str(base + PORT_BLOCK - 2),
        CLOUDNET_PROMETHEUS_PORT=str(base + PORT_BLOCK - 1),
    )
    return env


def mesh_ports(state_dir: Path, env: dict[str, str], *, replica: bool = False) -> list[int]:
    settings = Settings(
        state_dir=state_dir,
        base_port=int(env["CLOUDNET_BASE_PORT"]),
        gateway_port=int(env["CLOUDNET_GATEWAY_PORT"]),
        prometheus_port=int(env["CLOUDNET_PROMETHEUS_PORT"]),
    )
    layout = MeshLayout.from_settings(
        settings, own_postgres=True, own_rabbitmq=True, own_replica=replica
    )
    return [port for spec in mesh_specs(layout) for port in spec.ports]


@pytest.fixture(scope="session")
def mesh() -> Iterator[Mesh]:
    with running_mesh() as running:
        yield running


@contextlib.contextmanager
def running_mesh(*up_args: str, settings: Mapping[str, str] | None = None) -> Iterator[Mesh]:
    """A whole mesh of its own (fault tests break theirs without disturbing the others), started
    by `cloudnet up <up_args>` with `settings` (CLOUDNET_... variables) in its environment."""
    state_dir = Path(tempfile.mkdtemp(prefix="cloudnet-e2e-"))
    state_dir.chmod(0o755)  # PostgreSQL runs as the postgres user and must reach its data
    base = free_port_block()
    env = {**mesh_environment(state_dir, base), **(settings or {})}
    up = subprocess.run(
        [CLOUDNET, "up", *up_args],
        env=env,
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT_SECONDS,
    )
    if up.returncode != 0:
        subprocess.run([CLOUDNET, "down"], env=env, capture_output=True, timeout=120)
        pytest.fail(f"`cloudnet up` failed (state in {state_dir}):\n{up.stdout}{up.stderr}")
    written = dotenv_values(state_dir / "mesh.env")
    supervisord = int((state_dir / "supervisord.pid").read_text())
    running = Mesh(
        state_dir=state_dir,
        gateway_url=f"http://127.0.0.1:{env['CLOUDNET_GATEWAY_PORT']}",
        prometheus_url=f"http://127.0.0.1:{env['CLOUDNET_PROMETHEUS_PORT']}",
        database_url=str(written["DATABASE_URL"]),
        amqp_url=str(written["AMQP_URL"]),
        jwt_secret=str(written["CLOUDNET_JWT_SECRET"]),
        read_database_url=written.get("READ_DATABASE_URL"),
        env=env,
        ports=mesh_ports(state_dir, env, replica="--replica" in up_args),
    )
    try:
        yield running
    finally:
        # Programs restarted during the session have new pids: look again just before `down`.
        processes = {supervisord, *descendants(supervisord)}
        down = running.run("down")
        # `down` itself is under test here: it must end every process and free every port.
        assert down.returncode == 0, down.stdout + down.stderr
        survivors = sorted(pid for pid in processes if is_alive(pid))
        assert not survivors, f"processes of the mesh survived `cloudnet down`: {survivors}"
        assert not ports_in_use(running.ports), "ports of the mesh are bound after `down`"
    shutil.rmtree(state_dir, ignore_errors=True)
