"""The programs of a local mesh and the waits that `up` and `status` share: every program RUNNING in
supervisord and every probe answering, under one deadline."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httpx

from infra.launcher.errors import LaunchError
from infra.launcher.exporters import exporter_specs
from infra.launcher.gateway import nginx_spec
from infra.launcher.health import PROBE_TIMEOUT_SECONDS, Health, check
from infra.launcher.layout import MeshLayout
from infra.launcher.postgres import REPLICA, postgres_spec, replica_spec
from infra.launcher.prometheus import prometheus_spec
from infra.launcher.rabbitmq import rabbitmq_spec
from infra.launcher.services import service_specs

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from infra.launcher.health import Deadline, Probe
    from infra.launcher.layout import Paths
    from infra.launcher.programs import ProcessSpec
    from infra.launcher.supervisor import ProgramState, Supervisor
    from infra.settings import Settings

#: How often `up` looks again at programs that are not ready yet.
POLL_SECONDS = 0.25
#: A program seen with this many pids during one wait is crash-looping, even when each run lasts
#: longer than supervisord's startsecs and so never turns FATAL.
CRASH_LOOP_PIDS = 3
#: Lines of a failing program's log shown with the error.
LOG_TAIL_LINES = 30


class Progress(Protocol):
    """Where `up` and `down` report what they are doing (the CLI draws it with rich)."""

    def step(self, message: str) -> None: ...

    def waiting(self, names: list[str]) -> None: ...


def running_layout(settings: Settings, supervisor: Supervisor) -> MeshLayout:
    """The layout of the mesh `supervisor` runs: it has its own PostgreSQL, RabbitMQ and replica
    when it runs programs of those names (a stopped mesh is assumed to have all, for its ports)."""
    names = {p.name for p in supervisor.programs()} if supervisor.is_running() else None
    return MeshLayout.from_settings(
        settings,
        own_postgres=names is None or "postgres" in names,
        own_rabbitmq=names is None or "rabbitmq" in names,
        own_replica=names is None or REPLICA in names,
    )


def mesh_specs(layout: MeshLayout) -> list[ProcessSpec]:
    """Every program of the mesh, own databases first, the gateway last."""
    storage = [
        *([postgres_spec(layout)] if layout.own_postgres else []),
        *([replica_spec(layout)] if layout.own_replica else []),
        *([rabbitmq_spec(layout)] if layout.own_rabbitmq else []),
    ]
    monitoring = [*exporter_specs(layout), prometheus_spec(layout)]
    return [*storage, *monitoring, *service_specs(layout), nginx_spec(layout)]


@dataclass(frozen=True, slots=True)
class ProgramStatus:
    """One row of `cloudnet status`."""

    name: str
    state: str
    pid: int
    uptime_seconds: int
    health: Health | None

    @property
    def healthy(self) -> bool:
        return self.state == "RUNNING" and (self.health is None or self.health.ok)


async def program_statuses(
    supervisor: Supervisor, specs: Iterable[ProcessSpec]
) -> list[ProgramStatus]:
    """supervisord's view of each program joined with its probe, probed concurrently."""
    probes = {spec.name: spec.probe for spec in specs}
    # In the order of the specs (storage first, gateway last), not supervisord's alphabetical one.
    order = {name: index for index, name in enumerate(probes)}
    programs = sorted(supervisor.programs(), key=lambda p: (order.get(p.name, len(order)), p.name))
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_SECONDS) as client:

        async def probe(program: ProgramState) -> Health | None:
            found = probes.get(program.name)
            return None if found is None else await check(found, client)

        healths = await asyncio.gather(*(probe(program) for program in programs))
    return [
        ProgramStatus(p.name, p.state, p.pid, p.uptime_seconds, health)
        for p, health in zip(programs, healths, strict=True)
    ]


async def wait_ready(
    supervisor: Supervisor,
    specs: Iterable[ProcessSpec],
    deadline: Deadline,
    progress: Progress,
    *,
    paths: Paths,
    extra_probes: Mapping[str, Probe] | None = None,
) -> None:
    """Return once every program is RUNNING and its probe (and each extra probe) has passed;
    raise LaunchError with the program's log as soon as one keeps exiting, or at the deadline."""
    names = {spec.name for spec in specs}
    pending = {spec.name: spec.probe for spec in specs if spec.probe is not None}
    pending.update(extra_probes or {})
    last: dict[str, str] = {}
    pids: defaultdict[str, set[int]] = defaultdict(set)
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_SECONDS) as client:
        while True:
            states = {p.name: p for p in supervisor.programs() if p.name in names}
            _raise_if_crashing(states.values(), pids, paths)
            healths = await asyncio.gather(*(check(p, client) for p in pending.values()))
            for name, health in zip(list(pending), healths, strict=True):
                if health.ok:
                    del pending[name]
                else:
                    last[name] = health.detail
            not_running = {n for n in names if n not in states or states[n].state != "RUNNING"}
            for name in not_running:
                last[name] = f"{states[name].state if name in states else 'unknown'} in supervisord"
            waiting = sorted(not_running | pending.keys())
            if not waiting:
                return
            if deadline.expired:
                first = next((n for n in waiting if n in names), waiting[0])  # one with a log
                detail = "; ".join(f"{n}: {last.get(n, 'not ready')}" for n in waiting)
                raise LaunchError(
                    f"not ready in time: {detail}", log=log_tail(paths, first), program=first
                )
            progress.waiting(waiting)
            await asyncio.sleep(POLL_SECONDS)


def _raise_if_crashing(
    programs: Iterable[ProgramState], pids: defaultdict[str, set[int]], paths: Paths
) -> None:
    for program in programs:
        if program.pid:
            pids[program.name].add(program.pid)
        starts = len(pids[program.name])
        if program.state == "FATAL" or starts >= CRASH_LOOP_PIDS:
            why = program.description if program.state == "FATAL" else f"started {starts} times"
            raise LaunchError(
                f"{program.name} keeps exiting ({why})",
                log=log_tail(paths, program.name),
                program=program.name,
            )


def log_tail(paths: Paths, program: str, lines: int = LOG_TAIL_LINES) -> str:
    """The end of a program's supervisord log (only the last 64 KiB is read)."""
    try:
        with paths.log(program).open("rb") as file:
            file.seek(0, 2)
            file.seek(max(0, file.tell() - 65536))
            text = file.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
