"""Prometheus exporters of a local mesh (Debian packages): the machine, PostgreSQL and nginx.

Flags: https://github.com/prometheus/node_exporter, https://github.com/prometheus-community/postgres_exporter,
https://github.com/nginxinc/nginx-prometheus-exporter
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from infra.launcher.health import HttpProbe
from infra.launcher.layout import HOST
from infra.launcher.programs import Priority, ProcessSpec, ScrapeTarget

if TYPE_CHECKING:
    from infra.launcher.layout import MeshLayout


def exporter_specs(layout: MeshLayout) -> list[ProcessSpec]:
    ports = layout.ports
    return [
        _exporter(
            "node-exporter",
            "node",
            ports.node_exporter,
            "/usr/bin/prometheus-node-exporter",
            f"--web.listen-address={HOST}:{ports.node_exporter}",
            # Its default directory belongs to the system's exporter.
            "--no-collector.textfile",
        ),
        _exporter(
            "postgres-exporter",
            "postgres",
            ports.postgres_exporter,
            "/usr/bin/prometheus-postgres-exporter",
            f"--web.listen-address={HOST}:{ports.postgres_exporter}",
            env={"DATA_SOURCE_NAME": exporter_dsn(layout.database_url)},
        ),
        _exporter(
            "nginx-exporter",
            "nginx",
            ports.nginx_exporter,
            "/usr/bin/prometheus-nginx-exporter",
            f"-nginx.scrape-uri=http://{HOST}:{ports.nginx_status}/stub_status",
            f"-web.listen-address={HOST}:{ports.nginx_exporter}",
            # nginx may start after it: keep trying instead of exiting into a restart loop.
            "-nginx.retries=30",
            "-nginx.retry-interval=1s",
        ),
    ]


def exporter_dsn(database_url: str) -> str:
    """The database URL in the form lib/pq wants: no SQLAlchemy driver suffix, TLS off unless
    the URL asks for it."""
    parts = urlsplit(database_url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("sslmode", "disable")
    return urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query)))


def _exporter(
    name: str, job: str, port: int, *command: str, env: dict[str, str] | None = None
) -> ProcessSpec:
    return ProcessSpec(
        name=name,
        command=command,
        ports=(port,),
        priority=Priority.MONITORING,
        env=env or {},
        # "/" is a small landing page; /metrics would make every probe a full scrape.
        probe=HttpProbe(f"http://{HOST}:{port}/"),
        metrics=ScrapeTarget(job=job, port=port),
    )
