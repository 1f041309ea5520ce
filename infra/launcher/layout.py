"""Where a local mesh keeps its state and which 127.0.0.1 ports it uses, derived from Settings.

Every private port is `base_port + offset`, so meshes with different base, gateway and prometheus
ports and state directories run side by side (the e2e tests run one beside a developer's).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.settings import Settings

HOST = "127.0.0.1"
#: The venv the CLI runs from; services, supervisord and migrations use the same one.
VENV_BIN = Path(sys.executable).parent
#: Offsets below this one belong to infrastructure; service instances are numbered from it, so
#: adding a service never moves the port of a database or an exporter.
SERVICES_OFFSET = 10


@dataclass(frozen=True, slots=True)
class Ports:
    """The mesh's ports: gateway and Prometheus as configured, the rest from `base`."""

    gateway: int
    prometheus: int
    base: int

    @property
    def postgres(self) -> int:
        return self.base

    @property
    def rabbitmq_amqp(self) -> int:
        return self.base + 1

    @property
    def rabbitmq_dist(self) -> int:
        return self.base + 2

    @property
    def rabbitmq_metrics(self) -> int:
        return self.base + 3

    @property
    def nginx_status(self) -> int:
        return self.base + 4

    @property
    def node_exporter(self) -> int:
        return self.base + 5

    @property
    def postgres_exporter(self) -> int:
        return self.base + 6

    @property
    def nginx_exporter(self) -> int:
        return self.base + 7

    @property
    def postgres_replica(self) -> int:
        return self.base + 8

    def service(self, index: int) -> int:
        return self.base + SERVICES_OFFSET + index


@dataclass(frozen=True, slots=True)
class Paths:
    """Files and directories under the state directory."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def mesh_env(self) -> Path:
        return self.root / "mesh.env"

    @property
    def supervisor_conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.root / "supervisor.sock"

    @property
    def supervisor_pid(self) -> Path:
        return self.root / "supervisord.pid"

    @property
    def postgres(self) -> Path:
        return self.root / "postgres"

    @property
    def postgres_replica(self) -> Path:
        return self.root / "postgres-replica"

    @property
    def rabbitmq(self) -> Path:
        return self.root / "rabbitmq"

    @property
    def nginx(self) -> Path:
        return self.root / "nginx"

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"

    def log(self, program: str) -> Path:
        """The file supervisord writes a program's stdout and stderr to."""
        return self.logs / f"{program}.log"


@dataclass(frozen=True, slots=True)
class MeshLayout:
    """One mesh: its paths, ports, the URLs its services get, and what it runs itself."""

    paths: Paths
    ports: Ports
    database_url: str
    amqp_url: str
    jwt_secret: str
    log_level: str
    rate_limit: int
    own_postgres: bool
    own_rabbitmq: bool
    #: A streaming replica of the own PostgreSQL that the query services read (`up --replica`).
    own_replica: bool = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        own_postgres: bool,
        own_rabbitmq: bool,
        own_replica: bool = False,
    ) -> MeshLayout:
        ports = Ports(settings.gateway_port, settings.prometheus_port, settings.base_port)
        return cls(
            paths=Paths(settings.state_dir.resolve()),
            ports=ports,
            database_url=(
                f"postgresql://postgres@{HOST}:{ports.postgres}/cloudnet"
                if own_postgres
                else settings.database_url
            ),
            amqp_url=(
                f"amqp://guest:guest@{HOST}:{ports.rabbitmq_amqp}/"
                if own_rabbitmq
                else settings.amqp_url
            ),
            jwt_secret=settings.jwt_secret,
            log_level=settings.log_level,
            rate_limit=settings.gateway_rate_limit,
            own_postgres=own_postgres,
            own_rabbitmq=own_rabbitmq,
            own_replica=own_replica,
        )

    @property
    def read_database_url(self) -> str | None:
        """Where the query services read when the mesh runs its own replica; else None (they
        read `database_url`)."""
        if not self.own_replica:
            return None
        return f"postgresql://postgres@{HOST}:{self.ports.postgres_replica}/cloudnet"

    @property
    def identifier(self) -> str:
        """A name unique to this state directory (RabbitMQ node, supervisord identifier)."""
        digest = hashlib.sha256(str(self.paths.root).encode()).hexdigest()[:10]
        return f"cloudnet-{digest}"

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{self.ports.gateway}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{HOST}:{self.ports.prometheus}"
