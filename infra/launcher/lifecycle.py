"""`cloudnet up` and `cloudnet down` (DESIGN §7): start a local mesh step by step until all of it
answers, and stop it until no process and no port of it remains."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

from infra.launcher import rabbitmq
from infra.launcher.errors import LaunchError
from infra.launcher.gateway import gateway_probe, write_nginx_conf
from infra.launcher.leftovers import descendants, is_alive, ports_in_use
from infra.launcher.mesh import POLL_SECONDS, mesh_specs, wait_ready
from infra.launcher.postgres import ensure_cluster
from infra.launcher.programs import Priority
from infra.launcher.prometheus import write_prometheus_yml
from infra.launcher.replica import allow_replication, start_replica
from infra.launcher.state import write_mesh_env
from infra.launcher.supervisor import SUPERVISORD, Supervisor, render_supervisord_conf

if TYPE_CHECKING:
    from infra.launcher.health import Deadline
    from infra.launcher.layout import MeshLayout
    from infra.launcher.mesh import Progress
    from infra.launcher.programs import ProcessSpec


async def up(layout: MeshLayout, deadline: Deadline, progress: Progress) -> bool:
    """Start the mesh; False when it was already up. Raises LaunchError, leaving whatever did
    start running for the caller to inspect or stop."""
    supervisor = Supervisor(layout.paths.supervisor_socket)
    if supervisor.is_running():
        return False
    specs = mesh_specs(layout)
    busy = ports_in_use(port for spec in specs for port in spec.ports)
    if busy:
        raise LaunchError(
            f"ports {busy} of this mesh are in use (another mesh or a leftover process?); "
            "stop it or choose other CLOUDNET_BASE_PORT, CLOUDNET_GATEWAY_PORT, "
            "CLOUDNET_PROMETHEUS_PORT"
        )
    progress.step("writing configs")
    _write_configs(layout, specs)
    if layout.own_postgres:
        progress.step("preparing PostgreSQL data directory")
        await ensure_cluster(layout)
        if layout.own_replica:
            allow_replication(layout)

    progress.step("starting supervisord, databases and monitoring")
    await _start_supervisord(layout, deadline)
    storage = [spec for spec in specs if spec.priority is Priority.STORAGE]
    started = [spec for spec in storage if not spec.after_migrations]
    await wait_ready(supervisor, started, deadline, progress, paths=layout.paths)

    progress.step("running migrations")
    from infra.database import migrate  # lazily: it imports the event store and read models

    try:
        await asyncio.wait_for(migrate(layout.database_url), deadline.remaining())
    except Exception as error:
        raise LaunchError(f"migrations failed: {type(error).__name__}: {error}") from error

    if layout.own_replica:
        # Cloned from the migrated primary, and ready before the query services that read it.
        progress.step("cloning and starting the PostgreSQL replica")
        await start_replica(layout, supervisor, deadline, progress)

    progress.step("starting services")
    for spec in specs:
        if spec.after_migrations and spec not in storage:
            supervisor.start(spec.name)
    await wait_ready(
        supervisor,
        specs,
        deadline,
        progress,
        paths=layout.paths,
        extra_probes={"gateway": gateway_probe(layout)},
    )
    return True


async def down(layout: MeshLayout, deadline: Deadline, progress: Progress) -> bool:
    """Stop the mesh and wait until all its processes are gone and its ports free; False when it
    was not running. Stragglers past the deadline are killed and reported."""
    supervisor = Supervisor(layout.paths.supervisor_socket)
    ports = [port for spec in mesh_specs(layout) for port in spec.ports]
    if not supervisor.is_running():
        busy = ports_in_use(ports)
        if busy:
            raise LaunchError(
                f"supervisord is not running, yet ports {busy} of this mesh are in use: processes "
                "left by a supervisord that was killed? (`ss -ltnp` shows them)"
            )
        return False
    root = supervisor.pid()
    tree = {root, *descendants(root)}
    progress.step(f"stopping {len(tree)} processes")
    supervisor.shutdown()
    while (alive := sorted(pid for pid in tree if is_alive(pid))) and not deadline.expired:
        progress.waiting([f"pid {pid}" for pid in alive])
        await asyncio.sleep(POLL_SECONDS)
    if alive:
        for pid in alive:
            os.kill(pid, signal.SIGKILL)
        raise LaunchError(f"processes {alive} did not stop in time and were killed")
    busy = ports_in_use(ports)
    if busy:
        raise LaunchError(f"the mesh stopped but ports {busy} are still in use")
    return True


def _write_configs(layout: MeshLayout, specs: list[ProcessSpec]) -> None:
    layout.paths.logs.mkdir(parents=True, exist_ok=True)
    write_mesh_env(layout)
    if layout.own_rabbitmq:
        rabbitmq.write_config(layout)
    write_nginx_conf(layout, specs)
    write_prometheus_yml(layout, specs)
    layout.paths.supervisor_conf.write_text(render_supervisord_conf(layout, specs))


async def _start_supervisord(layout: MeshLayout, deadline: Deadline) -> None:
    # supervisord daemonizes: this process exits once the daemon is forked (or the config is
    # refused); the daemon then needs a moment to open its socket.
    process = await asyncio.create_subprocess_exec(
        str(SUPERVISORD),
        *("-c", str(layout.paths.supervisor_conf)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise LaunchError("supervisord did not start", log=output.decode(errors="replace"))
    supervisor = Supervisor(layout.paths.supervisor_socket)
    while not supervisor.is_running():
        if deadline.expired:
            raise LaunchError("supervisord did not open its socket in time")
        await asyncio.sleep(POLL_SECONDS)
