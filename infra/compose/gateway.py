"""The compose gateway's nginx.conf: the local launcher's nginx template (infra/nginx/),
listening on every interface of its container and logging to stdout. Its upstreams come either

- from Consul (compose.yaml): a consul-template template whose servers range over the instances
  whose Consul checks pass; the Dockerfile writes it: `python -m infra.compose.gateway OUT`;
- from the compose network's DNS (infra/compose/local-images.yaml, no Consul): one `server` per
  upstream naming the compose service, which nginx resolves to every replica's address when it
  loads the config; the gateway's entrypoint reloads it when those addresses change:
  `python -m infra.compose.gateway --dns OUT`.

Template language: https://github.com/hashicorp/consul-template/blob/main/docs/templating-language.md#service
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from infra.launcher.gateway import TEMPLATE
from infra.launcher.templates import render

#: Where nginx keeps its pid and temporary files in the gateway image (created there).
PREFIX = "/var/cache/nginx/cloudnet"
GATEWAY_PORT = 8080
STATUS_PORT = 8081
OPEN_FILES = 65536
#: The local-image gateway's limit, what podman grants here (local/containers.conf).
LOCAL_OPEN_FILES = 20000
RATE_LIMIT = 1000


def consul_servers(upstream: str) -> str:
    """The upstream's `server` lines, one per passing instance of the Consul service of the same
    name; none passing gives one `down` server, so nginx answers 502 rather than refusing the
    config (an upstream needs a server)."""
    return (
        f'{{{{- range service "{upstream}|passing" }}}}\n'
        "        server {{ .Address }}:{{ .Port }} max_fails=2 fail_timeout=5s;\n"
        "{{- else }}\n"
        "        server 127.0.0.1:9 down;\n"
        "{{- end }}"
    )


#: The compose service behind each upstream (compose.yaml), whose name resolves to its replicas.
DNS_SERVICES = {"query_api": "query-api", "command_api": "command-api"}
SERVICE_PORT = 8000


def dns_servers(upstream: str) -> str:
    """The upstream's one `server` line: the compose service's name, which nginx resolves to
    every replica's address when it loads the config (each becomes a server of its own)."""
    return f"        server {DNS_SERVICES[upstream]}:{SERVICE_PORT} max_fails=2 fail_timeout=5s;"


def render_gateway_conf(
    servers: Callable[[str], str] = consul_servers,
    prefix: str | Path = PREFIX,
    open_files: int = OPEN_FILES,
) -> str:
    """nginx.conf for the container; `servers(upstream)` gives each upstream's server lines."""
    conf = render(
        TEMPLATE,
        prefix=prefix,
        access_log="/dev/stdout",
        open_files=open_files,
        gateway_port=GATEWAY_PORT,
        status_port=STATUS_PORT,
        rate_limit=RATE_LIMIT,
        rate_burst=2 * RATE_LIMIT,
        query_servers=servers("query_api"),
        command_servers=servers("command_api"),
    )
    # The launcher's gateway listens on 127.0.0.1 only; in a container that would shut out the
    # published port. The stub_status server stays local, for the container's health check.
    local = f"listen 127.0.0.1:{GATEWAY_PORT} "
    if conf.count(local) != 1:
        raise ValueError(f"{TEMPLATE} no longer has exactly one `{local.strip()}`")
    return conf.replace(local, f"listen {GATEWAY_PORT} ")


def main(arguments: list[str]) -> None:
    dns = arguments[:1] == ["--dns"]
    if dns:
        arguments = arguments[1:]
    if len(arguments) != 1:
        raise SystemExit("usage: python -m infra.compose.gateway [--dns] OUT")
    out = Path(arguments[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    if dns:
        out.write_text(render_gateway_conf(dns_servers, open_files=LOCAL_OPEN_FILES))
    else:
        out.write_text(render_gateway_conf())


if __name__ == "__main__":
    main(sys.argv[1:])
