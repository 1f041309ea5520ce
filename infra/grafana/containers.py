"""Containers: per-container resources from cAdvisor, which runs in the compose mesh only. The
COMPOSE_ONLY tag says so; the e2e test, which runs the local mesh, skips this dashboard."""

from __future__ import annotations

from typing import Any

from infra.grafana.model import COMPOSE_ONLY, Query, dashboard, rate, timeseries


def containers() -> dict[str, Any]:
    running = 'name!=""'
    note = " (compose-only: cAdvisor runs in the containerised mesh only)"
    return dashboard(
        uid="cloudnet-containers",
        title="cloudnet / Containers",
        description="Per-container resources from cAdvisor" + note + ".",
        tags=("infrastructure", COMPOSE_ONLY),
        items=[
            timeseries(
                "CPU by container",
                "CPU cores each container uses" + note + ".",
                Query(
                    rate("container_cpu_usage_seconds_total", "name", selector=running),
                    "{{name}}",
                ),
            ),
            timeseries(
                "Memory by container",
                "Working set of each container" + note + ".",
                Query(
                    f"sum by (name) (container_memory_working_set_bytes{{{running}}})", "{{name}}"
                ),
                unit="bytes",
            ),
            timeseries(
                "Network by container",
                "Bytes received and sent per second by each container" + note + ".",
                Query(
                    rate("container_network_receive_bytes_total", "name", selector=running),
                    "{{name}} received",
                ),
                Query(
                    rate("container_network_transmit_bytes_total", "name", selector=running),
                    "{{name}} sent",
                ),
                unit="Bps",
            ),
            timeseries(
                "Uptime by container",
                "Time since each container (re)started: a drop is a restart" + note + ".",
                Query(
                    f"time() - max by (name) (container_start_time_seconds{{{running}}})",
                    "{{name}}",
                ),
                unit="s",
            ),
        ],
    )
