"""The cloudnet service processes of a local mesh, as data: adding a role is adding one line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.launcher.health import HttpProbe
from infra.launcher.layout import HOST, VENV_BIN
from infra.launcher.programs import Priority, ProcessSpec, ScrapeTarget, in_the_event_pipeline

if TYPE_CHECKING:
    from infra.launcher.layout import MeshLayout


@dataclass(frozen=True, slots=True)
class ServiceRole:
    """`instances` copies of `python -m <module>`, named `<name>-1`, `<name>-2`, ..."""

    name: str
    module: str
    instances: int
    #: Prometheus job, named like the `service` field of the processes' logs.
    job: str
    #: Gateway upstream the instances serve in; None for workers nobody calls through nginx.
    upstream: str | None = None
    #: Reads the mesh's replica when it has one: only answers bounded by X-Min-Position may lag.
    reads_replica: bool = False
    #: Carries events from the store to the read models: run ahead of the request handlers
    #: (`infra.launcher.programs.PIPELINE_NICE`).
    event_pipeline: bool = False


#: Order matters only for port numbers: append new roles so existing ports stay put.
SERVICE_ROLES: tuple[ServiceRole, ...] = (
    ServiceRole("command", "command_api", 2, "command_api", upstream="command_api"),
    ServiceRole("query", "query_api", 2, "query_api", upstream="query_api", reads_replica=True),
    # One leader, one standby (advisory lock).
    ServiceRole("relay", "events.relay", 2, "relay", event_pipeline=True),
    ServiceRole("projector", "projectors", 2, "projector", event_pipeline=True),
    ServiceRole("provisioner", "projectors.provisioner", 1, "provisioner"),
)


def service_specs(layout: MeshLayout) -> list[ProcessSpec]:
    """One spec per service instance, each on its own private port."""
    instances = [
        (role, f"{role.name}-{number}")
        for role in SERVICE_ROLES
        for number in range(1, role.instances + 1)
    ]
    ports = {name: layout.ports.service(index) for index, (_, name) in enumerate(instances)}
    # Discovery without Consul (DESIGN §7): the command instances the launcher starts.
    command_urls = ",".join(
        f"http://{HOST}:{ports[name]}" for role, name in instances if role.name == "command"
    )
    return [
        ProcessSpec(
            name=name,
            command=_command(role),
            ports=(ports[name],),
            priority=Priority.SERVICE,
            env={
                "DATABASE_URL": layout.database_url,
                "AMQP_URL": layout.amqp_url,
                "CLOUDNET_JWT_SECRET": layout.jwt_secret,
                "CLOUDNET_HOST": HOST,
                "CLOUDNET_PORT": str(ports[name]),
                "CLOUDNET_INSTANCE": name,
                "CLOUDNET_LOG_LEVEL": layout.log_level,
                "CLOUDNET_COMMAND_API_URLS": command_urls,
                # Log lines reach supervisord's files as they are written, not when a buffer fills.
                "PYTHONUNBUFFERED": "1",
                **_read_database(layout, role),
            },
            probe=HttpProbe(f"http://{HOST}:{ports[name]}/health"),
            metrics=ScrapeTarget(job=role.job, port=ports[name]),
            upstream=role.upstream,
            after_migrations=True,
        )
        for role, name in instances
    ]


def _command(role: ServiceRole) -> tuple[str, ...]:
    command = (str(VENV_BIN / "python"), "-m", role.module)
    return in_the_event_pipeline(command) if role.event_pipeline else command


def _read_database(layout: MeshLayout, role: ServiceRole) -> dict[str, str]:
    if role.reads_replica and layout.read_database_url is not None:
        return {"READ_DATABASE_URL": layout.read_database_url}
    return {}
