"""The cloudnet service processes of a local mesh, as data: adding a role is adding one line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.launcher.health import HttpProbe
from infra.launcher.layout import HOST, VENV_BIN
from infra.launcher.programs import Priority, ProcessSpec, ScrapeTarget

if TYPE_CHECKING:
    from infra.launcher.layout import MeshLayout


@dataclass(frozen=True, slots=True)
class ServiceRole:
    """`instances` copies of `python -m <module>`, named `<name>-1`, `<name>-2`, ..."""

    name: str
    module: str
    instances: int
    #: Gateway upstream the instances serve in; None for workers nobody calls through nginx.
    upstream: str | None = None


#: Order matters only for port numbers: append new roles so existing ports stay put.
SERVICE_ROLES: tuple[ServiceRole, ...] = (
    ServiceRole("command", "command_api", 2, upstream="command_api"),
    ServiceRole("query", "query_api", 2, upstream="query_api"),
    ServiceRole("relay", "events.relay", 2),  # one leader, one standby (advisory lock)
    ServiceRole("projector", "projectors", 2),
)


def service_specs(layout: MeshLayout) -> list[ProcessSpec]:
    """One spec per service instance, each on its own private port."""
    specs: list[ProcessSpec] = []
    for role in SERVICE_ROLES:
        for number in range(1, role.instances + 1):
            port = layout.ports.service(len(specs))
            name = f"{role.name}-{number}"
            specs.append(
                ProcessSpec(
                    name=name,
                    command=(str(VENV_BIN / "python"), "-m", role.module),
                    ports=(port,),
                    priority=Priority.SERVICE,
                    env=_service_env(layout, name, port),
                    probe=HttpProbe(f"http://{HOST}:{port}/health"),
                    metrics=ScrapeTarget(job=role.module.replace(".", "_"), port=port),
                    upstream=role.upstream,
                    after_migrations=True,
                )
            )
    return specs


def _service_env(layout: MeshLayout, instance: str, port: int) -> dict[str, str]:
    return {
        "DATABASE_URL": layout.database_url,
        "AMQP_URL": layout.amqp_url,
        "CLOUDNET_JWT_SECRET": layout.jwt_secret,
        "CLOUDNET_HOST": HOST,
        "CLOUDNET_PORT": str(port),
        "CLOUDNET_INSTANCE": instance,
        "CLOUDNET_LOG_LEVEL": layout.log_level,
        # Log lines reach supervisord's files as they are written, not when a buffer fills.
        "PYTHONUNBUFFERED": "1",
    }
