"""The nginx gateway of a local mesh: its config, rendered from infra/nginx/, and its program."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import TYPE_CHECKING

from infra.launcher.health import HttpProbe
from infra.launcher.layout import HOST
from infra.launcher.programs import Priority, ProcessSpec
from infra.launcher.templates import render

if TYPE_CHECKING:
    from collections.abc import Sequence

    from infra.launcher.layout import MeshLayout

NGINX = Path("/usr/sbin/nginx")
TEMPLATE = "nginx/nginx.conf.template"
UPSTREAMS = ("query_api", "command_api")
#: What nginx asks for; capped at the hard limit, which an unprivileged process cannot raise.
WANTED_OPEN_FILES = 65536


def render_nginx_conf(layout: MeshLayout, services: Sequence[ProcessSpec]) -> str:
    """nginx.conf for the gateway in front of `services` (those with an `upstream`)."""
    prefix = layout.paths.nginx
    servers = {
        upstream: "\n".join(
            # A failed instance rests 5 s before it gets requests again.
            f"        server {HOST}:{spec.ports[0]} max_fails=2 fail_timeout=5s;"
            for spec in services
            if spec.upstream == upstream
        )
        for upstream in UPSTREAMS
    }
    missing = [upstream for upstream, lines in servers.items() if not lines]
    if missing:
        raise ValueError(f"no service instance for the gateway upstreams {missing}")
    return render(
        TEMPLATE,
        prefix=prefix,
        access_log=layout.paths.log("nginx-access"),
        open_files=_open_files_limit(),
        gateway_port=layout.ports.gateway,
        status_port=layout.ports.nginx_status,
        rate_limit=layout.rate_limit,
        rate_burst=2 * layout.rate_limit,
        query_servers=servers["query_api"],
        command_servers=servers["command_api"],
    )


def write_nginx_conf(layout: MeshLayout, services: Sequence[ProcessSpec]) -> Path:
    path = layout.paths.nginx / "nginx.conf"
    (layout.paths.nginx / "tmp").mkdir(parents=True, exist_ok=True)
    path.write_text(render_nginx_conf(layout, services))
    return path


def nginx_command(conf: Path) -> tuple[str, ...]:
    # -e: errors before the config is read go to stderr too, not to /var/log/nginx.
    return (str(NGINX), "-e", "stderr", "-p", str(conf.parent), "-c", str(conf))


def nginx_spec(layout: MeshLayout) -> ProcessSpec:
    ports = layout.ports
    return ProcessSpec(
        name="nginx",
        command=nginx_command(layout.paths.nginx / "nginx.conf"),
        ports=(ports.gateway, ports.nginx_status),
        priority=Priority.GATEWAY,
        probe=HttpProbe(f"http://{HOST}:{ports.nginx_status}/stub_status"),
        stop_signal="QUIT",  # graceful: finish the requests in flight
        stop_as_group=False,  # the master stops its workers
    )


def gateway_probe(layout: MeshLayout) -> HttpProbe:
    """Through nginx to a query service: any answer below 500 (401 without a token) means the
    gateway routes; 502/504 mean it does not reach the services."""
    return HttpProbe(f"{layout.gateway_url}/v1/networks", accept=range(200, 500))


def _open_files_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return WANTED_OPEN_FILES if hard == resource.RLIM_INFINITY else min(WANTED_OPEN_FILES, hard)
